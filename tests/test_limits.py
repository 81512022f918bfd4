"""Each limit of README "Limits", one by one: the boundary accepted, one step past it refused with
InvalidInput naming the exact field, nothing written, and the same answer on every store."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.exc import DBAPIError

from dala_events import audit
from dala_events import persistence_manager as pm
from dala_events.attribution import current_attribution, occurring_at, recorded_as
from dala_events.database_setup import create_dala_engine, create_tables, in_memory_store, store_for
from dala_events.envelopes import NewEvent
from dala_events.errors import InvalidInput, LearnerNotFound
from dala_events.events import (
    EARLIEST_TIME,
    LATEST_TIME,
    MAX_DETAILS_BYTES,
    MAX_JSON_DEPTH,
    MAX_JSON_INT,
    MIN_JSON_INT,
    InterestAdded,
    LearnerProfileCreated,
    check_json_object,
    new_event_id,
)
from dala_events.hlp_module import LearnerProfile, get_or_create_learner_profile
from dala_events.store import EventStore, SqlEventStore, event_log
from dala_events.store.codec import chain_rows
from projections.database_models import READ_MODEL_METADATA
from projections.rebuild import rebuild
from tests.conftest import POSTGRES_URL, require_postgres, reset_postgres
from tests.helpers import read_model_rows

T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def nested(levels: int) -> dict[str, Any]:
    """A JSON object `levels` deep, itself included: {"a": {"a": ... {}}}."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def nested_lists(levels: int) -> list[Any]:
    """[[...[1]...]]: `levels` arrays deep."""
    value: list[Any] = [1]
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, SqlEventStore]]:
    """One store per SQL backend for the module (its key store opened once, under the
    configuration of the test that made it), emptied before each test (faster than a new
    database per test)."""
    made: dict[str, SqlEventStore] = {}
    yield made
    for store in made.values():
        store.engine.dispose()


def _emptied(engine: Engine) -> None:
    tables = [*reversed(READ_MODEL_METADATA.sorted_tables), event_log]
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                names = ", ".join(table.name for table in tables)
                connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    connection.execute(table.delete())
    except DBAPIError:  # another fixture dropped the tables meanwhile
        if engine.dialect.name == "postgresql":
            reset_postgres()
        create_tables(engine)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def any_store(
    request: pytest.FixtureRequest, engines: dict[str, SqlEventStore], tmp_path_factory: pytest.TempPathFactory
) -> EventStore:
    """An empty store of each kind: the limits must give the same answers on all three."""
    if request.param == "memory":
        return in_memory_store()[0]
    if request.param == "postgresql":
        require_postgres()
    if request.param not in engines:
        if request.param == "postgresql":
            reset_postgres()
            url = POSTGRES_URL
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('limits')}/limits.db"
        engine = create_dala_engine(url)
        create_tables(engine)
        engines[request.param] = store_for(engine)
    _emptied(engines[request.param].engine)
    return engines[request.param]


def refused(store: EventStore, call: Callable[[], object], field: str, learner_id: str = "ann") -> InvalidInput:
    """Run `call`, expecting InvalidInput naming `field` and nothing written to the learner."""
    before = store.stream_version(learner_id)
    with pytest.raises(InvalidInput) as caught:
        call()
    assert caught.value.field == field, str(caught.value)
    assert store.stream_version(learner_id) == before
    return caught.value


# ---------------------------------------------------------------------------------------------
# JSON objects: details, metric details, attempt details, metadata
# ---------------------------------------------------------------------------------------------

JSON_FIELDS: list[tuple[str, Callable[[LearnerProfile, Any], object]]] = [
    ("metric_details", lambda p, d: p.add_cognitive_metric("story_weaver", d)),
    ("details", lambda p, d: p.update_lo_progress("LO1", "in_progress", details=d)),
    ("details", lambda p, d: p.mark_lo_completed("LO1", details=d)),
    ("attempt_details", lambda p, d: p.record_activity_attempt("LO1", "a", "quiz", attempt_details=d)),
]


@pytest.mark.parametrize(("field", "call"), JSON_FIELDS)
@pytest.mark.parametrize(
    ("details", "problem"),
    [
        (nested(MAX_JSON_DEPTH + 1), "nested at most 32 levels"),
        (nested(200), "nested at most 32 levels"),  # the reported object: accepted, then unreadable
        ({"a": nested_lists(MAX_JSON_DEPTH)}, "nested at most 32 levels"),  # arrays count as levels too
        ({"n": MAX_JSON_INT + 1}, "signed 64-bit"),
        ({"n": MIN_JSON_INT - 1}, "signed 64-bit"),
        ({"n": [1, 2**100]}, "signed 64-bit"),
        ({"text": "a\x00b"}, "NUL"),
        ({"a\x00": 1}, "NUL"),
        ({"text": "\ud800"}, "lone surrogates"),
        ({"\udfff": 1}, "lone surrogates"),
        ({"x": math.nan}, "NaN"),
        ({"x": -math.inf}, "NaN"),
        ({"x": (1, 2)}, "tuple is not a JSON value"),
        ({"x": b"bytes"}, "bytes is not a JSON value"),
        ({"x": {1, 2}}, "set is not a JSON value"),
        ({"x": Decimal("1.5")}, "Decimal is not a JSON value"),
        ({1: "x"}, "keys must be strings"),
        ({"blob": "x" * MAX_DETAILS_BYTES}, "at most 65536 bytes"),
        ([1, 2], "JSON object"),
        ("{}", "JSON object"),
    ],
)
def test_json_objects_beyond_the_limits_are_refused_naming_the_field(
    memory_store: EventStore, field: str, call: Callable[[LearnerProfile, Any], object], details: Any, problem: str
) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    error = refused(memory_store, lambda: call(profile, details), field)
    assert problem in error.problem
    assert profile.pending_events == ()


def test_a_cyclic_json_value_is_refused_not_a_recursion_error() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError, match="nested at most 32 levels"):
        check_json_object(cyclic)


def test_the_problem_says_where_it_is() -> None:
    with pytest.raises(ValueError, match=r"NUL .*\(at \['steps'\]\[1\]\['note'\]\)"):
        check_json_object({"steps": [{"note": "ok"}, {"note": "bad\x00"}]})


@pytest.mark.parametrize(
    "details",
    [
        nested(MAX_JSON_DEPTH),
        {"n": MAX_JSON_INT, "m": MIN_JSON_INT, "f": 1e308, "tiny": 5e-324, "neg": -0.0, "b": True, "z": None},
        {"text": 'ünïcödé 😀 \t\n \\ " \u2028', "": "empty key"},
        {"list": [1, "two", [3.5, {"four": None}]]},
    ],
)
def test_json_objects_at_the_limits_read_back_equal_everywhere(any_store: EventStore, details: dict[str, Any]) -> None:
    profile = LearnerProfile("ann", store=any_store)
    assert profile.record_activity_attempt("LO1", "a", "quiz", attempt_details=details)
    assert profile.add_cognitive_metric("task", details)
    assert profile.update_lo_progress("LO1", "in_progress", details=details)
    reloaded = LearnerProfile.load("ann", store=any_store)
    assert reloaded.activity_attempts[0].attempt_details == details
    assert reloaded.cognitive_metrics["task"] == details
    assert reloaded.lo_progress["LO1"].details == details
    assert [event.event for event in audit.history("ann", store=any_store)][1:] == list(profile_events(any_store))[1:]
    if isinstance(any_store, SqlEventStore):
        (attempt,) = pm.get_activity_attempts("ann", store=any_store)
        assert attempt.attempt_details == details
        assert pm.get_cognitive_metrics("ann", store=any_store)[0].metric_details == details
        before = read_model_rows(any_store.engine)
        rebuild(any_store.engine, cipher=any_store.cipher)
        assert read_model_rows(any_store.engine) == before


def profile_events(store: EventStore) -> list[Any]:
    return [recorded.event for recorded in store.read_stream("ann")]


def test_json_of_exactly_64_kib_is_accepted_and_one_byte_more_is_not() -> None:
    overhead = len(json.dumps({"blob": ""}, separators=(",", ":")))
    assert check_json_object({"blob": "x" * (MAX_DETAILS_BYTES - overhead)})
    with pytest.raises(ValueError, match="at most 65536 bytes as JSON, got 65537"):
        check_json_object({"blob": "x" * (MAX_DETAILS_BYTES - overhead + 1)})
    # measured in UTF-8: a two-byte character counts twice
    with pytest.raises(ValueError, match="at most 65536 bytes"):
        check_json_object({"blob": "é" * (MAX_DETAILS_BYTES // 2)})


# ---------------------------------------------------------------------------------------------
# Text fields: strict str, no NUL, no lone surrogate, 1..500 after stripping
# ---------------------------------------------------------------------------------------------

TEXT_FIELDS: list[tuple[str, Callable[[LearnerProfile, Any], object]]] = [
    ("category", lambda p, v: p.update_preference(v, "visual")),
    ("value", lambda p, v: p.update_preference("style", v)),
    ("category", lambda p, v: p.remove_preference(v)),
    ("interest_name", lambda p, v: p.add_interest(v)),
    ("interest_name", lambda p, v: p.remove_interest(v)),
    ("struggle_description", lambda p, v: p.add_struggle_area(v)),
    ("struggle_description", lambda p, v: p.remove_struggle_area(v)),
    ("task_name", lambda p, v: p.add_cognitive_metric(v, {})),
    ("lo_id", lambda p, v: p.start_lo(v)),
    ("lo_id", lambda p, v: p.update_lo_progress(v, "in_progress")),
    ("lo_id", lambda p, v: p.mark_lo_completed(v)),
    ("badge_id", lambda p, v: p.add_badge(v, "Badge")),
    ("badge_name", lambda p, v: p.add_badge("b1", v)),
    ("badge_id", lambda p, v: p.revoke_badge(v)),
    ("lo_id", lambda p, v: p.record_activity_attempt(v, "a", "quiz")),
    ("activity_id", lambda p, v: p.record_activity_attempt("LO1", v, "quiz")),
    ("activity_type", lambda p, v: p.record_activity_attempt("LO1", "a", v)),
]


@pytest.mark.parametrize(("field", "call"), TEXT_FIELDS)
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"Robotics", "valid string, not bytes"),
        (bytearray(b"Robotics"), "valid string, not bytearray"),
        (42, "valid string, not int"),
        (None, "valid string, not NoneType"),
        (["Robotics"], "valid string, not list"),
        ("Robo\x00tics", "NUL"),
        ("Robo\ud800tics", "lone surrogates"),
        ("  ", "at least 1 character"),
        ("x" * 501, "at most 500 characters"),
    ],
)
def test_text_fields_refuse_non_str_nul_and_surrogates_naming_the_field(
    memory_store: EventStore, field: str, call: Callable[[LearnerProfile, Any], object], value: Any, problem: str
) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    error = refused(memory_store, lambda: call(profile, value), field)
    assert problem in error.problem, error.problem


def test_add_interest_of_bytes_is_refused_not_decoded(memory_store: EventStore) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    refused(memory_store, lambda: profile.add_interest(b"Robotics"), "interest_name")
    assert profile.interests == []


@pytest.mark.parametrize(
    ("details", "problem"),
    [(b"x", "valid string"), ("a\x00", "NUL"), ("\udc80", "lone surrogates"), ("x" * 501, "at most 500"), (7, "valid")],
)
def test_badge_details_are_free_text_within_the_limits(memory_store: EventStore, details: Any, problem: str) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    assert problem in refused(memory_store, lambda: profile.add_badge("b1", "Badge", details), "details").problem
    assert profile.add_badge("b1", "Badge", "  kept as given, blank or not  ")
    assert profile.badges["b1"].details == "  kept as given, blank or not  "


def test_text_at_the_limits_reads_back_equal_everywhere(any_store: EventStore) -> None:
    longest = "é" * 500
    profile = LearnerProfile("ann", store=any_store)
    assert profile.add_interest(longest)
    assert profile.add_struggle_area("😀 tab\tinside and \u2028 separators")
    assert profile.add_badge("b1", "Badge", "")
    reloaded = LearnerProfile.load("ann", store=any_store)
    assert reloaded.interests == [longest]
    assert reloaded.struggles == ["😀 tab\tinside and \u2028 separators"]
    assert reloaded.badges["b1"].details == ""


# ---------------------------------------------------------------------------------------------
# Scores (percentages, 0..100, finite, numbers) and completed (a bool)
# ---------------------------------------------------------------------------------------------

SCORE_CALLS: list[Callable[[LearnerProfile, Any], object]] = [
    lambda p, s: p.update_lo_progress("LO1", "in_progress", score=s),
    lambda p, s: p.mark_lo_completed("LO1", score=s),
    lambda p, s: p.record_activity_attempt("LO1", "a", "quiz", score=s),
]


@pytest.mark.parametrize("call", SCORE_CALLS)
@pytest.mark.parametrize(
    ("score", "problem"),
    [
        (-0.001, "percentage from 0 to 100"),
        (100.001, "percentage from 0 to 100"),
        (150, "percentage from 0 to 100"),
        (2**63, "percentage from 0 to 100"),
        (10**400, "valid number"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        (True, "valid number, not bool"),
        ("50", "valid number, not str"),
        (b"50", "valid number, not bytes"),
    ],
)
def test_scores_are_percentages(
    memory_store: EventStore, call: Callable[[LearnerProfile, Any], object], score: Any, problem: str
) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    assert problem in refused(memory_store, lambda: call(profile, score), "score").problem


@pytest.mark.parametrize("score", [0, 0.0, 100, 100.0, 5e-324, 99.99999999999999, Decimal("12.5")])
def test_scores_from_0_to_100_read_back_equal_everywhere(any_store: EventStore, score: Any) -> None:
    profile = LearnerProfile("ann", store=any_store)
    assert profile.record_activity_attempt("LO1", "a", "quiz", score=score)
    assert profile.mark_lo_completed("LO1", score=score)
    reloaded = LearnerProfile.load("ann", store=any_store)
    assert reloaded.activity_attempts[0].score == float(score)
    assert reloaded.lo_progress["LO1"].score == float(score)
    if isinstance(any_store, SqlEventStore):
        assert pm.get_activity_attempts("ann", store=any_store)[0].score == float(score)


@pytest.mark.parametrize("completed", [1, 0, "yes", "true", None, 1.0])
def test_completed_is_a_real_bool(memory_store: EventStore, completed: Any) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    refused(memory_store, lambda: profile.record_activity_attempt("LO1", "a", "quiz", completed=completed), "completed")


@pytest.mark.parametrize("status", [b"completed", "done", None, 1])
def test_status_is_one_of_the_closed_set(memory_store: EventStore, status: Any) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    refused(memory_store, lambda: profile.update_lo_progress("LO1", status), "status")


def test_dtos_refuse_the_same_values_with_pydantic_errors() -> None:
    """DTO constructors keep pydantic's ValidationError, with the same limits as the events."""
    for make in (
        lambda: pm.LOProgressData(lo_id="LO1", status="completed", score=150),
        lambda: pm.ActivityAttemptData(lo_id="LO1", activity_id="a", activity_type="quiz", completed=1),
        lambda: pm.InterestData(interest_name=b"Robotics"),
        lambda: pm.InterestData(interest_name="Robo\x00tics"),
        lambda: pm.BadgeData(badge_id="b", badge_name="B", details=b"x"),
        lambda: pm.CognitiveMetricData(task_name="t", metric_details=nested(40)),
        lambda: pm.PreferenceData(learner_id=b"ann", category="c", value="v"),
    ):
        with pytest.raises(pydantic.ValidationError):
            make()


# ---------------------------------------------------------------------------------------------
# Times: timezone-aware, 0001-01-02 .. 9999-12-30 in UTC
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "problem"),
    [
        (datetime.min.replace(tzinfo=timezone(timedelta(hours=1))), "between 0001-01-02"),
        (datetime.min.replace(tzinfo=timezone(-timedelta(hours=23, minutes=59))), "between 0001-01-02"),
        (datetime(1, 1, 1, 23, 59, tzinfo=UTC), "between 0001-01-02"),
        (datetime(2026, 1, 1), "timezone-aware"),
        ("2026-01-01T00:00:00Z", "must be a datetime, not str"),
        (1_700_000_000, "must be a datetime, not int"),
        (datetime.max.replace(tzinfo=timezone(-timedelta(hours=5))), "between 0001-01-02"),
    ],
)
def test_occurring_at_refuses_times_out_of_range_with_the_package_error(
    memory_store: EventStore, when: Any, problem: str
) -> None:
    profile = LearnerProfile("ann", store=memory_store)

    def call() -> None:
        with occurring_at(when):
            profile.add_interest("Robotics")

    assert problem in refused(memory_store, call, "occurred_at").problem


def test_the_earliest_time_is_accepted_and_reads_back_equal(any_store: EventStore) -> None:
    profile = LearnerProfile("ann", store=any_store)
    with occurring_at(EARLIEST_TIME.astimezone(timezone(timedelta(hours=14)))):
        assert profile.add_badge("b1", "Badge")
        assert profile.start_lo("LO1")
    reloaded = LearnerProfile.load("ann", store=any_store)
    assert reloaded.badges["b1"].earned_date == EARLIEST_TIME.date()
    assert reloaded.lo_progress["LO1"].started_at == EARLIEST_TIME
    (recorded,) = audit.history("ann", store=any_store, event_types=["BadgeAwarded"])
    assert recorded.occurred_at == EARLIEST_TIME


def test_a_time_off_utc_gives_the_same_date_live_reloaded_and_rebuilt(store: SqlEventStore) -> None:
    evening_in_new_york = datetime(2020, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    profile = LearnerProfile("ann", store=store)
    with occurring_at(evening_in_new_york):
        profile.add_badge("b1", "Badge")
    utc_date = evening_in_new_york.astimezone(UTC).date()
    assert profile.badges["b1"].earned_date == utc_date
    assert pm.get_badges("ann", store=store)[0].earned_date == utc_date
    rebuild(store.engine, cipher=store.cipher)
    assert pm.get_badges("ann", store=store)[0].earned_date == utc_date
    assert LearnerProfile.load("ann", store=store).badges["b1"].earned_date == utc_date


@pytest.mark.parametrize(
    ("occurred_at", "problem"),
    [
        (datetime(1, 1, 1, tzinfo=UTC), "between"),
        (LATEST_TIME + timedelta(microseconds=1), "between"),
        (datetime.max.replace(tzinfo=timezone(-timedelta(hours=1))), "between"),
        (datetime(2026, 1, 1), "timezone-aware"),
        ("2026-01-01", "must be a datetime"),
    ],
)
def test_the_store_refuses_event_times_out_of_range(any_store: EventStore, occurred_at: Any, problem: str) -> None:
    new = NewEvent(LearnerProfileCreated(), new_event_id(), occurred_at, {"actor": "system"})
    assert problem in refused(any_store, lambda: any_store.append("ann", [new], 0), "occurred_at").problem
    assert any_store.last_position() == 0


# ---------------------------------------------------------------------------------------------
# Attribution: actor, reason, correlation id
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"correlation_id": 42}, "correlation_id"),
        ({"correlation_id": ["a"]}, "correlation_id"),
        ({"correlation_id": {"a": 1}}, "correlation_id"),
        ({"correlation_id": b"job-1"}, "correlation_id"),
        ({"correlation_id": "x" * 5_000_000}, "correlation_id"),
        ({"correlation_id": "x" * 201}, "correlation_id"),
        ({"correlation_id": ""}, "correlation_id"),
        ({"correlation_id": "job 1"}, "correlation_id"),
        ({"correlation_id": "job\x00"}, "correlation_id"),
        ({"correlation_id": "job\ud800"}, "correlation_id"),
        ({"reason": 5}, "reason"),
        ({"reason": "  "}, "reason"),
        ({"reason": "line\nbreak"}, "reason"),
        ({"reason": "nul\x00"}, "reason"),
        ({"reason": "\udfff"}, "reason"),
        ({"reason": "x" * 1001}, "reason"),
        ({"actor": "teacher:\x00"}, "actor"),
        ({"actor": "teacher\n"}, "actor"),
        ({"actor": "teacher:\ud800"}, "actor"),
        ({"actor": "t" * 201}, "actor"),
        ({"actor": b"teacher:1"}, "actor"),
        ({"actor": 42}, "actor"),
    ],
)
def test_recorded_as_refuses_bad_attribution_naming_the_field(
    memory_store: EventStore, kwargs: dict[str, Any], field: str
) -> None:
    profile = LearnerProfile("ann", store=memory_store)

    def call() -> None:
        with recorded_as(**kwargs):
            profile.add_interest("Robotics")

    refused(memory_store, call, field)
    assert current_attribution().actor == "system"


def test_attribution_at_the_limits_is_stored_as_given(any_store: EventStore) -> None:
    correlation = "job-" + "9" * 196
    reason = "r" * 1000
    profile = LearnerProfile("ann", store=any_store)
    with recorded_as("teacher:" + "4" * 192, reason=reason, correlation_id=correlation):
        profile.add_interest("Robotics")
    metadata = audit.history("ann", store=any_store)[-1].metadata
    assert metadata == {"actor": "teacher:" + "4" * 192, "reason": reason, "correlation_id": correlation}


# ---------------------------------------------------------------------------------------------
# The store contract's own arguments
# ---------------------------------------------------------------------------------------------


class NotInTheCatalog(InterestAdded):
    """An event class the log could write but never read back."""


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: NewEvent(InterestAdded(interest_name="x"), "not-a-uuid", T0, {}), "event_id"),
        (lambda: NewEvent(InterestAdded(interest_name="x"), 42, T0, {}), "event_id"),
        (lambda: NewEvent(InterestAdded(interest_name="x"), "{" + new_event_id() + "}", T0, {}), "event_id"),
        (lambda: NewEvent(InterestAdded(interest_name="x"), new_event_id(), T0, None), "metadata"),
        (lambda: NewEvent(InterestAdded(interest_name="x"), new_event_id(), T0, {"actor": "a\x00"}), "metadata"),
        (lambda: NewEvent(InterestAdded(interest_name="x"), new_event_id(), T0, nested(33)), "metadata"),
        (lambda: NewEvent(InterestAdded(interest_name="x"), new_event_id(), T0, {"c": "x" * 70_000}), "metadata"),
        (lambda: NewEvent(NotInTheCatalog(interest_name="x"), new_event_id(), T0, {}), "events"),
    ],
)
def test_append_refuses_new_events_the_log_could_not_read_back(
    any_store: EventStore, make: Callable[[], NewEvent], field: str
) -> None:
    created = NewEvent(LearnerProfileCreated(), new_event_id(), T0, {})
    refused(any_store, lambda: any_store.append("ann", [created, make()], 0), field)
    assert any_store.last_position() == 0


@pytest.mark.parametrize("events_argument", [None, 42, "InterestAdded", b"x"])
def test_append_refuses_events_that_are_not_a_sequence(any_store: EventStore, events_argument: Any) -> None:
    refused(any_store, lambda: any_store.append("ann", events_argument, 0), "events")


def test_event_ids_are_stored_in_lower_case_on_every_store(any_store: EventStore) -> None:
    upper = new_event_id().upper()
    any_store.append("ann", [NewEvent(LearnerProfileCreated(), upper, T0, {})], 0)
    assert any_store.read_stream("ann")[0].event_id == upper.lower()
    again = NewEvent(InterestAdded(interest_name="x"), upper.lower(), T0, {})
    refused(any_store, lambda: any_store.append("ann", [again], 1), "event_id")


def test_positions_and_batch_sizes_beyond_the_columns_are_clamped(any_store: EventStore) -> None:
    LearnerProfile("ann", store=any_store).add_interest("Robotics")
    assert len(list(any_store.read_all(batch_size=2**63))) == 2
    assert list(any_store.read_all(after_position=2**63)) == []
    assert list(any_store.read_all(limit=2**64)) == list(any_store.read_all())
    assert sum(map(len, any_store.read_stream_for_projection("ann", batch_size=2**70))) == 2
    assert len(any_store.read_stream("ann", up_to_version=2**63)) == 2


@pytest.mark.parametrize("event_types", [42, object(), [b"InterestAdded"], [None]])
def test_event_types_must_be_names(any_store: EventStore, event_types: Any) -> None:
    refused(any_store, lambda: any_store.read_stream("ann", event_types=event_types), "event_types")


def test_event_types_given_as_a_generator_are_read_once(any_store: EventStore) -> None:
    LearnerProfile("ann", store=any_store).add_interest("Robotics")
    chosen = any_store.read_stream("ann", event_types=(name for name in ["InterestAdded"]))
    assert [recorded.event_type for recorded in chosen] == ["InterestAdded"]


@pytest.mark.parametrize("learner_id", ["ann\x00", "ann\ud800", b"ann", 42, None, "", "x" * 129])
def test_learner_ids_are_refused_alike_by_every_way_in(any_store: EventStore, learner_id: Any) -> None:
    for call in (
        lambda: any_store.stream_version(learner_id),
        lambda: any_store.read_stream(learner_id),
        lambda: get_or_create_learner_profile(learner_id, store=any_store),
        lambda: LearnerProfile.load(learner_id, store=any_store),
        lambda: audit.history(learner_id, store=any_store),
        lambda: audit.profile_as_of(learner_id, version=1, store=any_store),
        lambda: audit.diff(learner_id, 0, 1, store=any_store),
        lambda: pm.add_interest(learner_id, pm.InterestData(interest_name="x"), store=any_store),
        lambda: pm.remove_interest(learner_id, "x", store=any_store),
        lambda: pm.delete_learner_profile(learner_id, store=any_store),
    ):
        with pytest.raises(InvalidInput) as caught:
            call()
        assert caught.value.field == "learner_id"
    assert any_store.last_position() == 0


# ---------------------------------------------------------------------------------------------
# The document's functions and the audits: their own arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "writer",
    [
        pm.add_or_update_preference,
        pm.add_interest,
        pm.add_struggle,
        pm.add_or_update_cognitive_metric,
        pm.add_or_update_lo_progress,
        pm.add_badge_record,
        pm.add_activity_attempt,
    ],
)
@pytest.mark.parametrize("data", [None, {"interest_name": "Music"}, "Music", pm.RowData()])
def test_writers_refuse_what_is_not_their_dto(store: SqlEventStore, writer: Callable[..., bool], data: Any) -> None:
    pm.create_learner_profile("ann", store=store)
    refused(store, lambda: writer("ann", data, store=store), "data")


def test_writers_refuse_a_dto_of_another_section(store: SqlEventStore) -> None:
    pm.create_learner_profile("ann", store=store)
    struggle = pm.StruggleData(struggle_description="Fractions")
    refused(store, lambda: pm.add_interest("ann", struggle, store=store), "data")  # type: ignore[arg-type]


def test_writers_check_a_constructed_dto_like_any_input(store: SqlEventStore) -> None:
    """model_construct skips pydantic: the aggregate still refuses the values, naming the field."""
    pm.create_learner_profile("ann", store=store)
    for call, field in (
        (
            lambda: pm.add_interest("ann", pm.InterestData.model_construct(interest_name=b"x"), store=store),
            "interest_name",
        ),
        (
            lambda: pm.add_activity_attempt(
                "ann",
                pm.ActivityAttemptData.model_construct(lo_id="L", activity_id="a", activity_type="q", score=150.0),
                store=store,
            ),
            "score",
        ),
        (
            lambda: pm.add_or_update_lo_progress(
                "ann", pm.LOProgressData.model_construct(lo_id="L", status="done"), store=store
            ),
            "status",
        ),
    ):
        refused(store, call, field)


@pytest.mark.parametrize("bad_store", [object(), "sqlite:///x.db", 42])
def test_functions_refuse_what_is_not_a_store(store: SqlEventStore, bad_store: Any) -> None:
    pm.create_learner_profile("ann", store=store)
    for call in (
        lambda: pm.add_interest("ann", pm.InterestData(interest_name="x"), store=bad_store),
        lambda: pm.remove_interest("ann", "x", store=bad_store),
        lambda: pm.delete_learner_profile("ann", store=bad_store),
        lambda: pm.create_learner_profile("bob", store=bad_store),
        lambda: pm.get_interests("ann", store=bad_store),
        lambda: pm.get_full_learner_profile_data("ann", store=bad_store),
        lambda: audit.history("ann", store=bad_store),
        lambda: audit.profile_as_of("ann", version=1, store=bad_store),
        lambda: audit.diff("ann", 0, 1, store=bad_store),
    ):
        refused(store, call, "store")
    assert store.stream_version("bob") == 0


def test_create_learner_profile_refuses_a_store_it_cannot_read_before_writing() -> None:
    memory = in_memory_store()[0]
    refused(memory, lambda: pm.create_learner_profile("ann", store=memory), "store")  # type: ignore[arg-type]
    assert memory.last_position() == 0


@pytest.mark.parametrize("learner_id", ["ann\x00", b"ann", 42, " ann"])
def test_getters_refuse_bad_learner_ids_on_every_backend(store: SqlEventStore, learner_id: Any) -> None:
    for getter in (pm.get_interests, pm.get_badges, pm.get_activity_attempts, pm.get_full_learner_profile_data):
        with pytest.raises(InvalidInput) as caught:
            getter(learner_id, store=store)
        assert caught.value.field == "learner_id"


def test_getters_refuse_what_is_not_a_connection(store: SqlEventStore) -> None:
    with pytest.raises(InvalidInput) as caught:
        pm.get_full_learner_profile_data("ann", connection="sqlite://")  # type: ignore[arg-type]
    assert caught.value.field == "connection"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: audit.profile_as_of("ann", version="1", store=s), "version"),
        (lambda s: audit.profile_as_of("ann", version=True, store=s), "version"),
        (lambda s: audit.profile_as_of("ann", version=-1, store=s), "version"),
        (lambda s: audit.profile_as_of("ann", at="2026-01-01", store=s), "at"),
        (lambda s: audit.profile_as_of("ann", at=datetime(2026, 1, 1), store=s), "at"),
        (lambda s: audit.diff("ann", "1", 2, store=s), "start"),
        (lambda s: audit.diff("ann", 0, None, store=s), "end"),
        (lambda s: audit.history("ann", since="yesterday", store=s), "since"),
        (lambda s: audit.history("ann", until=5, store=s), "until"),
        (lambda s: audit.history("ann", event_types=5, store=s), "event_types"),
    ],
)
def test_audits_refuse_bad_points_naming_them(any_store: EventStore, call: Any, field: str) -> None:
    LearnerProfile("ann", store=any_store)
    refused(any_store, lambda: call(any_store), field)


def test_audit_times_past_the_limits_are_clamped_not_overflowing(any_store: EventStore) -> None:
    LearnerProfile("ann", store=any_store).add_interest("Robotics")
    far_future = datetime.max.replace(tzinfo=timezone(-timedelta(hours=5)))
    far_past = datetime.min.replace(tzinfo=timezone(timedelta(hours=5)))
    assert len(audit.history("ann", since=far_past, until=far_future, store=any_store)) == 2
    profile = audit.profile_as_of("ann", at=far_future, store=any_store)
    assert profile is not None and [i.interest_name for i in profile.interests] == ["Robotics"]
    assert audit.diff("ann", far_past, far_future, store=any_store).added


def test_replay_refuses_a_history_that_is_not_stored_events(memory_store: EventStore) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    good = memory_store.read_stream("ann")
    for history in (None, 42, [None], [*good, "event"], [good[0]._replace(version="2")]):
        fresh = LearnerProfile.__new__(LearnerProfile)
        fresh._open("bob", True, memory_store)
        with pytest.raises(InvalidInput) as caught:
            fresh.replay(history)  # type: ignore[arg-type]
        assert caught.value.field == "history"
        assert fresh.version == 0 and not fresh.exists  # nothing applied
    assert profile.version == 1


def test_a_deleted_learner_is_not_found_before_its_input_is_checked(memory_store: EventStore) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    profile.delete()
    with pytest.raises(LearnerNotFound):
        profile.add_interest(b"anything")


# ---------------------------------------------------------------------------------------------
# Written before the limits: still readable
# ---------------------------------------------------------------------------------------------


def test_events_written_before_the_limits_stay_readable(sqlite_store: SqlEventStore) -> None:
    """A score of 150 and a NUL in a name were accepted on SQLite before: reading them must not
    turn into CorruptEventError (invariant 5); only new input meets the limits."""
    rows = [
        ("LearnerProfileCreated", {}),
        ("InterestAdded", {"interest_name": "Robo\x00tics"}),
        ("ActivityAttemptRecorded", {"lo_id": "LO1", "activity_id": "a", "activity_type": "quiz", "score": 150.0}),
    ]
    previous = ""
    with sqlite_store.engine.begin() as connection:
        for version, (event_type, payload) in enumerate(rows, start=1):
            row = {
                "event_id": new_event_id(),
                "learner_id": "old",
                "version": version,
                "event_type": event_type,
                "schema_version": 1,
                "occurred_at": T0,
                "recorded_at": T0,
                "payload": json.dumps(payload),
                "metadata": json.dumps({"actor": "system", "reason": None, "correlation_id": "c"}),
            }
            chain_rows([row], previous, sqlite_store.log_key)  # old rows were chained by migration 0003
            previous = row["hash"]
            names = [column.name for column in event_log.columns]
            connection.execute(insert(event_log).values(**{name: row[name] for name in names if name in row}))
    profile = LearnerProfile.load("old", store=sqlite_store)
    assert profile.interests == ["Robo\x00tics"]
    assert profile.activity_attempts[0].score == 150.0
    rebuild(sqlite_store.engine, cipher=sqlite_store.cipher)
    assert pm.get_activity_attempts("old", store=sqlite_store)[0].score == 150.0
    as_of = audit.profile_as_of("old", version=3, store=sqlite_store)
    assert as_of is not None and as_of.interests[0].interest_name == "Robo\x00tics"
    with pytest.raises(InvalidInput):  # but new input meets the limits
        profile.record_activity_attempt("LO1", "a", "quiz", score=150.0)


def test_postgresql_text_never_meets_a_nul(store: SqlEventStore) -> None:
    """What made PostgreSQL raise psycopg.DataError is refused before the driver, on both."""
    profile = LearnerProfile("ann", store=store)
    for call in (
        lambda: profile.add_interest("a\x00"),
        lambda: profile.add_cognitive_metric("t", {"k": "a\x00"}),
        lambda: profile.add_badge("b", "B", "a\x00"),
    ):
        with pytest.raises(InvalidInput):
            call()
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM event_log")).scalar_one() == 1


@pytest.mark.parametrize("field", ["actor", "reason", "correlation_id"])
def test_hostile_depth_given_to_recorded_as_is_the_packages_error(field: str) -> None:
    from dala_events.attribution import recorded_as

    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(100_000):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(InvalidInput, match=field), recorded_as(**{field: deep}):
        pass


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda engine: __import__("dala_events.disclosures").disclosures.list_disclosures(42), "learner_id"),
        (lambda engine: __import__("dala_events.backup").backup.backup_log(engine, 42), "destination"),
        (lambda engine: __import__("dala_events.backup").backup.backup_log(None, "x"), "engine"),
        (lambda engine: __import__("dala_events.integrity").integrity.verify_log(None, None), "engine"),
        (lambda engine: __import__("dala_events.integrity").integrity.verify_log(engine, "key"), "log_key"),
        (lambda engine: __import__("dala_events.xapi").xapi.export_learner_xapi("ann", homepage=42), "homepage"),
    ],
)
def test_bad_arguments_to_the_maintenance_api_are_the_packages_error(
    sqlite_store: SqlEventStore, call: Callable[[Engine], object], field: str
) -> None:
    with pytest.raises(InvalidInput, match=field):
        call(sqlite_store.engine)


def test_a_master_key_that_is_not_text_and_a_checkpoint_that_is_not_a_file_are_refused(tmp_path: Path) -> None:
    from dala_events.integrity import IntegrityError, load_checkpoint
    from dala_events.store.keys import MasterKey, MasterKeyError

    with pytest.raises(MasterKeyError, match="str"):
        MasterKey.from_hex(42)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="not a file"):
        load_checkpoint(Path("/dev/zero"), None)
