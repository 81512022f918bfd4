"""Rebuilding projections: shadow tables, catch-up of concurrent writes, interruption, partial
rebuilds, schema-change detection, and the log's migrations. On SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from freezegun import freeze_time
from sqlalchemy import MetaData, inspect, select, text, update

from dala_events import persistence_manager as pm
from dala_events.database_setup import LOG_SCHEMA_HEAD, close_db, create_dala_engine, init_db, migrate, store_for
from dala_events.errors import InvalidInput, SchemaMismatchError
from dala_events.hlp_module import LearnerProfile
from dala_events.store import LOG_METADATA, SqlEventStore, event_log, projection_state
from projections.catalog import fingerprint, projection_names, read_model_tables, with_dependents
from projections.rebuild import rebuild, rebuild_projections
from tests.helpers import log_row_count, read_model_rows, rebuild_after_adding_a_badge_column, when_the_rebuild_waits


def _fill(store: SqlEventStore, learners: int = 6) -> None:
    for n in range(learners):
        profile = LearnerProfile(f"kid-{n}", persistence_enabled=False, store=store)
        profile.update_preference("style", "visual")
        profile.add_interest("Robotics")
        profile.add_struggle_area("Fractions")
        profile.add_cognitive_metric("story_weaver", {"accuracy": n / 10})
        profile.start_lo("LO1")
        profile.record_activity_attempt("LO1", "a1", "quiz", score=n)
        profile.add_badge("b1", "Starter")
        profile.save()
    LearnerProfile("kid-0", store=store).delete()


def _table_names(store: SqlEventStore) -> set[str]:
    with store.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def test_rebuild_catches_up_with_writes_made_while_it_runs(store: SqlEventStore) -> None:
    _fill(store)
    writer = store_for(create_dala_engine(str(store.engine.url.render_as_string(hide_password=False))))
    seen: list[tuple[int, int]] = []

    def write_during_rebuild(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) == 1:  # after the first batch, before the swap
            late = LearnerProfile("late", store=writer)
            late.add_interest("Written during the rebuild")
            LearnerProfile("kid-1", store=writer).add_badge("b2", "Mid-rebuild")

    result = rebuild(store.engine, cipher=store.cipher, batch_size=7, progress=write_during_rebuild)
    writer.engine.dispose()
    assert [i.interest_name for i in pm.get_interests("late", store=store)] == ["Written during the rebuild"]
    assert {b.badge_id for b in pm.get_badges("kid-1", store=store)} == {"b1", "b2"}
    assert result.events == store.last_position() == result.position
    assert [done for done, _ in seen] == sorted(done for done, _ in seen) and seen[-1][0] == result.events
    inline = read_model_rows(store.engine)
    rebuild_projections(store.engine, cipher=store.cipher)
    assert read_model_rows(store.engine) == inline


def test_an_interrupted_rebuild_leaves_the_live_tables_alone_and_can_be_run_again(store: SqlEventStore) -> None:
    _fill(store)
    before = read_model_rows(store.engine)
    tables_before = _table_names(store)

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rebuild(store.engine, cipher=store.cipher, batch_size=5, progress=interrupt)
    assert read_model_rows(store.engine) == before
    assert _table_names(store) == tables_before  # no shadow left behind
    LearnerProfile("kid-2", store=store).add_interest("Still writable")
    assert rebuild_projections(store.engine, cipher=store.cipher) == store.last_position()
    assert "Still writable" in {i.interest_name for i in pm.get_interests("kid-2", store=store)}


@pytest.mark.parametrize("names", [["badges"], ["interests", "activity_attempts"], ["learner_profiles"]])
def test_rebuilding_some_projections_leaves_the_others_and_equals_inline(
    store: SqlEventStore, names: list[str]
) -> None:
    _fill(store)
    inline = read_model_rows(store.engine)
    result = rebuild(store.engine, cipher=store.cipher, projections=names)
    assert result.projections == with_dependents(names)
    assert read_model_rows(store.engine) == inline
    with store.engine.connect() as connection:
        recorded = dict(connection.execute(select(projection_state.c.name, projection_state.c.position)).all())
    assert all(recorded[name] == result.position for name in result.projections)
    # the swapped-in tables carry the live names' indexes and keys, and inline writes go on
    LearnerProfile("kid-3", store=store).add_badge("b9", "After the swap")
    assert "b9" in {b.badge_id for b in pm.get_badges("kid-3", store=store)}
    for name in projection_names():
        assert {ix["name"] for ix in inspect(store.engine).get_indexes(name)} >= {
            ix.name for ix in read_model_tables()[name].indexes
        }


def test_unknown_projection_is_refused_by_name(store: SqlEventStore) -> None:
    with pytest.raises(InvalidInput, match=r"projection.*'badgez'"):
        rebuild(store.engine, cipher=store.cipher, projections=["badgez"])


def test_changed_definition_is_detected_at_start_and_rebuilt_when_allowed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = init_db(database_url)
    _fill(store_for(engine))
    inline = read_model_rows(engine)
    with engine.begin() as connection:
        connection.execute(
            update(projection_state).where(projection_state.c.name == "interests").values(fingerprint="old")
        )
    close_db()
    monkeypatch.setenv("DALA_AUTO_REBUILD", "0")
    with pytest.raises(SchemaMismatchError, match=r"interests.*dala rebuild"):
        init_db(database_url)
    monkeypatch.setenv("DALA_AUTO_REBUILD", "1")
    engine = init_db(database_url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(
                select(projection_state.c.fingerprint).where(projection_state.c.name == "interests")
            ).scalar_one()
        assert stored == fingerprint(read_model_tables()["interests"], engine.dialect)
        assert read_model_rows(engine) == inline
    finally:
        close_db()
    monkeypatch.setenv("DALA_AUTO_REBUILD", "maybe")
    with pytest.raises(InvalidInput, match="DALA_AUTO_REBUILD"):
        with engine.begin() as connection:
            connection.execute(update(projection_state).values(fingerprint="old"))
        init_db(database_url)


def test_a_new_column_filled_from_old_events_after_a_schema_change(database_url: str) -> None:
    """The code's badges table gains a column; start-up refuses (auto-rebuild off); a rebuild
    of badges fills it for badges earned long before the change."""
    engine = init_db(database_url)
    store = store_for(engine)
    with freeze_time(datetime(2026, 3, 3, 14, 30, tzinfo=UTC)):
        _fill(store, learners=3)
    close_db()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcome = pool.submit(rebuild_after_adding_a_badge_column, database_url).result(timeout=120)
    assert "badges" in outcome["refused"] and "dala rebuild" in outcome["refused"]
    assert outcome["rebuilt"] == ("badges",)
    earned = datetime(2026, 3, 3, 14, 30, tzinfo=UTC)
    assert outcome["filled"] == [("b1", earned), ("b1", earned)]  # kid-0 was deleted


def test_migrations_run_up_and_down_and_match_the_tables_in_code(database_url: str) -> None:
    engine = create_dala_engine(database_url)
    try:
        assert migrate(engine) == LOG_SCHEMA_HEAD
        with engine.connect() as connection:
            assert {"event_log", "projection_state", "disclosure_log", "alembic_version"} <= set(
                inspect(connection).get_table_names()
            )
            in_code = MetaData()
            for table in LOG_METADATA.tables.values():  # disclosure_log among them
                table.to_metadata(in_code)
            differences = compare_metadata(MigrationContext.configure(connection), in_code)
        assert [d for d in differences if d[0] in ("add_table", "remove_table", "add_column", "remove_column")] == []
        assert migrate(engine, "0002", downgrade=True) == "0002"
        with engine.connect() as connection:
            assert "hash" not in {column["name"] for column in inspect(connection).get_columns("event_log")}
        assert migrate(engine, "0001", downgrade=True) == "0001"
        with engine.connect() as connection:
            names = set(inspect(connection).get_table_names())
        assert "event_log" in names and not {"projection_state", "disclosure_log"} & names
        assert migrate(engine, "base", downgrade=True) is None
        with engine.connect() as connection:
            assert not {"event_log", "projection_state", "disclosure_log"} & set(inspect(connection).get_table_names())
        assert migrate(engine) == LOG_SCHEMA_HEAD
    finally:
        engine.dispose()


def test_alembic_check_finds_nothing_to_migrate_on_a_database_dala_init_made(database_url: str) -> None:
    """What `alembic check` and `alembic revision --autogenerate` compare: every table the
    migrations own (disclosure_log too) and none rebuilt from the log, so a database `dala init`
    made and filled (read models rebuilt, a rebuild's shadow schema left on PostgreSQL) has
    nothing to migrate, and a difference in a table the migrations own is found."""
    from alembic import command
    from alembic.util import AutogenerateDiffsDetected

    from dala_events.schema import alembic_config

    engine = init_db(database_url)
    try:
        store = store_for(engine)
        _fill(store, learners=2)
        rebuild(engine, cipher=store.cipher)
        with engine.connect() as connection, connection.begin():
            command.check(alembic_config(connection))
        with engine.connect() as connection, connection.begin() as transaction:
            connection.execute(text("DROP INDEX ix_disclosure_log_learner_id"))
            with pytest.raises(AutogenerateDiffsDetected, match="ix_disclosure_log_learner_id"):
                command.check(alembic_config(connection))
            transaction.rollback()
    finally:
        close_db()


def test_alembic_check_from_the_repository_root_finds_nothing_on_a_database_dala_init_made(
    database_url: str, tmp_path: Path
) -> None:
    """The engineer's way: `alembic check` run from the repository root (its alembic.ini), on the
    database DALA_DATABASE_URL names, which `dala init` made."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    environment = {**os.environ, "DALA_DATABASE_URL": database_url}
    initialised = subprocess.run(
        [sys.executable, "-m", "dala_events.cli", "init"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert initialised.returncode == 0, initialised.stderr
    checked = subprocess.run(
        [sys.executable, "-m", "alembic", "check"],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr


def test_a_log_created_before_the_migrations_is_stamped_and_upgraded(database_url: str) -> None:
    engine = create_dala_engine(database_url)
    try:
        with engine.begin() as connection:
            event_log.create(connection)
        init_db(database_url)
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == LOG_SCHEMA_HEAD
    finally:
        close_db()
        engine.dispose()


def test_positions_skipped_by_rolled_back_appends_leave_nothing_out(store: SqlEventStore) -> None:
    """A rolled-back append leaves a hole in the positions (PostgreSQL sequences do not reuse
    values): the replay reads in commit order, so a hole is nothing to wait for."""
    _fill(store, learners=2)
    with store.engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(
            event_log.insert().values(
                event_id="01a21013-2dd6-7842-9c1b-dae3dc8f16cd",
                learner_id="ghost",
                version=1,
                event_type="LearnerProfileCreated",
                schema_version=1,
                occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
                recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
                payload="{}",
                metadata="{}",
                hash="0" * 64,
            )
        )
        transaction.rollback()
    LearnerProfile("after-the-hole", store=store).add_interest("Music")
    inline = read_model_rows(store.engine)
    assert rebuild(store.engine, cipher=store.cipher, batch_size=4).events == log_row_count(store.engine)
    assert read_model_rows(store.engine) == inline


def test_an_append_committed_behind_higher_positions_is_replayed_in_its_place() -> None:
    """PostgreSQL: an append holds its transaction open while another learner's events take and
    commit higher positions; the rebuild replays in commit order (the subscriptions' rule), so
    the late one is neither passed nor waited for by position, and its learner's rows are whole.
    The held append is released after the rebuild's first batch, or when the rebuild says it
    waits for it (it read nothing before its swap: the horizon was held elsewhere)."""
    import threading
    from collections.abc import Sequence

    from sqlalchemy import Connection

    from dala_events.envelopes import ProjectableEvent
    from tests.conftest import POSTGRES_URL, require_postgres, reset_postgres

    require_postgres()
    reset_postgres()
    engine = init_db(POSTGRES_URL)
    inserted, release = threading.Event(), threading.Event()

    def hold(_connection: Connection, events: Sequence[ProjectableEvent]) -> None:
        if any(event.learner_id == "held" for event in events):
            inserted.set()
            assert release.wait(30), "the test never released the held append"

    try:
        store = store_for(engine)
        LearnerProfile("ann", store=store).add_interest("Robotics")
        LearnerProfile("held", store=store)
        holding = SqlEventStore(engine, inline_projectors=(*store.inline_projectors, hold), cipher=store.cipher)
        profile = LearnerProfile("held", store=holding)
        writer = threading.Thread(target=profile.add_interest, args=("Chess",))
        writer.start()
        assert inserted.wait(30)
        LearnerProfile("bob", store=store).add_interest("Dinosaurs")  # higher positions, committed first
        seen: list[int] = []

        def progress(events: int, _expected: int) -> None:
            seen.append(events)
            release.set()  # the held append commits while the rebuild runs: late, behind bob's

        with when_the_rebuild_waits(lambda _said: release.set()):
            result = rebuild(engine, cipher=store.cipher, batch_size=1, progress=progress)
        writer.join(30)
        assert result.events == log_row_count(engine) == 6
        assert [row.interest_name for row in pm.get_interests("held", store=store)] == ["Chess"]
        assert [row.interest_name for row in pm.get_interests("bob", store=store)] == ["Dinosaurs"]
        inline_after = read_model_rows(engine)
        rebuild(engine, cipher=store.cipher)
        assert read_model_rows(engine) == inline_after
        assert seen
    finally:
        release.set()
        close_db()


def test_a_rebuild_behind_an_idle_transaction_waits_in_bounded_tries_naming_it_and_writers_pass() -> None:
    """PostgreSQL: a session idle in a transaction that wrote to event_log holds the lock the
    swap needs. The rebuild waits in short tries (a writer is not queued behind it), says which
    session it waits for, gives up after its bound naming it, and succeeds once it has ended."""
    import threading

    from sqlalchemy import text

    from projections.rebuild import RebuildBlocked, RebuildResult
    from tests.conftest import POSTGRES_URL, require_postgres, reset_postgres
    from tests.helpers import when_the_rebuild_waits

    require_postgres()
    reset_postgres()
    engine = init_db(POSTGRES_URL)
    # The writer's own waits are bounded: without the tries it would queue behind the rebuild.
    bounded = create_dala_engine(engine.url.update_query_dict({"options": "-c lock_timeout=20000"}))
    idle = engine.connect()
    thread: threading.Thread | None = None
    try:
        store = store_for(engine)
        _fill(store, learners=2)
        idle_transaction = idle.begin()
        idle.execute(text("UPDATE event_log SET hash = hash WHERE false"))  # touches event_log, then idles
        pid = idle.execute(text("SELECT pg_backend_pid()")).scalar_one()

        with pytest.raises(RebuildBlocked) as blocked:
            rebuild(engine, cipher=store.cipher, lock_wait=0.5)
        assert f"pid {pid} (idle in transaction, its transaction open" in str(blocked.value)
        assert "gave up after waiting 0.5 s" in str(blocked.value) and "nothing was swapped in" in str(blocked.value)
        assert inspect(engine).get_table_names(schema="dala_rebuild") == []  # no shadow left behind

        said: list[str] = []
        waiting = threading.Event()
        outcome: list[RebuildResult | BaseException] = []

        def rebuild_in_the_background() -> None:
            try:
                outcome.append(rebuild(engine, cipher=store.cipher, lock_wait=300))
            except BaseException as error:  # handed to the test's thread
                outcome.append(error)

        def heard(message: str) -> None:
            said.append(message)
            waiting.set()

        with when_the_rebuild_waits(heard):
            thread = threading.Thread(target=rebuild_in_the_background)
            thread.start()
            assert waiting.wait(120), "the rebuild never said what it waits for"
            LearnerProfile("writer", store=store_for(bounded)).add_interest("Written while the rebuild waits")
            assert thread.is_alive() and not outcome  # still waiting, within its bound
            idle_transaction.rollback()
            thread.join(300)
        assert not thread.is_alive()
        assert f"pid {pid} (idle in transaction" in said[0]
        result = outcome[0]
        assert isinstance(result, RebuildResult), result
        assert result.events == log_row_count(engine)
        assert [i.interest_name for i in pm.get_interests("writer", store=store)] == ["Written while the rebuild waits"]
    finally:
        idle.close()
        if thread is not None:
            thread.join(300)
        bounded.dispose()
        close_db()


def test_a_rebuild_behind_an_open_sqlite_write_gives_up_after_its_bound(tmp_path: Path) -> None:
    """SQLite: a connection holding the write lock keeps the rebuild out; it tries for its bound,
    gives up saying so (not SQLite's "database is locked" after the busy timeout), and succeeds
    once the lock is free."""
    import sqlite3

    from projections.rebuild import RebuildBlocked

    path = tmp_path / "held.db"
    engine = init_db(f"sqlite:///{path}")
    try:
        store = store_for(engine)
        _fill(store, learners=2)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(RebuildBlocked, match=rf"gave up after waiting 0\.3 s for the write lock of {path}"):
                rebuild(engine, cipher=store.cipher, lock_wait=0.3)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert rebuild(engine, cipher=store.cipher, lock_wait=0.3).events == log_row_count(engine)
    finally:
        close_db()


def test_a_rebuild_refuses_a_wait_that_is_no_number_of_seconds(store: SqlEventStore) -> None:
    with pytest.raises(InvalidInput, match="lock_wait"):
        rebuild(store.engine, cipher=store.cipher, lock_wait=float("nan"))


def test_dala_rebuild_says_the_library_s_default_wait() -> None:
    from dala_events.cli import rebuild as rebuild_command
    from projections.rebuild import LOCK_WAIT_SECONDS

    (wait,) = [option for option in rebuild_command.params if option.name == "lock_wait"]
    assert f"(default: {LOCK_WAIT_SECONDS:g})" in getattr(wait, "help", "")
