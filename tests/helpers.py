"""Shared test helpers: snapshots of the read models and of an aggregate, in one comparable shape."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun import freeze_time
from sqlalchemy import Engine, select

from dala_events.attribution import occurring_at, recorded_as
from dala_events.database_setup import configured_cipher
from dala_events.hlp_module import LearnerProfile
from dala_events.store import EventStore, event_log
from projections.database_models import READ_MODEL_METADATA


def read_model_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the eight tables, surrogate id left out, sorted: what 'equal tables' means."""
    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for table in READ_MODEL_METADATA.sorted_tables:
            columns = [c for c in table.columns if not (c.name == "id" and table.name != "learner_profiles")]
            rows = connection.execute(select(*columns)).all()
            snapshot[table.name] = sorted(tuple(repr(v) for v in row) for row in rows)
    return snapshot


def log_row_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return len(connection.execute(select(event_log.c.position)).all())


def aggregate_snapshot(profile: LearnerProfile) -> dict[str, Any]:
    """An aggregate's state, put in the read models' DTO shape and snapshotted like them."""
    from dala_events import persistence_manager as pm

    state = profile.state
    data = pm.FullLearnerProfileData.model_construct(
        learner_id=profile.learner_id,
        created_at=state.created_at,
        last_updated_at=state.last_updated_at,
        preferences=[pm.PreferenceData.model_construct(**vars_of(p)) for p in state.preferences.values()],
        interests=[pm.InterestData.model_construct(interest_name=n, timestamp=t) for n, t in state.interests.items()],
        struggles=[
            pm.StruggleData.model_construct(struggle_description=d, timestamp=t) for d, t in state.struggles.items()
        ],
        cognitive_metrics=[
            pm.CognitiveMetricData.model_construct(**vars_of(m)) for m in state.cognitive_metrics.values()
        ],
        lo_progress=[pm.LOProgressData.model_construct(**vars_of(lo)) for lo in state.lo_progress.values()],
        badges=[pm.BadgeData.model_construct(**vars_of(b)) for b in state.badges.values()],
        activity_attempts=[pm.ActivityAttemptData.model_construct(**vars_of(a)) for a in state.activity_attempts],
    )
    snapshot = profile_snapshot(data)
    assert snapshot is not None
    return snapshot


def vars_of(record: Any) -> dict[str, Any]:
    """The fields of a slotted state dataclass."""
    return {name: getattr(record, name) for name in record.__slots__}


def profile_snapshot(data: Any) -> dict[str, Any] | None:
    """A FullLearnerProfileData (or None) in the shape of `aggregate_snapshot`."""
    if data is None:
        return None
    return {
        "created_at": data.created_at,
        "last_updated_at": data.last_updated_at,
        "preferences": sorted((p.category, p.value, p.timestamp) for p in data.preferences),
        "interests": sorted((i.interest_name, i.timestamp) for i in data.interests),
        "struggles": sorted((s.struggle_description, s.timestamp) for s in data.struggles),
        "cognitive_metrics": sorted(
            (m.task_name, repr(sorted(m.metric_details.items())), m.timestamp) for m in data.cognitive_metrics
        ),
        "lo_progress": sorted(
            (lo.lo_id, lo.status, lo.started_at, lo.completed_at, lo.score, repr(lo.details)) for lo in data.lo_progress
        ),
        "badges": sorted((b.badge_id, b.badge_name, b.earned_date, b.details) for b in data.badges),
        "activity_attempts": sorted(
            (
                a.lo_id,
                a.activity_id,
                a.activity_type,
                a.attempt_timestamp,
                a.score,
                a.completed,
                repr(a.attempt_details),
            )
            for a in data.activity_attempts
        ),
    }


def reload_snapshots(
    database_url: str, learner_ids: list[str], key_env: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Run in a fresh process: load each learner from scratch and snapshot its state (with the
    key store's variables `key_env` of the caller, see `key_environment`)."""
    import os

    from dala_events.database_setup import create_dala_engine, store_for

    os.environ.update(key_env or {})
    engine = create_dala_engine(database_url)
    try:
        store = store_for(engine)
        return {
            learner_id: aggregate_snapshot(LearnerProfile.load(learner_id, store=store)) for learner_id in learner_ids
        }
    finally:
        engine.dispose()


def hammer(database_url: str, worker: int, rounds: int) -> int:
    """Run in a child process: write to its own learner and to a shared one, retrying on conflicts."""
    from dala_events.database_setup import create_dala_engine, store_for
    from dala_events.errors import ConcurrencyError

    engine = create_dala_engine(database_url)
    store = store_for(engine)
    conflicts = 0
    try:
        for n in range(rounds):
            LearnerProfile(f"own-{worker}", store=store).add_interest(f"interest {n}")
            while True:
                shared = LearnerProfile("shared", persistence_enabled=False, store=store)
                shared.add_interest(f"worker {worker} item {n}")
                shared.record_activity_attempt("LO1", f"w{worker}-{n}", "quiz", score=n)
                try:
                    shared.save()
                    break
                except ConcurrencyError:
                    conflicts += 1
        return conflicts
    finally:
        engine.dispose()


def hot_writer(database_url: str, worker: int, rounds: int) -> int:
    """Run in a child process: record `rounds` activity attempts of the shared learner "hot"
    through the persistence manager's writers (commands that retry on conflicts); returns how
    often a command had to catch up with another writer."""
    from dala_events import persistence_manager as pm
    from dala_events.database_setup import create_dala_engine, store_for
    from dala_events.repository import LearnerRepository

    caught_up = 0
    catch_up = LearnerRepository.catch_up

    def counted(self: LearnerRepository, aggregate: Any) -> None:
        nonlocal caught_up
        caught_up += 1
        catch_up(self, aggregate)

    LearnerRepository.catch_up = counted  # type: ignore[method-assign]
    engine = create_dala_engine(database_url)
    store = store_for(engine)
    try:
        for n in range(rounds):
            attempt = pm.ActivityAttemptData(
                lo_id="LO1", activity_id=f"w{worker}-{n}", activity_type="quiz", score=float(n), completed=True
            )
            assert pm.add_activity_attempt("hot", attempt, store=store)
        return caught_up
    finally:
        engine.dispose()


def rebuild_after_adding_a_badge_column(database_url: str) -> dict[str, Any]:
    """Run in a fresh process: the code's badges table gains `earned_at` (the full time, filled
    from each BadgeAwarded's occurred_at, which the log always had); start-up notices, a rebuild
    of badges fills the column for history written before the change."""
    import os

    from sqlalchemy import Column

    from dala_events.database_setup import close_db, init_db
    from dala_events.dialects import UTCDateTime
    from dala_events.errors import SchemaMismatchError
    from dala_events.events import BadgeAwarded
    from projections.projectors import PROJECTORS, RowChanges, badges
    from projections.rebuild import rebuild

    badges.append_column(Column("earned_at", UTCDateTime(), nullable=True))

    def project_badge_awarded_v2(event: BadgeAwarded, learner_id: str, at: Any, changes: RowChanges) -> None:
        row = {
            "learner_id": learner_id,
            "badge_id": event.badge_id,
            "badge_name": event.badge_name,
            "earned_date": at.date(),
            "details": event.details,
            "earned_at": at,
        }
        changes.upsert(badges, row)

    PROJECTORS[BadgeAwarded] = project_badge_awarded_v2
    os.environ["DALA_AUTO_REBUILD"] = "0"
    try:
        init_db(database_url)
        refused = ""
    except SchemaMismatchError as error:
        refused = str(error)
    engine = init_db(database_url, check_projections=False)
    result = rebuild(engine, projections=["badges"], cipher=configured_cipher(engine))
    with engine.connect() as connection:
        filled = [tuple(row) for row in connection.execute(select(badges.c.badge_id, badges.c.earned_at)).all()]
    init_db(database_url)  # no complaint any more
    close_db()
    return {"refused": refused, "rebuilt": result.projections, "filled": sorted(filled)}


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def varied_learner(store: EventStore) -> LearnerProfile:
    """`ann`, with something of every kind an export shows: interests, objectives started,
    progressed, completed with a score on either side of 60 and without one, and set back;
    attempts completed or not, scored or not; badges earned and revoked; an attempt entered a
    day after it happened. Each change at its own frozen time, T0 (2026-03-02 09:00 UTC) onwards."""
    with freeze_time(T0), recorded_as("teacher:42", reason="initial interview"):
        profile = LearnerProfile("ann", store=store)
        profile.add_interest("Robotics")
    with freeze_time(T0 + timedelta(days=1)), recorded_as("learner:ann"):
        profile.start_lo("MATH_LO_001")
        profile.record_activity_attempt("MATH_LO_001", "quiz 1/ü", "quiz", score=80.0, completed=True)
        profile.record_activity_attempt("MATH_LO_001", "practice-2", "practice", score=30.0, completed=False)
        profile.record_activity_attempt("MATH_LO_001", "reading-3", "reading")
    with freeze_time(T0 + timedelta(days=2)), recorded_as("system:pathway"):
        profile.update_lo_progress("MATH_LO_001", "in_progress", score=55.0)
        profile.mark_lo_completed("MATH_LO_001", score=75.0)
        profile.mark_lo_completed("Maths / Year 3", score=59.5)
        profile.mark_lo_completed("ART_LO_009")
        profile.update_lo_progress("SCI_LO_002", "in_progress")
        profile.update_lo_progress("SCI_LO_002", "not_started")
    with freeze_time(T0 + timedelta(days=3)), recorded_as("system:badges"):
        profile.add_badge("trail blazer", "Trailblazer", details="Completed number bonds")
        profile.add_badge("b2", "Second")
        profile.revoke_badge("b2")
    with freeze_time(T0 + timedelta(days=5)), occurring_at(T0 + timedelta(days=4)), recorded_as("teacher:42"):
        profile.record_activity_attempt("MATH_LO_001", "paper-test", "test", score=100.0, completed=True)
    return profile


def key_environment() -> dict[str, str]:
    """The key store's variables of this process, for a fresh process to use the same key store."""
    import os

    names = ("DALA_KEY_STORE", "DALA_MASTER_KEY", "DALA_MASTER_KEY_FILE")
    return {name: os.environ[name] for name in names if name in os.environ}


@contextmanager
def when_the_rebuild_waits(answer: Callable[[str], None]) -> Iterator[None]:
    """Call `answer` with the message each time a rebuild says it waits for its locks (on the
    `dala_events.rebuild` logger): how a test acts on that wait without sleeping or polling."""

    class Answering(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("rebuild waiting for"):
                answer(message)

    logger = logging.getLogger("dala_events.rebuild")
    handler, level = Answering(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
