"""Fuzz: every public function, every argument, every hostile value; on SQLite and PostgreSQL.

Each public function (the aggregate's and LearnerProfile's methods and constructors,
get_or_create_learner_profile, recorded_as, occurring_at, the document's writers and getters,
the audits, the store contract's methods) is called once per (argument, hostile value) with its
other arguments valid. Every call must either be accepted or refused with the package's own
error (a DalaError subclass): never AttributeError, TypeError, OverflowError, RecursionError,
UnicodeEncodeError or a driver's error. Whatever was accepted must stay readable: afterwards
every learner touched loads, its history reads and a rebuild runs.

The counts (calls, accepted, refused) are printed (`pytest -s`) and recorded as properties of
the test (`--junitxml`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

import pytest

from dala_events import audit
from dala_events import persistence_manager as pm
from dala_events.aggregate import LearnerAggregate
from dala_events.attribution import occurring_at, recorded_as
from dala_events.envelopes import NewEvent
from dala_events.errors import DalaError
from dala_events.events import InterestAdded, new_event_id
from dala_events.hlp_module import LearnerProfile, get_or_create_learner_profile
from dala_events.store import SqlEventStore
from projections.rebuild import rebuild


class BrokenZone(tzinfo):
    """A time zone whose offset Python itself refuses (a day or more)."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=30)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


HOSTILE: list[Any] = [
    None,
    "",
    "   ",
    "a\x00b",
    "\x00",
    "\ud800",
    "ok\udfff",
    "line\nbreak",
    "x" * 1_000_000,
    b"Robotics",
    bytearray(b"x"),
    0,
    -1,
    2**31,
    2**63,
    -(2**63) - 1,
    10**400,
    1.5,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    Decimal("NaN"),
    [],
    ["a"],
    ("a",),
    {},
    {"a": 1},
    {1: "a"},
    {"a": "\x00"},
    {"a": "\ud800"},
    {"n": 2**64},
    {"f": math.nan},
    {"s": {1, 2}},
    _nested(200),
    _nested(33),
    object(),
    datetime.min.replace(tzinfo=timezone(timedelta(hours=1))),
    datetime.max.replace(tzinfo=timezone(-timedelta(hours=1))),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime.max.replace(tzinfo=UTC),
    datetime(2026, 1, 1),
    datetime(2020, 1, 1, tzinfo=BrokenZone()),
    date(2026, 1, 1),
    timedelta(days=1),
]
"""Wrong types, None, NUL, lone surrogates, a 1 MB string, bytes, extreme ints, NaN, deep or
unstorable JSON, extreme and broken datetimes."""


@dataclass(frozen=True)
class Lazy:
    """A valid argument computed at call time (a current version, a fresh object)."""

    make: Callable[[], Any]


@dataclass(frozen=True)
class Case:
    """A public function and a valid value for each argument it takes."""

    name: str
    call: Callable[..., Any]
    good: dict[str, Any]


def _drain(result: Any) -> Any:
    """Iterate what a function returns lazily, so its checks and reads really run."""
    if isinstance(result, Iterable) and not isinstance(result, str | bytes | dict | list | tuple):
        return list(result)
    return result


def cases(store: SqlEventStore) -> list[Case]:
    """Every public function, with valid arguments, writing to learners of its own."""
    agg = LearnerProfile("fuzz-agg", store=store)
    get_or_create_learner_profile("fuzz-pm", store=store)
    get_or_create_learner_profile("fuzz-store", store=store)
    now = datetime.now(UTC)
    stored = store.read_stream("fuzz-agg")

    def in_block(context: Callable[..., Any]) -> Callable[..., Any]:
        def call(**kwargs: Any) -> None:
            with context(**kwargs):
                agg.add_interest("Attributed")

        return call

    def deleting(**kwargs: Any) -> None:
        get_or_create_learner_profile("fuzz-del", store=store)
        pm.delete_learner_profile(**kwargs)

    def replaying(learner_id: str, history: Any) -> None:
        LearnerAggregate(learner_id).replay(history)

    def new_event(event: Any, event_id: Any, occurred_at: Any, metadata: Any) -> NewEvent:
        return NewEvent(event, event_id, occurred_at, metadata)

    def appending(learner_id: str, event: Any, event_id: Any, occurred_at: Any, metadata: Any, **kw: Any) -> int:
        return store.append(learner_id, [new_event(event, event_id, occurred_at, metadata)], **kw)

    version_of_store = Lazy(lambda: store.stream_version("fuzz-store"))
    found: list[Case] = [
        # the aggregate, through LearnerProfile (persistence on: accepted means written)
        Case("update_preference", agg.update_preference, {"category": "style", "value": "visual"}),
        Case("remove_preference", agg.remove_preference, {"category": "style"}),
        Case("add_interest", agg.add_interest, {"name": "Robotics"}),
        Case("remove_interest", agg.remove_interest, {"name": "Robotics"}),
        Case("add_struggle_area", agg.add_struggle_area, {"description": "Fractions"}),
        Case("remove_struggle_area", agg.remove_struggle_area, {"description": "Fractions"}),
        Case("add_cognitive_metric", agg.add_cognitive_metric, {"task_name": "t", "metric_details": {"a": 1}}),
        Case("start_lo", agg.start_lo, {"lo_id": "LO1"}),
        Case(
            "update_lo_progress",
            agg.update_lo_progress,
            {"lo_id": "LO1", "status": "in_progress", "score": 50.0, "details": {"s": 1}},
        ),
        Case("mark_lo_completed", agg.mark_lo_completed, {"lo_id": "LO2", "score": 90, "details": {"s": 2}}),
        Case("add_badge", agg.add_badge, {"badge_id": "b1", "badge_name": "Badge", "details": "why"}),
        Case("revoke_badge", agg.revoke_badge, {"badge_id": "b1"}),
        Case(
            "record_activity_attempt",
            agg.record_activity_attempt,
            {
                "lo_id": "LO1",
                "activity_id": "a1",
                "activity_type": "quiz",
                "score": 70.5,
                "completed": True,
                "attempt_details": {"hints": 1},
            },
        ),
        Case("mark_saved", lambda version: LearnerAggregate("fuzz-x").mark_saved(version), {"version": 0}),
        Case("LearnerAggregate", LearnerAggregate, {"learner_id": "fuzz-agg"}),
        Case("LearnerAggregate.replay", replaying, {"learner_id": "fuzz-agg", "history": stored}),
        Case("LearnerAggregate.replayed", LearnerAggregate.replayed, {"learner_id": "fuzz-agg", "history": stored}),
        Case("LearnerProfile", lambda learner_id: LearnerProfile(learner_id, store=store), {"learner_id": "fuzz-new"}),
        Case(
            "LearnerProfile.load", lambda learner_id: LearnerProfile.load(learner_id, store=store), {"learner_id": "x"}
        ),
        Case(
            "get_or_create_learner_profile",
            lambda learner_id: get_or_create_learner_profile(learner_id, store=store),
            {"learner_id": "fuzz-new"},
        ),
        # attribution
        Case("recorded_as", in_block(recorded_as), {"actor": "teacher:42", "reason": "why", "correlation_id": "c-1"}),
        Case("occurring_at", in_block(occurring_at), {"when": now - timedelta(days=1)}),
        # the document's writers and getters
        Case("create_learner_profile", pm.create_learner_profile, {"learner_id": "fuzz-pm", "store": store}),
        Case("delete_learner_profile", deleting, {"learner_id": "fuzz-del", "store": store}),
        Case("remove_preference", pm.remove_preference, {"learner_id": "fuzz-pm", "category": "c", "store": store}),
        Case("remove_interest", pm.remove_interest, {"learner_id": "fuzz-pm", "interest_name": "i", "store": store}),
        Case(
            "remove_struggle",
            pm.remove_struggle,
            {"learner_id": "fuzz-pm", "struggle_description": "s", "store": store},
        ),
        Case("revoke_badge", pm.revoke_badge, {"learner_id": "fuzz-pm", "badge_id": "b", "store": store}),
        *(
            Case(getter.__name__, getter, {"learner_id": "fuzz-pm", "store": store})
            for getter in (
                pm.get_preferences,
                pm.get_interests,
                pm.get_struggles,
                pm.get_cognitive_metrics,
                pm.get_lo_progress,
                pm.get_badges,
                pm.get_activity_attempts,
            )
        ),
        Case(
            "get_full_learner_profile_data",
            pm.get_full_learner_profile_data,
            {"learner_id": "fuzz-pm", "store": store, "connection": None},
        ),
        # audits
        Case(
            "audit.history",
            audit.history,
            {"learner_id": "fuzz-agg", "since": None, "until": now, "event_types": ["InterestAdded"], "store": store},
        ),
        Case("audit.profile_as_of", audit.profile_as_of, {"learner_id": "fuzz-agg", "version": 2, "store": store}),
        Case("audit.profile_as_of(at)", audit.profile_as_of, {"learner_id": "fuzz-agg", "at": now, "store": store}),
        Case("audit.diff", audit.diff, {"learner_id": "fuzz-agg", "start": 1, "end": now, "store": store}),
        # the store contract
        Case(
            "EventStore.append",
            appending,
            {
                "learner_id": "fuzz-store",
                "event": InterestAdded(interest_name="Appended"),
                "event_id": Lazy(new_event_id),
                "occurred_at": now,
                "metadata": {"actor": "system"},
                "expected_version": version_of_store,
            },
        ),
        Case(
            "EventStore.append(events)",
            store.append,
            {"learner_id": "fuzz-store", "events": [], "expected_version": version_of_store},
        ),
        Case("EventStore.stream_version", store.stream_version, {"learner_id": "fuzz-store"}),
        Case(
            "EventStore.read_stream",
            store.read_stream,
            {"learner_id": "fuzz-agg", "up_to_version": 3, "until": now, "since": None, "event_types": None},
        ),
        Case(
            "EventStore.read_stream_for_projection",
            store.read_stream_for_projection,
            {"learner_id": "fuzz-agg", "up_to_version": 3, "until": now, "batch_size": 2},
        ),
        Case("EventStore.read_all", store.read_all, {"after_position": 0, "limit": 5, "batch_size": 2}),
        Case("EventStore.read_all_batches", store.read_all_batches, {"after_position": 0, "limit": 5, "batch_size": 2}),
        Case(
            "EventStore.read_for_projection",
            store.read_for_projection,
            {"after_position": 1, "limit": 5, "batch_size": 2},
        ),
    ]
    # the writers that take a DTO: the DTO itself, and each of its fields (model_construct, as
    # a caller skipping pydantic would)
    writers: list[tuple[Callable[..., bool], pm.RowData]] = [
        (pm.add_or_update_preference, pm.PreferenceData(category="style", value="visual")),
        (pm.add_interest, pm.InterestData(interest_name="Robotics")),
        (pm.add_struggle, pm.StruggleData(struggle_description="Fractions")),
        (pm.add_or_update_cognitive_metric, pm.CognitiveMetricData(task_name="t", metric_details={"a": 1})),
        (pm.add_or_update_lo_progress, pm.LOProgressData(lo_id="LO1", status="completed", score=9.5, details={})),
        (pm.add_badge_record, pm.BadgeData(badge_id="b1", badge_name="Badge", details="d")),
        (
            pm.add_activity_attempt,
            pm.ActivityAttemptData(lo_id="LO1", activity_id="a", activity_type="quiz", score=8, completed=True),
        ),
    ]
    for writer, dto in writers:
        found.append(Case(writer.__name__, writer, {"learner_id": "fuzz-pm", "data": dto, "store": store}))

        def with_field(writer: Callable[..., bool] = writer, dto: pm.RowData = dto, **fields: Any) -> bool:
            constructed = type(dto).model_construct(**{**dto.model_dump(), **fields})
            return writer("fuzz-pm", constructed, store=store)

        good_fields = {name: getattr(dto, name) for name in type(dto).model_fields}
        found.append(Case(f"{writer.__name__}(data fields)", with_field, good_fields))
    return found


@dataclass
class Outcome:
    calls: int = 0
    accepted: int = 0
    refused: int = 0


@pytest.mark.slow
def test_every_public_function_refuses_hostile_values_with_the_packages_errors(
    store: SqlEventStore, record_property: Callable[[str, object], None]
) -> None:
    outcome = Outcome()
    wrong: list[str] = []
    for case in cases(store):
        for argument in case.good:
            for value in HOSTILE:
                kwargs = {name: good.make() if isinstance(good, Lazy) else good for name, good in case.good.items()}
                kwargs[argument] = value
                outcome.calls += 1
                try:
                    _drain(case.call(**kwargs))
                except DalaError:
                    outcome.refused += 1
                except BaseException as error:  # anything else is the finding
                    shown = repr(value)
                    wrong.append(
                        f"{case.name}({argument}={shown[:50]}{'...' if len(shown) > 50 else ''}): "
                        f"{type(error).__name__}: {str(error)[:150]}"
                    )
                else:
                    outcome.accepted += 1

    # what was accepted stays readable, through every path
    learners = {recorded.learner_id for recorded in store.read_all()}
    for learner_id in sorted(learners):
        audit.history(learner_id, store=store)
        audit.profile_as_of(learner_id, version=store.stream_version(learner_id), store=store)
        try:
            LearnerProfile.load(learner_id, store=store)
        except DalaError as error:  # a deleted learner is not found, which is fine
            assert type(error).__name__ == "LearnerNotFound", error
    rebuild(store.engine, cipher=store.cipher)

    backend = store.engine.dialect.name
    for name, count in vars(outcome).items():
        record_property(f"fuzz_{backend}_{name}", count)
    print(
        f"\n[{backend}] fuzz: {outcome.calls} calls, {outcome.accepted} accepted, {outcome.refused} refused "
        f"with the package's errors, {len(wrong)} refused otherwise; {len(learners)} learners read back"
    )
    assert wrong == []
