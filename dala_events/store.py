"""The event log table and EventStore: append a learner's events atomically, read them back.

A row of `event_log` is plain data (ids, numbers, times, JSON text); turning events into
payload text and back is `dala_events.events`' job, done in `_to_row` and `_from_row` here
and nowhere else. The store knows nothing of projections: it is handed the inline projectors
to run inside each append's transaction, so events and their projection commit together.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import pydantic
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Dialect,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    func,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError

from dala_events.attribution import current_attribution
from dala_events.bulk import bulk_allocation
from dala_events.dialects import (
    DriverQuery,
    DriverStatement,
    EventIdText,
    UTCDateTime,
    once_per_dialect,
    read_transaction,
    write_transaction,
    written_columns,
)
from dala_events.errors import ConcurrencyError, CorruptEventError, InvalidInput
from dala_events.events import (
    EVENT_TYPES,
    DomainEvent,
    UnknownEventError,
    check_learner_id,
    decode_event,
    decode_json,
    encode_json,
    encode_payload,
    new_event_id,
    utc_now,
)

LOG_METADATA = MetaData()

event_log = Table(
    "event_log",
    LOG_METADATA,
    Column("position", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", EventIdText(), nullable=False, unique=True),
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

projection_state = Table(
    "projection_state",
    LOG_METADATA,
    Column("name", String(100), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("rebuilt_at", UTCDateTime(), nullable=True),
)
"""Bookkeeping of each projection (read-model table): the definition it was built with
(`fingerprint`) and the log position its last rebuild reached. Between rebuilds the inline
projection keeps the table at the head of the log inside every append's transaction, so the
position is where the table was last *rebuilt* to, not a lag."""


class NewEvent(NamedTuple):
    """An event about to be appended: the fact, its id, when it happened and who did it.

    A named tuple like the stored events: every mutation makes one.
    """

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


class AppendedEvent(NamedTuple):
    """An event inside the transaction that appends it (its log position is not known yet)."""

    learner_id: str
    version: int
    occurred_at: datetime
    event: DomainEvent


class LoggedEvent(NamedTuple):
    """An event as a projector reads it back from the log: its position and what it projects.

    Like `RecordedEvent` a named tuple: a rebuild makes one per event of the log.
    """

    position: int
    learner_id: str
    version: int
    occurred_at: datetime
    event: DomainEvent


class RecordedEvent(NamedTuple):
    """An event as stored: its place in the log and its stream, its times, the fact, the metadata.

    `schema_version` is the version the payload was written with; `event` has been upcast to
    the current model. An immutable named tuple rather than a frozen dataclass: reading a long
    history builds thousands of them, and a tuple is built several times faster.
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
    metadata: Mapping[str, Any]


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
        with read_transaction(self.engine) as connection:
            return _stream_version(connection, learner_id)

    def read_stream(
        self,
        learner_id: str,
        *,
        up_to_version: int | None = None,
        until: datetime | None = None,
        since: datetime | None = None,
        event_types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        """The learner's events in version order.

        Optionally only those up to a version, recorded within [since, until], of the given
        types. Times are compared with `recorded_at`: when the store learned of the event.
        """
        if event_types is not None:
            unknown = sorted(set(event_types) - set(EVENT_TYPES))
            if unknown:
                raise InvalidInput("event_types", f"unknown event types {unknown}", learner_id=learner_id)
        wanted = None if event_types is None else frozenset(event_types)
        with bulk_allocation():
            rows = self._stream_rows("read_stream", learner_id, up_to_version, since, until)
            return [_recorded(row) for row in rows if wanted is None or row[_TYPE] in wanted]

    def read_stream_for_projection(
        self, learner_id: str, *, up_to_version: int | None = None, until: datetime | None = None
    ) -> list[LoggedEvent]:
        """Like `read_stream`, but only what a projector needs (no ids, no metadata): the
        events an as-of view runs through the projectors."""
        with bulk_allocation():
            rows = self._stream_rows("read_stream_projectable", learner_id, up_to_version, None, until)
            return [_logged(row) for row in rows]

    def _stream_rows(
        self,
        query_name: str,
        learner_id: str,
        up_to_version: int | None,
        since: datetime | None,
        until: datetime | None,
    ) -> list[tuple[Any, ...]]:
        learner_id = _valid_learner_id(learner_id)
        parameters = {
            "learner_id": learner_id,
            "up_to_version": _NO_LIMIT if up_to_version is None else up_to_version,
            "since": check_aware("since", since) or _EPOCH,
            "until": check_aware("until", until) or _END_OF_TIME,
        }
        with read_transaction(self.engine) as connection:
            query: DriverQuery = getattr(_statements_for(connection.dialect), query_name)
            return query.rows(connection, parameters)

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
        """Like `read_all`, one list per batch."""
        for rows in self._log_batches("read_all", after_position, limit, batch_size, connection):
            yield [_recorded(row) for row in rows]

    def read_for_projection(
        self,
        after_position: int = 0,
        limit: int | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        connection: Connection | None = None,
    ) -> Iterator[list[LoggedEvent]]:
        """Like `read_all_batches`, but only what a projector needs (no ids, no metadata): the
        shape a rebuild streams."""
        for rows in self._log_batches("read_projectable", after_position, limit, batch_size, connection):
            yield [_logged(row) for row in rows]

    def read_position_ranges(
        self, ranges: Sequence[tuple[int, int]], *, connection: Connection
    ) -> list[LoggedEvent]:
        """The events whose positions fall in the inclusive `ranges`, in log order: a rebuild's
        catch-up of events that committed late, behind newer positions."""
        events: list[LoggedEvent] = []
        for start in range(0, len(ranges), 200):
            chunk = ranges[start : start + 200]
            query = select(*_PROJECTABLE_COLUMNS).where(
                or_(*(event_log.c.position.between(low, high) for low, high in chunk))
            )
            rows = connection.execute(query.order_by(event_log.c.position)).all()
            events.extend(_logged(tuple(row)) for row in rows)
        return events

    def _log_batches(
        self,
        query_name: str,
        after_position: int,
        limit: int | None,
        batch_size: int,
        connection: Connection | None,
    ) -> Iterator[list[tuple[Any, ...]]]:
        if batch_size < 1:
            raise InvalidInput("batch_size", f"must be >= 1, got {batch_size}")
        if limit is not None and limit < 0:
            raise InvalidInput("limit", f"must be >= 0, got {limit}")
        remaining = limit
        position = after_position
        while remaining is None or remaining > 0:
            size = batch_size if remaining is None else min(batch_size, remaining)
            parameters = {"after": position, "size": size}
            if connection is None:
                with read_transaction(self.engine) as own:
                    rows = getattr(_statements_for(own.dialect), query_name).rows(own, parameters)
            else:
                rows = getattr(_statements_for(connection.dialect), query_name).rows(connection, parameters)
            if not rows:
                return
            yield rows
            position = rows[-1][0]
            if remaining is not None:
                remaining -= len(rows)
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
        self.stream_version = DriverQuery(
            select(func.max(event_log.c.version)).where(event_log.c.learner_id == bindparam("learner_id")), dialect
        )
        c = event_log.c
        in_stream = (
            c.learner_id == bindparam("learner_id"),
            c.version <= bindparam("up_to_version"),
            c.recorded_at >= bindparam("since", type_=UTCDateTime()),
            c.recorded_at <= bindparam("until", type_=UTCDateTime()),
        )
        self.read_stream = DriverQuery(select(*_RECORDED_COLUMNS).where(*in_stream).order_by(c.version), dialect)
        self.read_stream_projectable = DriverQuery(
            select(*_PROJECTABLE_COLUMNS).where(*in_stream).order_by(c.version), dialect
        )
        after = c.position > bindparam("after")
        size = bindparam("size", type_=Integer())
        self.read_all = DriverQuery(select(*_RECORDED_COLUMNS).where(after).order_by(c.position).limit(size), dialect)
        self.read_projectable = DriverQuery(
            select(*_PROJECTABLE_COLUMNS).where(after).order_by(c.position).limit(size), dialect
        )


_statements_for = once_per_dialect(_Statements)


def _valid_learner_id(learner_id: str) -> str:
    try:
        return check_learner_id(learner_id)
    except ValueError as error:
        raise InvalidInput("learner_id", str(error)) from None


def _stream_version(connection: Connection, learner_id: str) -> int:
    statement = _statements_for(connection.dialect).stream_version
    ((version,),) = statement.rows(connection, {"learner_id": learner_id})
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
        "metadata": encode_json(new.metadata),
    }


_RECORDED_COLUMNS = (
    event_log.c.position,
    event_log.c.event_type,
    event_log.c.schema_version,
    event_log.c.payload,
    event_log.c.event_id,
    event_log.c.learner_id,
    event_log.c.version,
    event_log.c.occurred_at,
    event_log.c.recorded_at,
    event_log.c.metadata,
)
_PROJECTABLE_COLUMNS = (
    event_log.c.position,
    event_log.c.event_type,
    event_log.c.schema_version,
    event_log.c.payload,
    event_log.c.learner_id,
    event_log.c.version,
    event_log.c.occurred_at,
)
_TYPE = 1
_NO_LIMIT = 2**31 - 1
_EPOCH = datetime(1, 1, 2, tzinfo=UTC)
_END_OF_TIME = datetime(9999, 12, 30, tzinfo=UTC)


def check_aware(field_name: str, value: datetime | None) -> datetime | None:
    """`value` if it is None or a timezone-aware datetime, else InvalidInput naming the field."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise InvalidInput(field_name, f"must be timezone-aware, got {value!r}")
    return value


def _decode(row: tuple[Any, ...]) -> DomainEvent:
    """The event of a row that starts (position, event_type, schema_version, payload)."""
    try:
        return decode_event(row[1], row[2], row[3])
    except pydantic.ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in error.errors())
        raise CorruptEventError(row[0], row[1], f"payload does not fit the event: {problems}") from error
    except (UnknownEventError, ValueError) as error:
        raise CorruptEventError(row[0], row[1], str(error)) from error


def _logged(row: tuple[Any, ...]) -> LoggedEvent:
    return LoggedEvent(row[0], row[4], row[5], row[6], _decode(row))


def _recorded(row: tuple[Any, ...]) -> RecordedEvent:
    event = _decode(row)
    try:
        metadata = decode_json(row[9])
    except ValueError as error:
        raise CorruptEventError(row[0], row[1], f"metadata is not JSON: {error}") from error
    # position, event_id, learner_id, version, event_type, schema_version, occurred_at, recorded_at
    return RecordedEvent(row[0], row[4], row[5], row[6], row[1], row[2], row[7], row[8], event, metadata)
