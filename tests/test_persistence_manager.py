"""The document's functions: writers append through the aggregate, getters read the read models."""

from __future__ import annotations

from datetime import UTC, datetime

import pydantic
import pytest

from dala_events import persistence_manager as pm
from dala_events.errors import InvalidInput, LearnerNotFound
from dala_events.store import SqlEventStore
from tests.helpers import log_row_count, read_model_rows


def test_writers_and_getters_round_trip(store: SqlEventStore) -> None:
    created = pm.create_learner_profile("student123")
    assert created.learner_id == "student123" and created.interests == []
    assert pm.create_learner_profile("student123").created_at == created.created_at  # idempotent
    assert store.stream_version("student123") == 1

    assert pm.add_or_update_preference("student123", pm.PreferenceData(category="pace", value="slow"))
    assert pm.add_or_update_preference("student123", pm.PreferenceData(category="pace", value="quick"))
    assert not pm.add_or_update_preference("student123", pm.PreferenceData(category="pace", value="quick"))
    assert pm.add_interest("student123", pm.InterestData(interest_name="Space Exploration"))
    assert pm.add_struggle("student123", pm.StruggleData(struggle_description="Fractions"))
    assert pm.add_or_update_cognitive_metric(
        "student123", pm.CognitiveMetricData(task_name="story_weaver", metric_details={"accuracy": 0.8, "attempts": 1})
    )
    assert pm.add_or_update_lo_progress("student123", pm.LOProgressData(lo_id="MATH_LO_001", status="in_progress"))
    assert pm.add_or_update_lo_progress(
        "student123", pm.LOProgressData(lo_id="MATH_LO_001", status="completed", score=92.5)
    )
    assert pm.add_badge_record("student123", pm.BadgeData(badge_id="trailblazer", badge_name="Trailblazer"))
    assert pm.add_activity_attempt(
        "student123",
        pm.ActivityAttemptData(lo_id="MATH_LO_001", activity_id="q1", activity_type="quiz", score=8, completed=True),
    )

    assert [(p.category, p.value) for p in pm.get_preferences("student123")] == [("pace", "quick")]
    assert [i.interest_name for i in pm.get_interests("student123")] == ["Space Exploration"]
    assert [s.struggle_description for s in pm.get_struggles("student123")] == ["Fractions"]
    assert pm.get_cognitive_metrics("student123")[0].metric_details == {"accuracy": 0.8, "attempts": 1}
    lo = pm.get_lo_progress("student123")[0]
    assert (lo.status, lo.score) == ("completed", 92.5) and lo.completed_at is not None
    assert pm.get_badges("student123")[0].badge_name == "Trailblazer"
    attempt = pm.get_activity_attempts("student123")[0]
    assert (attempt.activity_type, attempt.score, attempt.completed) == ("quiz", 8, True)
    assert attempt.learner_id == "student123"

    assert pm.remove_preference("student123", "pace")
    assert pm.remove_interest("student123", "Space Exploration")
    assert pm.remove_struggle("student123", "Fractions")
    assert pm.revoke_badge("student123", "trailblazer")
    assert not pm.revoke_badge("student123", "trailblazer")
    full = pm.get_full_learner_profile_data("student123")
    assert full is not None
    assert (full.preferences, full.interests, full.struggles, full.badges) == ([], [], [], [])
    assert len(full.activity_attempts) == 1 and len(full.lo_progress) == 1


def test_full_profile_json_is_stable(store: SqlEventStore) -> None:
    pm.create_learner_profile("ann")
    pm.add_interest("ann", pm.InterestData(interest_name="Music"))
    data = pm.get_full_learner_profile_data("ann")
    assert data is not None
    again = pm.FullLearnerProfileData.model_validate_json(data.model_dump_json())
    assert again == data


@pytest.mark.parametrize(
    "write",
    [
        lambda: pm.add_interest("ghost", pm.InterestData(interest_name="Music")),
        lambda: pm.add_or_update_preference("ghost", pm.PreferenceData(category="c", value="v")),
        lambda: pm.add_struggle("ghost", pm.StruggleData(struggle_description="Spelling")),
        lambda: pm.add_badge_record("ghost", pm.BadgeData(badge_id="b", badge_name="B")),
        lambda: pm.remove_interest("ghost", "Music"),
        lambda: pm.delete_learner_profile("ghost"),
    ],
)
def test_writers_on_unknown_learner_raise_and_write_nothing(store: SqlEventStore, write) -> None:
    with pytest.raises(LearnerNotFound, match="'ghost'"):
        write()
    assert log_row_count(store.engine) == 0


def test_getters_on_unknown_learner_return_none_or_empty(store: SqlEventStore) -> None:
    assert pm.get_full_learner_profile_data("ghost") is None
    for getter in (
        pm.get_preferences,
        pm.get_interests,
        pm.get_struggles,
        pm.get_cognitive_metrics,
        pm.get_lo_progress,
        pm.get_badges,
        pm.get_activity_attempts,
    ):
        assert getter("ghost") == []


def test_bad_input_names_the_field_and_writes_nothing(store: SqlEventStore) -> None:
    pm.create_learner_profile("ann")
    before = (log_row_count(store.engine), read_model_rows(store.engine))
    with pytest.raises(InvalidInput, match="timestamp"):
        pm.add_interest("ann", pm.InterestData(interest_name="Music", timestamp=datetime.now(UTC)))
    with pytest.raises(InvalidInput, match="learner_id"):
        pm.add_interest("ann", pm.InterestData(learner_id="bob", interest_name="Music"))
    with pytest.raises(ValueError, match="interest_name"):
        pm.add_interest("ann", pm.InterestData(interest_name=" "))
    with pytest.raises(ValueError, match="status"):
        pm.LOProgressData(lo_id="LO", status="done")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="learner_id"):
        pm.create_learner_profile(" ann")
    assert (log_row_count(store.engine), read_model_rows(store.engine)) == before


def test_dto_fields_are_the_document_columns() -> None:
    assert list(pm.PreferenceData.model_fields) == ["learner_id", "category", "value", "timestamp"]
    assert list(pm.LOProgressData.model_fields) == [
        "learner_id",
        "lo_id",
        "status",
        "started_at",
        "completed_at",
        "score",
        "details",
    ]
    assert list(pm.ActivityAttemptData.model_fields) == [
        "learner_id",
        "lo_id",
        "activity_id",
        "activity_type",
        "attempt_timestamp",
        "score",
        "completed",
        "attempt_details",
    ]
    assert list(pm.FullLearnerProfileData.model_fields) == [
        "learner_id",
        "created_at",
        "last_updated_at",
        "preferences",
        "interests",
        "struggles",
        "cognitive_metrics",
        "lo_progress",
        "badges",
        "activity_attempts",
    ]


def test_getters_build_the_same_models_model_construct_would(store: SqlEventStore) -> None:
    pm.create_learner_profile("student123")
    pm.add_or_update_lo_progress("student123", pm.LOProgressData(lo_id="MATH_LO_001", status="completed", score=9.5))
    pm.add_activity_attempt(
        "student123",
        pm.ActivityAttemptData(lo_id="MATH_LO_001", activity_id="q1", activity_type="quiz", attempt_details={"a": 1}),
    )
    for read in (pm.get_lo_progress, pm.get_activity_attempts):
        (built,) = read("student123")
        constructed = type(built).model_construct(**built.__dict__)
        assert built == constructed
        assert built.model_fields_set == constructed.model_fields_set == set(type(built).model_fields)
        assert built.model_dump_json() == constructed.model_dump_json()
        with pytest.raises(pydantic.ValidationError):  # frozen like any other
            built.lo_id = "other"  # type: ignore[misc]


def test_a_store_argument_of_the_wrong_type_is_refused_naming_it() -> None:
    from dala_events.errors import InvalidInput
    from dala_events.hlp_module import LearnerProfile, get_or_create_learner_profile

    for make in (lambda: LearnerProfile("ann", store=42), lambda: get_or_create_learner_profile("ann", store="db")):  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="store: must be an EventStore or None, not"):
            make()
