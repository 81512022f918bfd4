"""Where SQLite and PostgreSQL differ, and how statements reach the driver, in one small place.

- Column types that read back exactly what was written on both: `UTCDateTime`, `EventIdText`.
- `upsert`: INSERT ... ON CONFLICT for either dialect.
- Transactions: `write_transaction` (SQLite's BEGIN IMMEDIATE via `configure_sqlite`) and
  `read_transaction`.
- The write path's statements: Core statements compiled once per dialect (`DriverStatement`)
  and run on the DBAPI cursor inside SQLAlchemy's transaction (`run_on_driver`).

Everything else in the package speaks portable SQLAlchemy Core and calls these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar, cast
from uuid import UUID

from sqlalchemy import TIMESTAMP, Connection, Dialect, Engine, Table, Uuid, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeDecorator

SQLITE_BUSY_TIMEOUT_MS = 30_000


class UTCDateTime(TypeDecorator[datetime]):
    """A TIMESTAMP column that only takes timezone-aware datetimes and always returns UTC ones.

    PostgreSQL stores `timestamp with time zone`; SQLite has no time zones, so the value is
    stored as UTC text and given its zone back on the way out. Either way what is read back
    equals what was written, which a rebuild's equality with the inline projection relies on.
    """

    impl = TIMESTAMP(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: every timestamp must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # The hot path of every append: one call instead of a chain of two, same text format
        # as SQLAlchemy's own SQLite DATETIME (always with microseconds, so text order is time
        # order). A UTC value prints as that text plus "+00:00", which is cut off.
        def to_sqlite_text(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is not UTC:
                if value.utcoffset() is None:
                    raise ValueError(f"naive datetime {value!r}: every timestamp must be timezone-aware")
                value = value.astimezone(UTC)
            return value.isoformat(" ", "microseconds")[:-6]

        return to_sqlite_text

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], datetime | None] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        # Reading the log back (history, as-of views, rebuilds) parses every timestamp. Parsing
        # the stored UTC text with its zone appended gives the aware value in one C call, several
        # times faster than parsing it naive and then replacing the zone.
        def from_sqlite_text(value: Any) -> datetime | None:
            if value is None:
                return None
            if isinstance(value, str):
                try:
                    return datetime.fromisoformat(value + "+00:00")
                except ValueError:  # text with a zone of its own, not written by this type
                    value = datetime.fromisoformat(value)
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)  # type: ignore[no-any-return]

        return from_sqlite_text

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class EventIdText(TypeDecorator[str]):
    """A UUID column whose values are canonical UUID strings (`8-4-4-4-12` lowercase hex).

    Stored as SQLAlchemy's `Uuid` stores it: native `uuid` on PostgreSQL, 32 hex digits on
    SQLite. Reading the SQLite form back only inserts the dashes, rather than building a
    `uuid.UUID` per row to print it, which costs more than the rest of reading an event's ids.
    """

    impl = Uuid(as_uuid=False)
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], str | None] | None:
        if dialect.supports_native_uuid:
            return self.impl_instance.result_processor(dialect, coltype)

        def from_hex(value: Any) -> str | None:
            if value is None:
                return None
            if len(value) == 32 and value.islower():
                return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
            return str(UUID(value))

        return from_hex


def upsert(table: Table, key_columns: Sequence[str], dialect_name: str) -> Insert:
    """INSERT ... ON CONFLICT (key) DO UPDATE of every other column, for the given dialect.

    Both dialects spell it the same way in SQLAlchemy, but through different constructs.
    """
    # Imported here, not at the top: the dialect modules (PostgreSQL's brings asyncio) cost a
    # command that only reads 20 ms of start-up, and reads never build an upsert.
    if dialect_name == "sqlite":
        from sqlalchemy.dialects import sqlite

        statement: Any = sqlite.insert(table)
    elif dialect_name == "postgresql":
        from sqlalchemy.dialects import postgresql

        statement = postgresql.insert(table)
    else:
        raise NotImplementedError(f"upserts are implemented for sqlite and postgresql, not {dialect_name}")
    updated = {
        column.name: statement.excluded[column.name]
        for column in table.columns
        if column.name not in key_columns and not column.primary_key
    }
    if not updated:
        return statement.on_conflict_do_nothing(index_elements=list(key_columns))  # type: ignore[no-any-return]
    return statement.on_conflict_do_update(index_elements=list(key_columns), set_=updated)  # type: ignore[no-any-return]


def run_on_driver(
    connection: Connection, sql: str, parameters: Any, *, many: bool = False
) -> list[tuple[Any, ...]] | None:
    """Run compiled `sql` on the connection's DBAPI cursor: rows for a query, None otherwise.

    Inside a transaction, with nobody listening to cursor executions, the statement goes
    straight to the driver: the per-statement bookkeeping of a Core execution costs more than
    SQLite's own work for the one-row statements of an append. Otherwise it goes through
    `exec_driver_sql`: when there is no transaction yet (SQLAlchemy must begin one), when
    cursor-execution listeners (tracing, metrics) expect to see every statement, and
    when SQLAlchemy logs its SQL (`echo=True`, or the `sqlalchemy.engine` logger at INFO).
    Driver errors come out as SQLAlchemy's exceptions either way (IntegrityError, ...).
    """
    if not connection.in_transaction() or _observed(connection):
        result = connection.exec_driver_sql(sql, parameters)
        if not result.returns_rows:
            return None
        return [tuple(row) for row in result.fetchall()]
    proxied = connection.connection
    cursor = proxied.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        if cursor.description is None:
            return None
        return cast("list[tuple[Any, ...]]", cursor.fetchall())
    except connection.dialect.loaded_dbapi.Error as error:
        invalidated = connection.dialect.is_disconnect(error, proxied, cursor)
        if invalidated:
            connection.invalidate(error)
        raise DBAPIError.instance(
            sql,
            parameters,
            error,
            connection.dialect.loaded_dbapi.Error,
            connection_invalidated=invalidated,
            dialect=connection.dialect,
            ismulti=many,
        ) from error
    finally:
        cursor.close()


@contextmanager
def pipelined(connection: Connection) -> Iterator[None]:
    """Statements of the block sent without waiting for each one's answer, on PostgreSQL
    (psycopg's pipeline mode: one round trip for the lot, where each took one): for the writes
    of an append, whose answers nothing reads. Errors come out at the end of the block, as
    SQLAlchemy's exceptions (IntegrityError, ...). Anywhere else, or when anyone watches the
    connection's statements (see `run_on_driver`), the block runs as it is."""
    if (
        connection.dialect.name != "postgresql"
        or connection.dialect.is_async  # psycopg's asyncio pipeline is awaited: `aio` pays the round trips
        or not connection.in_transaction()
        or _observed(connection)
    ):
        yield
        return
    driver: Any = connection.connection.driver_connection
    driver_error = connection.dialect.loaded_dbapi.Error
    failed: Exception | None = None
    with driver.pipeline() as pipeline:
        try:
            yield
            pipeline.sync()  # the answers, errors included, here
        except (driver_error, DBAPIError) as error:  # raised by the driver, or already converted
            failed = error
            # Out of the aborted state before the pipeline ends (else psycopg logs it as ignored).
            with suppress(driver_error):
                pipeline.sync()
    if isinstance(failed, DBAPIError):
        raise failed
    if failed is not None:
        raise DBAPIError.instance(
            "(pipelined statements)", None, failed, driver_error, dialect=connection.dialect
        ) from failed


def _observed(connection: Connection) -> bool:
    """Whether anyone watches this connection's statements or errors: cursor or error
    listeners, or SQL logging (`echo=True`, or the `sqlalchemy.engine` logger at INFO)."""
    dispatch = connection.dispatch
    if dispatch.before_cursor_execute or dispatch.after_cursor_execute or connection.dialect.dispatch.handle_error:
        return True
    return bool(connection.engine.echo) or _SQL_LOGGER.isEnabledFor(logging.INFO)


_SQL_LOGGER = logging.getLogger("sqlalchemy.engine.Engine")
_log = logging.getLogger("dala_events.dialects")


class DriverStatement:
    """A Core statement compiled once for one dialect and run on the driver (`run_on_driver`).

    Writes on the hot paths (append, projection, rebuild) run the same few statements
    thousands of times; compiling once and converting values with the column types' own bind
    processors (public API: `type.dialect_impl(dialect).bind_processor(dialect)`) skips
    SQLAlchemy's per-execution cache lookup and parameter bookkeeping while writing exactly the
    values a Core execution would. Measured with `make bench`: batched writes 20% and
    one-transaction-per-mutation writes 60% faster than Core executions of the same
    statements. Reads measured no faster this way and use Core.
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect, *, columns: Sequence[str] | None = None) -> None:
        # `columns` names the values an INSERT/UPSERT takes (the rest keep their defaults).
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(columns) if columns is not None else None)
        self.sql = compiled.string
        names = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
        self._positional = compiled.positional
        # Each value is converted by its type's own bind processor, as a Core execution would.
        self._steps: list[tuple[str, Callable[[Any], Any] | None]] = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
        ]

    def parameters(self, row: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """One row's values, converted and shaped for the driver."""
        if self._positional:
            return tuple([row[name] if convert is None else convert(row[name]) for name, convert in self._steps])
        return {name: row[name] if convert is None else convert(row[name]) for name, convert in self._steps}

    def scalar(self, connection: Connection, parameters: Mapping[str, Any]) -> Any:
        """The first column of the first row of a query, as the driver returns it (for values
        that need no conversion, such as integers), or None when there is no row."""
        fetched = run_on_driver(connection, self.sql, self.parameters(parameters))
        return fetched[0][0] if fetched else None

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per row (executemany when more than one)."""
        if len(rows) == 1:
            run_on_driver(connection, self.sql, self.parameters(rows[0]))
        elif rows:
            run_on_driver(connection, self.sql, [self.parameters(row) for row in rows], many=True)


T = TypeVar("T")


def once_per_dialect(build: Callable[[Dialect], T]) -> Callable[[Dialect], T]:
    """`build(dialect)` computed once per dialect and driver, then reused (compiled statements)."""
    built: dict[tuple[str, str], T] = {}

    def get(dialect: Dialect) -> T:
        key = (dialect.name, dialect.driver)
        value = built.get(key)
        if value is None:
            value = built[key] = build(dialect)
        return value

    return get


def written_columns(table: Table) -> list[str]:
    """The columns an insert into `table` gives values for: all but an integer surrogate key."""
    return [
        column.name
        for column in table.columns
        if not (column.primary_key and column.autoincrement in (True, "auto") and column.type.python_type is int)
    ]


def configure_sqlite(engine: Engine) -> None:
    """Set the pragmas every SQLite connection needs and take over transaction begins.

    WAL lets readers run beside the one writer; `synchronous=NORMAL` is durable across
    application crashes in WAL mode; `foreign_keys` enforces the read models' FKs; the busy
    timeout makes a second writer wait instead of failing. Writers begin with `BEGIN IMMEDIATE`
    so that they queue for the write lock up front rather than deadlocking on lock upgrade.
    """

    @event.listens_for(engine, "connect")
    def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Freed pages are overwritten with zeros: deleted rows (an erased learner's) leave no copy.
        cursor.execute("PRAGMA secure_delete = ON")
        cursor.close()

    _begin_explicitly(engine)


def _begin_explicitly(engine: Engine) -> None:
    """Begin every transaction of `engine`'s SQLite connections with an explicit BEGIN:
    IMMEDIATE for a `write_transaction` (the write lock up front, so a read and the write that
    depends on it are one atomic step), DEFERRED otherwise. The driver's own implicit begins
    (only before a data-changing statement) are turned off."""

    @event.listens_for(engine, "connect")
    def no_implicit_begins(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        mode = "IMMEDIATE" if connection.get_execution_options().get("dala_write") else "DEFERRED"
        # Straight to the driver: SQLAlchemy is beginning the transaction this statement opens.
        connection.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]


def configure_key_store_sqlite(engine: Engine) -> None:
    """The pragmas of a SQLite key store: WAL with `synchronous=FULL`, freed pages overwritten,
    and a busy timeout so that writers queue.

    `synchronous=FULL` makes every commit durable (the WAL is synced) before it returns: a new
    learner's data key is on disk before the events encrypted with it are appended, even
    across a power failure. In WAL mode that costs one sync a commit (a rollback journal took
    three). The WAL keeps old pages until a checkpoint, so an erasure checkpoints and truncates
    it (`release_freed_space`, which the erasure runs on the key store too): no copy of a
    destroyed key survives there.
    """

    @event.listens_for(engine, "connect")
    def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA secure_delete = ON")
        cursor.close()

    _begin_explicitly(engine)


class FreedSpace(NamedTuple):
    """What `release_freed_space` did."""

    done: str
    """What was done, in words."""
    complete: bool
    """False when a step could not finish (a reader kept SQLite's WAL from being truncated):
    old pages may still hold the rows, and running it again finishes it."""


def release_freed_space(engine: Engine, tables: Sequence[str], *, full: bool = False) -> FreedSpace:
    """After rows of `tables` were deleted or rewritten (an erasure, encrypting old events), make
    sure no readable copy of them is left in the database's files where this process can see to
    it.

    SQLite: deleted bytes are already overwritten (`secure_delete`), and in WAL mode the WAL,
    which still holds the pages as they were, is checkpointed into the main file and truncated
    to nothing; a reader that outlasts the busy timeout defers that (`complete` is False).
    PostgreSQL: `VACUUM` of `tables` (outside any transaction) makes the dead rows' space
    reusable, but their bytes stay in the table and index files until overwritten; `full` runs
    `VACUUM FULL`, which rewrites the files without them and locks the tables while it runs. The
    server's WAL archive, replicas and base backups keep old pages until they are recycled (see
    the README, "Erasure").
    """
    if engine.dialect.name == "sqlite":
        if engine.url.database in (None, "", ":memory:"):
            return FreedSpace("in memory: nothing stored on disk", True)
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert driver is not None
            journal = driver.execute("PRAGMA journal_mode").fetchone()[0]
            if str(journal).lower() != "wal":
                return FreedSpace("deleted rows overwritten (secure_delete)", True)
            busy = driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            _log.warning("the WAL could not be truncated: another connection kept reading past the busy timeout")
            return FreedSpace(
                "deleted rows overwritten (secure_delete), but the WAL still holds old pages: another connection "
                "was reading; run it again once readers are gone",
                False,
            )
        return FreedSpace("deleted rows overwritten (secure_delete); WAL checkpointed and truncated", True)
    if engine.dialect.name == "postgresql":
        quoted = ", ".join(engine.dialect.identifier_preparer.quote(name) for name in tables)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(f"VACUUM {'FULL ' if full else ''}{quoted}")
        if full:
            return FreedSpace(f"VACUUM FULL rewrote {len(tables)} tables and their indexes", True)
        return FreedSpace(
            f"VACUUM ran on {len(tables)} tables; their files keep the old bytes until reused "
            "(VACUUM FULL rewrites them: see the README)",
            True,
        )
    return FreedSpace("nothing to do for this database", True)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes: committed on success, rolled back on any error.

    On SQLite it holds the write lock from its first statement (see `configure_sqlite`); on
    PostgreSQL row locks and unique constraints do the same job without asking.
    """
    with engine.connect() as connection:
        # Set on the connection (in place), so the SQLite begin listener sees it: no per-engine registry.
        connection.execution_options(dala_write=True)
        with connection.begin():
            yield connection


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that only reads: what it sees is one consistent snapshot of the database.

    Being inside a transaction from the start also lets `run_on_driver` hand its queries
    straight to the driver.
    """
    with engine.connect() as connection, connection.begin():
        yield connection
