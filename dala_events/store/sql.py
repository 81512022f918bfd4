"""The SQL event store: the contract on SQLAlchemy Core, for SQLite and PostgreSQL alike.

`event_log` is the one table of truth, `projection_state` the projections' bookkeeping (both
migrated by Alembic). `SqlEventStore` runs each append in one transaction with the inline
projectors it is handed (functions of the open Connection and the events), so events and
their projection commit together; it knows nothing of what they project. Where SQLite and
PostgreSQL differ (transaction begins, column types) is `dala_events.dialects`' business.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

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

from dala_events.dialects import (
    DriverStatement,
    EventIdText,
    UTCDateTime,
    once_per_dialect,
    read_transaction,
    write_transaction,
    written_columns,
)
from dala_events.envelopes import AppendedEvent, LoggedEvent, ProjectableEvent, StreamSummary
from dala_events.errors import ConcurrencyError, InvalidInput
from dala_events.store.codec import PROJECTABLE_FIELDS, RECORDED_FIELDS, decode_logged
from dala_events.store.contract import EventStore, Row

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


InlineProjector = Callable[[Connection, Sequence[ProjectableEvent]], None]
"""Runs inside an append's transaction and brings read models up to date with the events."""


class SqlEventStore(EventStore):
    """The event store on one SQLAlchemy engine (SQLite or PostgreSQL).

    `bound_to(connection)` gives the same store reading inside a transaction of the
    caller's (a rebuild's catch-up reads what its own locked transaction sees).
    """

    def __init__(self, engine: Engine, *, inline_projectors: Sequence[InlineProjector] = ()) -> None:
        self.engine = engine
        self.inline_projectors = tuple(inline_projectors)
        self._connection: Connection | None = None

    def bound_to(self, connection: Connection) -> SqlEventStore:
        """This store, reading on `connection` (inside its current transaction)."""
        bound = copy.copy(self)
        bound._connection = connection
        return bound

    def last_position(self) -> int:
        """The position of the newest event in the log (0 when empty)."""
        with self._reading() as connection:
            return int(connection.execute(select(func.coalesce(func.max(event_log.c.position), 0))).scalar_one())

    def read_position_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[LoggedEvent]:
        """The events whose positions fall in the inclusive `ranges`, in log order: a rebuild's
        catch-up of events that committed late, behind newer positions."""
        events: list[LoggedEvent] = []
        with self._reading() as connection:
            for start in range(0, len(ranges), 200):
                chunk = ranges[start : start + 200]
                query = select(*_PROJECTABLE_COLUMNS).where(
                    or_(*(event_log.c.position.between(low, high) for low, high in chunk))
                )
                rows = connection.execute(query.order_by(event_log.c.position)).all()
                events.extend(decode_logged(tuple(row)) for row in rows)
        return events

    # -- the backend's part of the contract ------------------------------------------------

    def _append_rows(
        self, learner_id: str, expected_version: int, rows: list[dict[str, Any]], appended: list[AppendedEvent]
    ) -> None:
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
                raise InvalidInput(
                    "event_id", "an event with this id is already in the log", learner_id=learner_id
                ) from error
            # A writer that read the same version committed between our check and our insert.
            raise ConcurrencyError(learner_id, expected_version, None) from error

    def _stream_version(self, learner_id: str) -> int:
        with self._reading() as connection:
            return _stream_version(connection, learner_id)

    def _stream_rows(
        self,
        learner_id: str,
        after_version: int,
        up_to_version: int,
        since: datetime,
        until: datetime,
        limit: int,
        *,
        projectable: bool,
    ) -> list[Row]:
        parameters = {
            "size": limit,
            "learner_id": learner_id,
            "after_version": after_version,
            "up_to_version": up_to_version,
            "since": since,
            "until": until,
        }
        with self._reading() as connection:
            query = _READ_STREAM_PROJECTABLE if projectable else _READ_STREAM
            return [tuple(row) for row in connection.execute(query, parameters)]

    def _stream_summaries(self, after: str | None, limit: int) -> list[StreamSummary]:
        c = event_log.c
        query = (
            select(c.learner_id, func.max(c.version), func.min(c.recorded_at), func.max(c.recorded_at))
            .group_by(c.learner_id)
            .order_by(c.learner_id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(c.learner_id > after)
        with self._reading() as connection:
            return [StreamSummary(*row) for row in connection.execute(query)]

    def _log_fetcher(self, *, projectable: bool) -> Callable[[int, int], list[Row]]:
        def fetch(after: int, size: int) -> list[Row]:
            with self._reading() as connection:
                query = _READ_LOG_PROJECTABLE if projectable else _READ_LOG
                return [tuple(row) for row in connection.execute(query, {"after": after, "size": size})]

        return fetch

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        if self._connection is not None:
            yield self._connection
            return
        with read_transaction(self.engine) as connection:
            yield connection


class _Statements:
    """The append's statements, compiled once per dialect and run on the driver (see
    `dialects.DriverStatement`: on this path it pays)."""

    def __init__(self, dialect: Dialect) -> None:
        self.insert = DriverStatement(event_log.insert(), dialect, columns=written_columns(event_log))
        self.stream_version = DriverStatement(
            select(func.max(event_log.c.version)).where(event_log.c.learner_id == bindparam("learner_id")), dialect
        )


_statements_for = once_per_dialect(_Statements)


def _stream_version(connection: Connection, learner_id: str) -> int:
    return int(_statements_for(connection.dialect).stream_version.scalar(connection, {"learner_id": learner_id}) or 0)


_RECORDED_COLUMNS = tuple(event_log.c[name] for name in RECORDED_FIELDS)
_PROJECTABLE_COLUMNS = tuple(event_log.c[name] for name in PROJECTABLE_FIELDS)

_IN_STREAM = (
    event_log.c.learner_id == bindparam("learner_id"),
    event_log.c.version > bindparam("after_version"),
    event_log.c.version <= bindparam("up_to_version"),
    event_log.c.recorded_at >= bindparam("since", type_=UTCDateTime()),
    event_log.c.recorded_at <= bindparam("until", type_=UTCDateTime()),
)
_SIZE = bindparam("size", type_=Integer())
_READ_STREAM = select(*_RECORDED_COLUMNS).where(*_IN_STREAM).order_by(event_log.c.version).limit(_SIZE)
_READ_STREAM_PROJECTABLE = select(*_PROJECTABLE_COLUMNS).where(*_IN_STREAM).order_by(event_log.c.version).limit(_SIZE)
_AFTER = event_log.c.position > bindparam("after")
_READ_LOG = select(*_RECORDED_COLUMNS).where(_AFTER).order_by(event_log.c.position).limit(_SIZE)
_READ_LOG_PROJECTABLE = select(*_PROJECTABLE_COLUMNS).where(_AFTER).order_by(event_log.c.position).limit(_SIZE)
