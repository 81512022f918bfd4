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
   PostgreSQL's EXCLUSIVE lock on event_log, which readers do not need, and an ACCESS
   EXCLUSIVE lock on the live tables it replaces): the events appended since step 2 are
   projected into the shadows, the live tables are dropped, the shadows renamed into their
   place, and `projection_state` records each table's fingerprint and the position reached.
   Readers see the old tables or the new ones, never a half-built one.

Nothing touches the live tables before step 3, so a rebuild that fails or is interrupted
leaves them as they were.

Waiting for those locks is bounded, and never holds writers up for long. A lock request
waits in the database's queue, and every writer that comes after it waits behind it: so each
attempt waits at most `LOCK_ATTEMPT_MS` (PostgreSQL's `lock_timeout`; SQLite's busy timeout
for its BEGIN IMMEDIATE), then steps out of the queue, says at WARNING what holds the lock
(PostgreSQL: the session's pid, state and how long its transaction has been open), replays
what was appended meanwhile, and tries again after a growing, jittered pause. After
`lock_wait` seconds in all it gives up with RebuildBlocked naming the holder; nothing was
swapped in.

Only one rebuild runs at a time per database: PostgreSQL takes an advisory lock, a SQLite
file a lock file beside it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
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
    RootTransaction,
    Table,
    UniqueConstraint,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import ForeignKeyConstraint

if sys.platform != "win32":
    import fcntl

from dala_events.dialects import SQLITE_BUSY_TIMEOUT_MS, upsert
from dala_events.errors import DalaError, InvalidInput, RefusedToDestroy, SchemaMismatchError
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

LOCK_WAIT_SECONDS = 60.0
"""How long a rebuild waits in all for the locks of its catch-up and swap before it gives up
(RebuildBlocked); `rebuild(lock_wait=...)`, `dala rebuild --wait`."""
LOCK_ATTEMPT_MS = 250
"""How long one attempt waits in the lock queue before stepping out so queued writers pass."""
_FIRST_PAUSE = 0.1
_LONGEST_PAUSE = 2.0

Progress = Callable[[int, int], None]
"""Called after each batch with (events replayed so far, events in the log when it started)."""


class RebuildError(DalaError):
    """A rebuild could not finish; the live read models are untouched."""


class RebuildBlocked(RebuildError):
    """A rebuild gave up waiting for the locks of its swap; the message names who held them
    (PostgreSQL: pid, state, how long their transaction had been open) and what to do. The live
    read models are untouched; run it again once the holder's transaction has ended."""


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
    lock_wait: float = LOCK_WAIT_SECONDS,
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

    The locks of the catch-up and swap are waited for `lock_wait` seconds at most, in short
    attempts that let writers pass (see the module's docstring); then RebuildBlocked names
    what holds them.
    """
    if not lock_wait >= 0:  # NaN too
        raise InvalidInput("lock_wait", f"must be a number of seconds, 0 or more, not {lock_wait!r}")
    names = with_dependents(projection_names() if projections is None else projections)
    if not names:
        raise RebuildError("no projection to rebuild")
    started = time.perf_counter()
    store = SqlEventStore(engine, cipher=cipher)
    store.forget_erased_keys()  # a key cached here may have been destroyed by an erasure since
    waiting = _LockWait(lock_wait, names)
    with _one_rebuild_at_a_time(engine), engine.connect() as connection:
        connection.execution_options(dala_write=True)
        shadow = _Shadow(connection.dialect, names)
        with _foreign_keys_unchecked(connection):
            try:
                with waiting.transaction(connection):
                    check_log_key(connection, log_key)  # the wrong key would refuse every event
                    shadow.create(connection)
                expected = store.last_position()
                reached = _Reached()
                chain = _Chain(log_key, cipher, skip)
                changes = RowChanges(SqlRowWriter(connection, shadow.targets))

                def replay() -> None:
                    """Project what is final after the point reached, batch by batch."""
                    for batch, point in store.stored_rows_in_commit_order(reached.point, batch_size=batch_size):
                        with waiting.transaction(connection):
                            _project(changes, batch, reached, chain)
                        reached.point = point
                        if progress is not None:
                            progress(reached.events, expected)

                replay()
                with waiting.transaction(connection, lock=waiting.lock_out_writers, meanwhile=replay):
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
                    with waiting.begin_once(connection):  # an interrupted run's shadows go at the next anyway
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


@dataclass(frozen=True)
class LockHolder:
    """A PostgreSQL session holding a lock a rebuild waits for (from `pg_locks` and
    `pg_stat_activity`; what another role's session shows depends on this role's rights)."""

    pid: int
    state: str | None
    transaction_seconds: float | None
    application: str | None

    def describe(self) -> str:
        parts = [self.state or "its state is not visible to this role"]
        if self.transaction_seconds is not None:
            parts.append(f"its transaction open {self.transaction_seconds:.0f} s")
        if self.application:
            parts.append(f"application {self.application!r}")
        return f"pid {self.pid} ({', '.join(parts)})"


_HOLDERS = text(
    """
    SELECT DISTINCT activity.pid, activity.state,
           EXTRACT(EPOCH FROM now() - activity.xact_start)::float AS seconds, activity.application_name
    FROM pg_locks AS held JOIN pg_stat_activity AS activity ON activity.pid = held.pid
    WHERE held.locktype = 'relation' AND held.granted AND held.pid <> pg_backend_pid()
      AND held.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND held.relation IN (SELECT to_regclass(name) FROM unnest(CAST(:names AS text[])) AS name)
      AND NOT (held.relation = to_regclass('event_log') AND held.mode = 'AccessShareLock')
    ORDER BY seconds DESC NULLS LAST
    """
)
"""The sessions holding a lock that conflicts with the swap's: any lock on event_log but a plain
reader's (EXCLUSIVE lets readers be), any lock on a live table the swap replaces."""


class _LockWait:
    """How a rebuild waits for the locks it needs: in attempts of `LOCK_ATTEMPT_MS`, with
    growing, jittered pauses between them, `seconds` in all (see the module's docstring)."""

    def __init__(self, seconds: float, names: Sequence[str]) -> None:
        self.seconds = seconds
        self.names = names
        self.deadline = time.monotonic() + seconds
        self.pause = _FIRST_PAUSE
        self.said: frozenset[int] | None = None

    @contextlib.contextmanager
    def transaction(
        self,
        connection: Connection,
        *,
        lock: Callable[[Connection], None] | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """A transaction of `connection` holding what `lock` takes (SQLite: the write lock, its
        BEGIN IMMEDIATE), committed when the block ends. While the locks are held by others it
        steps out, pauses, runs `meanwhile` and tries again, until the time is up."""
        while True:
            try:
                transaction = self.begin_once(connection)
                try:
                    if connection.dialect.name == "postgresql":
                        connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_ATTEMPT_MS}ms'"))
                    if lock is not None:
                        lock(connection)
                except BaseException:
                    transaction.rollback()
                    raise
            except Exception as error:
                if not _lock_busy(error):
                    raise
                self._wait_or_give_up(connection)
                if meanwhile is not None:
                    meanwhile()
                continue
            break
        with transaction:
            yield

    def begin_once(self, connection: Connection) -> RootTransaction:
        """A transaction of `connection`, begun in one attempt (SQLite: BEGIN IMMEDIATE waits for
        the write lock as long as the busy timeout says, here one attempt's worth)."""
        if connection.dialect.name != "sqlite":
            return connection.begin()
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute(f"PRAGMA busy_timeout = {LOCK_ATTEMPT_MS}")
        try:
            return connection.begin()
        finally:
            driver.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")

    def lock_out_writers(self, connection: Connection) -> None:
        """The catch-up's and swap's locks (inside `transaction`, whose lock timeout bounds them)."""
        if connection.dialect.name != "postgresql":
            return  # SQLite: the transaction began with BEGIN IMMEDIATE and holds the write lock
        # Appenders take ROW EXCLUSIVE on event_log; EXCLUSIVE waits for those in flight and
        # holds off new ones until the swap commits. Plain SELECTs are not blocked.
        connection.execute(text("LOCK TABLE event_log IN EXCLUSIVE MODE"))
        # The swap drops the live tables: taken now, before the catch-up, so that a reader in a
        # long transaction is waited for here (and the attempt retried) rather than halfway.
        existing = set(inspect(connection).get_table_names())
        live = [name for name in self.names if name in existing]
        if live:
            quoted = ", ".join(f'"{name}"' for name in live)
            connection.execute(text(f"LOCK TABLE {quoted} IN ACCESS EXCLUSIVE MODE"))
        # What remains (the catch-up and the swap) waits no longer than the rebuild may (but
        # for a second at least: the locks it still takes are brief ones).
        left = max(1000, int((self.deadline - time.monotonic()) * 1000))
        connection.execute(text(f"SET LOCAL lock_timeout = '{left}ms'"))

    def _wait_or_give_up(self, connection: Connection) -> None:
        """After an attempt found the locks held: RebuildBlocked when the time is up, else say
        what holds them and pause."""
        holders, pids = self._holders(connection)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RebuildBlocked(
                f"gave up after waiting {self.seconds:g} s for {holders}; end that transaction and run "
                "`dala rebuild` again (or wait longer: --wait SECONDS); nothing was swapped in"
            )
        level = logging.WARNING if pids != self.said else logging.INFO  # said once per holder
        self.said = pids
        _log.log(level, "rebuild waiting for %s; writers go on meanwhile; giving up in %.0f s", holders, left)
        time.sleep(min(left, random.uniform(self.pause / 2, self.pause)))
        self.pause = min(self.pause * 2, _LONGEST_PAUSE)

    def _holders(self, connection: Connection) -> tuple[str, frozenset[int]]:
        """What holds the locks, in words, and the holders' pids (none on SQLite)."""
        if connection.dialect.name != "postgresql":
            return f"the write lock of {connection.engine.url.database}: another connection holds it", frozenset()
        try:
            found = connection.execute(_HOLDERS, {"names": ["event_log", *self.names]}).all()
        finally:
            connection.rollback()
        what = "its locks on event_log and the tables it replaces"
        if not found:
            return f"{what}: their holder had let go by the time it was looked for", frozenset()
        holders = [LockHolder(row.pid, row.state, row.seconds, row.application_name) for row in found]
        described = ", ".join(holder.describe() for holder in holders)
        return f"{what}: held by {described}", frozenset(holder.pid for holder in holders)


def _lock_busy(error: BaseException) -> bool:
    """Whether `error` says a lock was not granted in time: PostgreSQL's lock_not_available
    (`lock_timeout`), SQLite's busy or locked; whatever wraps the driver's error."""
    seen: BaseException | None = error
    while seen is not None:
        if getattr(seen, "sqlstate", None) == "55P03":
            return True
        code = getattr(seen, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in (5, 6):  # SQLITE_BUSY, SQLITE_LOCKED
            return True
        seen = seen.orig if isinstance(seen, DBAPIError) and seen.orig is not None else seen.__cause__
    return False


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
