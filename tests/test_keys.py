"""The keys kept as carefully as the log: never replaced silently, checked, backed up, restored.

Each case is what an operator meets on SQLite (and, where the key store is a file beside a
PostgreSQL log, on PostgreSQL): the key store deleted, truncated, damaged or unreadable, the
master key file deleted, the wrong master key, one wrapped key damaged or deleted.
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from dala_events.app import Dala
from dala_events.checksummed import BackupError
from dala_events.cli import main
from dala_events.settings import Settings
from dala_events.store import event_log
from dala_events.store.keys import KeyStoreError, KeyStoreMissing, MasterKey, MasterKeyError
from dala_events.wiring import Mode
from tests.conftest import POSTGRES_URL, TEST_MASTER_KEY, require_postgres, reset_postgres

LEARNERS = ("ann", "bea", "cy", "dan", "eve")


@pytest.fixture(params=["sqlite", "postgresql"])
def school(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """A database of five learners with encrypted histories; on PostgreSQL its key store is a
    file beside it, under a master key named by the settings."""
    if request.param == "sqlite":
        settings = Settings(database_url=f"sqlite:///{tmp_path}/school.db")
    else:
        require_postgres()
        reset_postgres()
        settings = Settings(
            database_url=POSTGRES_URL,
            key_store=str(tmp_path / "school.keys"),
            master_key_file=_master_file(tmp_path),
        )
    with Dala.open(settings) as dala:
        for number, learner in enumerate(LEARNERS):
            profile = dala.profile(learner)
            profile.add_interest(f"interest {number}")
            profile.add_struggle_area(f"struggle {number}")
    yield settings


def _master_file(folder: Path) -> Path:
    path = folder / "master.key"
    path.write_text(TEST_MASTER_KEY + "\n")
    return path


def _key_store(settings: Settings) -> Path:
    if settings.key_store is not None:
        return Path(settings.key_store)
    return Path(settings.database_url.removeprefix("sqlite:///") + ".keys")


def _master(settings: Settings) -> Path:
    if settings.master_key_file is not None:
        return settings.master_key_file
    return Path(f"{_key_store(settings)}.master")


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"DALA_DATABASE_URL": settings.database_url, "DALA_KEY_STORE": settings.key_store or ""}
    env["DALA_MASTER_KEY_FILE"] = "" if settings.master_key_file is None else str(settings.master_key_file)
    env["DALA_MASTER_KEY"] = "" if settings.master_key is None else settings.master_key.hex()
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def _events(settings: Settings) -> int:
    with Dala.open(settings, mode=Mode.RAW) as dala, dala.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(event_log)).scalar_one())


READS = (("history", "ann"), ("profile", "ann"), ("learners",), ("export", "ann"), ("backup", "x.backup"))


def test_a_deleted_key_store_is_never_replaced(school: Settings, tmp_path: Path) -> None:
    _key_store(school).unlink()
    written = _events(school)
    for args in READS:
        code, output = _cli(school, *args)
        assert code == 1 and "key store" in output and str(_key_store(school)) in output, (args, output)
        assert "dala keys restore" in output
        assert not _key_store(school).exists(), args
    code, output = _cli(school, "verify")
    assert code == 1 and "NOT CHECKED" in output and "NOT INTACT" in output
    with pytest.raises(KeyStoreMissing, match="ann"):
        Dala.open(school)
    with pytest.raises(KeyStoreMissing):  # a write is refused before anything is written
        Dala(Dala.open(school, mode=Mode.RAW).storage).profile("new").add_interest("x")
    assert not _key_store(school).exists() and _events(school) == written


def test_a_deleted_master_key_file_is_never_replaced(school: Settings) -> None:
    master = _master(school)
    master.unlink()
    written = _events(school)
    for args in (*READS, ("demo",)):
        code, output = _cli(school, *args)
        assert code == 1 and str(master) in output, (args, output)
        assert not master.exists(), args
    with pytest.raises(MasterKeyError, match="master key file"):
        Dala.open(school)
    assert _events(school) == written


def test_a_wrong_master_key_is_refused_before_anything_is_written(school: Settings, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_text("a5" * 32)
    settings = Settings(database_url=school.database_url, key_store=str(_key_store(school)), master_key_file=other)
    written = _events(school)
    with pytest.raises(MasterKeyError, match="not with the configured one"):
        Dala.open(settings)
    assert _events(school) == written


@pytest.mark.parametrize("damage", ["truncated", "half", "flipped", "a folder"])
def test_a_damaged_key_store_is_the_packages_error_naming_it(school: Settings, damage: str) -> None:
    path = _key_store(school)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(b"")
    elif damage == "half":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        path.write_bytes(data[:100] + bytes(b ^ 0xFF for b in data[100:4096]) + data[4096:])
    else:
        path.unlink()
        path.mkdir()
    with pytest.raises(KeyStoreError) as raised, Dala.open(school) as dala:
        dala.history("ann")
    assert str(path) in str(raised.value)
    code, output = _cli(school, "history", "ann")
    assert code == 1 and str(path) in output and "Traceback" not in output


def _damage_key(settings: Settings, learner: str, *, delete: bool = False) -> None:
    with sqlite3.connect(_key_store(settings)) as connection:
        if delete:
            connection.execute("DELETE FROM data_keys WHERE learner_id = ?", (learner,))
        else:
            (wrapped,) = connection.execute("SELECT wrapped FROM data_keys WHERE learner_id = ?", (learner,)).fetchone()
            damaged = bytes(wrapped[:20]) + bytes([wrapped[20] ^ 1]) + bytes(wrapped[21:])
            connection.execute("UPDATE data_keys SET wrapped = ? WHERE learner_id = ?", (damaged, learner))


def test_verify_reports_every_damaged_or_missing_key_per_learner(school: Settings) -> None:
    _damage_key(school, "bea")
    _damage_key(school, "dan", delete=True)
    code, output = _cli(school, "verify", "--json")
    assert code == 1
    report = json.loads(output)
    assert report["intact"] is False
    problems = {(p["kind"], p["learner_id"]) for p in report["keys"]["problems"]}
    assert problems == {("damaged", "bea"), ("missing", "dan")}
    assert report["keys"]["learners_checked"] == len(LEARNERS)
    code, output = _cli(school, "verify")
    assert code == 1 and "damaged" in output and "bea" in output and "missing" in output and "dan" in output


def test_a_tombstone_without_its_erasure_is_reported(school: Settings) -> None:
    with sqlite3.connect(_key_store(school)) as connection:
        connection.execute("DELETE FROM data_keys WHERE learner_id = 'cy'")
        connection.execute("INSERT INTO erased_keys VALUES ('cy', '2026-01-01 00:00:00')")
    report = json.loads(_cli(school, "verify", "--json")[1])
    assert ("erased in the key store only", "cy") in {(p["kind"], p["learner_id"]) for p in report["keys"]["problems"]}


def test_the_backup_names_its_key_store_and_restore_checks_it_before_writing(school: Settings, tmp_path: Path) -> None:
    code, output = _cli(school, "backup", str(tmp_path / "log.backup"))
    assert code == 0 and "key store" in output and "dala keys backup" in output
    header = json.loads((tmp_path / "log.backup").read_text().splitlines()[0])
    with Dala.open(school, mode=Mode.RAW) as dala:
        key_store = dala.storage.key_store
        assert header["key_store"]["id"] == key_store.store_id
        assert header["key_store"]["master_key_id"] == key_store.master_key.key_id
    assert TEST_MASTER_KEY not in (tmp_path / "log.backup").read_text()
    assert _cli(school, "keys", "backup", str(tmp_path / "keys.backup"))[0] == 0
    assert TEST_MASTER_KEY not in (tmp_path / "keys.backup").read_text()

    # A new machine: the backup without its key store is refused, nothing written.
    machine = tmp_path / "new-machine"
    machine.mkdir()
    kept_apart = machine / "master.key"  # the school's master key, brought from where it is kept
    kept_apart.write_bytes(_master(school).read_bytes())
    target = Settings(database_url=f"sqlite:///{machine}/school.db", master_key_file=kept_apart)
    code, output = _cli(target, "restore", str(tmp_path / "log.backup"))
    assert code == 1 and "dala keys restore" in output and header["key_store"]["id"] in output, output
    assert not (machine / "school.db.keys").exists() and not (machine / "school.db").exists()

    # With the key store restored first, every history reads back equal.
    code, output = _cli(target, "keys", "restore", str(tmp_path / "keys.backup"))
    assert code == 0 and f"restored {len(LEARNERS)} data keys" in output, output
    code, output = _cli(target, "restore", str(tmp_path / "log.backup"))
    assert code == 0 and "intact" in output, output
    with Dala.open(school, mode=Mode.READ) as before, Dala.open(target, mode=Mode.READ) as after:
        for learner in LEARNERS:
            assert [(e.event_id, e.event) for e in after.history(learner)] == [
                (e.event_id, e.event) for e in before.history(learner)
            ]


def test_a_key_backup_restores_by_merging_and_refuses_conflicts(school: Settings, tmp_path: Path) -> None:
    with Dala.open(school, mode=Mode.RAW) as dala:
        first = dala.backup_keys(tmp_path / "keys.backup")
        assert (first.keys, first.tombstones) == (len(LEARNERS), 0)
        again = dala.restore_keys(tmp_path / "keys.backup")  # the same keys: nothing to add
        assert (again.keys, again.tombstones) == (0, 0)
    (tmp_path / "keys.backup").write_text((tmp_path / "keys.backup").read_text().replace('"ann"', '"anne"', 1))
    with Dala.open(school, mode=Mode.RAW) as dala, pytest.raises(BackupError, match="altered"):
        dala.restore_keys(tmp_path / "keys.backup")


def _create_learners(database_url: str, prefix: str, acknowledged: Any, stop: Any) -> None:
    settings = Settings(database_url=database_url, master_key=MasterKey.from_hex(TEST_MASTER_KEY))
    with Dala.open(settings) as dala:
        number = 0
        while not stop.is_set():
            learner = f"{prefix}-{number}"
            dala.profile(learner).add_interest("Chess")
            acknowledged.put(learner)
            number += 1


@pytest.mark.slow
def test_a_key_backup_taken_while_two_processes_create_learners_holds_every_acknowledged_key(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/busy.db", master_key=MasterKey.from_hex(TEST_MASTER_KEY))
    Dala.open(settings).close()
    context = multiprocessing.get_context("spawn")
    acknowledged, stop = context.Queue(), context.Event()
    writers = [
        context.Process(target=_create_learners, args=(settings.database_url, name, acknowledged, stop))
        for name in ("p", "q")
    ]
    for writer in writers:
        writer.start()
    try:
        before = [acknowledged.get(timeout=120) for _ in range(30)]
        with Dala.open(settings, mode=Mode.RAW) as dala:
            backup = dala.backup_keys(tmp_path / "keys.backup")
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=120)
    lines = [json.loads(line) for line in (tmp_path / "keys.backup").read_text().splitlines()]
    backed_up = {line["key"] for line in lines if "key" in line}
    assert set(before) <= backed_up and backup.keys == len(backed_up)


_ROTATE_AND_DIE = """
import os, sys
from dala_events.app import Dala
from dala_events.settings import Settings
from dala_events.store.keys import MasterKey, SqlKeyStore

rotate = SqlKeyStore.rotate
def rotate_then_die(self, new_master_key):
    count = rotate(self, new_master_key)  # the key store has committed the new wrapping
    os._exit(9)                           # killed before the master key file is replaced
SqlKeyStore.rotate = rotate_then_die
with Dala.open(Settings(database_url=sys.argv[1])) as dala:
    dala.rotate_master_key(MasterKey.from_hex(sys.argv[2]))
"""


def test_a_rotation_killed_before_the_master_key_file_is_replaced_locks_nobody_out(tmp_path: Path) -> None:
    import subprocess
    import sys

    settings = Settings(database_url=f"sqlite:///{tmp_path}/school.db")
    with Dala.open(settings) as dala:
        dala.profile("ann").add_interest("Chess")
        before = [event.event for event in dala.history("ann")]
    new_key = "c3" * 32
    killed = subprocess.run(
        [sys.executable, "-c", _ROTATE_AND_DIE, settings.database_url, new_key], capture_output=True, timeout=120
    )
    assert killed.returncode == 9, killed.stderr
    master = _master(settings)
    assert master.read_text().strip() != new_key and Path(f"{master}.new").exists()
    with Dala.open(settings) as dala:  # the next open finishes the rotation
        assert [event.event for event in dala.history("ann")] == before
        dala.profile("bea").add_interest("Art")
    assert master.read_text().strip() == new_key and not Path(f"{master}.new").exists()
    code, output = _cli(settings, "verify")
    assert code == 0, output


def test_a_rotation_stopped_before_the_key_store_changed_keeps_the_old_key(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/school.db")
    with Dala.open(settings) as dala:
        dala.profile("ann").add_interest("Chess")
    master = _master(settings)
    old = master.read_text()
    Path(f"{master}.new").write_text("c3" * 32 + "\n")  # written, then stopped before the key store
    with Dala.open(settings) as dala:
        assert dala.history("ann")[-1].event_type == "InterestAdded"
    assert master.read_text() == old


def test_a_rebuild_names_every_unreadable_learner_first_and_skips_only_on_request(school: Settings) -> None:
    from projections.rebuild import RebuildError
    from tests.helpers import read_model_rows

    with Dala.open(school, mode=Mode.RAW) as dala:
        live = read_model_rows(dala.engine)
    _damage_key(school, "bea")
    _damage_key(school, "dan", delete=True)
    with Dala.open(school, mode=Mode.RAW) as dala:
        with pytest.raises(RebuildError) as refused:
            dala.rebuild()
        assert "'bea' (damaged key)" in str(refused.value) and "'dan' (missing key)" in str(refused.value)
        assert "nothing was changed" in str(refused.value) and "--skip bea --skip dan" in str(refused.value)
        assert read_model_rows(dala.engine) == live
    code, output = _cli(school, "rebuild")
    assert code == 1 and "bea" in output and "dan" in output
    code, output = _cli(school, "rebuild", "--skip", "bea", "--skip", "dan")
    assert code == 0, output
    with Dala.open(school, mode=Mode.RAW) as dala:
        assert dala.full_profile("bea") is None and dala.full_profile("ann") is not None
        report = dala.verify()
        assert [skipped.learner_id for skipped in report.skipped] == ["bea", "dan"]
    code, output = _cli(school, "verify")
    said = " ".join(output.split())  # the report wraps at the terminal's width: read it as words
    assert "left out by `dala rebuild --skip`" in said and "learner bea" in said


def _unreadable_created_at(settings: Settings, learner: str) -> None:
    """What flipped bytes did to a row: its created_at no longer UTF-8 (SQLite's own check passes)."""
    with sqlite3.connect(_key_store(settings)) as connection:
        connection.execute(
            "UPDATE data_keys SET created_at = CAST(? AS TEXT) WHERE learner_id = ?", (b"\xff\xfe2026-03-02", learner)
        )
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_damaged_key_row_is_named_and_every_readable_key_is_still_backed_up(school: Settings, tmp_path: Path) -> None:
    assert _cli(school, "keys", "backup", str(tmp_path / "before.keys"))[0] == 0  # a complete one, from before
    _unreadable_created_at(school, "bea")
    with sqlite3.connect(_key_store(school)) as connection:  # and dan's wrapped key cut short
        connection.execute("UPDATE data_keys SET wrapped = X'00010203' WHERE learner_id = 'dan'")

    code, output = _cli(school, "verify", "--json")
    assert code == 1
    problems = {(p["kind"], p["learner_id"]): p["detail"] for p in json.loads(output)["keys"]["problems"]}
    assert set(problems) == {("unreadable row", "bea"), ("unreadable row", "dan")}, problems
    assert "created_at" in problems[("unreadable row", "bea")] and "row " in problems[("unreadable row", "bea")]
    assert "wrapped" in problems[("unreadable row", "dan")]
    code, output = _cli(school, "verify")
    assert code == 1 and "unreadable row" in output and "bea" in output and "dan" in output
    with Dala.open(school) as dala:
        dala.profile("new-before-the-backup").add_interest("Chess")  # nothing has recorded the damage yet

    code, output = _cli(school, "keys", "backup", str(tmp_path / "keys.backup"))
    assert code == 1 and "bea" in output and "dan" in output and "incomplete" in output, output
    lines = [json.loads(line) for line in (tmp_path / "keys.backup").read_text().splitlines()]
    header = lines[0]
    assert header["complete"] is False and {row["learner_id"] for row in header["damaged"]} == {"bea", "dan"}
    copied = {line["key"]: line for line in lines if "key" in line}
    assert set(copied) == {"ann", "bea", "cy", "eve", "new-before-the-backup"}  # every key that reads
    assert copied["bea"]["created_at"] is None

    # Once a backup found the damage, no new key goes into that key store: writes of known learners go on.
    with Dala.open(school) as dala:
        with pytest.raises(KeyStoreError, match=r"damaged.*'zed'"):
            dala.profile("zed").add_interest("Chess")
        dala.profile("ann").add_interest("Art")
    code, output = _cli(school, "demo", "--learner", "yan")
    assert code == 1 and "damaged" in output and "dala keys backup" in output, output

    # The repair the README gives: the readable keys into a new key store, the lost one from an older backup.
    _key_store(school).rename(tmp_path / "damaged.keys")
    for backup in ("keys.backup", "before.keys"):
        code, output = _cli(school, "keys", "restore", str(tmp_path / backup))
        assert code == 0, output
    code, output = _cli(school, "verify")
    assert code == 0, output
    with Dala.open(school) as dala:
        dala.profile("zed").add_interest("Chess")
        assert [e.event_type for e in dala.history("bea")][-1] == "StruggleAreaAdded"


def test_a_key_backup_of_format_1_still_restores(school: Settings, tmp_path: Path) -> None:
    from dala_events.checksummed import ChecksummedWriter

    with Dala.open(school, mode=Mode.RAW) as dala:
        dala.backup_keys(tmp_path / "keys.backup")
    lines = [json.loads(line) for line in (tmp_path / "keys.backup").read_text().splitlines()]
    header, body, trailer = lines[0], lines[1:-1], lines[-1]
    assert header.pop("format_version") == 2 and header.pop("complete") is True and header.pop("damaged") == []
    with ChecksummedWriter(tmp_path / "format-1.backup") as old:  # as the code before format 2 wrote it
        old.write({**header, "format_version": 1})
        for line in body:
            old.write(line)
        old.finish(keys=trailer["keys"], tombstones=trailer["tombstones"])
    _key_store(school).unlink()
    code, output = _cli(school, "keys", "restore", str(tmp_path / "format-1.backup"))
    assert code == 0 and f"restored {len(LEARNERS)} data keys" in output, output
    assert _cli(school, "verify")[0] == 0
