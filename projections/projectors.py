"""Event -> read-model row changes: one small function per event type, and the buffer they write to.

The same code serves the inline projection of each append, a full rebuild and the as-of views:
each runs `apply_events` over some events into a `RowChanges` buffer and flushes it. Projectors
copy values out of events and never decide anything (the aggregate already did), and every
timestamp they write is the event's occurred_at, so replaying the log reproduces the tables
exactly.

Projectors do not talk to a database. They record changes in a `RowChanges` buffer that keeps
only the net change per row (a row upserted then deleted in one batch is just deleted) and
hands them, table by table, to a `RowWriter`: `SqlRowWriter` writes each table's changes with
one executemany per kind of statement; `projections.memory.MemoryReadModels` keeps rows in
dictionaries, for unit tests on the in-memory store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Dialect, Table, and_, bindparam

from dala_events.dialects import DriverStatement, upsert, written_columns
from dala_events.envelopes import ProjectableEvent
from dala_events.events import (
    EVENT_TYPES,
    ActivityAttemptRecorded,
    BadgeAwarded,
    BadgeRevoked,
    CognitiveMetricRecorded,
    DomainEvent,
    ErasedContent,
    InterestAdded,
    InterestRemoved,
    LearnerErased,
    LearnerProfileCreated,
    LearnerProfileDeleted,
    LearningObjectiveCompleted,
    LearningObjectiveEvent,
    LearningObjectiveProgressUpdated,
    LearningObjectiveStarted,
    PreferenceRemoved,
    PreferenceSet,
    StruggleAreaAdded,
    StruggleAreaRemoved,
)
from projections.database_models import (
    PARENT,
    READ_MODELS,
    DBActivityAttempt,
    DBBadge,
    DBCognitiveMetric,
    DBInterest,
    DBLearnerProfile,
    DBLearningObjectiveProgress,
    DBPreference,
    DBStruggle,
)

learner_profiles: Table = DBLearnerProfile.__table__  # type: ignore[assignment]
preferences: Table = DBPreference.__table__  # type: ignore[assignment]
interests: Table = DBInterest.__table__  # type: ignore[assignment]
struggles: Table = DBStruggle.__table__  # type: ignore[assignment]
cognitive_metrics: Table = DBCognitiveMetric.__table__  # type: ignore[assignment]
learning_objective_progress: Table = DBLearningObjectiveProgress.__table__  # type: ignore[assignment]
badges: Table = DBBadge.__table__  # type: ignore[assignment]
activity_attempts: Table = DBActivityAttempt.__table__  # type: ignore[assignment]

_NATURAL_KEYS: dict[str, tuple[str, ...]] = {model.name: model.natural_key for model in READ_MODELS}
_ORDER: tuple[str, ...] = tuple(model.name for model in READ_MODELS)

Row = dict[str, Any]
Key = tuple[Any, ...]


class RowWriter(Protocol):
    """Where a `RowChanges` buffer writes: one read-model set (live, shadow, scratch or memory)."""

    @property
    def names(self) -> frozenset[str]:
        """The read models written; changes to others are dropped."""
        ...

    def upsert(self, name: str, rows: list[Row]) -> None:
        """Insert each row, or replace the row with its natural key."""

    def delete(self, name: str, keys: list[Row]) -> None:
        """Delete the rows with these natural-key values (column -> value)."""

    def insert(self, name: str, rows: list[Row]) -> None:
        """Add rows to an insert-only table."""

    def touch(self, moments: Mapping[str, datetime]) -> None:
        """Set each learner's last_updated_at."""

    def delete_learner(self, learner_id: str) -> None:
        """Remove every row of the learner, children first."""


class TableSet:
    """Where projected rows go in a database: the physical table of each read model written.

    The inline projection writes the live tables; a rebuild writes shadow copies of some of
    them. The statements for each dialect are compiled once per set.
    """

    def __init__(self, tables: Mapping[str, Table]) -> None:
        unknown = set(tables) - set(_ORDER)
        if unknown:
            raise ValueError(f"not read models: {sorted(unknown)}")
        self.tables: dict[str, Table] = {name: tables[name] for name in _ORDER if name in tables}
        self.names: frozenset[str] = frozenset(self.tables)
        self._statements: dict[tuple[str, str], _Statements] = {}

    def statements(self, dialect: Dialect) -> _Statements:
        """The compiled statements of this set for `dialect`."""
        key = (dialect.name, dialect.driver)
        statements = self._statements.get(key)
        if statements is None:
            statements = self._statements[key] = _Statements(self, dialect)
        return statements


_live: TableSet | None = None


def live_tables() -> TableSet:
    """The live read-model tables: where the inline projection writes."""
    global _live
    if _live is None:
        _live = TableSet({model.name: model.table for model in READ_MODELS})
    return _live


class SqlRowWriter:
    """A `RowWriter` on a database connection, writing to the tables of a `TableSet`."""

    def __init__(self, connection: Connection, targets: TableSet | None = None) -> None:
        self.connection = connection
        self.targets = targets or live_tables()
        self.names = self.targets.names
        self._statements = self.targets.statements(connection.dialect)

    def upsert(self, name: str, rows: list[Row]) -> None:
        """See `RowWriter.upsert`."""
        self._statements.upsert[name].execute(self.connection, rows)

    def delete(self, name: str, keys: list[Row]) -> None:
        """See `RowWriter.delete`."""
        rows = [{f"key_{column}": value for column, value in key.items()} for key in keys]
        self._statements.delete[name].execute(self.connection, rows)

    def insert(self, name: str, rows: list[Row]) -> None:
        """See `RowWriter.insert`."""
        self._statements.insert[name].execute(self.connection, rows)

    def touch(self, moments: Mapping[str, datetime]) -> None:
        """See `RowWriter.touch`."""
        if self._statements.touch is not None:
            rows = [{"key_id": learner_id, "last_updated_at": at} for learner_id, at in moments.items()]
            self._statements.touch.execute(self.connection, rows)

    def delete_learner(self, learner_id: str) -> None:
        """See `RowWriter.delete_learner`."""
        for name in reversed(self.targets.tables):
            self._statements.delete_learner[name].execute(self.connection, [{"key_learner_id": learner_id}])


class RowChanges:
    """The net row changes of a run of events, handed to a `RowWriter` by `flush`.

    Upserts and deletes are kept per table and natural key, last one wins, so a batch writes
    each row at most once; inserts are kept in order. `touch` moves a profile's
    last_updated_at, once per learner per flush. Changes to read models the writer does not
    hold are dropped.
    """

    def __init__(self, writer: RowWriter) -> None:
        self.writer = writer
        self._written = writer.names
        self._upserts: dict[str, dict[Key, Row]] = {}
        self._deletes: dict[str, dict[Key, Row]] = {}
        self._inserts: dict[str, list[Row]] = {}
        self._touched: dict[str, datetime] = {}

    def upsert(self, table: Table, row: Row) -> None:
        """Make the row identified by its natural key hold `row` (insert or update)."""
        name = table.name
        if name not in self._written:
            return
        key = tuple(row[column] for column in _NATURAL_KEYS[name])
        deletes = self._deletes.get(name)
        if deletes:
            deletes.pop(key, None)
        self._upserts.setdefault(name, {})[key] = row

    def delete(self, table: Table, row_key: Row) -> None:
        """Remove the row whose natural key columns hold the values in `row_key`."""
        name = table.name
        if name not in self._written:
            return
        key = tuple(row_key[column] for column in _NATURAL_KEYS[name])
        upserts = self._upserts.get(name)
        if upserts:
            upserts.pop(key, None)
        # Deleted even when upserted in this batch: the row may have existed before it.
        self._deletes.setdefault(name, {})[key] = row_key

    def insert(self, table: Table, row: Row) -> None:
        """Add a row to an insert-only table."""
        if table.name in self._written:
            self._inserts.setdefault(table.name, []).append(row)

    def touch(self, learner_id: str, at: datetime) -> None:
        """Move the learner's last_updated_at to `at`."""
        self._touched[learner_id] = at

    def delete_learner(self, learner_id: str) -> None:
        """Remove every row of the learner from the written tables, after what is pending."""
        self.flush()
        self._touched.pop(learner_id, None)
        self.writer.delete_learner(learner_id)

    def flush(self) -> None:
        """Write everything pending (parents first) and start empty."""
        writer = self.writer
        profiles = self._upserts.pop(PARENT, None)
        if profiles:
            for (learner_id,), row in profiles.items():
                touched_at = self._touched.pop(learner_id, None)
                if touched_at is not None:
                    row["last_updated_at"] = touched_at
            writer.upsert(PARENT, list(profiles.values()))
        for name in _ORDER:
            if name == PARENT:
                continue
            deletes = self._deletes.pop(name, None)
            if deletes:
                writer.delete(name, list(deletes.values()))
            upserts = self._upserts.pop(name, None)
            if upserts:
                writer.upsert(name, list(upserts.values()))
            inserts = self._inserts.pop(name, None)
            if inserts:
                writer.insert(name, inserts)
        if self._touched:
            if PARENT in self._written:
                writer.touch(self._touched)
            self._touched = {}


class _Statements:
    """The statements a SqlRowWriter executes on one table set, compiled for one dialect."""

    def __init__(self, targets: TableSet, dialect: Dialect) -> None:
        self.upsert: dict[str, DriverStatement] = {}
        self.delete: dict[str, DriverStatement] = {}
        self.insert: dict[str, DriverStatement] = {}
        self.delete_learner: dict[str, DriverStatement] = {}
        self.touch: DriverStatement | None = None
        for model in READ_MODELS:
            table = targets.tables.get(model.name)
            if table is None:
                continue
            columns = written_columns(table)
            learner_column = table.c.id if model.name == PARENT else table.c.learner_id
            self.delete_learner[model.name] = DriverStatement(
                table.delete().where(learner_column == bindparam("key_learner_id")), dialect
            )
            if model.insert_only:
                self.insert[model.name] = DriverStatement(table.insert(), dialect, columns=columns)
                continue
            keys = model.natural_key
            self.upsert[model.name] = DriverStatement(upsert(table, keys, dialect.name), dialect, columns=columns)
            self.delete[model.name] = DriverStatement(
                table.delete().where(and_(*(table.c[column] == bindparam(f"key_{column}") for column in keys))),
                dialect,
            )
            if model.name == PARENT:
                self.touch = DriverStatement(
                    table.update()
                    .where(table.c.id == bindparam("key_id"))
                    .values(last_updated_at=bindparam("last_updated_at")),
                    dialect,
                )


# ---------------------------------------------------------------------------------------------
# One projector per event type
# ---------------------------------------------------------------------------------------------

E = TypeVar("E", bound=DomainEvent)
Projector = Callable[[Any, str, datetime, RowChanges], None]

PROJECTORS: dict[type[DomainEvent], Projector] = {}
"""The projector of each event type."""


def projects(*event_types: type[E]) -> Callable[[Callable[[E, str, datetime, RowChanges], None]], Projector]:
    """Register the decorated function as the projector of `event_types`."""

    def register(function: Callable[[E, str, datetime, RowChanges], None]) -> Projector:
        for event_type in event_types:
            if event_type in PROJECTORS:
                raise ValueError(f"{event_type.__name__} already has a projector")
            PROJECTORS[event_type] = function
        return function

    return register


@projects(LearnerProfileCreated)
def project_learner_profile_created(
    _event: LearnerProfileCreated, learner_id: str, at: datetime, changes: RowChanges
) -> None:
    changes.upsert(learner_profiles, {"id": learner_id, "created_at": at, "last_updated_at": at})


@projects(LearnerProfileDeleted)
def project_learner_profile_deleted(
    _event: LearnerProfileDeleted, learner_id: str, _at: datetime, changes: RowChanges
) -> None:
    changes.delete_learner(learner_id)


@projects(LearnerErased)
def project_learner_erased(_event: LearnerErased, learner_id: str, _at: datetime, changes: RowChanges) -> None:
    """As a deletion: every read-model row of the learner goes (the log keeps the envelopes)."""
    changes.delete_learner(learner_id)


@projects(ErasedContent)
def project_erased_content(_event: ErasedContent, _learner_id: str, _at: datetime, _changes: RowChanges) -> None:
    """Content whose key was destroyed projects nothing: the erasure that followed it removed
    every row it had made."""


@projects(PreferenceSet)
def project_preference_set(event: PreferenceSet, learner_id: str, at: datetime, changes: RowChanges) -> None:
    changes.upsert(
        preferences,
        {"learner_id": learner_id, "category": event.category, "value": event.value, "timestamp": at},
    )


@projects(PreferenceRemoved)
def project_preference_removed(event: PreferenceRemoved, learner_id: str, _at: datetime, changes: RowChanges) -> None:
    changes.delete(preferences, {"learner_id": learner_id, "category": event.category})


@projects(InterestAdded)
def project_interest_added(event: InterestAdded, learner_id: str, at: datetime, changes: RowChanges) -> None:
    changes.upsert(interests, {"learner_id": learner_id, "interest_name": event.interest_name, "timestamp": at})


@projects(InterestRemoved)
def project_interest_removed(event: InterestRemoved, learner_id: str, _at: datetime, changes: RowChanges) -> None:
    changes.delete(interests, {"learner_id": learner_id, "interest_name": event.interest_name})


@projects(StruggleAreaAdded)
def project_struggle_area_added(event: StruggleAreaAdded, learner_id: str, at: datetime, changes: RowChanges) -> None:
    changes.upsert(
        struggles,
        {"learner_id": learner_id, "struggle_description": event.struggle_description, "timestamp": at},
    )


@projects(StruggleAreaRemoved)
def project_struggle_area_removed(
    event: StruggleAreaRemoved, learner_id: str, _at: datetime, changes: RowChanges
) -> None:
    changes.delete(struggles, {"learner_id": learner_id, "struggle_description": event.struggle_description})


@projects(CognitiveMetricRecorded)
def project_cognitive_metric_recorded(
    event: CognitiveMetricRecorded, learner_id: str, at: datetime, changes: RowChanges
) -> None:
    changes.upsert(
        cognitive_metrics,
        {
            "learner_id": learner_id,
            "task_name": event.task_name,
            "metric_details": event.metric_details,
            "timestamp": at,
        },
    )


@projects(LearningObjectiveStarted, LearningObjectiveProgressUpdated, LearningObjectiveCompleted)
def project_learning_objective_progress(
    event: LearningObjectiveEvent,
    learner_id: str,
    _at: datetime,
    changes: RowChanges,
) -> None:
    changes.upsert(
        learning_objective_progress,
        {
            "learner_id": learner_id,
            "lo_id": event.lo_id,
            "status": event.status,
            "started_at": event.started_at,
            "completed_at": event.completed_at,
            "score": event.score,
            "details": event.details,
        },
    )


@projects(BadgeAwarded)
def project_badge_awarded(event: BadgeAwarded, learner_id: str, at: datetime, changes: RowChanges) -> None:
    changes.upsert(
        badges,
        {
            "learner_id": learner_id,
            "badge_id": event.badge_id,
            "badge_name": event.badge_name,
            "earned_date": at.date(),
            "details": event.details,
        },
    )


@projects(BadgeRevoked)
def project_badge_revoked(event: BadgeRevoked, learner_id: str, _at: datetime, changes: RowChanges) -> None:
    changes.delete(badges, {"learner_id": learner_id, "badge_id": event.badge_id})


@projects(ActivityAttemptRecorded)
def project_activity_attempt_recorded(
    event: ActivityAttemptRecorded, learner_id: str, at: datetime, changes: RowChanges
) -> None:
    changes.insert(
        activity_attempts,
        {
            "learner_id": learner_id,
            "lo_id": event.lo_id,
            "activity_id": event.activity_id,
            "activity_type": event.activity_type,
            "attempt_timestamp": at,
            "score": event.score,
            "completed": event.completed,
            "attempt_details": event.attempt_details,
        },
    )


_REMOVING = frozenset({LearnerProfileDeleted, LearnerErased, ErasedContent})
"""Events after which the learner has no profile row to touch."""


def apply_events(changes: RowChanges, events: Iterable[ProjectableEvent]) -> None:
    """Record the row changes of `events`, in order, into `changes` (without flushing).

    Every event but a deletion, an erasure or erased content also moves its learner's
    last_updated_at.
    """
    projectors = PROJECTORS
    for recorded in events:
        event = recorded.event
        projectors[type(event)](event, recorded.learner_id, recorded.occurred_at, changes)
        if type(event) not in _REMOVING:
            changes.touch(recorded.learner_id, recorded.occurred_at)


def project_events(
    connection: Connection, events: Sequence[ProjectableEvent], targets: TableSet | None = None
) -> None:
    """Bring the read models on `connection` up to date with `events`: the inline projector
    of the SQL store.

    `targets` chooses other tables than the live ones (a rebuild's shadows).
    """
    changes = RowChanges(SqlRowWriter(connection, targets))
    apply_events(changes, events)
    changes.flush()


_without_projector = set(EVENT_TYPES.values()) - set(PROJECTORS)
if _without_projector:  # pragma: no cover - a catalog change without its projector fails at import
    raise RuntimeError(f"event types without a projector: {sorted(cls.__name__ for cls in _without_projector)}")
