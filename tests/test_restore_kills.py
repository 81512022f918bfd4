"""A restore is one recoverable unit: killed at any step, it leaves either nothing of itself or a
database that says so and that the same `dala restore FILE` finishes.

A process restoring a backup is killed (`os._exit`, no clean-up) at each step: inside the
transaction that writes the log, after it commits, while the read models are rebuilt, after the
rebuild, between the erasures made after the backup, and just before the restore is marked
finished. Then nothing opens the database as if it were whole (every open but a raw one says to
finish the restore, `dala verify` says so, exit 1), and running the restore again finishes it:
every learner reads as before, the erasures made since the backup are recorded, the read models
equal the source's, and `dala verify` says intact.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, inspect, select

from dala_events.app import Dala
from dala_events.attribution import recorded_as
from dala_events.cli import main
from dala_events.events import ErasedContent, LearnerErased
from dala_events.settings import Settings
from dala_events.store import event_log
from dala_events.store.sql import RestoreUnfinished
from dala_events.wiring import Mode
from tests.conftest import POSTGRES_URL, TEST_MASTER_KEY, require_postgres, reset_postgres
from tests.helpers import read_model_rows

KILLED = 17
KEPT = ("ann", "dan")
ERASED_SINCE = ("bea", "cy")
"""Erased in the source after the log's backup: the later key backup holds their tombstones."""

_RESTORER = """
import os, sys
import dala_events.app as app_module
import dala_events.backup as backup_module
from dala_events.app import Dala
from dala_events.settings import Settings
from dala_events.wiring import Mode

point, source, skip = sys.argv[1], sys.argv[2], sys.argv[3] == "skip"

def die(*args, **kwargs):
    os._exit({killed})

progress = None
if point == "in-the-log":
    backup_module._advance_sequences = die  # the last step inside the log's transaction
elif point == "after-the-log":
    app_module.Dala.rebuild = die
elif point == "in-the-rebuild":
    progress = die  # after the first batch is in the shadow tables, before the swap
elif point == "after-the-rebuild":
    app_module.Dala._record_later_erasures = die
elif point == "between-the-erasures":
    erase = app_module.erase_learner
    def erase_one_then_die(*args, **kwargs):
        erase(*args, **kwargs)
        os._exit({killed})
    app_module.erase_learner = erase_one_then_die
elif point == "before-the-finish":
    backup_module.finish_restore = die
with Dala.open(Settings.from_env(), mode=Mode.RAW_CREATE) as dala:
    dala.restore(source, progress=progress, skip_missing_keys=skip)
os._exit(0)
"""

POINTS = (
    "in-the-log",
    "after-the-log",
    "in-the-rebuild",
    "after-the-rebuild",
    "between-the-erasures",
    "before-the-finish",
)


@pytest.fixture(scope="module")
def backups(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A SQLite school's log backup, then erasures, then its key backup (with their tombstones);
    the source's histories and read models as they are after the erasures."""
    folder = tmp_path_factory.mktemp("source")
    master = folder / "master.key"
    master.write_text(TEST_MASTER_KEY + "\n")
    settings = Settings(database_url=f"sqlite:///{folder}/school.db", master_key_file=master)
    with Dala.open(settings) as dala:
        for number, learner in enumerate((*KEPT, *ERASED_SINCE)):
            profile = dala.profile(learner)
            profile.add_interest(f"interest {number}")
            profile.add_struggle_area(f"struggle {number}")
        dala.backup(folder / "log.backup")
        for learner in ERASED_SINCE:
            with recorded_as("dpo:jane"):
                dala.erase(learner, reason="parent's request")
        dala.backup_keys(folder / "keys.backup")
        histories = {learner: [(e.event_id, e.event) for e in dala.history(learner)] for learner in KEPT}
        rows = read_model_rows(dala.engine)
    return {"log": folder / "log.backup", "keys": folder / "keys.backup", "histories": histories, "rows": rows}


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path, backups: dict[str, Any]) -> Iterator[Settings]:
    """An empty database on a new machine, its key store restored from the key backup."""
    master = tmp_path / "master.key"
    master.write_text(TEST_MASTER_KEY + "\n")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/machine/school.db"
    else:
        require_postgres()
        reset_postgres()
        url = POSTGRES_URL
    settings = Settings(database_url=url, key_store=str(tmp_path / "school.keys"), master_key_file=master)
    assert _cli(settings, "keys", "restore", str(backups["keys"]))[0] == 0
    yield settings


def _env(settings: Settings) -> dict[str, str]:
    return {
        "DALA_DATABASE_URL": settings.database_url,
        "DALA_KEY_STORE": settings.key_store or "",
        "DALA_MASTER_KEY_FILE": str(settings.master_key_file),
        "DALA_MASTER_KEY": "",
    }


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=_env(settings), catch_exceptions=False)
    return result.exit_code, result.output


def _restore_until_killed(settings: Settings, point: str, source: Path, *, skip: bool = False) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DALA_")} | _env(settings)
    script = _RESTORER.format(killed=KILLED)
    done = subprocess.run(
        [sys.executable, "-c", script, point, str(source), "skip" if skip else "all"],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == KILLED, done.stderr


def _events(settings: Settings) -> int:
    with Dala.open(settings, mode=Mode.RAW) as dala, dala.engine.connect() as connection:
        if not inspect(connection).has_table("event_log"):
            return 0
        return int(connection.execute(select(func.count()).select_from(event_log)).scalar_one())


def _check_whole(settings: Settings, backups: dict[str, Any]) -> None:
    """Every kept learner reads as in the source, the later erasures are recorded, the read
    models equal the source's, and verify says intact."""
    with Dala.open(settings, mode=Mode.READ) as dala:
        for learner, history in backups["histories"].items():
            assert [(e.event_id, e.event) for e in dala.history(learner)] == history
        for learner in ERASED_SINCE:
            events = [e.event for e in dala.history(learner)]
            assert all(isinstance(event, ErasedContent) for event in events[:-1])
            assert isinstance(events[-1], LearnerErased)
        assert read_model_rows(dala.engine) == backups["rows"]
        report = dala.verify()
        assert report.intact and report.restore_unfinished is None, report.as_dict()


@pytest.mark.parametrize("point", POINTS)
def test_a_restore_killed_at_any_step_is_nothing_or_finished_by_running_it_again(
    target: Settings, backups: dict[str, Any], point: str
) -> None:
    _restore_until_killed(target, point, backups["log"])
    if point == "in-the-log":
        assert _events(target) == 0  # nothing of the restore is there
    else:
        assert _events(target) > 0
        for mode in (Mode.CREATE, Mode.READ, Mode.UPGRADE):
            with pytest.raises(RestoreUnfinished, match="dala restore FILE"):
                Dala.open(target, mode=mode)
        code, output = _cli(target, "verify")
        assert code == 1 and "stopped before it finished" in output, output
        code, output = _cli(target, "profile", "ann")
        assert code == 1 and "dala restore" in output, output
    code, output = _cli(target, "restore", str(backups["log"]))
    assert code == 0 and "intact" in output, output
    _check_whole(target, backups)
    code, output = _cli(target, "restore", str(backups["log"]))  # a finished restore is not run twice
    assert code == 1 and "holds" in output, output


def test_a_restore_that_skips_missing_keys_killed_after_the_log_needs_the_same_choice_to_finish(
    target: Settings, backups: dict[str, Any], tmp_path: Path
) -> None:
    from sqlalchemy import create_engine, delete

    from dala_events.store.keys import data_keys

    keys = create_engine(f"sqlite:///{target.key_store}")
    with keys.begin() as connection:
        connection.execute(delete(data_keys).where(data_keys.c.learner_id == "dan"))
    keys.dispose()
    _restore_until_killed(target, "after-the-log", backups["log"], skip=True)
    code, output = _cli(target, "restore", str(backups["log"]))
    assert code == 1 and "'dan'" in output and "--skip-missing-keys" in output, output
    code, output = _cli(target, "restore", str(backups["log"]), "--skip-missing-keys")
    assert code == 0 and "left out of the read models: dan" in output, output
    with Dala.open(target, mode=Mode.READ) as dala:
        assert dala.full_profile("dan") is None and dala.full_profile("ann") is not None
        assert [skipped.learner_id for skipped in dala.verify().skipped] == ["dan"]


def test_another_backup_is_not_restored_over_an_unfinished_restore(
    target: Settings, backups: dict[str, Any], tmp_path: Path
) -> None:
    _restore_until_killed(target, "after-the-log", backups["log"])
    other = tmp_path / "other.backup"
    other.write_bytes(backups["log"].read_bytes())
    lines = other.read_bytes().splitlines(keepends=True)
    with Dala.open(Settings(database_url=f"sqlite:///{tmp_path}/empty.db"), mode=Mode.CREATE) as empty:
        empty.backup(other, replace=True)  # a valid backup of another (empty) log
    assert other.read_bytes() != b"".join(lines)
    code, output = _cli(target, "restore", str(other))
    assert code == 1 and "stopped before it finished" in output, output
    assert _events(target) > 0
