"""Backups that restore anywhere: consistent while writers write, exact, refused when damaged."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, inspect, select

from dala_events import audit
from dala_events.attribution import recorded_as
from dala_events.backup import BackupError, backup_log, restore_log
from dala_events.database_setup import close_db, configured_cipher, create_dala_engine, init_db, store_for
from dala_events.errors import RefusedToDestroy
from dala_events.hlp_module import LearnerProfile
from dala_events.integrity import verify_log
from dala_events.store import LogKeyError, SqlEventStore, event_log
from dala_events.store.sql import DATABASE_COLUMNS
from dala_events.wiring import Mode
from projections.rebuild import rebuild
from tests.conftest import POSTGRES_URL, TEST_MASTER_KEY, require_postgres, reset_postgres
from tests.helpers import read_model_rows


@pytest.fixture(autouse=True)
def _one_key_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The source and the restored database share one key store: a backup holds ciphertext,
    which only the key store it was written with decrypts."""
    monkeypatch.setenv("DALA_KEY_STORE", str(tmp_path / "shared.keys"))
    monkeypatch.setenv("DALA_MASTER_KEY", TEST_MASTER_KEY)


def _fill(store: SqlEventStore) -> None:
    for learner in ("ann", "bob"):
        profile = LearnerProfile(learner, persistence_enabled=False, store=store)
        profile.update_preference("visual_preference_task_1", "visual")
        profile.add_interest('Music ♫ "quoted" \\ back')
        profile.add_cognitive_metric("memory_maze", {"accuracy": 0.5, "nested": {"list": [1, 2.5, None, True]}})
        profile.record_activity_attempt("LO1", "quiz_1", "quiz", score=42.5, attempt_details={"hints": 1})
        profile.mark_lo_completed("LO1", score=90.0)
        profile.add_badge("trailblazer", "Trailblazer", details="first")
        profile.save()
    LearnerProfile.load("bob", store=store).delete()


def _log_rows(engine: Engine) -> list[tuple[Any, ...]]:
    """The log's rows as events, without the columns each database fills for itself."""
    columns = [column for column in event_log.columns if column.name not in DATABASE_COLUMNS]
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(*columns).order_by(event_log.c.position))]


@pytest.fixture(params=["sqlite", "postgresql"])
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A second, empty database to restore into (PostgreSQL: the test server, reset)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/restored.db"
        return
    require_postgres()
    reset_postgres()
    yield POSTGRES_URL


@pytest.fixture
def sqlite_source(tmp_path: Path) -> Iterator[SqlEventStore]:
    engine = init_db(f"sqlite:///{tmp_path}/source.db")
    try:
        yield store_for(engine)
    finally:
        close_db()


def test_a_sqlite_backup_restores_exactly_into_either_engine(
    sqlite_source: SqlEventStore, target_url: str, tmp_path: Path
) -> None:
    _fill(sqlite_source)
    result = backup_log(sqlite_source.engine, tmp_path / "backups" / "dala.backup")
    assert result.events == 15 and result.path.exists()
    assert not list((tmp_path / "backups").glob("*.partial"))
    target = create_dala_engine(target_url)
    try:
        restored = restore_log(target, result.path)
        assert restored.events == 15 and restored.sha256 == result.sha256
        assert _log_rows(target) == _log_rows(sqlite_source.engine)  # hashes included
        assert verify_log(target, None).intact
        rebuild(target, cipher=configured_cipher(target))
        assert read_model_rows(target) == read_model_rows(sqlite_source.engine)
        target_store = store_for(target)
        for learner in ("ann", "bob"):
            assert audit.history(learner, store=target_store) == audit.history(learner, store=sqlite_source)
        # The restored log takes new events after the restored ones.
        LearnerProfile("cy", store=target_store).add_interest("Art")
        assert max(row[0] for row in _log_rows(target)) == 17
    finally:
        target.dispose()


def test_a_postgresql_backup_restores_into_sqlite(store: SqlEventStore, tmp_path: Path) -> None:
    _fill(store)
    path = backup_log(store.engine, tmp_path / "dala.backup").path
    target = create_dala_engine(f"sqlite:///{tmp_path}/from-source.db")
    try:
        restore_log(target, path)
        assert _log_rows(target) == _log_rows(store.engine)
        rebuild(target, cipher=configured_cipher(target))
        assert read_model_rows(target) == read_model_rows(store.engine)
    finally:
        target.dispose()


def test_restore_refuses_a_database_that_holds_events(sqlite_source: SqlEventStore, tmp_path: Path) -> None:
    _fill(sqlite_source)
    path = backup_log(sqlite_source.engine, tmp_path / "dala.backup").path
    before = _log_rows(sqlite_source.engine)
    with pytest.raises(RefusedToDestroy, match="holds 15 events"):
        restore_log(sqlite_source.engine, path)
    assert _log_rows(sqlite_source.engine) == before


@pytest.mark.parametrize("damage", ["cut at the end", "cut in a line", "one byte changed", "a line dropped", "empty"])
def test_a_damaged_backup_is_refused_and_nothing_is_written(
    sqlite_source: SqlEventStore, tmp_path: Path, damage: str
) -> None:
    _fill(sqlite_source)
    path = backup_log(sqlite_source.engine, tmp_path / "dala.backup").path
    lines = path.read_bytes().splitlines(keepends=True)
    if damage == "cut at the end":
        damaged = b"".join(lines[:-1])
    elif damage == "cut in a line":
        damaged = b"".join(lines)[: len(b"".join(lines)) // 2]
    elif damage == "one byte changed":
        damaged = b"".join(lines).replace(b'"actor', b'"actos', 1)
    elif damage == "a line dropped":
        damaged = b"".join(lines[:3] + lines[4:])
    else:
        damaged = b""
    path.write_bytes(damaged)
    target = create_dala_engine(f"sqlite:///{tmp_path}/target.db")
    try:
        with pytest.raises(BackupError):
            restore_log(target, path)
        assert "event_log" not in inspect(target).get_table_names()
    finally:
        target.dispose()


def _write_continuously(database_url: str, worker: int, started: Any, stop: Any, totals: Any) -> None:
    engine = create_dala_engine(database_url)
    store = store_for(engine)
    written = 0
    try:
        profile = LearnerProfile(f"writer-{worker}", store=store)
        while not stop.is_set():
            profile.record_activity_attempt("LO1", f"a{written}", "quiz", score=float(written % 100))
            written += 1
            if written == 20:
                started.release()
        totals.put(written)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_backup_taken_while_two_processes_write_is_consistent(
    sqlite_source: SqlEventStore, target_url: str, tmp_path: Path
) -> None:
    _fill(sqlite_source)
    url = sqlite_source.engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    started, stop, results = context.Semaphore(0), context.Event(), context.Queue()
    writers = [
        context.Process(target=_write_continuously, args=(url, worker, started, stop, results)) for worker in range(2)
    ]
    for writer in writers:
        writer.start()
    try:
        for _ in writers:
            assert started.acquire(timeout=120)  # both writers have committed and are still writing
        backup = backup_log(sqlite_source.engine, tmp_path / "during.backup")
    finally:
        stop.set()
        totals = [results.get(timeout=120) for _ in writers]
        for writer in writers:
            writer.join(timeout=120)
    assert all(total >= 20 for total in totals)
    target = create_dala_engine(target_url)
    try:
        restore_log(target, backup.path)
        restored = _log_rows(target)
        assert len(restored) == backup.events
        source = {row[0]: row for row in _log_rows(sqlite_source.engine)}
        assert all(source[row[0]] == row for row in restored)  # an exact prefix of what was written
        versions: dict[str, list[int]] = {}
        for row in restored:
            versions.setdefault(row[2], []).append(row[3])
        assert all(found == list(range(1, len(found) + 1)) for found in versions.values())
        assert versions["writer-0"] and versions["writer-1"]
        rebuild(target, cipher=configured_cipher(target))
        target_store = store_for(target)
        for learner, found in versions.items():
            history = audit.history(learner, store=target_store)
            assert history == audit.history(learner, store=sqlite_source, until=None)[: len(found)]
    finally:
        target.dispose()


def test_a_restore_killed_midway_leaves_no_event(sqlite_source: SqlEventStore, target_url: str, tmp_path: Path) -> None:
    profile = LearnerProfile("many", persistence_enabled=False, store=sqlite_source)
    for n in range(12_000):
        profile.record_activity_attempt("LO1", f"a{n}", "quiz", score=float(n % 100))
    profile.save()
    path = backup_log(sqlite_source.engine, tmp_path / "big.backup").path
    content = path.read_bytes()
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from dala_events.backup import restore_log;"
            "from dala_events.database_setup import create_dala_engine;"
            "restore_log(create_dala_engine(sys.argv[1]), sys.argv[2])",
            target_url,
            str(fifo),
        ],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        with fifo.open("wb") as feed:
            # Two thirds of the file: once this write returns the restore has read all but a
            # pipe buffer of it, so it is inside its transaction with thousands of rows inserted.
            feed.write(content[: len(content) * 2 // 3])
            feed.flush()
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    target = create_dala_engine(target_url)
    try:
        if "event_log" in inspect(target).get_table_names():
            with target.connect() as connection:
                assert connection.execute(select(func.count()).select_from(event_log)).scalar_one() == 0
    finally:
        target.dispose()


def test_the_commands_back_up_and_restore(sqlite_source: SqlEventStore, tmp_path: Path) -> None:
    from tests.test_cli_and_readme import run_dala

    _fill(sqlite_source)
    url = sqlite_source.engine.url.render_as_string(hide_password=False)
    made = run_dala("backup", str(tmp_path / "cli.backup"), "--database-url", url, cwd=tmp_path)
    assert made.returncode == 0 and "backed up 15 events" in made.stdout, made.stderr
    again = run_dala("restore", str(tmp_path / "cli.backup"), "--database-url", url, cwd=tmp_path)
    assert again.returncode == 1 and "holds 15 events" in again.stderr
    fresh = f"sqlite:///{tmp_path}/fresh/restored.db"
    restored = run_dala("restore", str(tmp_path / "cli.backup"), "--database-url", fresh, cwd=tmp_path)
    assert restored.returncode == 0 and "restored 15 events" in restored.stdout, restored.stderr
    assert "verified: 15 events in 2 streams, intact" in restored.stdout
    shown = run_dala("profile", "ann", "--json", "--database-url", fresh, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    missing = run_dala(
        "backup", str(tmp_path / "x.backup"), "--database-url", f"sqlite:///{tmp_path}/none.db", cwd=tmp_path
    )
    assert missing.returncode == 1 and "no database at" in missing.stderr
    assert not (tmp_path / "none.db").exists()


def test_backup_reads_a_snapshot(sqlite_source: SqlEventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write committed while the backup streams is not in it (the backup is one snapshot)."""
    import dala_events.backup as backup_module

    _fill(sqlite_source)
    original = backup_module._batches
    written = threading.Event()

    def batches_then_write(connection: Any, *table_columns_key: Any) -> Iterator[list[tuple[Any, ...]]]:
        for rows in original(connection, *table_columns_key):
            if not written.is_set():
                LearnerProfile("late", store=sqlite_source).add_interest("Art")
                written.set()
            yield rows

    monkeypatch.setattr(backup_module, "_batches", batches_then_write)
    result = backup_log(sqlite_source.engine, tmp_path / "snap.backup")
    assert written.is_set() and result.events == 15


def test_a_restore_puts_a_plain_log_under_a_log_key_and_keeps_the_disclosures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dala_events.app import Dala
    from dala_events.settings import Settings
    from dala_events.store import LogKey

    plain = Settings(database_url=f"sqlite:///{tmp_path}/plain.db")
    with Dala.open(plain) as dala:
        with recorded_as("teacher:1", reason="report"):
            dala.profile("ann").add_interest("Chess")
            dala.record_disclosure("ann", "page")
        dala.backup(tmp_path / "plain.backup")
        before = [(e.event_id, e.event) for e in dala.history("ann")]
    key = LogKey.from_hex("ab" * 32)
    keyed = Settings(
        database_url=f"sqlite:///{tmp_path}/keyed.db",
        log_key=key,
        key_store=f"{tmp_path}/plain.db.keys",
        master_key_file=tmp_path / "plain.db.keys.master",
    )
    with Dala.open(keyed, mode=Mode.RAW_CREATE) as dala:
        dala.restore(tmp_path / "plain.backup")
        report = dala.verify()
        assert report.intact and report.mode == "hmac-sha256" and report.log_mode == "hmac-sha256"
        assert [(e.event_id, e.event) for e in dala.history("ann")] == before
        assert [(d.what, d.actor, d.reason) for d in dala.disclosures("ann")] == [("page", "teacher:1", "report")]
    # A backup chained with one key is not re-chained under another.
    with Dala.open(keyed, mode=Mode.RAW) as dala:
        dala.backup(tmp_path / "keyed.backup")
    other = Settings(
        database_url=f"sqlite:///{tmp_path}/other.db",
        log_key=LogKey.from_hex("cd" * 32),
        key_store=f"{tmp_path}/plain.db.keys",
        master_key_file=tmp_path / "plain.db.keys.master",
    )
    with Dala.open(other, mode=Mode.RAW_CREATE) as dala, pytest.raises(LogKeyError, match="that key configured"):
        dala.restore(tmp_path / "keyed.backup")


def test_backups_never_replace_a_file_unless_forced(sqlite_source: SqlEventStore, tmp_path: Path) -> None:
    from tests.test_cli_and_readme import run_dala

    _fill(sqlite_source)
    url = sqlite_source.engine.url.render_as_string(hide_password=False)
    kept = tmp_path / "kept.backup"
    kept.write_text("last week's backup\n")
    for command in (("backup",), ("keys", "backup")):
        refused = run_dala(*command, str(kept), "--database-url", url, cwd=tmp_path)
        assert refused.returncode == 1 and f"{kept} exists already" in refused.stderr and "--force" in refused.stderr
        assert kept.read_text() == "last week's backup\n" and not list(tmp_path.glob("*.partial"))
    # The pair is checked whole first: the log's file is not written when the keys' exists.
    pair = run_dala("backup", str(tmp_path / "log.backup"), "--keys", str(kept), "--database-url", url, cwd=tmp_path)
    assert pair.returncode == 1 and "exists already" in pair.stderr and not (tmp_path / "log.backup").exists()
    same = run_dala("backup", str(kept), "--keys", str(kept), "--force", "--database-url", url, cwd=tmp_path)
    assert same.returncode == 1 and "another file" in same.stderr
    forced = run_dala("backup", str(kept), "--force", "--database-url", url, cwd=tmp_path)
    assert forced.returncode == 0 and "backed up 15 events" in forced.stdout, forced.stderr
    assert kept.read_text().startswith('{"format":"dala-events-backup"')


def test_a_refused_restore_leaves_no_folder_behind(sqlite_source: SqlEventStore, tmp_path: Path) -> None:
    from tests.test_cli_and_readme import run_dala

    _fill(sqlite_source)
    path = backup_log(sqlite_source.engine, tmp_path / "dala.backup").path
    machine = tmp_path / "machine"
    machine.mkdir()
    target = f"sqlite:///{machine}/database/school.db"
    env = {"DALA_KEY_STORE": "", "DALA_MASTER_KEY": "", "DALA_MASTER_KEY_FILE": ""}
    refused = run_dala("restore", str(path), "--database-url", target, cwd=machine, env=env)
    assert refused.returncode == 1 and "dala keys restore" in refused.stderr, refused.stderr
    assert list(machine.iterdir()) == []


def test_a_backup_that_cannot_be_written_leaves_nothing_and_names_the_file_and_its_disk(
    sqlite_source: SqlEventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import resource

    from tests.test_cli_and_readme import DALA

    profile = LearnerProfile("many", persistence_enabled=False, store=sqlite_source)
    for n in range(2_000):
        profile.record_activity_attempt("LO1", f"a{n}", "quiz", score=float(n % 100))
    profile.save()
    url = sqlite_source.engine.url.render_as_string(hide_password=False)
    out = tmp_path / "out"
    out.mkdir()

    def at_most_200_kb() -> None:  # in the child only: a file may not grow past 200 KB
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    done = subprocess.run(
        [DALA, "backup", str(out / "big.backup"), "--database-url", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=at_most_200_kb,
    )
    assert done.returncode == 1, done.stderr
    assert f"cannot write {out / 'big.backup'}" in done.stderr and str(out.resolve()) in done.stderr
    assert "Traceback" not in done.stderr and "OSError" not in done.stderr
    assert list(out.iterdir()) == []  # no .partial file left behind

    def full_disk(_descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(BackupError, match=rf"no space left on the disk holding {out.resolve()}"):
        backup_log(sqlite_source.engine, out / "full.backup")
    assert list(out.iterdir()) == []


def test_a_damaged_time_is_named_and_left_out_of_backups_and_listings_and_the_rest_restores(
    sqlite_source: SqlEventStore, tmp_path: Path
) -> None:
    import json
    import sqlite3

    from tests.test_cli_and_readme import run_dala

    _fill(sqlite_source)
    database = sqlite_source.engine.url.database
    assert database is not None
    with sqlite3.connect(database) as connection:  # ann's first change: the earliest time of the log
        connection.execute(
            "UPDATE event_log SET recorded_at = '2026-13-45 99:00' WHERE learner_id = 'ann' AND version = 1"
        )
        query = "SELECT position FROM event_log WHERE learner_id = 'ann' AND version = 1"
        (position,) = connection.execute(query).fetchone()
    url = sqlite_source.engine.url.render_as_string(hide_password=False)

    listed = run_dala("learners", "--database-url", url, cwd=tmp_path)
    assert listed.returncode == 1 and "ann" in listed.stdout and "bob" in listed.stdout, listed.stderr
    assert "ann" in listed.stderr and "version 1" in listed.stderr and f"position {position}" in listed.stderr
    assert "ValueError" not in listed.stderr
    as_json = run_dala("learners", "--json", "--database-url", url, cwd=tmp_path)
    assert as_json.returncode == 1 and {entry["learner_id"] for entry in json.loads(as_json.stdout)} == {"ann", "bob"}

    made = run_dala("backup", str(tmp_path / "damaged.backup"), "--database-url", url, cwd=tmp_path)
    assert made.returncode == 1 and "backed up 14 events" in made.stdout, made.stderr
    assert "learner 'ann' version 1" in made.stderr and f"position {position}" in made.stderr
    assert "recorded_at" in made.stderr and "incomplete" in made.stderr and "ValueError:" not in made.stderr
    trailer = json.loads((tmp_path / "damaged.backup").read_text().splitlines()[-1])
    assert trailer["complete"] is False and [row["key"] for row in trailer["left_out"]] == [position]

    fresh = f"sqlite:///{tmp_path}/fresh/restored.db"
    refused = run_dala("restore", str(tmp_path / "damaged.backup"), "--database-url", fresh, cwd=tmp_path)
    assert refused.returncode == 1 and "incomplete" in refused.stderr and "--skip ann" in refused.stderr
    restored = run_dala(
        "restore", str(tmp_path / "damaged.backup"), "--skip", "ann", "--database-url", fresh, cwd=tmp_path
    )
    assert restored.returncode == 0 and "restored 14 events" in restored.stdout, restored.stderr
    assert "left out of the read models: ann" in restored.stdout
    history = run_dala("history", "bob", "--json", "--database-url", fresh, cwd=tmp_path)
    assert history.returncode == 0 and len(json.loads(history.stdout)) == 8, history.stderr
    checked = run_dala("verify", "--database-url", fresh, cwd=tmp_path)
    assert checked.returncode == 1 and "ann" in checked.stdout and "dala restore --skip" in checked.stdout
