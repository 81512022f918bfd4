"""Integration tests of the store and the projectors, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import event, inspect, select, text

from dala_events import persistence_manager as pm
from dala_events.dialects import write_transaction
from dala_events.errors import ConcurrencyError, CorruptEventError, InvalidInput
from dala_events.events import InterestAdded, LearnerProfileCreated, new_event_id
from dala_events.hlp_module import LearnerProfile
from dala_events.store import NewEvent, ProjectableEvent, SqlEventStore, event_log
from projections.database_models import READ_MODEL_METADATA
from projections.projectors import project_events
from projections.rebuild import rebuild_projections
from tests.helpers import log_row_count, read_model_rows

T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def test_append_and_read_stream(store: SqlEventStore) -> None:
    events = [NewEvent.now(LearnerProfileCreated()), NewEvent.now(InterestAdded(interest_name="Robotics"))]
    assert store.append("ann", events, expected_version=0) == 2
    recorded = store.read_stream("ann")
    assert [(r.version, r.event_type) for r in recorded] == [(1, "LearnerProfileCreated"), (2, "InterestAdded")]
    assert recorded[1].event == InterestAdded(interest_name="Robotics")
    assert recorded[0].event_id == events[0].event_id
    assert recorded[0].occurred_at == events[0].occurred_at
    assert recorded[0].occurred_at.tzinfo is not None and recorded[0].recorded_at.tzinfo is not None
    assert recorded[0].metadata["actor"] == "system"
    assert store.read_stream("nobody") == []


def test_stale_writer_gets_concurrency_error_and_writes_nothing(store: SqlEventStore) -> None:
    first = LearnerProfile("ann", store=store)
    second = LearnerProfile("ann", persistence_enabled=False, store=store)
    first.add_interest("Robotics")
    second.add_interest("Music")
    second.add_struggle_area("Spelling")
    before_rows = read_model_rows(store.engine)
    with pytest.raises(ConcurrencyError, match="'ann': expected stream version 1, but it is at 2"):
        second.save()
    assert store.stream_version("ann") == 2
    assert read_model_rows(store.engine) == before_rows
    assert LearnerProfile("ann", store=store).interests == ["Robotics"]


def test_expected_version_ahead_of_the_stream_is_refused(store: SqlEventStore) -> None:
    with pytest.raises(ConcurrencyError):
        store.append("ann", [NewEvent.now(LearnerProfileCreated())], expected_version=3)
    assert log_row_count(store.engine) == 0


def test_events_and_projection_commit_together_or_not_at_all(store: SqlEventStore) -> None:
    def failing_projector(connection, events: Sequence[ProjectableEvent]) -> None:
        project_events(connection, events)
        raise RuntimeError("projection failed")

    broken = SqlEventStore(store.engine, inline_projectors=[failing_projector])
    with pytest.raises(RuntimeError, match="projection failed"):
        LearnerProfile("ann", store=broken)
    assert log_row_count(store.engine) == 0
    assert all(rows == [] for rows in read_model_rows(store.engine).values())


def test_read_all_streams_in_batches(store: SqlEventStore) -> None:
    for n in range(5):
        profile = LearnerProfile(f"learner-{n}", persistence_enabled=False, store=store)
        profile.add_interest("Robotics")
        profile.save()
    batches = list(store.read_all_batches(batch_size=3))
    assert [len(batch) for batch in batches] == [3, 3, 3, 1]
    positions = [event.position for batch in batches for event in batch]
    assert positions == sorted(positions) and len(set(positions)) == 10
    assert [e.position for e in store.read_all(after_position=positions[4], limit=2)] == positions[5:7]
    with pytest.raises(InvalidInput, match="batch_size"):
        list(store.read_all(batch_size=0))


def test_read_models_hold_event_times_before_and_after_rebuild(store: SqlEventStore) -> None:
    with freeze_time(T0) as clock:
        profile = LearnerProfile("ann", store=store)
        steps = [
            lambda: profile.update_preference("visual_preference_task_1", "visual"),
            lambda: profile.add_interest("Robotics"),
            lambda: profile.add_struggle_area("Fractions"),
            lambda: profile.add_cognitive_metric("story_weaver", {"accuracy": 0.8}),
            lambda: profile.start_lo("LO1"),
            lambda: profile.mark_lo_completed("LO1", score=90),
            lambda: profile.add_badge("trailblazer", "Trailblazer"),
            lambda: profile.record_activity_attempt("LO1", "A1", "quiz", score=9, completed=True),
        ]
        for step in steps:
            clock.tick(timedelta(hours=1))
            step()
    at = [T0 + timedelta(hours=n) for n in range(1, 9)]

    def check() -> None:
        data = pm.get_full_learner_profile_data("ann", store=store)
        assert data is not None
        assert (data.created_at, data.last_updated_at) == (T0, at[7])
        assert data.preferences[0].timestamp == at[0]
        assert data.interests[0].timestamp == at[1]
        assert data.struggles[0].timestamp == at[2]
        assert data.cognitive_metrics[0].timestamp == at[3]
        assert (data.lo_progress[0].started_at, data.lo_progress[0].completed_at) == (at[4], at[5])
        assert data.badges[0].earned_date == date(2026, 3, 3)
        assert data.activity_attempts[0].attempt_timestamp == at[7]

    check()
    inline = read_model_rows(store.engine)
    with freeze_time(T0 + timedelta(days=30)):
        assert rebuild_projections(store.engine, cipher=store.cipher) == 9
    assert read_model_rows(store.engine) == inline
    check()


def test_delete_learner_removes_every_read_model_row_but_keeps_history(store: SqlEventStore) -> None:
    for learner in ("ann", "bob"):
        profile = LearnerProfile(learner, persistence_enabled=False, store=store)
        profile.add_interest("Robotics")
        profile.add_struggle_area("Spelling")
        profile.update_preference("style", "visual")
        profile.add_cognitive_metric("t", {"a": 1})
        profile.mark_lo_completed("LO1")
        profile.add_badge("b", "B")
        profile.record_activity_attempt("LO1", "A", "quiz")
        profile.save()
    pm.delete_learner_profile("ann", store=store)
    rows = read_model_rows(store.engine)
    assert all("'ann'" not in repr(table_rows) for table_rows in rows.values())
    assert all(len(table_rows) == 1 for table_rows in rows.values())
    assert pm.get_full_learner_profile_data("ann", store=store) is None
    assert len(store.read_stream("ann")) == 9
    inline = read_model_rows(store.engine)
    rebuild_projections(store.engine, cipher=store.cipher)
    assert read_model_rows(store.engine) == inline


def test_schema_matches_the_document(store: SqlEventStore) -> None:
    inspector = inspect(store.engine)
    expected = {
        "learner_profiles": ["id", "created_at", "last_updated_at"],
        "preferences": ["id", "learner_id", "category", "value", "timestamp"],
        "interests": ["id", "learner_id", "interest_name", "timestamp"],
        "struggles": ["id", "learner_id", "struggle_description", "timestamp"],
        "cognitive_metrics": ["id", "learner_id", "task_name", "metric_details", "timestamp"],
        "learning_objective_progress": [
            "id",
            "learner_id",
            "lo_id",
            "status",
            "started_at",
            "completed_at",
            "score",
            "details",
        ],
        "badges": ["id", "learner_id", "badge_id", "badge_name", "earned_date", "details"],
        "activity_attempts": [
            "id",
            "learner_id",
            "lo_id",
            "activity_id",
            "activity_type",
            "attempt_timestamp",
            "score",
            "completed",
            "attempt_details",
        ],
    }
    nullable = {
        ("learning_objective_progress", "completed_at"),
        ("learning_objective_progress", "score"),
        ("learning_objective_progress", "details"),
        ("badges", "details"),
        ("activity_attempts", "score"),
        ("activity_attempts", "attempt_details"),
    }
    type_words = {
        "id": ("TEXT", "INTEGER"),
        "learner_id": ("TEXT",),
        "metric_details": ("JSON",),
        "details": ("JSON", "TEXT"),
        "attempt_details": ("JSON",),
        "score": ("FLOAT", "DOUBLE", "REAL"),
        "completed": ("BOOLEAN",),
        "earned_date": ("DATE",),
    }
    assert set(inspector.get_table_names()) >= set(expected) | {"event_log"}
    for table, columns in expected.items():
        found = inspector.get_columns(table)
        assert [c["name"] for c in found] == columns
        for column in found:
            assert column["nullable"] == ((table, column["name"]) in nullable or False) or column["name"] == "id"
            type_name = str(column["type"]).upper()
            if column["name"].endswith(("_at", "timestamp")):
                assert "TIMESTAMP" in type_name
            elif column["name"] in type_words:
                assert any(word in type_name for word in type_words[column["name"]]), (table, column, type_name)
        if table != "learner_profiles":
            uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
            if table != "activity_attempts":
                assert (columns[1], columns[2]) in uniques
            fks = inspector.get_foreign_keys(table)
            assert [(fk["constrained_columns"], fk["referred_table"], fk["referred_columns"]) for fk in fks] == [
                (["learner_id"], "learner_profiles", ["id"])
            ]
            indexed = {tuple(ix["column_names"]) for ix in inspector.get_indexes(table)}
            assert ("learner_id",) in indexed
    log_uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("event_log")}
    assert ("learner_id", "version") in log_uniques
    assert set(READ_MODEL_METADATA.tables) == set(expected)


def test_init_db_is_idempotent(store: SqlEventStore, database_url: str) -> None:
    from dala_events.database_setup import init_db

    LearnerProfile("ann", store=store).add_interest("Robotics")
    init_db(database_url)
    init_db(database_url)
    assert pm.get_interests("ann")[0].interest_name == "Robotics"


def test_sqlite_pragmas(sqlite_store: SqlEventStore) -> None:
    with sqlite_store.engine.connect() as connection:
        values = {
            pragma: connection.exec_driver_sql(f"PRAGMA {pragma}").scalar()
            for pragma in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }
    assert values == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000, "synchronous": 1}


def test_sqlite_writers_hold_the_write_lock_from_the_start(sqlite_store: SqlEventStore) -> None:
    # BEGIN IMMEDIATE: a second writer is turned away before the first has written anything,
    # so two writers never deadlock upgrading a read lock.
    path = sqlite_store.engine.url.database
    assert path is not None
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with write_transaction(sqlite_store.engine), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_log_rows_are_only_inserted(store: SqlEventStore) -> None:
    profile = LearnerProfile("ann", store=store)
    profile.add_interest("Robotics")
    from dala_events.store import event_log

    with store.engine.connect() as connection:
        before = connection.execute(select(event_log)).all()
    profile.remove_interest("Robotics")
    profile.add_interest("Robotics")
    with store.engine.connect() as connection:
        after = connection.execute(select(event_log).order_by(event_log.c.position)).all()
    assert after[: len(before)] == before and len(after) == len(before) + 2


def test_driver_errors_come_out_as_sqlalchemy_errors_and_write_nothing(store: SqlEventStore) -> None:
    # The statements of an append go straight to the driver; a duplicate event id must still
    # surface as SQLAlchemy's IntegrityError (turned into InvalidInput by the store).
    first = NewEvent.now(LearnerProfileCreated())
    store.append("ann", [first], expected_version=0)
    duplicate = NewEvent(InterestAdded(interest_name="Robotics"), first.event_id, first.occurred_at, first.metadata)
    with pytest.raises(InvalidInput, match="event_id"):
        store.append("ann", [duplicate], expected_version=1)
    assert log_row_count(store.engine) == 1
    assert read_model_rows(store.engine)["interests"] == []


def test_handle_error_listeners_see_a_failing_statement_of_an_append(store: SqlEventStore) -> None:
    seen: list[str] = []

    def listener(context: Any) -> None:
        seen.append(type(context.original_exception).__name__)

    first = NewEvent.now(LearnerProfileCreated())
    store.append("ann", [first], expected_version=0)
    duplicate = NewEvent(InterestAdded(interest_name="Robotics"), first.event_id, first.occurred_at, first.metadata)
    event.listen(store.engine, "handle_error", listener)
    try:
        with pytest.raises(InvalidInput, match="event_id"):
            store.append("ann", [duplicate], expected_version=1)
    finally:
        event.remove(store.engine, "handle_error", listener)
    assert seen == ["IntegrityError"] or seen == ["UniqueViolation"]


@pytest.mark.parametrize("hook", ["before_cursor_execute", "after_cursor_execute"])
def test_cursor_listeners_see_every_statement_of_an_append(store: SqlEventStore, hook: str) -> None:
    seen: list[str] = []

    def listener(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement.split()[0].upper() + " " + statement.split()[2].strip('"'))

    event.listen(store.engine, hook, listener)
    try:
        LearnerProfile("ann", store=store).add_interest("Robotics")
    finally:
        event.remove(store.engine, hook, listener)
    assert "INSERT event_log" in seen and "INSERT interests" in seen
    # Without listeners the same append goes to the driver directly and writes the same rows.
    LearnerProfile("bob", store=store).add_interest("Robotics")
    assert [i.interest_name for i in pm.get_interests("bob", store=store)] == ["Robotics"]
    assert pm.get_interests("ann", store=store)[0].timestamp is not None


def test_event_ids_read_back_in_canonical_form(store: SqlEventStore) -> None:
    mixed_case = "0192F2A4-0000-7ABC-8DEF-0123456789AB"
    new = NewEvent(LearnerProfileCreated(), mixed_case, T0, {"actor": "system"})
    store.append("ann", [new], expected_version=0)
    (recorded,) = store.read_stream("ann")
    assert recorded.event_id == mixed_case.lower()


@pytest.mark.parametrize(
    "written",
    [
        datetime(2026, 3, 3, 9, 0, tzinfo=UTC),
        datetime(2026, 3, 3, 10, 30, 0, 5, tzinfo=timezone(timedelta(hours=1, minutes=30))),
        datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-8))),
    ],
)
def test_timestamps_read_back_equal_and_in_utc(store: SqlEventStore, written: datetime) -> None:
    store.append("ann", [NewEvent(LearnerProfileCreated(), new_event_id(), written, {"actor": "system"})], 0)
    (recorded,) = store.read_stream("ann")
    assert recorded.occurred_at == written
    assert recorded.occurred_at.tzinfo is UTC


def test_sqlite_timestamps_with_a_zone_of_their_own_are_still_read(sqlite_store: SqlEventStore) -> None:
    # Text not written by this store (e.g. by hand) may carry its own offset.
    LearnerProfile("ann", store=sqlite_store)
    with sqlite_store.engine.begin() as connection:
        connection.execute(text("UPDATE event_log SET occurred_at = '2026-03-03 10:00:00.000000+01:00'"))
    with sqlite_store.engine.connect() as connection:
        occurred_at = connection.execute(select(event_log.c.occurred_at)).scalar_one()
    assert occurred_at == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    assert occurred_at.tzinfo is UTC
    # A hand's edit is not what was written: an audit read refuses it, as verify reports it.
    with pytest.raises(CorruptEventError, match="does not verify"):
        sqlite_store.read_stream("ann")


def test_statements_of_an_append_are_logged_when_sqlalchemy_logs_sql(
    store: SqlEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    # The logger at INFO is what `echo=True` switches on.
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
        LearnerProfile("ann", store=store).add_interest("Robotics")
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "INSERT INTO event_log" in logged and "INSERT INTO interests" in logged
