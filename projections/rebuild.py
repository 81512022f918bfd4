"""Rebuild read models from the event log into shadow tables, then swap them in atomically.

How a rebuild runs, and why it is safe while the application keeps writing:

1. Shadow tables are created beside the live ones (SQLite: `<table>__rebuild`; PostgreSQL:
   the same names in the schema `dala_rebuild`). Leftovers of an interrupted run are dropped
   first, so a rebuild can always simply be run again.
2. The log is streamed in batches by position through the same projectors the inline
   projection uses, written into the shadows in short transactions: memory stays bounded and
   writers keep appending (their inline projection goes to the live tables as usual). Each
   event's hash is checked against its stream's chain before it is projected, by the same walk
   `dala verify` makes (`store.chain`): an event that does not verify is never projected, and
   the rebuild ends with RebuildError saying what verify says, so a forged value never
   reaches a read model.
3. Catch-up and swap, in one short transaction that holds off writers (SQLite's write lock;
   PostgreSQL's EXCLUSIVE lock on event_log, which readers do not need): the events appended
   since step 2 are projected into the shadows, the live tables are dropped, the shadows
   renamed into their place, and `projection_state` records each table's fingerprint and the
   position reached. Readers see the old tables or the new ones, never a half-built one.

Nothing touches the live tables before step 3, so a rebuild that fails or is interrupted
leaves them as they were.

Only one rebuild runs at a time per database: PostgreSQL takes an advisory lock, a SQLite
file a lock file beside it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    Column,
    Connection,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    MetaData,
    Table,
    UniqueConstraint,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.schema import ForeignKeyConstraint

if sys.platform != "win32":
    import fcntl

from dala_events.dialects import upsert
from dala_events.errors import DalaError, RefusedToDestroy, SchemaMismatchError
from dala_events.events import utc_now
from dala_events.store import LogKey, SqlEventStore, event_log, projection_state
from dala_events.store.chain import ChainWalker
from dala_events.store.codec import ChainRow, SealedStreams, decode_chain_row_as_logged
from dala_events.store.keys import LogCipher
from dala_events.store.sql import LOG_START, check_log_key, rebuild_skips
from projections.catalog import PARENT, fingerprint, projection_names, read_model_tables, with_dependents
from projections.projectors import RowChanges, SqlRowWriter, TableSet, apply_events

_log = logging.getLogger("dala_events.rebuild")

SHADOW_SUFFIX = "__rebuild"
SHADOW_SCHEMA = "dala_rebuild"
REBUILD_BATCH_SIZE = 10_000
"""Events per batch of a rebuild: each batch is one read, one flush and (SQLite) one commit."""

_PG_REBUILD_LOCK = 4242002

Progress = Callable[[int, int], None]
"""Called after each batch with (events replayed so far, events in the log when it started)."""


class RebuildError(DalaError):
    """A rebuild could not finish; the live read models are untouched."""


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild did: which projections, how many events, up to which log position."""

    projections: tuple[str, ...]
    events: int
    position: int
    seconds: float


def rebuild_projections(
    engine: Engine,
    *,
    projections: Iterable[str] | None = None,
    batch_size: int = REBUILD_BATCH_SIZE,
    progress: Progress | None = None,
    log_key: LogKey | None = None,
    cipher: LogCipher | None = None,
) -> int:
    """Rebuild read models from the whole log and swap them in; returns the events replayed.

    `projections` names the tables to rebuild (default: all eight); rebuilding
    `learner_profiles` rebuilds every table, as the others hang off it. `log_key` is the key
    the log is chained with (None: plain SHA-256). See `rebuild` for the full result.
    """
    return rebuild(
        engine, projections=projections, batch_size=batch_size, progress=progress, log_key=log_key, cipher=cipher
    ).events


def rebuild(
    engine: Engine,
    *,
    projections: Iterable[str] | None = None,
    batch_size: int = REBUILD_BATCH_SIZE,
    progress: Progress | None = None,
    log_key: LogKey | None = None,
    cipher: LogCipher | None = None,
    skip: Collection[str] = (),
) -> RebuildResult:
    """Rebuild read models live-safely (see the module's docstring) and report what was done.

    `cipher` decrypts payloads stored encrypted (see `dala_events.store.keys`). `skip` names
    learners left out of the read models (their events are neither projected nor walked here;
    `dala verify` still checks their chains): the operator's choice when their keys cannot be
    read, or some of their events are missing; the learners are recorded in `rebuild_skips`
    (emptied by a rebuild that skips nobody) for `dala verify` to show, with why: a mapping
    gives each learner's, else it is `dala rebuild --skip`'s.

    Every event's hash is checked with `log_key` (None: plain SHA-256) before it is projected;
    RebuildError names the first that does not verify, and nothing is swapped in.
    """
    names = with_dependents(projection_names() if projections is None else projections)
    if not names:
        raise RebuildError("no projection to rebuild")
    started = time.perf_counter()
    store = SqlEventStore(engine, cipher=cipher)
    store.forget_erased_keys()  # a key cached here may have been destroyed by an erasure since
    with _one_rebuild_at_a_time(engine), engine.connect() as connection:
        connection.execution_options(dala_write=True)
        shadow = _Shadow(connection.dialect, names)
        with _foreign_keys_unchecked(connection):
            try:
                with connection.begin():
                    check_log_key(connection, log_key)  # the wrong key would refuse every event
                    shadow.create(connection)
                expected = store.last_position()
                reached = _Reached()
                chain = _Chain(log_key, cipher, skip)
                changes = RowChanges(SqlRowWriter(connection, shadow.targets))
                for batch, point in store.stored_rows_in_commit_order(batch_size=batch_size):
                    with connection.begin():
                        _project(changes, batch, reached, chain)
                    reached.point = point
                    if progress is not None:
                        progress(reached.events, expected)
                with connection.begin():
                    _lock_out_writers(connection)
                    _catch_up(store, connection, changes, reached, chain, batch_size)
                    if reached.events == 0:
                        _refuse_to_empty(connection, names)
                    shadow.swap_in(connection)
                    record_projections(connection, names, reached.position)
                    _record_skips(connection, skip)
                if progress is not None:
                    progress(reached.events, max(expected, reached.events))
            except BaseException:
                with contextlib.suppress(Exception):
                    if connection.in_transaction():
                        connection.rollback()
                    with connection.begin():
                        shadow.drop(connection)
                raise
    result = RebuildResult(names, reached.events, reached.position, time.perf_counter() - started)
    _log.info(
        "rebuilt %s from %d events up to log position %d in %.2f s",
        ", ".join(names),
        result.events,
        result.position,
        result.seconds,
    )
    return result


# ---------------------------------------------------------------------------------------------
# Bookkeeping: fingerprints and positions
# ---------------------------------------------------------------------------------------------


def _record_skips(connection: Connection, skip: Collection[str]) -> None:
    """Remember which learners this rebuild left out and why (none: forget the last rebuild's)."""
    connection.execute(rebuild_skips.delete())
    if skip:
        at = utc_now()
        why = "left out by `dala rebuild --skip`: their events could not be read"
        whys: Mapping[str, str] = skip if isinstance(skip, Mapping) else {}
        connection.execute(
            rebuild_skips.insert(),
            [{"learner_id": name, "skipped_at": at, "why": whys.get(name, why)[:200]} for name in sorted(skip)],
        )


def record_projections(connection: Connection, names: Sequence[str], position: int) -> None:
    """Remember that `names` were built with this code's definitions up to `position`."""
    tables = read_model_tables()
    rows = [
        {
            "name": name,
            "fingerprint": fingerprint(tables[name], connection.dialect),
            "position": position,
            "rebuilt_at": utc_now(),
        }
        for name in names
    ]
    connection.execute(upsert(projection_state, ["name"], connection.dialect.name), rows)


def stale_projections(connection: Connection) -> tuple[str, ...]:
    """The projections whose tables do not hold what this code would build from the log.

    A table is stale when it is missing, was never recorded, or was built with a different
    definition, unless the log is empty (then there is nothing to rebuild: an empty table of
    the current definition is correct, and `ensure_projections` creates it).
    """
    recorded = {row.name: row.fingerprint for row in connection.execute(select(projection_state)).all()}
    existing = set(inspect(connection).get_table_names())
    log_empty = connection.execute(select(event_log.c.position).limit(1)).first() is None
    stale = []
    for name, table in read_model_tables().items():
        if name in existing and name in recorded:
            changed = recorded[name] != fingerprint(table, connection.dialect)
        else:
            # Missing or never recorded: only a log with events has something to rebuild.
            changed = not log_empty
        if changed:
            stale.append(name)
    return with_dependents(stale) if stale else ()


def ensure_projections(connection: Connection) -> tuple[str, ...]:
    """Create missing read-model tables on an empty log, record fresh ones, return the stale.

    Called by `init_db` inside its set-up transaction.
    """
    stale = stale_projections(connection)
    tables = read_model_tables()
    fresh = [name for name in tables if name not in stale]
    for name in fresh:
        tables[name].create(connection, checkfirst=True)
    recorded = {row.name for row in connection.execute(select(projection_state.c.name)).all()}
    unrecorded = [name for name in fresh if name not in recorded]
    if unrecorded:
        position = connection.execute(select(func.coalesce(func.max(event_log.c.position), 0))).scalar_one()
        record_projections(connection, unrecorded, int(position))
    return stale


def stale_error(stale: Sequence[str]) -> SchemaMismatchError:
    """The error `init_db` raises when projections need a rebuild it may not run itself."""
    return SchemaMismatchError(
        f"read models out of date with this code's definitions: {', '.join(stale)}; "
        "run `dala rebuild` (or set DALA_AUTO_REBUILD=1 to rebuild them on start)"
    )


# ---------------------------------------------------------------------------------------------
# The phases
# ---------------------------------------------------------------------------------------------


class _Reached:
    """How far the replay got: its point in commit order, the highest position, the events."""

    def __init__(self) -> None:
        self.point = LOG_START
        self.position = 0
        self.events = 0


class _Chain:
    """The chain walk of `store.chain` (the one `dala verify` uses) in front of the projectors.

    Only rows whose link verified are projected. Rows come in commit order
    (`store.sql.in_commit_order`, the subscriptions' rule), which within a stream is version
    order, an append that committed late behind newer positions included. Once any problem is
    found nothing more is projected, but the walk goes on to the end, so that the refusal
    (before anything is swapped in) says what `dala verify` says."""

    def __init__(self, log_key: LogKey | None, cipher: LogCipher | None, skip: Collection[str] = ()) -> None:
        self.walker = ChainWalker(log_key)
        self.cipher = cipher
        self.sealed = SealedStreams()
        self.skip = frozenset(skip)

    def admit(self, rows: list[ChainRow]) -> list[ChainRow]:
        """The rows that verify, in their order (none once a problem was found); a skipped
        learner's rows are left out before the walk (a stream restored with events missing would
        otherwise stop every other learner's rebuild)."""
        if self.skip:
            rows = [row for row in rows if row.learner_id not in self.skip]
        accepted = self.walker.feed(rows)
        if self.walker.problems:
            return []
        for row in accepted:
            self.sealed.check(row)
        return accepted

    def finish(self) -> None:
        """RebuildError naming what does not verify, if anything does not."""
        problems = self.walker.finish()
        if problems:
            shown = "; ".join(problem.describe() for problem in problems[:5])
            more = len(problems) - 5 + sum(self.walker.unlisted.values())
            raise RebuildError(
                f"event log does not verify: {shown}{f'; and {more} more' if more > 0 else ''}; "
                "nothing was swapped in (run `dala verify` for the full report)"
            )


def _project(changes: RowChanges, rows: list[ChainRow], reached: _Reached, chain: _Chain) -> None:
    reached.position = max(reached.position, max(row.position for row in rows))
    _apply(changes, chain.admit(rows), reached, chain.cipher)


def _apply(changes: RowChanges, rows: list[ChainRow], reached: _Reached, cipher: LogCipher | None) -> None:
    apply_events(changes, (decode_chain_row_as_logged(row, cipher) for row in rows))
    changes.flush()
    reached.events += len(rows)


def _catch_up(
    store: SqlEventStore, connection: Connection, changes: RowChanges, reached: _Reached, chain: _Chain, batch_size: int
) -> None:
    """Project what was appended during the replay, with writers held off: every append has
    committed or rolled back, so what follows the replay's point is final (no horizon)."""
    bound = store.bound_to(connection)
    for rows, point in bound.stored_rows_in_commit_order(reached.point, batch_size=batch_size, final=True):
        _project(changes, rows, reached, chain)
        reached.point = point
    chain.finish()


def _refuse_to_empty(connection: Connection, names: Sequence[str]) -> None:
    """An empty log cannot have produced rows: emptying tables that hold some would destroy
    what may be the only copy left (a log dropped or restored wrongly). Refuse, saying so."""
    existing = set(inspect(connection).get_table_names())
    tables = read_model_tables()
    holding = {
        name: count
        for name in names
        if name in existing
        and (count := connection.execute(select(func.count()).select_from(tables[name])).scalar_one())
    }
    if holding:
        held = ", ".join(f"{name} ({count} rows)" for name, count in holding.items())
        raise RefusedToDestroy(
            f"refusing to rebuild from an empty event log: the read models hold rows ({held}) that "
            "the log cannot reproduce; restore the event log from a backup first, or drop those tables "
            "by hand if they really are to be emptied"
        )


def _lock_out_writers(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Appenders take ROW EXCLUSIVE on event_log; EXCLUSIVE waits for those in flight and
        # holds off new ones until the swap commits. Plain SELECTs are not blocked.
        connection.execute(text("LOCK TABLE event_log IN EXCLUSIVE MODE"))
    # SQLite: this transaction began with BEGIN IMMEDIATE and holds the write lock.


@contextlib.contextmanager
def _foreign_keys_unchecked(connection: Connection) -> Iterator[None]:
    """SQLite: replaying a child table alone may briefly hold rows of learners deleted later in
    the log, whose live profile row is already gone. Checks are off on this connection while
    the shadows fill, and `swap_in` verifies every foreign key before committing."""
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys = ON")


@contextlib.contextmanager
def _one_rebuild_at_a_time(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as holder:
            locked = holder.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _PG_REBUILD_LOCK}).scalar()
            holder.commit()
            if not locked:
                raise RebuildError("another rebuild is running on this database; wait for it to finish")
            try:
                yield
            finally:
                holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_REBUILD_LOCK})
                holder.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:" or sys.platform == "win32":
        yield
        return
    lock_path = Path(f"{database}.rebuild-lock")
    while True:
        handle = lock_path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RebuildError("another rebuild is running on this database; wait for it to finish") from None
        # A finishing rebuild removes the file after unlocking it; holding a lock on a file
        # already removed would let a third rebuild lock a new one: lock the file at the path.
        try:
            same = os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


# ---------------------------------------------------------------------------------------------
# Shadow tables
# ---------------------------------------------------------------------------------------------


class _Shadow:
    """The shadow copies of the tables being rebuilt, and how to swap them in.

    SQLite has one namespace per file: shadows get a suffix and no secondary indexes while
    they fill (the live names are taken); the indexes are made at the swap. PostgreSQL keeps
    the shadows in their own schema under the live names, with their indexes; the swap moves
    them (and their sequences) into the live schema.
    """

    def __init__(self, dialect: Dialect, names: Sequence[str]) -> None:
        self.dialect = dialect
        self.names = tuple(names)
        self.postgres = dialect.name == "postgresql"
        live = read_model_tables()
        self.live = {name: live[name] for name in self.names}
        metadata = MetaData()
        self.tables = {name: self._copy(live[name], metadata) for name in self.names}
        self.targets = TableSet(self.tables)

    def _copy(self, table: Table, metadata: MetaData) -> Table:
        parent_rebuilt = PARENT in self.names
        columns = []
        for column in table.columns:
            args: list[ForeignKey] = []
            if column.foreign_keys:
                if parent_rebuilt:
                    target = f"{SHADOW_SCHEMA}.{PARENT}" if self.postgres else f"{PARENT}{SHADOW_SUFFIX}"
                    args.append(ForeignKey(f"{target}.id"))
                elif not self.postgres:
                    # SQLite cannot add the key later: declared now, checked at the swap.
                    args.append(ForeignKey(f"{PARENT}.id"))
                # PostgreSQL with a live parent: the key is added at the swap.
            columns.append(
                Column(
                    column.name,
                    column.type,
                    *args,
                    primary_key=column.primary_key,
                    nullable=column.nullable,
                    autoincrement=column.autoincrement,
                )
            )
        constraints = [
            UniqueConstraint(*(column.name for column in constraint.columns))
            for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)
        ]
        if self.postgres:
            copy = Table(table.name, metadata, *columns, *constraints, schema=SHADOW_SCHEMA)
            for index in table.indexes:
                Index(index.name, *(copy.c[column.name] for column in index.columns), unique=index.unique)
            return copy
        if not parent_rebuilt and PARENT not in metadata.tables:
            # A stand-in for the live parent so the declared key resolves; never created.
            parent = read_model_tables()[PARENT]
            Table(PARENT, metadata, *(Column(c.name, c.type, primary_key=c.primary_key) for c in parent.columns))
        return Table(f"{table.name}{SHADOW_SUFFIX}", metadata, *columns, *constraints)

    def create(self, connection: Connection) -> None:
        self.drop(connection)
        if self.postgres:
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SHADOW_SCHEMA}"))
        for name in self.names:
            self.tables[name].create(connection)

    def drop(self, connection: Connection) -> None:
        """Drop the shadow tables (children first), if there are any."""
        for name in reversed(projection_names()):
            if self.postgres:
                connection.execute(text(f'DROP TABLE IF EXISTS {SHADOW_SCHEMA}."{name}" CASCADE'))
            else:
                connection.execute(text(f'DROP TABLE IF EXISTS "{name}{SHADOW_SUFFIX}"'))

    def swap_in(self, connection: Connection) -> None:
        """Replace the live tables by the shadows, inside the caller's transaction."""
        for name in reversed(self.names):
            connection.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
        if self.postgres:
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
            for name in self.names:
                connection.execute(text(f'ALTER TABLE {SHADOW_SCHEMA}."{name}" SET SCHEMA "{schema}"'))
            if PARENT not in self.names:
                for name in self.names:
                    self._add_parent_key(connection, name)
            return
        for name in self.names:
            connection.execute(text(f'ALTER TABLE "{name}{SHADOW_SUFFIX}" RENAME TO "{name}"'))
        for name in self.names:
            for index in self.live[name].indexes:
                index.create(connection)
        broken = []
        for name in self.names:
            if connection.exec_driver_sql(f'PRAGMA foreign_key_check("{name}")').first() is not None:
                broken.append(name)
        if broken:
            raise RebuildError(f"rebuilt rows without a learner profile in {', '.join(broken)}; nothing was swapped")

    def _add_parent_key(self, connection: Connection, name: str) -> None:
        for constraint in self.live[name].constraints:
            if isinstance(constraint, ForeignKeyConstraint):
                columns = [column.name for column in constraint.columns]
                referred = constraint.elements[0].column.table.name
                targets = [element.column.name for element in constraint.elements]
                connection.execute(
                    text(
                        f'ALTER TABLE "{name}" ADD CONSTRAINT "{name}_{"_".join(columns)}_fkey" '
                        f'FOREIGN KEY ({", ".join(columns)}) REFERENCES "{referred}" ({", ".join(targets)})'
                    )
                )
