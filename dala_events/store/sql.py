"""The SQL event store: the contract on SQLAlchemy Core, for SQLite and PostgreSQL alike.

`event_log` is the one table of truth, `projection_state` the projections' bookkeeping and
`log_chain` the record of how the log's hash chain is keyed, `log_encryption` the record of the
migration that encrypted older events; with the record of disclosures and the subscriptions'
checkpoints they are `LOG_METADATA`, every table the log's migrations (Alembic) own.
`SqlEventStore` runs each append in one transaction with the inline projectors it is handed
(functions of the open Connection and the events), so events and their projection commit
together; it knows nothing of what they project. Each row's `hash` chains it to the one before
it in its learner's stream (`codec.chain_rows`), keyed when the store is given a `LogKey`.
Where SQLite and PostgreSQL differ (transaction begins, column types) is
`dala_events.dialects`' business.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Dialect,
    Engine,
    FetchedValue,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    cast,
    func,
    inspect,
    literal,
    literal_column,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement, Select

from dala_events.dialects import (
    DriverStatement,
    EventIdText,
    UTCDateTime,
    once_per_dialect,
    pipelined,
    read_transaction,
    run_on_driver,
    write_transaction,
    written_columns,
)
from dala_events.envelopes import AppendedEvent, ProjectableEvent, StreamSummary
from dala_events.errors import ConcurrencyError, DalaError, InvalidInput
from dala_events.store.codec import (
    HASH_LENGTH,
    PROJECTABLE_FIELDS,
    RECORDED_FIELDS,
    ChainRow,
    LogKey,
    LogKeyError,
    ProjectableRow,
    StoredRow,
    chain_mode,
    hasher,
    link_of,
)
from dala_events.store.contract import (
    DEFAULT_BATCH_SIZE,
    EMPTY_STREAM,
    ERASED_EVENT_TYPE,
    EventStore,
    StreamTip,
    check_count,
    valid_learner_id,
)
from dala_events.store.keys import LogCipher

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
    # Chains the row to the previous one of its stream: see `codec.chain_message`.
    Column("hash", String(HASH_LENGTH), nullable=False),
    # The writing transaction (PostgreSQL: its xid8, set by the database, and indexed with the
    # position; SQLite: 0), for readers that must never pass an event committed late
    # (migration 0009, `subscriptions`). Where this database put the row, not part of the
    # event: never written by the store, never carried by a backup.
    Column("transaction_id", BigInteger, nullable=False, server_default=FetchedValue()),
    # The optimistic-concurrency guard: two writers cannot both write version n of a stream.
    UniqueConstraint("learner_id", "version", name="uq_event_log_learner_version"),
    # The erasures, found without reading streams (a few rows: one per erased learner).
    Index(
        "ix_event_log_erasures",
        "learner_id",
        sqlite_where=literal_column("event_type") == ERASED_EVENT_TYPE,
        postgresql_where=literal_column("event_type") == ERASED_EVENT_TYPE,
    ),
)
"""The one table of truth. Rows are only ever inserted."""

COMMIT_ORDER_INDEX = Index("ix_event_log_transaction", event_log.c.transaction_id, event_log.c.position).ddl_if(
    dialect="postgresql"
)
"""PostgreSQL's log is read in (transaction_id, position) order (`in_commit_order`); SQLite's by
position alone, so the index is made on PostgreSQL only (migration 0009)."""

DATABASE_COLUMNS = ("transaction_id",)
"""Columns of event_log that the database fills for its own bookkeeping: not written by the
store, not carried by backups (a restore's database fills them anew)."""

LOG_START = (-1, 0)
"""The commit-order point before every event: (transaction_id, position)."""


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

log_chain = Table(
    "log_chain",
    LOG_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("mode", String(20), nullable=False),
    Column("key_id", String(16), nullable=True),
    Column("chained_at", UTCDateTime(), nullable=False),
)
"""One row (id 1): how the log's hash chain is computed, "hmac-sha256" with the key whose
`LogKey.key_id` is `key_id`, or "sha256" (no key). Written by the migration that chained the
log; start-up refuses a process whose key differs, so one log is never chained two ways."""

log_encryption = Table(
    "log_encryption",
    LOG_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("encrypted_at", UTCDateTime(), nullable=False),
    Column("events_encrypted", BigInteger, nullable=False),
    Column("streams_rechained", BigInteger, nullable=False),
)
"""One row (id 1), written by migration 0005: when it encrypted the events written before
encryption at rest, how many, and how many streams it re-chained (0 and 0 when there were
none). A checkpoint older than `encrypted_at` names the re-chained streams' old heads."""


rebuild_skips = Table(
    "rebuild_skips",
    LOG_METADATA,
    Column("learner_id", String(128), primary_key=True),
    Column("skipped_at", UTCDateTime(), nullable=False),
    Column("why", String(200), nullable=False),
)
"""The learners the last rebuild left out of the read models on the operator's word (`dala
rebuild --skip`: their events could not be read), with when and why; emptied by a rebuild
without `--skip` (migration 0008)."""


RESTORE_UNFINISHED = "(restore unfinished)"
"""The name of the `projection_state` row a restore writes in the transaction that commits the
restored log, and deletes once the read models are built from it and the later erasures are
recorded (`app.Dala.restore`): while it is there the database holds a restore to finish, which
the same `dala restore FILE` does. Its `fingerprint` is the backup file's SHA-256, its
`position` the events restored. No read model is named so: the projections never read it."""


class RestoreUnfinished(DalaError):
    """The database holds a restored log whose restore stopped before it finished (its read
    models are not built, or later erasures not recorded): run the same `dala restore FILE` again."""

    def __init__(self, sha256: str, events: int) -> None:
        self.sha256 = sha256
        super().__init__(
            f"the database holds a restore of {events} events that stopped before it finished (the backup whose "
            f"sha256 starts {sha256[:16]}): run `dala restore FILE` again with that backup to finish it"
        )


def unfinished_restore(connection: Connection, *, table_known: bool = False) -> RestoreUnfinished | None:
    """The restore the database holds unfinished (see `RESTORE_UNFINISHED`), or None. With
    `table_known` the caller knows `projection_state` exists (a log at the head revision)."""
    if not table_known and not inspect(connection).has_table(projection_state.name):
        return None
    found = connection.execute(
        select(projection_state.c.fingerprint, projection_state.c.position).where(
            projection_state.c.name == RESTORE_UNFINISHED
        )
    ).first()
    return None if found is None else RestoreUnfinished(found.fingerprint, int(found.position))


subscription_checkpoints = Table(
    "subscription_checkpoints",
    LOG_METADATA,
    Column("name", String(100), primary_key=True),
    Column("transaction_id", BigInteger, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Its filter: "*" (every type) or the type names, sorted, comma-separated; NULL: recorded
    # before migration 0010, the next open records its own.
    Column("event_types", Text, nullable=True),
)
"""Each subscription's checkpoint (`dala_events.subscriptions`): the (transaction_id, position)
of the last event it acknowledged ((-1, 0): none yet), and the filter it delivers through.
Created by migration 0009; the filter by 0010."""


disclosure_log = Table(
    "disclosure_log",
    LOG_METADATA,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("learner_id", String(128), nullable=False),
    Column("disclosed_at", UTCDateTime(), nullable=False),
    Column("what", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=True),
    Column("correlation_id", String(200), nullable=False),
    Index("ix_disclosure_log_learner_id", "learner_id", "id"),
)
"""One row per disclosure of a learner's data (`dala_events.disclosures` writes and reads it);
created by migration 0004, never updated or deleted. Declared here, with the other tables the
log's migrations own, so that Alembic compares them all (`migrations/env.py`)."""


InlineProjector = Callable[[Connection, Sequence[ProjectableEvent]], None]
"""Runs inside an append's transaction and brings read models up to date with the events."""


class SqlEventStore(EventStore):
    """The event store on one SQLAlchemy engine (SQLite or PostgreSQL).

    `bound_to(connection)` gives the same store reading inside a transaction of the
    caller's (a rebuild's catch-up reads what its own locked transaction sees). `log_key`
    keys the hash chain of what it appends (None: plain SHA-256, see `codec`).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        inline_projectors: Sequence[InlineProjector] = (),
        log_key: LogKey | None = None,
        cipher: LogCipher | None = None,
    ) -> None:
        self.engine = engine
        self.inline_projectors = tuple(inline_projectors)
        self.log_key = log_key
        self.cipher = cipher
        self._connection: Connection | None = None

    def bound_to(self, connection: Connection) -> SqlEventStore:
        """This store, reading on `connection` (inside its current transaction)."""
        bound = copy.copy(self)
        bound._connection = connection
        return bound

    @contextmanager
    def writing_alone(self, learner_id: str) -> Iterator[None]:
        """See `EventStore.writing_alone`: on PostgreSQL a session advisory lock on the learner,
        held on a connection of its own for the block (other processes that ask wait for it);
        on SQLite nothing more than its one writer at a time."""
        learner_id = valid_learner_id(learner_id)
        if self.engine.dialect.name != "postgresql":
            yield
            return
        key = {"key": f"dala-writer:{learner_id}"}
        with self.engine.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"), key)
            holder.commit()
            try:
                yield
            finally:
                holder.execute(text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"), key)
                holder.commit()

    def last_position(self) -> int:
        """The position of the newest event in the log (0 when empty)."""
        with self._reading() as connection:
            return int(connection.execute(select(func.coalesce(func.max(event_log.c.position), 0))).scalar_one())

    def stored_rows_in_commit_order(
        self, after: tuple[int, int] = LOG_START, *, batch_size: int = DEFAULT_BATCH_SIZE, final: bool = False
    ) -> Iterator[tuple[list[ChainRow], tuple[int, int]]]:
        """The chain rows (see `stored_rows`) after the point `after` in commit order
        (`in_commit_order`), in batches of at most `batch_size`, each with the point it reached:
        what a rebuild replays. `final`: every row is final (the caller holds writers off).
        Each batch is read in its own transaction unless the store is `bound_to` one."""
        check_count("batch_size", batch_size, minimum=1)
        point = after
        while True:
            with self._reading() as connection:
                columns = [*chain_columns(connection.dialect), event_log.c.transaction_id]
                query = in_commit_order(connection, columns, point, final=final).limit(batch_size)
                found = connection.execute(query).all()
            rows = [ChainRow._make(row[:-1]) for row in found]
            if rows:
                point = (int(found[-1][-1]), rows[-1].position)
                yield rows, point
            if len(rows) < batch_size:
                return

    def stored_rows(
        self,
        after_position: int = 0,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        learner_ids: Collection[str] | None = None,
    ) -> Iterator[list[ChainRow]]:
        """The chain rows (`codec.ChainRow`) after `after_position` in log order, in batches of
        at most `batch_size`, optionally of the given learners only: the rows as stored, with
        their times as the text the chain hashes (`codec.time_text`), formatted by the database,
        for checking their chain. Each batch is read in its own transaction unless the store is
        `bound_to` one."""
        check_count("after_position", after_position)
        check_count("batch_size", batch_size, minimum=1)
        parameters: dict[str, Any] = {"size": batch_size}
        if learner_ids is not None:
            parameters["learner_ids"] = sorted(set(learner_ids))
        position = after_position
        while True:
            with self._reading() as connection:
                query = _statements_for(connection.dialect).read_chain
                if learner_ids is not None:
                    query = query.where(event_log.c.learner_id.in_(bindparam("learner_ids", expanding=True)))
                rows = list(map(ChainRow._make, connection.execute(query, {**parameters, "after": position})))
            if rows:
                yield rows
            if len(rows) < batch_size:
                return
            position = rows[-1].position

    # -- the backend's part of the contract ------------------------------------------------

    def _append_rows(
        self, learner_id: str, expected_version: int, rows: list[dict[str, Any]], appended: list[AppendedEvent]
    ) -> None:
        try:
            with write_transaction(self.engine) as connection:
                statements = _statements_for(connection.dialect)
                # The stream's tip (last version, hash and type), in one read inside the transaction
                # (PostgreSQL: the same statement marks the transaction as the log's writer).
                head = run_on_driver(
                    connection, statements.head.sql, statements.head.parameters({"learner_id": learner_id})
                )
                tip = StreamTip(*head[0]) if head and head[0][0] is not None else EMPTY_STREAM
                self._chained(learner_id, expected_version, rows, tip)
                with pipelined(connection):  # PostgreSQL: the writes in one round trip
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
    ) -> list[StoredRow]:
        parameters = {
            "size": limit,
            "learner_id": learner_id,
            "after_version": after_version,
            "up_to_version": up_to_version,
            "since": since,
            "until": until,
        }
        with self._reading() as connection:
            return list(map(StoredRow._make, connection.execute(_READ_STREAM, parameters)))

    def _hash_of(self, learner_id: str, version: int) -> str | None:
        c = event_log.c
        with self._reading() as connection:
            found = connection.execute(
                select(c.hash).where(c.learner_id == learner_id, c.version == version)
            ).scalar_one_or_none()
        return None if found is None else str(found)

    def _erasures(self, learner_ids: Collection[str] | None) -> dict[str, datetime]:
        c = event_log.c
        query = select(c.learner_id, c.recorded_at).where(c.event_type == ERASED_EVENT_TYPE)  # one per stream
        if learner_ids is not None:
            query = query.where(c.learner_id.in_(sorted(set(learner_ids))))
        with self._reading() as connection:
            return {learner_id: at for learner_id, at in connection.execute(query)}

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
        try:
            with self._reading() as connection:
                return [StreamSummary(*row) for row in connection.execute(query)]
        except ValueError:  # a recorded time that does not read back: list every learner, naming it
            return self._stream_summaries_naming_damage(after, limit)

    def _stream_summaries_naming_damage(self, after: str | None, limit: int) -> list[StreamSummary]:
        """`_stream_summaries` where some recorded time does not parse: the times are read as the
        database stores them and parsed here, and each learner's rows that do not are named."""
        c = event_log.c
        with self._reading() as connection:
            recorded = time_text(connection.dialect, c.recorded_at)
            query = (
                select(c.learner_id, func.max(c.version), func.min(recorded), func.max(recorded))
                .group_by(c.learner_id)
                .order_by(c.learner_id)
                .limit(limit)
            )
            if after is not None:
                query = query.where(c.learner_id > after)
            summaries = []
            for learner_id, version, first, last in connection.execute(query):
                times = (time_from_text(first), time_from_text(last))
                if None not in times:
                    summaries.append(StreamSummary(learner_id, version, *times))
                    continue
                rows = connection.execute(
                    select(c.position, c.version, recorded).where(c.learner_id == learner_id).order_by(c.version)
                ).all()
                readable = [at for _, _, text in rows if (at := time_from_text(text)) is not None]
                damaged = "; ".join(
                    f"version {row_version} (position {position}): recorded_at {text!r} is not a time"
                    for position, row_version, text in rows
                    if time_from_text(text) is None
                )
                summaries.append(
                    StreamSummary(
                        learner_id, version, min(readable, default=None), max(readable, default=None), damaged
                    )
                )
            return summaries

    def _log_fetcher(self, *, projectable: bool) -> Callable[[int, int], list[StoredRow] | list[ProjectableRow]]:
        def fetch(after: int, size: int) -> list[StoredRow] | list[ProjectableRow]:
            with self._reading() as connection:
                if projectable:
                    return list(
                        map(
                            ProjectableRow._make,
                            connection.execute(_READ_LOG_PROJECTABLE, {"after": after, "size": size}),
                        )
                    )
                return list(map(StoredRow._make, connection.execute(_READ_LOG, {"after": after, "size": size})))

        return fetch

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        if self._connection is not None:
            yield self._connection
            return
        with read_transaction(self.engine) as connection:
            yield connection


def time_text(dialect: Dialect, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A time column as the database prints it, in UTC (`codec.time_text`'s form): on SQLite
    the stored text, whatever a hand stored there; on PostgreSQL the timestamp printed."""
    if dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24:MI:SS.US")
    return cast(column, String())


def time_from_text(text: str | None) -> datetime | None:
    """A time printed by `time_text` as an aware UTC datetime; None when it is not one."""
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text + "+00:00")
    except ValueError:
        return None


def chain_columns(dialect: Dialect, *, with_hash: bool = True) -> list[ColumnElement[Any]]:
    """The columns of a chain row (`codec.ChainRow`: both times as `codec.time_text`) for
    `dialect`, printed by the database: on SQLite the stored text (as text whatever a hand
    stored there, and the event id's 32 digits in the 8-4-4-4-12 form), on PostgreSQL the
    timestamp in UTC and the uuid as text. Nothing is parsed in Python, and nothing a hand
    stored can make the check fail other than by not verifying. Without `with_hash`, all but the
    hash (what migration 0003 reads to compute it)."""
    columns: dict[str, ColumnElement[Any]] = {name: event_log.c[name] for name in ChainRow._fields}
    for name in ("occurred_at", "recorded_at"):
        columns[name] = time_text(dialect, event_log.c[name]).label(name)
    digits = cast(event_log.c.event_id, String())
    if dialect.name == "postgresql":
        columns["event_id"] = digits.label("event_id")
    else:
        parts = [func.substr(digits, start, length) for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))]
        dashed = func.lower(parts[0] + "-" + parts[1] + "-" + parts[2] + "-" + parts[3] + "-" + parts[4])
        columns["event_id"] = case((func.length(digits) == 32, dashed), else_=digits).label("event_id")
    if not with_hash:
        del columns["hash"]
    return list(columns.values())


LOG_WRITERS_LOCK = 0x44414C41_4C4F4721
"""PostgreSQL: the key ("DALALOG!") of the transaction-level advisory lock that every
transaction writing event_log rows takes, shared, before its first write (the append's tip
read takes it; `mark_as_log_writer` for any other writer). `commit_horizon` waits only for
the transactions that hold it."""

_LOCK_CLASS, _LOCK_OBJECT = LOG_WRITERS_LOCK >> 32, LOG_WRITERS_LOCK & 0xFFFF_FFFF  # as pg_locks shows a bigint key

_HORIZON = text(
    f"""
WITH locks AS MATERIALIZED (
    SELECT locktype, database, classid, objid, objsubid, transactionid, virtualtransaction, mode, granted
    FROM pg_locks
), log_writers AS (
    SELECT virtualtransaction FROM locks
    WHERE locktype = 'advisory' AND granted AND classid = {_LOCK_CLASS}::oid AND objid = {_LOCK_OBJECT}::oid
      AND objsubid = 1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), not_log_writers AS (
    SELECT transactionid FROM locks
    WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted
      AND virtualtransaction NOT IN (SELECT virtualtransaction FROM log_writers)
)
SELECT (least(
    pg_snapshot_xmax(pg_current_snapshot()),
    (SELECT min(running) FROM pg_snapshot_xip(pg_current_snapshot()) AS running
     WHERE running::xid NOT IN (SELECT transactionid FROM not_log_writers))
)::text)::bigint, current_setting('transaction_isolation')
"""
)


def mark_as_log_writer(connection: Connection) -> None:
    """Mark the connection's transaction as a writer of event_log rows, for `commit_horizon`:
    on PostgreSQL, the shared transaction-level advisory lock LOG_WRITERS_LOCK (released at its
    end). Must run before the transaction's first write of anything (before it has a
    transaction id). The append does it in its tip read; anything else that inserts into the
    log (by hand, a test standing in for an append) calls this first."""
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock_shared({LOG_WRITERS_LOCK})"))


def commit_horizon(connection: Connection) -> int:
    """PostgreSQL: a transaction id below which no event can still appear (one statement).

    Rows of event_log are written only by transactions marked as the log's writers (the shared
    advisory lock LOG_WRITERS_LOCK, taken before their first write, so before they have a
    transaction id; released after their end is visible to new snapshots). In one statement,
    with the statement's snapshot S taken first and the lock table (`pg_locks`, read as it is
    now, not as of S) after it, the horizon is the smallest of S's xmax and every transaction
    S sees running except those the lock table shows holding their id without the mark. A
    transaction that writes the log is then either ended (its mark released: a snapshot taken
    after this statement sees it), or marked with an id the lock table shows (not below the
    horizon), or marked with an id not shown yet (running in S: not below the horizon; or given
    after S: not below S's xmax), or not marked yet (its id, given later, is above S's xmax).
    Below the horizon everything is final for a snapshot taken after this statement: read
    there in a LATER statement, on a READ COMMITTED transaction (its next statement takes a new
    snapshot; anything else is refused). A transaction that cannot write the log (another
    database's, a session of this one idle in a transaction that wrote other tables) holds
    nothing back."""
    horizon, isolation = connection.execute(_HORIZON).one()
    if isolation != "read committed":
        raise InvalidInput(
            "connection", f"the commit horizon needs a READ COMMITTED transaction, not {isolation.upper()}"
        )
    return int(horizon)


def in_commit_order(
    connection: Connection, columns: Sequence[ColumnElement[Any]], after: tuple[int, int], *, final: bool = False
) -> Select[Any]:
    """The events after the point `after` (transaction_id, position), in the order their
    transactions made them final: what a reader that must never pass an event reads. Run the
    query it returns next, on the same connection.

    On PostgreSQL a position is taken when a row is inserted, and its transaction may commit
    after others that took higher positions. So the rows are read in (transaction_id, position)
    order, and only those below `commit_horizon`, which it asks for first (a statement of its
    own, before the query: see there why). `final=True` drops the horizon, for a reader that
    holds off every writer (a rebuild's catch-up under its lock). On SQLite a writer holds the
    write lock from its first statement to its commit: positions commit in order, and the
    position alone is the order. `subscriptions` and `projections.rebuild` read the log this
    way."""
    c = event_log.c
    if connection.dialect.name != "postgresql":
        return select(*columns).where(c.position > after[1]).order_by(c.position)
    query = select(*columns).where(tuple_(c.transaction_id, c.position) > tuple_(literal(after[0]), literal(after[1])))
    if not final:
        query = query.where(c.transaction_id < literal(commit_horizon(connection)))
    return query.order_by(c.transaction_id, c.position)


def rows_by_stream(
    connection: Connection, batch_size: int = DEFAULT_BATCH_SIZE, *, with_hash: bool = True
) -> Iterator[list[ChainRow]]:
    """The log's chain rows by learner then version, in keyset batches: how a migration walks
    every stream from its first event with bounded memory. Without `with_hash` (a log not yet
    chained) each row's hash is read as ""."""
    order = (event_log.c.learner_id, event_log.c.version)
    columns = chain_columns(connection.dialect, with_hash=with_hash)
    after: tuple[str, int] | None = None
    while True:
        query = select(*columns).order_by(*order).limit(batch_size)
        if after is not None:
            query = query.where(tuple_(*order) > tuple_(literal(after[0]), literal(after[1])))
        result = connection.execute(query)
        rows = [ChainRow._make(row if with_hash else (*row, "")) for row in result]
        if rows:
            yield rows
        if len(rows) < batch_size:
            return
        after = (rows[-1].learner_id, rows[-1].version)


def rechain_log(
    connection: Connection, key: LogKey | None, *, with_hash: bool = True, batch_size: int = DEFAULT_BATCH_SIZE
) -> int:
    """Recompute every stored hash under `key`, stream by stream in version order, from what is
    stored; returns the rows whose hash changed. What migration 0003 does to a log before the
    chain, and a restore that puts a plain SHA-256 log under a log key (after checking it).
    `with_hash=False`: the hash column is not filled yet."""
    digest = hasher(key)
    update = event_log.update().where(event_log.c.position == bindparam("at")).values(hash=bindparam("new_hash"))
    learner: str | None = None
    previous = ""
    changed = 0
    for rows in rows_by_stream(connection, batch_size, with_hash=with_hash):
        hashes = []
        for row in rows:
            if row.learner_id != learner:
                learner, previous = row.learner_id, ""
            previous = link_of(row, previous, digest)
            if previous != row.hash:
                hashes.append({"at": row.position, "new_hash": previous})
        if hashes:
            connection.execute(update, hashes)
            changed += len(hashes)
    return changed


def check_log_key(connection: Connection, log_key: LogKey | None) -> None:
    """LogKeyError unless the log is chained the way `log_key` chains (`log_chain`'s record).

    A process with another key, or none where the log has one, would append links that do not
    verify: it is refused at start-up rather than found out by the next `dala verify`.
    """
    record = connection.execute(select(log_chain.c.mode, log_chain.c.key_id).where(log_chain.c.id == 1)).first()
    if record is None:
        raise LogKeyError("the log's chain record (table log_chain) is missing; run `dala verify`")
    mode = chain_mode(log_key)
    key_id = None if log_key is None else log_key.key_id
    if (record.mode, record.key_id) == (mode, key_id):
        return
    if record.mode == "sha256":
        raise LogKeyError(
            f"the event log is chained without a key (plain SHA-256), but a log key (id {key_id}) is set; "
            f"unset DALA_LOG_KEY/DALA_LOG_KEY_FILE, or re-chain the log with the key (see the README)"
        )
    if log_key is None:
        raise LogKeyError(
            f"the event log is chained with a log key (id {record.key_id}); set DALA_LOG_KEY or DALA_LOG_KEY_FILE"
        )
    raise LogKeyError(
        f"the event log is chained with the log key of id {record.key_id}, not the configured one (id {key_id})"
    )


def check_log_key_to_verify(connection: Connection, log_key: LogKey | None) -> None:
    """LogKeyError (as `check_log_key` words it) when the log is recorded as chained with a key
    and `log_key` is not that key, or none: checked before the chains are, whose every link
    would fail without the key and read as forgery. A missing record, or a log recorded as
    chained without a key while a key is given, is for the check itself to report: either may
    be the trace of someone rewriting the log."""
    record = connection.execute(select(log_chain.c.mode, log_chain.c.key_id).where(log_chain.c.id == 1)).first()
    if record is None or record.mode == chain_mode(None):
        return
    if log_key is None or (record.mode, record.key_id) != (chain_mode(log_key), log_key.key_id):
        check_log_key(connection, log_key)


class _Statements:
    """The append's statements, compiled once per dialect and run on the driver (see
    `dialects.DriverStatement`: on this path it pays), and the chain rows' query.

    On SQLite the insert stores the two times as the text the chain hashed them as
    (`codec.chain_rows` leaves it in the row): the very text `UTCDateTime` writes there, made
    once for both.
    """

    def __init__(self, dialect: Dialect) -> None:
        insert = event_log.insert()
        columns = [name for name in written_columns(event_log) if name not in DATABASE_COLUMNS]
        if dialect.name == "sqlite":
            insert = insert.values(
                occurred_at=bindparam("occurred_text", type_=String()),
                recorded_at=bindparam("recorded_text", type_=String()),
            )
            columns = [name for name in columns if name not in ("occurred_at", "recorded_at")]
        self.insert = DriverStatement(insert, dialect, columns=columns)
        self.read_chain = select(*chain_columns(dialect)).where(_AFTER).order_by(event_log.c.position).limit(_SIZE)
        self.stream_version = DriverStatement(
            select(func.max(event_log.c.version)).where(event_log.c.learner_id == bindparam("learner_id")), dialect
        )
        tip = (
            select(event_log.c.version, event_log.c.hash, event_log.c.event_type)
            .where(event_log.c.learner_id == bindparam("learner_id"))
            .order_by(event_log.c.version.desc())
            .limit(literal_column("1"))
            .offset(literal_column("0"))
        )
        if dialect.name == "postgresql":
            # The append's first statement marks its transaction as a writer of the log (before
            # it has a transaction id: see `commit_horizon`) in the same round trip as the tip
            # read. The function in FROM runs whether or not the stream has a row (then one row
            # of NULLs comes back).
            last = tip.lateral("tip")
            marked = func.pg_advisory_xact_lock_shared(literal_column(str(LOG_WRITERS_LOCK))).alias("marked")
            tip = select(last.c.version, last.c.hash, last.c.event_type).select_from(marked.outerjoin(last, true()))
        self.head = DriverStatement(tip, dialect)


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
_AFTER = event_log.c.position > bindparam("after")
_READ_LOG = select(*_RECORDED_COLUMNS).where(_AFTER).order_by(event_log.c.position).limit(_SIZE)
_READ_LOG_PROJECTABLE = select(*_PROJECTABLE_COLUMNS).where(_AFTER).order_by(event_log.c.position).limit(_SIZE)
