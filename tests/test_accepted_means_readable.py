"""Accepted means readable: whatever a mutation is given, it is refused with the package's error
and nothing is written, or it is accepted and reads back equal through every path.

On SQLite and PostgreSQL, Hypothesis throws arbitrary values at every field of every mutation
(text with NUL and lone surrogates, bytes, any integer, NaN and infinities, nested JSON of any
depth, None, datetimes of any year and offset, hostile attribution). After each learner's plan:

- every refused call raised InvalidInput or LearnerNotFound and left the stream version alone;
- audit.history gives back exactly the events accepted (payload, id, time, metadata);
- the inline read models, audit.profile_as_of and a reload in this process equal the aggregate.

After all the examples of a backend: a rebuild leaves the read models row for row as the inline
projection left them, and the learners reloaded in a fresh process equal the aggregates.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dala_events import audit
from dala_events import persistence_manager as pm
from dala_events.attribution import occurring_at, recorded_as
from dala_events.envelopes import NewEvent
from dala_events.errors import InvalidInput, LearnerNotFound
from dala_events.events import LO_STATUSES, MAX_JSON_DEPTH, MAX_JSON_INT, MIN_JSON_INT
from dala_events.hlp_module import LearnerProfile
from dala_events.store import SqlEventStore
from projections.database_models import SECTIONS
from projections.dtos import FullLearnerProfileData
from projections.rebuild import rebuild
from tests.helpers import key_environment, read_model_rows

# ---------------------------------------------------------------------------------------------
# Values: some the log takes, many it must refuse
# ---------------------------------------------------------------------------------------------

storable_char = st.characters(codec="utf-8", exclude_characters="\x00")
# Any text: the characters that matter (NUL, lone surrogates, spaces, non-ASCII) come often.
any_text = st.text(st.sampled_from(["\x00", "\ud800", "\udfff", " ", "a", "é", "😀"]) | st.characters(), max_size=12)
offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
)
any_datetime = st.datetimes(timezones=st.none() | st.just(UTC) | offsets)  # years 1..9999, naive too

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | any_text
json_any = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3),
    max_leaves=10,
)
json_storable_scalars = (
    st.none()
    | st.booleans()
    | st.integers(MIN_JSON_INT, MAX_JSON_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(storable_char, max_size=12)
)
json_storable = st.dictionaries(
    st.text(storable_char, max_size=6),
    st.recursive(
        json_storable_scalars,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(st.text(storable_char, max_size=6), children, max_size=3)
        ),
        max_leaves=10,
    ),
    max_size=4,
)


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


deep_json = st.integers(MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 3).map(_nested) | st.just(_nested(200))

hostile = st.one_of(
    st.none(),
    any_text,
    st.text(st.characters(), min_size=495, max_size=505),
    st.binary(max_size=8),
    st.builds(bytearray, st.binary(max_size=4)),
    st.integers(),
    st.sampled_from([2**63, 2**31, -1, 2**63 - 1, -(2**63) - 1]),
    st.floats(),
    st.booleans(),
    any_datetime,
    json_any,
    st.lists(any_text, max_size=2),
)


def field_of(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly (four times in five) values of the field's kind, the rest anything at all."""
    return st.integers(0, 4).flatmap(lambda n: hostile if n == 0 else good)


names = st.one_of(
    st.sampled_from(["Robotics", " Music ", "Dinosaurs", "é😀", "x" * 500, "Fractions"]),
    st.text(storable_char, min_size=1, max_size=12),
    any_text,
)
ids = st.sampled_from(["LO1", "LO2", "b1", "b2", "quiz"]) | st.text(storable_char, min_size=1, max_size=8)
scores = st.none() | st.floats(0, 100) | st.integers(0, 100) | st.floats() | st.integers() | any_text
details = st.none() | json_storable | json_storable | json_any.filter(lambda v: isinstance(v, dict)) | deep_json
statuses = st.sampled_from(LO_STATUSES)

mutation = st.one_of(
    st.tuples(st.just("update_preference"), field_of(names), field_of(names)),
    st.tuples(st.just("remove_preference"), field_of(names)),
    st.tuples(st.just("add_interest"), field_of(names)),
    st.tuples(st.just("remove_interest"), field_of(names)),
    st.tuples(st.just("add_struggle_area"), field_of(names)),
    st.tuples(st.just("remove_struggle_area"), field_of(names)),
    st.tuples(st.just("add_cognitive_metric"), field_of(names), field_of(details)),
    st.tuples(st.just("start_lo"), field_of(ids)),
    st.tuples(st.just("update_lo_progress"), field_of(ids), field_of(statuses), field_of(scores), field_of(details)),
    st.tuples(st.just("mark_lo_completed"), field_of(ids), field_of(scores), field_of(details)),
    st.tuples(st.just("add_badge"), field_of(ids), field_of(names), field_of(st.none() | names)),
    st.tuples(st.just("revoke_badge"), field_of(ids)),
    st.tuples(
        st.just("record_activity_attempt"),
        field_of(ids),
        field_of(ids),
        field_of(ids),
        field_of(scores),
        field_of(st.booleans()),
        field_of(details),
    ),
    st.tuples(st.just("delete")),
    st.tuples(st.just("recreate")),
)
attribution = (
    st.none()
    | st.none()
    | st.none()
    | st.fixed_dictionaries(
        {},
        optional={
            "actor": field_of(st.sampled_from(["teacher:42", "learner:student123", "system"])),
            "reason": field_of(st.sampled_from(["parent meeting", "x" * 1000]) | any_text),
            "correlation_id": field_of(st.sampled_from(["job-1", "c" * 200]) | st.uuids().map(str)),
        },
    )
)
when = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.datetimes(max_value=datetime(2025, 1, 1), timezones=st.just(UTC) | offsets),
    any_datetime,
)
step = st.tuples(mutation, attribution, when)
past = st.datetimes(min_value=datetime(1, 1, 3), max_value=datetime(2025, 1, 1), timezones=st.just(UTC) | offsets)
"""Times the log takes: a whole plan may happen at one of them (a record typed in later)."""

# ---------------------------------------------------------------------------------------------
# One comparable shape for the aggregate, the DTOs and a fresh process
# ---------------------------------------------------------------------------------------------


def canonical(value: Any) -> Any:
    """A value in a shape that compares by type and value: -0.0 is 0.0, times are UTC, JSON
    scalars keep their type (True is not 1), objects compare without their key order."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int):
        return (type(value).__name__, value)
    if isinstance(value, float):
        return ("float", value + 0.0)
    if isinstance(value, datetime):
        return ("datetime", value.astimezone(UTC))
    if isinstance(value, date):
        return ("date", value)
    if isinstance(value, Mapping):
        return ("object", tuple(sorted((key, canonical(item)) for key, item in value.items())))
    if isinstance(value, list | tuple):
        return ("array", tuple(canonical(item) for item in value))
    raise AssertionError(f"unexpected {type(value).__name__} in a profile")


def _section(rows: list[dict[str, Any]]) -> list[Any]:
    shaped = [tuple(sorted((name, canonical(value)) for name, value in row.items())) for row in rows]
    return sorted(shaped, key=repr)


def dto_shape(profile: FullLearnerProfileData | None) -> dict[str, Any] | None:
    """A profile from the read models (or an as-of view) in the comparable shape."""
    if profile is None:
        return None
    shape: dict[str, Any] = {
        "created_at": canonical(profile.created_at),
        "last_updated_at": canonical(profile.last_updated_at),
    }
    for section in SECTIONS:
        rows = [row.model_dump(exclude={"learner_id"}) for row in getattr(profile, section)]
        shape[section] = _section(rows)
    return shape


def aggregate_shape(profile: LearnerProfile) -> dict[str, Any] | None:
    """The aggregate's state in the comparable shape (None for a deleted profile)."""
    if not profile.exists:
        return None
    state = profile.state
    return {
        "created_at": canonical(state.created_at),
        "last_updated_at": canonical(state.last_updated_at),
        "preferences": _section(
            [{"category": p.category, "value": p.value, "timestamp": p.timestamp} for p in state.preferences.values()]
        ),
        "interests": _section([{"interest_name": n, "timestamp": t} for n, t in state.interests.items()]),
        "struggles": _section([{"struggle_description": d, "timestamp": t} for d, t in state.struggles.items()]),
        "cognitive_metrics": _section(
            [
                {"task_name": m.task_name, "metric_details": m.metric_details, "timestamp": m.timestamp}
                for m in state.cognitive_metrics.values()
            ]
        ),
        "lo_progress": _section(
            [
                {
                    "lo_id": lo.lo_id,
                    "status": lo.status,
                    "started_at": lo.started_at,
                    "completed_at": lo.completed_at,
                    "score": lo.score,
                    "details": lo.details,
                }
                for lo in state.lo_progress.values()
            ]
        ),
        "badges": _section(
            [
                {"badge_id": b.badge_id, "badge_name": b.badge_name, "earned_date": b.earned_date, "details": b.details}
                for b in state.badges.values()
            ]
        ),
        "activity_attempts": _section(
            [
                {
                    "lo_id": a.lo_id,
                    "activity_id": a.activity_id,
                    "activity_type": a.activity_type,
                    "attempt_timestamp": a.attempt_timestamp,
                    "score": a.score,
                    "completed": a.completed,
                    "attempt_details": a.attempt_details,
                }
                for a in state.activity_attempts
            ]
        ),
    }


def reload_shapes(
    database_url: str, learner_ids: list[str], key_env: dict[str, str]
) -> dict[str, dict[str, Any] | None]:
    """Run in a fresh process: load each learner from scratch and give its comparable shape
    (with the caller's key store, `key_env`)."""
    import os

    from dala_events.database_setup import create_dala_engine, store_for

    os.environ.update(key_env)
    engine = create_dala_engine(database_url)
    try:
        store = store_for(engine)
        shapes: dict[str, dict[str, Any] | None] = {}
        for learner_id in learner_ids:
            try:
                shapes[learner_id] = aggregate_shape(LearnerProfile.load(learner_id, store=store))
            except LearnerNotFound:
                shapes[learner_id] = None
        return shapes
    finally:
        engine.dispose()


def envelope(new: NewEvent) -> tuple[Any, ...]:
    return (new.event, new.event_id, canonical(new.occurred_at), dict(new.metadata))


# ---------------------------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    calls: int = 0
    accepted: int = 0
    refused: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    expected: dict[str, dict[str, Any] | None] = field(default_factory=dict)


_runs = itertools.count()


@pytest.fixture(scope="module")
def fresh_process() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def run_plan(
    store: SqlEventStore, learner_id: str, plan: list[tuple[Any, ...]], then: datetime | None, tally: Tally
) -> None:
    profile = LearnerProfile(learner_id, persistence_enabled=False, store=store)
    written: list[NewEvent] = list(profile.pending)
    profile.save()
    with ExitStack() as whole_plan:
        if then is not None:
            whole_plan.enter_context(occurring_at(then))
        profile = run_steps(store, profile, plan, written, tally)
    check_read_back(store, profile, written, tally)


def run_steps(
    store: SqlEventStore, profile: LearnerProfile, plan: list[tuple[Any, ...]], written: list[NewEvent], tally: Tally
) -> LearnerProfile:
    learner_id = profile.learner_id
    for (method, *args), attributed, moment in plan:
        if method == "recreate" and profile.exists:
            continue  # nothing to call
        tally.calls += 1
        version = store.stream_version(learner_id)
        assert version == profile.version
        try:
            with ExitStack() as block:
                if attributed is not None:
                    block.enter_context(recorded_as(**attributed))
                if moment is not None:
                    block.enter_context(occurring_at(moment))
                if method == "recreate":
                    profile = LearnerProfile(learner_id, persistence_enabled=False, store=store)
                else:
                    getattr(profile, method)(*args)
        except (InvalidInput, LearnerNotFound) as error:
            tally.refused += 1
            key = f"{type(error).__name__}:{getattr(error, 'field', '')}"
            tally.refusals[key] = tally.refusals.get(key, 0) + 1
            assert store.stream_version(learner_id) == version, "a refused call wrote"
            assert profile.version == version and profile.pending == (), "a refused call recorded"
            continue
        tally.accepted += 1
        written.extend(profile.pending)
        profile.save()
        assert store.stream_version(learner_id) == profile.version
    return profile


def check_read_back(store: SqlEventStore, profile: LearnerProfile, written: list[NewEvent], tally: Tally) -> None:
    learner_id = profile.learner_id
    expected = aggregate_shape(profile)
    tally.expected[learner_id] = expected
    # the log gives back exactly what was accepted
    assert [envelope(recorded) for recorded in audit.history(learner_id, store=store)] == [
        envelope(new) for new in written
    ]
    # the inline read models, the as-of view and a reload here equal the aggregate
    assert dto_shape(pm.get_full_learner_profile_data(learner_id, store=store)) == expected
    as_of = audit.profile_as_of(learner_id, version=store.stream_version(learner_id), store=store)
    assert dto_shape(as_of) == expected
    if expected is not None:
        assert aggregate_shape(LearnerProfile.load(learner_id, store=store)) == expected


@pytest.mark.slow
def test_accepted_means_readable_through_every_path(
    store: SqlEventStore, database_url: str, fresh_process: ProcessPoolExecutor
) -> None:
    tally = Tally()
    run = next(_runs)
    learners = itertools.count()

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(plan=st.lists(step, min_size=1, max_size=12), then=st.none() | past)
    def one_learner(plan: list[tuple[Any, ...]], then: datetime | None) -> None:
        run_plan(store, f"r{run}-learner{next(learners)}", plan, then, tally)

    one_learner()

    # a rebuild leaves the read models as the inline projection did, row for row
    inline_rows = read_model_rows(store.engine)
    rebuild(store.engine, cipher=store.cipher)
    assert read_model_rows(store.engine) == inline_rows
    for learner_id, expected in tally.expected.items():
        assert dto_shape(pm.get_full_learner_profile_data(learner_id, store=store)) == expected
    # a fresh process reads every learner back equal
    reloaded = fresh_process.submit(reload_shapes, database_url, list(tally.expected), key_environment()).result(
        timeout=300
    )
    assert reloaded == tally.expected

    print(
        f"\n[{store.engine.dialect.name}] accepted-means-readable: {tally.calls} calls, "
        f"{tally.accepted} accepted, {tally.refused} refused, {len(tally.expected)} learners; "
        f"refusals by error:field {dict(sorted(tally.refusals.items()))}"
    )
    assert tally.accepted and tally.refused
