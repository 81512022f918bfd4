"""The aggregate's rules (on the in-memory store): one event per real change, none otherwise, and the LO transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from dala_events.errors import InvalidInput, LearnerNotFound
from dala_events.events import (
    InterestAdded,
    LearnerProfileCreated,
    LearningObjectiveCompleted,
    LearningObjectiveProgressUpdated,
    LearningObjectiveStarted,
)
from dala_events.hlp_module import (
    PREDEFINED_INTERESTS,
    PREDEFINED_STRUGGLE_AREAS,
    LearnerProfile,
    get_or_create_learner_profile,
)
from dala_events.store import EventStore

T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def offline(store: EventStore, learner_id: str = "ann") -> LearnerProfile:
    return LearnerProfile(learner_id, persistence_enabled=False, store=store)


def test_new_profile_records_creation_only_in_memory_when_persistence_is_off(memory_store: EventStore) -> None:
    profile = offline(memory_store)
    assert profile.pending_events == (LearnerProfileCreated(),)
    assert memory_store.stream_version("ann") == 0
    profile.add_interest("Robotics")
    assert memory_store.stream_version("ann") == 0
    profile.save()
    assert memory_store.stream_version("ann") == 2
    assert profile.pending_events == ()
    profile.save()  # nothing pending: a no-op
    assert memory_store.stream_version("ann") == 2


@pytest.mark.parametrize(
    ("first", "again"),
    [
        (lambda p: p.add_interest("Robotics"), lambda p: p.add_interest(" Robotics ")),
        (lambda p: p.add_struggle_area("Fractions"), lambda p: p.add_struggle_area("Fractions")),
        (lambda p: p.update_preference("style", "visual"), lambda p: p.update_preference("style", "visual")),
        (lambda p: p.add_badge("b1", "Badge"), lambda p: p.add_badge("b1", "Another name")),
        (lambda p: p.add_cognitive_metric("t", {"a": 1}), lambda p: p.add_cognitive_metric("t", {"a": 1})),
        (lambda p: p.start_lo("LO1"), lambda p: p.start_lo("LO1")),
        (lambda p: p.mark_lo_completed("LO1", 5.0), lambda p: p.mark_lo_completed("LO1")),
    ],
)
def test_a_change_appends_one_event_and_a_repeat_appends_none(memory_store: EventStore, first, again) -> None:
    profile = offline(memory_store)
    before = profile.version
    assert first(profile) is True
    assert profile.version == before + 1
    assert again(profile) is False
    assert profile.version == before + 1


@pytest.mark.parametrize(
    "removal",
    [
        lambda p: p.remove_interest("Music"),
        lambda p: p.remove_struggle_area("Spelling"),
        lambda p: p.remove_preference("style"),
        lambda p: p.revoke_badge("b9"),
    ],
)
def test_removing_what_is_not_there_appends_nothing(memory_store: EventStore, removal) -> None:
    profile = offline(memory_store)
    assert removal(profile) is False
    assert profile.version == 1


def test_same_apply_serves_live_state_and_replay(memory_store: EventStore) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    profile.add_interest("Robotics")
    profile.update_preference("visual_preference_task_1", "visual")
    profile.add_cognitive_metric("story_weaver", {"accuracy": 0.8, "attempts": 1})
    profile.mark_lo_completed("MATH_LO_001", score=0.9, details={"hints": 1})
    profile.add_badge("trailblazer", "Trailblazer", details="first LO")
    profile.record_activity_attempt("MATH_LO_001", "act1", "quiz", score=3, completed=True)
    reloaded = LearnerProfile("ann", store=memory_store)
    assert reloaded.state == profile.state
    assert reloaded.version == profile.version == 7
    assert reloaded.interests == ["Robotics"]
    assert reloaded.preferences == {"visual_preference_task_1": "visual"}
    assert reloaded.cognitive_metrics == {"story_weaver": {"accuracy": 0.8, "attempts": 1}}
    assert reloaded.badges["trailblazer"].badge_name == "Trailblazer"
    assert len(reloaded.activity_attempts) == 1


def test_lo_transitions_are_permissive(memory_store: EventStore) -> None:
    with freeze_time(T0) as clock:
        profile = offline(memory_store)
        profile.mark_lo_completed("LO_NEVER_STARTED", score=80)
        done = profile.lo_progress["LO_NEVER_STARTED"]
        assert (done.status, done.started_at, done.completed_at, done.score) == ("completed", T0, T0, 80)
        assert isinstance(profile.pending_events[-1], LearningObjectiveCompleted)

        clock.tick(timedelta(minutes=5))
        assert profile.start_lo("LO_NEVER_STARTED") is False  # completed: starting changes nothing
        assert profile.start_lo("LO2") is True
        assert isinstance(profile.pending_events[-1], LearningObjectiveStarted)
        assert profile.lo_progress["LO2"].started_at == T0 + timedelta(minutes=5)

        clock.tick(timedelta(minutes=5))
        profile.update_lo_progress("LO2", "in_progress", score=40)
        profile.update_lo_progress("LO2", "in_progress", details={"step": 2})
        lo2 = profile.lo_progress["LO2"]
        assert (lo2.score, lo2.details) == (40, {"step": 2})  # None keeps the current value
        assert isinstance(profile.pending_events[-1], LearningObjectiveProgressUpdated)

        profile.update_lo_progress("LO_NEVER_STARTED", "in_progress")
        reopened = profile.lo_progress["LO_NEVER_STARTED"]
        assert (reopened.status, reopened.completed_at, reopened.started_at) == ("in_progress", None, T0)

        profile.update_lo_progress("LO3", "not_started")
        assert profile.lo_progress["LO3"].status == "not_started"
        assert profile.start_lo("LO3") is True


def test_delete_then_recreate(memory_store: EventStore) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    profile.add_interest("Robotics")
    profile.delete()
    assert not profile.exists
    with pytest.raises(LearnerNotFound, match="'ann'"):
        profile.add_interest("Music")
    with pytest.raises(LearnerNotFound):
        LearnerProfile.load("ann", store=memory_store)
    again = get_or_create_learner_profile("ann", store=memory_store)
    assert again.exists and again.interests == [] and again.version == 4


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda p: p.add_interest(""), "interest_name"),
        (lambda p: p.add_struggle_area("x" * 501), "struggle_description"),
        (lambda p: p.update_preference("style", " "), "value"),
        (lambda p: p.add_cognitive_metric("t", [1]), "metric_details"),
        (lambda p: p.update_lo_progress("LO", "finished"), "status"),
        (lambda p: p.mark_lo_completed("LO", score=float("nan")), "score"),
        (lambda p: p.start_lo("  "), "lo_id"),
        (lambda p: p.add_badge("b", ""), "badge_name"),
        (
            lambda p: p.record_activity_attempt("LO", "A", "quiz", attempt_details={"x": float("inf")}),
            "attempt_details",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_recorded(
    memory_store: EventStore, call, field
) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    with pytest.raises(InvalidInput) as caught:
        call(profile)
    assert caught.value.field == field
    assert field in str(caught.value) and "'ann'" in str(caught.value)
    assert profile.version == 1 and profile.pending_events == ()
    assert memory_store.stream_version("ann") == 1


@pytest.mark.parametrize("learner_id", ["", " ann", "a" * 129, "tab\there"])
def test_bad_learner_id_is_refused(memory_store: EventStore, learner_id: str) -> None:
    with pytest.raises(InvalidInput, match="learner_id"):
        LearnerProfile(learner_id, store=memory_store)


def test_persistence_toggle_keeps_the_seed_attribute(memory_store: EventStore) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    profile._persistence_enabled = False
    assert profile.persistence_enabled is False
    profile.add_interest("Robotics")
    assert profile.pending_events == (InterestAdded(interest_name="Robotics"),)
    profile.persistence_enabled = True
    profile.add_interest("Music")  # flushes what was pending too
    assert memory_store.stream_version("ann") == 3


def test_predefined_lists_are_sensible() -> None:
    for values in (PREDEFINED_INTERESTS, PREDEFINED_STRUGGLE_AREAS):
        assert len(values) >= 10 and len(set(values)) == len(values)
        assert all(value == value.strip() and value for value in values)


def test_occurring_at_backdates_occurred_at_but_not_recorded_at(memory_store: EventStore) -> None:
    from dala_events.attribution import occurring_at

    earlier = T0 - timedelta(days=14)
    with freeze_time(T0):
        profile = LearnerProfile("ann", store=memory_store)
        with occurring_at(earlier):
            profile.start_lo("MATH_LO_001")
            profile.record_activity_attempt("MATH_LO_001", "quiz_1", "quiz", score=80)
        stored = memory_store.read_stream("ann")
    assert [event.occurred_at for event in stored] == [T0, earlier, earlier]
    assert {event.recorded_at for event in stored} == {T0}
    assert profile.lo_progress["MATH_LO_001"].started_at == earlier
    with freeze_time(T0), pytest.raises(InvalidInput, match="occurred_at"), occurring_at(T0 + timedelta(days=1)):
        pass
    with pytest.raises(InvalidInput, match="occurred_at"), occurring_at(datetime(2026, 1, 1)):
        pass
