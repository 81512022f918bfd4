"""Unit tests of the event catalog: field rules, serialisation, upcasting, event ids."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dala_events import events
from dala_events.events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    ActivityAttemptRecorded,
    BadgeAwarded,
    CognitiveMetricRecorded,
    InterestAdded,
    LearningObjectiveCompleted,
    PreferenceSet,
    UnknownEventError,
    check_learner_id,
    decode_event,
    encode_payload,
    new_event_id,
)


@pytest.mark.parametrize(
    ("learner_id", "problem"),
    [
        ("", "must not be empty"),
        (" ann", "whitespace"),
        ("ann ", "whitespace"),
        ("a" * 129, "at most 128"),
        ("ann\x00", "printable"),
        ("ann\nbob", "printable"),
        (42, "must be a string"),
    ],
)
def test_learner_id_rules_refuse_with_reason(learner_id: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_learner_id(learner_id)


def test_learner_id_of_128_printable_characters_is_accepted() -> None:
    assert check_learner_id("é" * 128) == "é" * 128


def test_names_are_stripped_then_checked() -> None:
    assert InterestAdded(interest_name="  Robotics \n").interest_name == "Robotics"
    with pytest.raises(pydantic.ValidationError) as caught:
        InterestAdded(interest_name="   ")
    assert caught.value.errors()[0]["loc"] == ("interest_name",)
    with pytest.raises(pydantic.ValidationError):
        PreferenceSet(category="x" * 501, value="v")
    assert PreferenceSet(category="x" * 500, value="v").category == "x" * 500


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf])
def test_scores_must_be_finite(score: float) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        ActivityAttemptRecorded(lo_id="LO", activity_id="A", activity_type="quiz", score=score)
    assert caught.value.errors()[0]["loc"] == ("score",)


def test_lo_status_is_a_closed_set() -> None:
    now = datetime.now(UTC)
    with pytest.raises(pydantic.ValidationError) as caught:
        LearningObjectiveCompleted(lo_id="LO", status="done", started_at=now)
    assert caught.value.errors()[0]["loc"] == ("status",)


@pytest.mark.parametrize(
    ("details", "problem"),
    [
        ([1, 2], "JSON object"),
        ("text", "JSON object"),
        ({"x": math.nan}, "NaN"),
        ({"x": {1, 2}}, "JSON-serialisable"),
        ({"blob": "x" * (64 * 1024)}, "at most 65536 bytes"),
    ],
)
def test_details_must_be_small_json_objects(details: object, problem: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=problem) as caught:
        CognitiveMetricRecorded(task_name="story_weaver", metric_details=details)
    assert caught.value.errors()[0]["loc"] == ("metric_details",)


def test_events_are_frozen_and_refuse_unknown_fields() -> None:
    event = InterestAdded(interest_name="Robotics")
    with pytest.raises(pydantic.ValidationError):
        event.interest_name = "Music"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        InterestAdded(interest_name="Robotics", extra="no")  # type: ignore[call-arg]


def test_discriminated_union_picks_the_type_by_event_type() -> None:
    event = EVENT_ADAPTER.validate_python({"event_type": "BadgeAwarded", "badge_id": "b", "badge_name": "B"})
    assert isinstance(event, BadgeAwarded)
    with pytest.raises(pydantic.ValidationError):
        EVENT_ADAPTER.validate_python({"event_type": "Nope"})


def test_every_event_type_has_a_schema_version() -> None:
    assert len(EVENT_TYPES) == 16
    assert all(cls.schema_version >= 1 for cls in EVENT_TYPES.values())


# Text the log stores: any Unicode text (UTF-8 encodable: no lone surrogates) but NUL.
storable_text = st.characters(codec="utf-8", exclude_characters="\x00")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(storable_text, max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(storable_text, max_size=8), children, max_size=4),
    max_leaves=12,
)


@given(
    task=st.text(storable_text, min_size=1, max_size=40).filter(lambda s: s.strip()),
    details=st.dictionaries(st.text(storable_text, max_size=10), json_values, max_size=5),
)
def test_payload_round_trips_exactly(task: str, details: dict[str, object]) -> None:
    event = CognitiveMetricRecorded(task_name=task, metric_details=details)
    assert decode_event(event.event_type, event.schema_version, encode_payload(event)) == event


def test_unknown_type_and_future_version_are_refused() -> None:
    with pytest.raises(UnknownEventError, match="unknown event type 'Mystery'"):
        decode_event("Mystery", 1, "{}")
    with pytest.raises(UnknownEventError, match="schema_version 99"):
        decode_event("InterestAdded", 99, '{"interest_name": "x"}')


def test_upcasters_chain_step_by_step(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend InterestAdded is at v3, with a v1 -> v2 rename and a v2 -> v3 default.
    monkeypatch.setattr(InterestAdded, "schema_version", 3)
    monkeypatch.setattr(events, "_UPCASTERS", {})
    events.upcaster("InterestAdded", 1)(lambda data: {"interest_name": data["name"], "note": "x"})
    events.upcaster("InterestAdded", 2)(lambda data: {k: v for k, v in data.items() if k != "note"})
    assert decode_event("InterestAdded", 1, '{"name": "Robotics"}') == InterestAdded(interest_name="Robotics")
    with pytest.raises(ValueError, match="already registered"):
        events.upcaster("InterestAdded", 1)(lambda data: data)


def test_missing_upcaster_is_named() -> None:
    with pytest.raises(UnknownEventError, match="no upcaster for InterestAdded from schema_version 1"):
        original = InterestAdded.schema_version
        try:
            InterestAdded.schema_version = 2
            decode_event("InterestAdded", 1, '{"interest_name": "x"}')
        finally:
            InterestAdded.schema_version = original


def test_event_ids_are_uuid7_and_time_ordered() -> None:
    ids = [new_event_id() for _ in range(200)]
    parsed = [uuid.UUID(value) for value in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(ids)) == 200
    millis = [u.int >> 80 for u in parsed]
    assert millis == sorted(millis)
