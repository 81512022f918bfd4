"""Where SQLite and PostgreSQL differ, and how statements reach the driver, in one small place.

- Column types that read back exactly what was written on both: `UTCDateTime`, `EventIdText`.
- `upsert`: INSERT ... ON CONFLICT for either dialect.
- Transactions: `write_transaction` (SQLite's BEGIN IMMEDIATE via `configure_sqlite`) and
  `read_transaction`.
- The write path's statements: Core statements compiled once per dialect (`DriverStatement`)
  and run on the DBAPI cursor inside SQLAlchemy's transaction (`run_on_driver`).
- Faults: a failure of the database itself (full, read-only, damaged, the connection lost)
  raised as the package's DatabaseFault naming the database (`name_database_faults`), from
  SQLAlchemy's executions, the driver fast path and SQLite's explicit begins alike.

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
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DatabaseError, DBAPIError, InterfaceError, InternalError, OperationalError, StatementError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeDecorator

from dala_events.errors import DatabaseFault

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
    Driver errors come out as SQLAlchemy's exceptions either way (IntegrityError, ...), a
    fault of the database as DatabaseFault where the engine names them (`name_database_faults`).
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
        raise raised_as(
            connection,
            DBAPIError.instance(
                sql,
                parameters,
                error,
                connection.dialect.loaded_dbapi.Error,
                connection_invalidated=invalidated,
                dialect=connection.dialect,
                ismulti=many,
            ),
        ) from error
    finally:
        cursor.close()


@contextmanager
def pipelined(connection: Connection) -> Iterator[None]:
    """Statements of the block sent without waiting for each one's answer, on PostgreSQL
    (psycopg's pipeline mode: one round trip for the lot, where each took one): for the writes
    of an append, whose answers nothing reads. Errors come out at the end of the block, as
    SQLAlchemy's exceptions (IntegrityError, ...) or DatabaseFault (see `run_on_driver`).
    Anywhere else, or when anyone watches the connection's statements, the block runs as it is."""
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
        except (driver_error, DBAPIError, DatabaseFault) as error:  # raised by the driver, or already converted
            failed = error
            # Out of the aborted state before the pipeline ends (else psycopg logs it as ignored).
            with suppress(driver_error):
                pipeline.sync()
    if isinstance(failed, (DBAPIError, DatabaseFault)):
        raise failed
    if failed is not None:
        invalidated = connection.dialect.is_disconnect(cast(Any, failed), connection.connection, None)
        if invalidated:
            connection.invalidate(failed)
        raise raised_as(
            connection,
            DBAPIError.instance(
                "(pipelined statements)",
                None,
                failed,
                driver_error,
                connection_invalidated=invalidated,
                dialect=connection.dialect,
            ),
        ) from failed


def _observed(connection: Connection) -> bool:
    """Whether anyone watches this connection's statements or errors: cursor or error
    listeners (but the package's own, `name_database_faults`, whose work the fast path does
    itself), or SQL logging (`echo=True`, or the `sqlalchemy.engine` logger at INFO)."""
    dispatch = connection.dispatch
    if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
        return True
    handlers = connection.dialect.dispatch.handle_error
    if handlers and not (len(handlers) == 1 and _fault_instead in handlers):
        return True
    return bool(connection.engine.echo) or _SQL_LOGGER.isEnabledFor(logging.INFO)


def name_database_faults(engine: Engine) -> None:
    """Make every failure of the database behind `engine` (see `database_fault`) a DatabaseFault
    naming it, the driver's error chained, wherever it happens: SQLAlchemy's executions,
    connects and commits (its `handle_error` event), and the fast path (`run_on_driver`,
    `pipelined`) and SQLite's explicit begins, which raise what `raised_as` gives. A dead
    pooled connection found by the pool's pre-ping is replaced, not reported."""
    event.listen(engine, "handle_error", _fault_instead)


def _fault_instead(context: ExceptionContext) -> DatabaseFault | None:
    # Returned, not raised: SQLAlchemy raises it in the end, and error listeners added after
    # this one still see the failure (a raise would end the chain here).
    error, engine = context.sqlalchemy_exception, context.engine
    if context.is_pre_ping or not isinstance(error, DBAPIError) or engine is None:
        return None
    return database_fault(error, engine, disconnected=context.is_disconnect, connecting=context.connection is None)


def raised_as(connection: Connection, error: StatementError) -> Exception:
    """What a failure on `connection` is raised as: DatabaseFault where its engine names faults
    (`name_database_faults`) and it is one, else SQLAlchemy's exception."""
    if isinstance(error, DBAPIError) and _fault_instead in connection.dialect.dispatch.handle_error:
        fault = database_fault(error, connection.engine, disconnected=error.connection_invalidated)
        if fault is not None:
            return fault
    return error


def database_fault(
    error: DBAPIError, engine: Engine, *, disconnected: bool = False, connecting: bool = False
) -> DatabaseFault | None:
    """`error` as a DatabaseFault naming `engine`'s database, or None when it is not a failure
    of the database but of what a statement asked: a broken constraint (IntegrityError: the
    store turns its version guard's into ConcurrencyError), bad SQL or a missing table
    (ProgrammingError; on SQLite an OperationalError of the generic code SQLITE_ERROR), a value
    the column refuses (DataError). `connecting`: it failed to connect."""
    if not isinstance(error, (OperationalError, InternalError, InterfaceError)) and type(error) is not DatabaseError:
        return None
    cause = error.orig
    code = getattr(cause, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == _SQLITE_ERROR:
        return None
    state = str(getattr(cause, "sqlstate", None) or "")
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    disconnected = disconnected or error.connection_invalidated
    hint = _fault_hint(primary, state, disconnected=disconnected, connecting=connecting)
    return DatabaseFault(database_name(engine), first, hint, disconnected=disconnected)


def database_name(engine: Engine) -> str:
    """The database for people: a SQLite file's path, else its URL without the password (nor
    the driver, which the async API changes)."""
    url = engine.url
    if engine.dialect.name == "sqlite" and url.database not in (None, "", ":memory:"):
        return str(url.database)
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


_SQLITE_ERROR = 1  # SQLite's generic code: bad SQL, a missing table (a statement's fault, not the database's)


def _fault_hint(sqlite_code: int | None, sqlstate: str, *, disconnected: bool, connecting: bool) -> str:
    """What to do about a fault, from SQLite's primary result code or PostgreSQL's SQLSTATE."""
    if not connecting and (disconnected or sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")):
        return (
            "the connection to it was lost (the session was ended, or the server restarted or is out of reach); "
            "try again"
        )
    if sqlite_code == 13 or sqlstate.startswith("53"):  # SQLITE_FULL; disk full, out of memory or connections
        return "it is full (or out of resources): free space on its disk, then try again"
    if sqlite_code == 8 or sqlstate == "25006":  # SQLITE_READONLY; read_only_sql_transaction
        return "it cannot be written here: a read-only file, folder or file system, or a server that takes no writes"
    if sqlite_code in (11, 26) or sqlstate in ("XX001", "XX002"):  # SQLITE_CORRUPT, SQLITE_NOTADB; data corrupted
        return "it is damaged or not a DALA database: restore it from a backup (`dala restore`)"
    if sqlite_code in (5, 6) or sqlstate == "55P03" or sqlstate.startswith("40") or sqlstate == "57014":
        return "another connection held what it needed too long (a transaction left open?); try again"
    if sqlite_code in (10, 14, 3):  # SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_PERM
        return "its file cannot be read or written: check the disk, the file and its folder's permissions"
    if connecting:
        return "check that the server runs and the database URL is right"
    return "check that it can be reached and written, and has free space"


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
        # Straight to the driver: SQLAlchemy is beginning the transaction this statement opens,
        # and raises what a listener raises as it is: its errors are converted here.
        driver_error = connection.dialect.loaded_dbapi.Error
        try:
            connection.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]
        except driver_error as error:
            failed = DBAPIError.instance(f"BEGIN {mode}", None, error, driver_error, dialect=connection.dialect)
            raise raised_as(connection, failed) from error


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
