"""The projectors' unit tests, on the in-memory store and read models: one event, its rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from freezegun import freeze_time
from sqlalchemy import select

from dala_events.attribution import occurring_at
from dala_events.hlp_module import LearnerProfile
from dala_events.store import InMemoryEventStore, SqlEventStore
from projections.database_models import READ_MODELS
from projections.memory import MemoryReadModels

T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
Backend = tuple[InMemoryEventStore, MemoryReadModels]


def rows(read_models: MemoryReadModels, name: str, *columns: str) -> list[tuple[Any, ...]]:
    return [tuple(row[column] for column in columns) for row in read_models.rows(name)]


def test_creation_and_every_change_move_last_updated_at(memory_read_models: Backend) -> None:
    store, read_models = memory_read_models
    with freeze_time(T0):
        profile = LearnerProfile("ann", store=store)
    with freeze_time(T0 + timedelta(minutes=5)):
        profile.add_interest("Music")
    assert rows(read_models, "learner_profiles", "id", "created_at", "last_updated_at") == [
        ("ann", T0, T0 + timedelta(minutes=5))
    ]


def test_preferences_are_upserted_by_category_and_removed(memory_read_models: Backend) -> None:
    store, read_models = memory_read_models
    profile = LearnerProfile("ann", store=store)
    with freeze_time(T0):
        profile.update_preference("visual_preference_task_1", "visual")
    first_id = read_models.rows("preferences")[0]["id"]
    with freeze_time(T0 + timedelta(hours=1)):
        profile.update_preference("visual_preference_task_1", "auditory")
    (row,) = read_models.rows("preferences")
    assert (row["id"], row["value"], row["timestamp"]) == (first_id, "auditory", T0 + timedelta(hours=1))
    profile.remove_preference("visual_preference_task_1")
    assert read_models.rows("preferences") == []


def test_interests_and_struggles_are_added_and_removed(memory_read_models: Backend) -> None:
    store, read_models = memory_read_models
    profile = LearnerProfile("ann", store=store)
    profile.add_interest("Music")
    profile.add_interest("Art")
    profile.add_struggle_area("Fractions")
    profile.remove_interest("Music")
    assert rows(read_models, "interests", "learner_id", "interest_name") == [("ann", "Art")]
    assert rows(read_models, "struggles", "struggle_description") == [("Fractions",)]


def test_a_metric_replaces_the_earlier_one_of_its_task(memory_read_models: Backend) -> None:
    store, read_models = memory_read_models
    profile = LearnerProfile("ann", store=store)
    profile.add_cognitive_metric("memory_maze", {"accuracy": 0.5})
    profile.add_cognitive_metric("memory_maze", {"accuracy": 0.9})
    assert rows(read_models, "cognitive_metrics", "task_name", "metric_details") == [("memory_maze", {"accuracy": 0.9})]


def test_lo_progress_rows_carry_the_events_outcome(memory_read_models: Backend) -> None:
    store, read_models = memory_read_models
    profile = LearnerProfile("ann", store=store)
    with freeze_time(T0):
        profile.start_lo("MATH_LO_001")
    with freeze_time(T0 + timedelta(days=2)):
        profile.mark_lo_completed("MATH_LO_001", score=80.0, details={"attempts": 3})
    assert rows(
        read_models, "learning_objective_progress", "lo_id", "status", "started_at", "completed_at", "score"
    ) == [("MATH_LO_001", "completed", T0, T0 + timedelta(days=2), 80.0)]


def test_badges_get_the_events_date_and_are_revoked(memory_read_models: Backend) -> None:
    store, read_models = memory_read_models
    profile = LearnerProfile("ann", store=store)
    with freeze_time(T0):
        profile.add_badge("trailblazer", "Trailblazer", details="first LO")
    assert rows(read_models, "badges", "badge_id", "earned_date", "details") == [("trailblazer", T0.date(), "first LO")]
    profile.revoke_badge("trailblazer")
    assert read_models.rows("badges") == []


def test_attempts_are_only_inserted_with_the_events_time(memory_read_models: Backend) -> None:
    store, read_models = memory_read_models
    profile = LearnerProfile("ann", store=store)
    earlier = T0 - timedelta(days=3)
    with freeze_time(T0):
        for _ in range(2):
            with occurring_at(earlier):
                profile.record_activity_attempt("LO1", "quiz_1", "quiz", score=50.0, completed=False)
    assert rows(read_models, "activity_attempts", "activity_id", "attempt_timestamp", "score") == [
        ("quiz_1", earlier, 50.0),
        ("quiz_1", earlier, 50.0),
    ]


def test_deletion_removes_every_row_of_the_learner_only(memory_read_models: Backend) -> None:
    store, read_models = memory_read_models
    for learner in ("ann", "bob"):
        profile = LearnerProfile(learner, store=store)
        profile.add_interest("Music")
        profile.record_activity_attempt("LO1", "quiz_1", "quiz")
    LearnerProfile.load("ann", store=store).delete()
    assert all(not found for found in read_models.learner_rows("ann").values())
    assert {name: len(found) for name, found in read_models.learner_rows("bob").items() if found} == {
        "learner_profiles": 1,
        "interests": 1,
        "activity_attempts": 1,
    }
    assert store.stream_version("ann") == 4  # the history stays


def test_replaying_the_log_into_fresh_read_models_equals_the_inline_ones(memory_read_models: Backend) -> None:
    store, read_models = memory_read_models
    _busy_learners(store)
    replayed = MemoryReadModels()
    for batch in store.read_for_projection(batch_size=7):
        replayed.project(batch)
    for model in READ_MODELS:
        assert _without_ids(replayed.rows(model.name)) == _without_ids(read_models.rows(model.name)), model.name


def test_memory_and_sql_read_models_hold_the_same_rows(memory_read_models: Backend, store: SqlEventStore) -> None:
    memory, read_models = memory_read_models
    with freeze_time(T0):
        _busy_learners(memory)
        _busy_learners(store)
    with store.engine.connect() as connection:
        for model in READ_MODELS:
            sql_rows = [dict(row._mapping) for row in connection.execute(select(model.table)).all()]
            assert _without_ids(sql_rows) == _without_ids(read_models.rows(model.name)), model.name


def _busy_learners(store: InMemoryEventStore | SqlEventStore) -> None:
    for learner in ("ann", "bob", "cy"):
        profile = LearnerProfile(learner, persistence_enabled=False, store=store)
        profile.update_preference("visual_preference_task_1", "visual")
        profile.update_preference("visual_preference_task_1", "auditory")
        profile.add_interest("Music")
        profile.add_struggle_area("Fractions")
        profile.add_cognitive_metric("memory_maze", {"accuracy": 0.5})
        profile.update_lo_progress("LO1", "in_progress", score=40.0)
        profile.record_activity_attempt("LO1", "quiz_1", "quiz", score=40.0, attempt_details={"hints": 1})
        profile.mark_lo_completed("LO1", score=90.0)
        profile.add_badge("trailblazer", "Trailblazer")
        profile.save()
    bob = LearnerProfile.load("bob", store=store)
    bob.delete()
    LearnerProfile("bob", store=store).add_interest("Art")


def _without_ids(found: list[dict[str, Any]]) -> list[tuple[tuple[str, str], ...]]:
    keep = [{name: value for name, value in row.items() if name != "id" or "learner_id" not in row} for row in found]
    return sorted(tuple(sorted((name, _comparable(value)) for name, value in row.items())) for row in keep)


def _comparable(value: Any) -> str:
    # freezegun's FakeDatetime and a database's datetime print differently but are equal.
    return value.isoformat() if isinstance(value, date) else repr(value)
