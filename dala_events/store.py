"""The event log table and EventStore: append a learner's events atomically, read them back.

A row of `event_log` is plain data (ids, numbers, times, JSON text); turning events into
payload text and back is `dala_events.events`' job, done in `_to_row` and `_from_row` here
and nowhere else. The store knows nothing of projections: it is handed the inline projectors
to run inside each append's transaction, so events and their projection commit together.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pydantic
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Dialect,
    Engine,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    bindparam,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError

from dala_events.attribution import current_attribution
from dala_events.dialects import DriverStatement, UTCDateTime, once_per_dialect, write_transaction, written_columns
from dala_events.errors import ConcurrencyError, CorruptEventError, InvalidInput
from dala_events.events import (
    DomainEvent,
    UnknownEventError,
    check_learner_id,
    decode_event,
    encode_payload,
    new_event_id,
    utc_now,
)

LOG_METADATA = MetaData()

event_log = Table(
    "event_log",
    LOG_METADATA,
    Column("position", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", Uuid(as_uuid=False), nullable=False, unique=True),
    Column("learner_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("payload", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    # The optimistic-concurrency guard: two writers cannot both write version n of a stream.
    UniqueConstraint("learner_id", "version", name="uq_event_log_learner_version"),
)
"""The one table of truth. Rows are only ever inserted."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended: the fact, its id, when it happened and who did it."""

    event: DomainEvent
    event_id: str
    occurred_at: datetime
    metadata: Mapping[str, Any]

    @classmethod
    def now(cls, event: DomainEvent, *, occurred_at: datetime | None = None) -> NewEvent:
        """Wrap `event` as happening now (or at `occurred_at`), attributed to the current
        `recorded_as` block."""
        event_id = new_event_id()
        return cls(event, event_id, occurred_at or utc_now(), current_attribution().metadata_for(event_id))


class ProjectableEvent(Protocol):
    """What a projector needs of an event: whose, which version, when, and the fact itself."""

    @property
    def learner_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def event(self) -> DomainEvent: ...


@dataclass(frozen=True, slots=True)
class AppendedEvent:
    """An event inside the transaction that appends it (its log position is not known yet)."""

    learner_id: str
    version: int
    occurred_at: datetime
    event: DomainEvent


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: its place in the log and its stream, its times, the fact, the metadata.

    `schema_version` is the version the payload was written with; `event` has been upcast to
    the current model.
    """

    position: int
    event_id: str
    learner_id: str
    version: int
    event_type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    event: DomainEvent
    metadata: Mapping[str, Any] = field(default_factory=dict)


InlineProjector = Callable[[Connection, Sequence[ProjectableEvent]], None]
"""Runs inside an append's transaction and brings read models up to date with the events."""

DEFAULT_BATCH_SIZE = 2_000


class EventStore:
    """Appends events to learners' streams and reads them back, on one SQLAlchemy engine."""

    def __init__(self, engine: Engine, *, inline_projectors: Sequence[InlineProjector] = ()) -> None:
        self.engine = engine
        self.inline_projectors = tuple(inline_projectors)

    # -- writing ---------------------------------------------------------------------------

    def append(self, learner_id: str, events: Sequence[NewEvent], expected_version: int) -> int:
        """Append `events` to the learner's stream as versions expected_version+1, +2, ...

        In one transaction: check the stream is at `expected_version`, insert the rows, run the
        inline projectors. Returns the stream's new version. Raises ConcurrencyError, having
        written nothing, when another writer moved the stream first.
        """
        learner_id = _valid_learner_id(learner_id)
        if expected_version < 0:
            raise InvalidInput("expected_version", f"must be >= 0, got {expected_version}", learner_id=learner_id)
        if not events:
            return expected_version
        recorded_at = utc_now()
        rows = [
            _to_row(learner_id, expected_version + offset, new, recorded_at)
            for offset, new in enumerate(events, start=1)
        ]
        appended = [
            AppendedEvent(learner_id, expected_version + offset, new.occurred_at, new.event)
            for offset, new in enumerate(events, start=1)
        ]
        try:
            with write_transaction(self.engine) as connection:
                statements = _statements_for(connection.dialect)
                actual = _stream_version(connection, learner_id)
                if actual != expected_version:
                    raise ConcurrencyError(learner_id, expected_version, actual)
                statements.insert.execute(connection, rows)
                for project in self.inline_projectors:
                    project(connection, appended)
        except IntegrityError as error:
            if "event_id" in str(error.orig):
                raise InvalidInput("event_id", "an event with this id is already in the log") from error
            # A writer that read the same version committed between our check and our insert.
            raise ConcurrencyError(learner_id, expected_version, None) from error
        return expected_version + len(events)

    # -- reading ---------------------------------------------------------------------------

    def stream_version(self, learner_id: str) -> int:
        """The learner's latest version (0 for a stream with no events)."""
        with self.engine.connect() as connection:
            return _stream_version(connection, learner_id)

    def read_stream(
        self,
        learner_id: str,
        *,
        up_to_version: int | None = None,
        until: datetime | None = None,
    ) -> list[RecordedEvent]:
        """The learner's events in version order, optionally only those up to a version or time."""
        query = select(event_log).where(event_log.c.learner_id == learner_id)
        if up_to_version is not None:
            query = query.where(event_log.c.version <= up_to_version)
        if until is not None:
            query = query.where(event_log.c.occurred_at <= until)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(event_log.c.version)).all()
        return [_from_row(row) for row in rows]

    def read_all(
        self,
        after_position: int = 0,
        limit: int | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        connection: Connection | None = None,
    ) -> Iterator[RecordedEvent]:
        """Every event after `after_position` in log order, at most `limit` of them.

        Fetched `batch_size` rows at a time by position, so memory stays bounded however long
        the log. Pass `connection` to read inside a transaction of your own.
        """
        for batch in self.read_all_batches(after_position, limit, batch_size=batch_size, connection=connection):
            yield from batch

    def read_all_batches(
        self,
        after_position: int = 0,
        limit: int | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        connection: Connection | None = None,
    ) -> Iterator[list[RecordedEvent]]:
        """Like `read_all`, one list per batch: the shape a rebuild wants."""
        if batch_size < 1:
            raise InvalidInput("batch_size", f"must be >= 1, got {batch_size}")
        remaining = limit
        position = after_position
        while remaining is None or remaining > 0:
            size = batch_size if remaining is None else min(batch_size, remaining)
            query = select(event_log).where(event_log.c.position > position).order_by(event_log.c.position).limit(size)
            if connection is None:
                with self.engine.connect() as own:
                    rows = own.execute(query).all()
            else:
                rows = connection.execute(query).all()
            if not rows:
                return
            batch = [_from_row(row) for row in rows]
            yield batch
            position = batch[-1].position
            if remaining is not None:
                remaining -= len(batch)
            if len(rows) < size:
                return

    def last_position(self) -> int:
        """The position of the newest event in the log (0 when empty)."""
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.coalesce(func.max(event_log.c.position), 0))).scalar_one())


class _Statements:
    """The append's statements, compiled once per dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.insert = DriverStatement(event_log.insert(), dialect, columns=written_columns(event_log))
        self.stream_version = DriverStatement(
            select(func.max(event_log.c.version)).where(event_log.c.learner_id == bindparam("learner_id")), dialect
        )


_statements_for = once_per_dialect(_Statements)


def _valid_learner_id(learner_id: str) -> str:
    try:
        return check_learner_id(learner_id)
    except ValueError as error:
        raise InvalidInput("learner_id", str(error)) from None


def _stream_version(connection: Connection, learner_id: str) -> int:
    statement = _statements_for(connection.dialect).stream_version
    version = statement.execute(connection, [{"learner_id": learner_id}]).scalar()
    return int(version or 0)


def _to_row(learner_id: str, version: int, new: NewEvent, recorded_at: datetime) -> dict[str, Any]:
    event = new.event
    return {
        "event_id": new.event_id,
        "learner_id": learner_id,
        "version": version,
        "event_type": event.event_type,
        "schema_version": type(event).schema_version,
        "occurred_at": new.occurred_at,
        "recorded_at": recorded_at,
        "payload": encode_payload(event),
        "metadata": json.dumps(new.metadata, separators=(",", ":"), ensure_ascii=False),
    }


def _from_row(row: Row[Any]) -> RecordedEvent:
    values = row._mapping
    try:
        event = decode_event(values["event_type"], values["schema_version"], values["payload"])
        metadata = json.loads(values["metadata"])
    except (UnknownEventError, pydantic.ValidationError, ValueError) as error:
        raise CorruptEventError(values["position"], values["event_type"], str(error)) from error
    return RecordedEvent(
        position=values["position"],
        event_id=str(values["event_id"]),
        learner_id=values["learner_id"],
        version=values["version"],
        event_type=values["event_type"],
        schema_version=values["schema_version"],
        occurred_at=values["occurred_at"],
        recorded_at=values["recorded_at"],
        event=event,
        metadata=metadata,
    )
