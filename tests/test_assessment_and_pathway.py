"""The simulated HLP assessment (deterministic per seed, attributed) and pathway generation
(prerequisites respected, struggles first, then interests)."""

from __future__ import annotations

from datetime import UTC, datetime

from freezegun import freeze_time
from hypothesis import given
from hypothesis import strategies as st

from dala_events.assessment import ASSESSMENT_ACTOR, DIAGNOSTIC_TASKS, PREFERENCE_TASKS, simulate_assessment
from dala_events.hlp_module import PREDEFINED_INTERESTS, PREDEFINED_STRUGGLE_AREAS, LearnerProfile
from dala_events.pathway import CurriculumLO, curriculum_from, generate_pathway, load_curriculum
from dala_events.store import SqlEventStore

NOW = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


def _assessed(store: SqlEventStore, learner: str, seed: int) -> tuple[LearnerProfile, object]:
    profile = LearnerProfile(learner, persistence_enabled=False, store=store)
    result = simulate_assessment(profile, seed)
    profile.save()
    return profile, result


@freeze_time(NOW)
def test_same_seed_same_assessment_and_events(sqlite_store: SqlEventStore) -> None:
    _, result_one = _assessed(sqlite_store, "a", 11)
    _, result_two = _assessed(sqlite_store, "b", 11)
    _, other = _assessed(sqlite_store, "c", 12)
    assert result_one.interests == result_two.interests and result_one.metrics == result_two.metrics  # type: ignore[attr-defined]
    strip = lambda events: [(e.event_type, e.event) for e in events]  # noqa: E731
    assert strip(sqlite_store.read_stream("a")) == strip(sqlite_store.read_stream("b"))
    assert strip(sqlite_store.read_stream("a")) != strip(sqlite_store.read_stream("c"))
    assert (result_one.interests, result_one.struggles) != (other.interests, other.struggles)  # type: ignore[attr-defined]


@freeze_time(NOW)
def test_assessment_records_plausible_attributed_facts(sqlite_store: SqlEventStore) -> None:
    profile, result = _assessed(sqlite_store, "kid", 5)
    assert set(profile.interests) <= set(PREDEFINED_INTERESTS) and 3 <= len(profile.interests) <= 5
    assert set(profile.struggles) <= set(PREDEFINED_STRUGGLE_AREAS) and profile.struggles
    assert set(profile.preferences) == set(PREFERENCE_TASKS)
    assert set(profile.cognitive_metrics) == set(DIAGNOSTIC_TASKS)
    for details in profile.cognitive_metrics.values():
        assert 0.4 <= details["accuracy"] <= 0.98 and details["attempts"] >= 1 and details["response_time_ms"] > 0
        assert details["correct"] == round(details["accuracy"] * details["items"])
    events = sqlite_store.read_stream("kid")[1:]  # after the creation
    assert events and {event.metadata["actor"] for event in events} == {ASSESSMENT_ACTOR}
    assert {event.metadata["reason"] for event in events} == {"HLP assessment (seed 5)"}
    assert all(event.occurred_at == NOW for event in events)
    assert result.events_recorded == len(events)  # type: ignore[attr-defined]


@freeze_time(NOW)
def test_assessment_reason_can_be_given(sqlite_store: SqlEventStore) -> None:
    profile = LearnerProfile("sim", persistence_enabled=False, store=sqlite_store)
    simulate_assessment(profile, 5, reason="simulated: HLP assessment, week 1")
    profile.save()
    events = sqlite_store.read_stream("sim")[1:]
    assert {event.metadata["reason"] for event in events} == {"simulated: HLP assessment, week 1"}


def test_shipped_curriculum_is_consistent() -> None:
    los = load_curriculum()
    assert len(los) >= 10
    for lo in los:
        assert set(lo.struggle_areas) <= set(PREDEFINED_STRUGGLE_AREAS), lo.lo_id
        assert set(lo.interests) <= set(PREDEFINED_INTERESTS), lo.lo_id


def _learner(
    store: SqlEventStore, *, interests: list[str], struggles: list[str], completed: list[str]
) -> LearnerProfile:
    profile = LearnerProfile("p", persistence_enabled=False, store=store)
    for interest in interests:
        profile.add_interest(interest)
    for area in struggles:
        profile.add_struggle_area(area)
    for lo_id in completed:
        profile.mark_lo_completed(lo_id)
    return profile


def test_struggles_come_first_then_interests_then_curriculum_order(sqlite_store: SqlEventStore) -> None:
    profile = _learner(sqlite_store, interests=["Cooking"], struggles=["Fractions"], completed=["MATH_LO_001"])
    steps = generate_pathway(profile, limit=20)
    assert steps[0].lo_id == "MATH_LO_003" and steps[0].struggles_addressed == ("Fractions",)
    assert "works on Fractions" in steps[0].reason and "Cooking" in steps[0].reason
    assert "builds on “Know number bonds to 20”" in steps[0].reason  # prerequisites by title, not id
    assert steps[1].lo_id == "MATH_LO_002"  # Cooking matches, no struggle addressed
    assert "MATH_LO_001" not in {step.lo_id for step in steps}  # completed
    assert "MATH_LO_005" not in {step.lo_id for step in steps}  # needs MATH_LO_003 first
    profile.start_lo("SCI_LO_001")
    assert generate_pathway(profile)[0].lo_id == "SCI_LO_001"  # in progress comes first
    assert generate_pathway(profile)[0].status == "in_progress"


COMPLETED = st.sets(st.sampled_from([lo.lo_id for lo in load_curriculum()]))
STRUGGLES = st.sets(st.sampled_from(PREDEFINED_STRUGGLE_AREAS), max_size=4)


@given(completed=COMPLETED, struggles=STRUGGLES)
def test_every_step_has_its_prerequisites_met_and_struggles_rank_first(
    completed: set[str], struggles: set[str]
) -> None:
    """On read-model data (what the interface uses): never a completed LO, never one whose
    prerequisites are not all completed, and never a step addressing fewer struggles before
    one addressing more."""
    from dala_events.persistence_manager import FullLearnerProfileData, LOProgressData, StruggleData

    data = FullLearnerProfileData(
        learner_id="x",
        created_at=NOW,
        last_updated_at=NOW,
        struggles=[StruggleData(struggle_description=area, timestamp=NOW) for area in struggles],
        lo_progress=[
            LOProgressData(lo_id=lo, status="completed", started_at=NOW, completed_at=NOW) for lo in completed
        ],
        preferences=[],
        interests=[],
        cognitive_metrics=[],
        badges=[],
        activity_attempts=[],
    )
    by_id = {lo.lo_id: lo for lo in load_curriculum()}
    steps = generate_pathway(data, limit=100)
    for step in steps:
        assert step.lo_id not in completed
        assert set(by_id[step.lo_id].prerequisites) <= completed
    addressed = [len(step.struggles_addressed) for step in steps]
    assert addressed == sorted(addressed, reverse=True)
    offered = {lo.lo_id for lo in by_id.values() if lo.lo_id not in completed and set(lo.prerequisites) <= completed}
    assert {step.lo_id for step in steps} == offered


def test_curriculum_errors_are_named() -> None:
    import pytest

    with pytest.raises(ValueError, match="unknown prerequisites"):
        curriculum_from([{"lo_id": "A", "title": "t", "subject": "s", "prerequisites": ["B"]}])
    with pytest.raises(ValueError, match="duplicate"):
        curriculum_from([{"lo_id": "A", "title": "t", "subject": "s"}] * 2)
    custom = [CurriculumLO("A", "t", "s", (), (), ())]
    assert generate_pathway(LearnerProfile("q", persistence_enabled=False), curriculum=custom)[0].lo_id == "A"
