"""The README's backup procedure, run as written while two processes create learners, then its
restore on a new machine that holds only the master key and the backup files: every learner
acknowledged before the backup started comes back readable, and the restored database verifies.

The commands are the README's own code blocks (the nightly backup, and the restore), run by
bash; only the restore's example date and master key path are replaced by the real ones.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

from dala_events.app import Dala
from dala_events.settings import Settings
from dala_events.wiring import Mode
from tests.conftest import POSTGRES_URL, TEST_MASTER_KEY, require_postgres, reset_postgres

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DATE = "2026-03-02"
EXAMPLE_MASTER = "/secure/school.master"


def _readme_block(*words: str) -> str:
    """The README's bash block holding every one of `words`, dedented."""
    readme = (ROOT / "README.md").read_text()
    for indent, body in re.findall(r"^( *)```bash\n(.*?)^\1```", readme, flags=re.S | re.M):
        block = "\n".join(line.removeprefix(indent) for line in body.splitlines())
        if all(word in block for word in words):
            return block
    raise AssertionError(f"no bash block of the README holds {words}")


def _create_learners(settings: Settings, prefix: str, acknowledged: Any, stop: Any) -> None:
    with Dala.open(settings) as dala:
        number = 0
        while not stop.is_set():
            learner = f"{prefix}-{number}"
            profile = dala.profile(learner)
            profile.add_interest("Chess")
            profile.add_struggle_area("Fractions")
            acknowledged.put(learner)
            number += 1


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DALA_")} | env
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    command = ["bash", "-euo", "pipefail", "-c", script]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


@pytest.fixture(params=["sqlite", "postgresql"])
def places(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The school (the embedded default in its folder, or PostgreSQL with a key store file) and
    a new machine (a fresh folder; on PostgreSQL a database of its own, dropped afterwards)."""
    school, machine = tmp_path / "school", tmp_path / "machine"
    school.mkdir()
    machine.mkdir()
    if request.param == "sqlite":
        source = Settings(database_url=f"sqlite:///{school}/database/edpsych_connect_dala.db")
        yield {"school": school, "machine": machine, "source": source, "env": {}, "target_env": {}}
        return
    require_postgres()
    reset_postgres()
    master = school / "master.key"
    master.write_text(TEST_MASTER_KEY + "\n")
    source = Settings(database_url=POSTGRES_URL, key_store=str(school / "school.keys"), master_key_file=master)
    env = {
        "DALA_DATABASE_URL": POSTGRES_URL,
        "DALA_KEY_STORE": source.key_store or "",
        "DALA_MASTER_KEY_FILE": str(master),
    }
    url = make_url(POSTGRES_URL)
    name = f"{url.database}_procedure"
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    target_env = {
        "DALA_DATABASE_URL": url.set(database=name).render_as_string(hide_password=False),
        "DALA_KEY_STORE": str(machine / "school.keys"),
    }
    try:
        yield {"school": school, "machine": machine, "source": source, "env": env, "target_env": target_env}
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.mark.slow
def test_the_readme_backup_procedure_run_while_writers_create_learners_restores_every_acknowledged_one(
    places: dict[str, Any],
) -> None:
    school, machine, source = places["school"], places["machine"], places["source"]
    nightly = _readme_block("dala backup", "--keys")
    restore = _readme_block("dala keys restore", "dala restore")
    with Dala.open(source):
        pass  # the school's database, its key store and (embedded default) master key file
    context = multiprocessing.get_context("spawn")
    acknowledged, stop = context.Queue(), context.Event()
    writers = [
        context.Process(target=_create_learners, args=(source, prefix, acknowledged, stop)) for prefix in ("p", "q")
    ]
    for writer in writers:
        writer.start()
    try:
        before = {acknowledged.get(timeout=120) for _ in range(20)}
        while True:  # everything acknowledged so far, before the procedure starts
            try:
                before.add(acknowledged.get_nowait())
            except queue.Empty:
                break
        done = _bash(nightly, school, places["env"])
        during = acknowledged.get(timeout=120)  # the writers were still writing after it
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=120)
    assert done.returncode == 0, done.stderr
    assert during not in before

    # The new machine: the master key and the backup files, nothing else.
    master = source.master_key_file or Path(source.database_url.removeprefix("sqlite:///") + ".keys.master")
    shutil.copy(master, machine / "school.master")
    (machine / "backups").mkdir()
    files = sorted((school / "backups").iterdir())
    assert [file.suffix for file in files] == [".keys", ".log"], files
    for file in files:
        shutil.copy(file, machine / "backups" / file.name)
    date = files[0].stem.removeprefix("dala-")
    script = restore.replace(EXAMPLE_DATE, date).replace(EXAMPLE_MASTER, str(machine / "school.master"))
    restored = _bash(script, machine, places["target_env"])
    assert restored.returncode == 0 and "intact" in restored.stdout, restored.stdout + restored.stderr

    target_url = places["target_env"].get(
        "DALA_DATABASE_URL", f"sqlite:///{machine}/database/edpsych_connect_dala.db"
    )
    target = Settings(
        database_url=target_url,
        key_store=places["target_env"].get("DALA_KEY_STORE"),
        master_key_file=machine / "school.master",
    )
    with Dala.open(source, mode=Mode.READ) as school_store, Dala.open(target, mode=Mode.READ) as new:
        for learner in sorted(before):
            history = [(e.event_id, e.event) for e in new.history(learner)]
            assert history == [(e.event_id, e.event) for e in school_store.history(learner)], learner
            profile = new.full_profile(learner)
            assert profile is not None and [i.interest_name for i in profile.interests] == ["Chess"]
        report = new.verify()
        assert report.intact and report.keys is not None and report.keys.ok and not report.skipped
        assert report.streams >= len(before)
