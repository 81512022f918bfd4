"""Subscriptions: a named, durable position in the log for one consumer that must see every event.

A learning record store, analytics or notices to parents follow the log through a
`Subscription`: `fetch` gives the next events it has not acknowledged, in log order, decrypted
and checked like every read (an erased learner's earlier events come as `ErasedContent`, and
`LearnerErased` itself is delivered, so a consumer can forget too); `ack` moves its checkpoint,
kept in the table `subscription_checkpoints`; `run` loops fetch, handle, acknowledge.

**Never skips, never waits on a timer.** On PostgreSQL an event's position is taken when it is
inserted, and its transaction may commit after others that took higher positions: a reader by
position alone could pass it and never come back. Every event records its writing transaction
(`transaction_id`, the xid8 of `pg_current_xact_id()`, migration 0009); a subscription reads
only events below `store.sql.commit_horizon`, the oldest transaction that may still write the
log (appends mark themselves before their first write), in (transaction_id, position) order.
Below that horizon no event can still appear, so the order it reads is final: an event committed
late is read in its place once its transaction ends. No lock holds writers back, no gap is
skipped after a delay; a transaction that cannot write the log (another database's, one of this
database that never appended) holds nothing back, an append left open holds every
subscription at its place until it ends (`dala subscriptions` shows the lag). On SQLite a writer
holds the write lock from its first statement to its commit, so positions commit in order and
every committed event is readable at once. A learner's events are delivered in their version
order on both; one whose previous version comes after it in commit order (a transaction id
changed by hand: no chain covers it) is refused, CorruptEventError naming it.

**The filter is the subscription's.** The checkpoint moves past every event before the last one
acknowledged, those of types the filter (`event_types`) leaves out included: a subscription
opened later under the same name with other types would never deliver the events of the types
it added. So the filter is stored with the checkpoint (migration 0010), and opening the name
with another one is refused (SubscriptionError); `reset_subscription` (`dala subscriptions
reset NAME`) forgets the checkpoint and filter, and the next open starts from the beginning of
the log with its own. An instance opened before a reset refuses to go on.

Delivery is at least once: an event handled but not acknowledged (the consumer crashed) comes
again. `run(handler, in_transaction=True)` hands the handler the connection of a transaction
that also moves the checkpoint: a handler writing into the same database gets each event
exactly once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    func,
    select,
    tuple_,
)
from sqlalchemy.exc import IntegrityError

from dala_events.database_setup import get_store, store_for
from dala_events.dialects import read_transaction, write_transaction
from dala_events.envelopes import RecordedEvent
from dala_events.errors import CorruptEventError, InvalidInput, SubscriptionError
from dala_events.events import EVENT_TYPES, utc_now
from dala_events.store.codec import RECORDED_FIELDS, StoredRow, decode_recorded
from dala_events.store.contract import check_count
from dala_events.store.sql import LOG_START, SqlEventStore, event_log, in_commit_order, subscription_checkpoints

MAX_NAME_LENGTH = 100
"""The longest subscription name (the column of `store.sql.subscription_checkpoints`)."""
DEFAULT_BATCH = 100
MAX_BATCH = 10_000

_START = LOG_START


@dataclass(frozen=True)
class SubscriptionStatus:
    """What `dala subscriptions` shows of one subscription."""

    name: str
    transaction_id: int
    position: int
    """The log position of the last event acknowledged (0: none)."""
    lag: int
    """Events after the checkpoint, committed or not yet readable."""
    updated_at: datetime
    event_types: tuple[str, ...] | None
    """The types it delivers, sorted (None: every type)."""
    filter_recorded: bool = True
    """False for a subscription recorded before filters were kept (migration 0010): the next
    open records its filter."""


def check_name(name: object) -> str:
    """`name` if it is a subscription name (1 to 100 printable characters, no surrounding
    spaces), else InvalidInput naming `name`."""
    if not isinstance(name, str):
        raise InvalidInput("name", f"must be a str, not {type(name).__name__}")
    if not name or name != name.strip() or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidInput("name", f"must be 1 to {MAX_NAME_LENGTH} printable characters without surrounding spaces")
    return name


class Subscription:
    """A named, durable position in the log for one consumer (see the module docstring).

    `engine`: the database (None: the process default of `database_setup.init_db`), read with
    its configured key store; `store`: a configured store to read with instead (the `Dala`
    facade passes its own). `event_types`: only these types are delivered (None: every type);
    the filter is the subscription's, stored with its checkpoint: opening the name with another
    is refused (SubscriptionError; see the module docstring and `reset_subscription`).
    """

    def __init__(
        self,
        name: str,
        *,
        engine: Engine | None = None,
        event_types: Collection[str] | None = None,
        store: SqlEventStore | None = None,
    ) -> None:
        self.name = check_name(name)
        if store is not None and engine is not None:
            raise InvalidInput("engine", "give an engine or a store, not both")
        if engine is not None and not isinstance(engine, Engine):
            raise InvalidInput("engine", f"must be a SQLAlchemy Engine or None, not {type(engine).__name__}")
        if store is not None and not isinstance(store, SqlEventStore):
            raise InvalidInput("store", f"must be a SqlEventStore or None, not {type(store).__name__}")
        self.store: SqlEventStore = store or (store_for(engine) if engine is not None else get_store())
        self.event_types = _checked_types(event_types)
        self._filter = _filter_text(self.event_types)
        self._transactions: dict[int, int] = {}  # position -> transaction id of what was fetched
        with write_transaction(self.store.engine) as connection:
            _register(connection, self.name, self._filter)

    @property
    def engine(self) -> Engine:
        return self.store.engine

    def checkpoint(self) -> tuple[int, int]:
        """The (transaction_id, position) of the last event acknowledged ((-1, 0): none)."""
        with read_transaction(self.engine) as connection:
            return self._stored_checkpoint(connection)

    def fetch(self, limit: int = DEFAULT_BATCH) -> list[RecordedEvent]:
        """The next events not yet acknowledged, at most `limit`, in log order (see the module
        docstring), each checked against its stream's chain and decrypted."""
        limit = min(check_count("limit", limit, minimum=1), MAX_BATCH)
        self.store.forget_erased_keys()  # an erasure in another process drops a cached key here
        with read_transaction(self.engine) as connection:
            after = self._stored_checkpoint(connection)
            found = connection.execute(_next_events(connection, after, self.event_types, limit)).all()
        _check_order(found)
        rows = [StoredRow._make(row[: len(RECORDED_FIELDS)]) for row in found]
        by_learner: dict[str, list[StoredRow]] = {}
        for row in rows:
            by_learner.setdefault(row.learner_id, []).append(row)
        for learner_id, stream_rows in by_learner.items():
            self.store._check_links(learner_id, stream_rows)
        self._transactions = {row.position: row.transaction_id for row in found}
        return [decode_recorded(row, self.store.cipher) for row in rows]

    def ack(self, event: RecordedEvent, *, connection: Connection | None = None) -> None:
        """Move the checkpoint to `event` (one `fetch` returned): it, and everything before it,
        will not be delivered again. With `connection`, inside that connection's transaction."""
        checkpoint = self._checkpoint_of(event)
        if connection is not None:
            self._save(connection, checkpoint)
            return
        with write_transaction(self.engine) as own:
            self._save(own, checkpoint)

    def run(
        self,
        handler: Callable[..., Any],
        *,
        stop_when_idle: bool = False,
        poll_interval: float = 1.0,
        batch_size: int = DEFAULT_BATCH,
        in_transaction: bool = False,
        stop: threading.Event | None = None,
    ) -> int:
        """Hand every new event to `handler`, then acknowledge it; returns how many were handled.

        Polls every `poll_interval` seconds when nothing is new; returns when nothing is new and
        `stop_when_idle`, or once `stop` is set. `in_transaction`: `handler(event, connection)`
        runs inside the transaction that moves the checkpoint (exactly once for what it writes
        with that connection); otherwise `handler(event)` and at-least-once delivery.
        """
        if poll_interval <= 0:
            raise InvalidInput("poll_interval", f"must be > 0 seconds, got {poll_interval!r}")
        stop = stop or threading.Event()
        handled = 0
        while not stop.is_set():
            events = self.fetch(batch_size)
            if not events:
                if stop_when_idle:
                    break
                stop.wait(poll_interval)
                continue
            handled += self._handle(events, handler, in_transaction=in_transaction, stop=stop)
        return handled

    def _handle(
        self, events: list[RecordedEvent], handler: Callable[..., Any], *, in_transaction: bool, stop: threading.Event
    ) -> int:
        """Hand one fetched batch to `handler` and acknowledge it once, after the last event
        handled (a crash in between delivers what was not acknowledged again: at least once).
        `in_transaction`: the handler's writes and the checkpoint commit together, the whole
        batch or nothing of it (exactly once for those writes)."""
        if in_transaction:
            with write_transaction(self.engine) as connection:
                done = [event for event in self._each(events, stop) if handler(event, connection) or True]
                if done:
                    self.ack(done[-1], connection=connection)
            return len(done)
        last: RecordedEvent | None = None
        handled = 0
        try:
            for event in self._each(events, stop):
                handler(event)
                last, handled = event, handled + 1
        finally:
            if last is not None:  # what was handled stays handled, even when the next one failed
                self.ack(last)
        return handled

    @staticmethod
    def _each(events: list[RecordedEvent], stop: threading.Event) -> Iterator[RecordedEvent]:
        for event in events:
            if stop.is_set():
                return
            yield event

    def _stored_checkpoint(self, connection: Connection) -> tuple[int, int]:
        """The checkpoint stored, after checking that it is still this instance's subscription
        (not reset, nor reopened with another filter, since)."""
        table = subscription_checkpoints
        found = connection.execute(
            select(table.c.transaction_id, table.c.position, table.c.event_types).where(table.c.name == self.name)
        ).first()
        if found is None or found.event_types != self._filter:
            raise SubscriptionError(
                self.name, "was reset since it was opened here (or reopened with another filter): open it again"
            )
        return int(found.transaction_id), int(found.position)

    def _save(self, connection: Connection, checkpoint: tuple[int, int]) -> None:
        """Record `checkpoint` unless the one recorded is already past it (an older ack);
        SubscriptionError when the subscription was reset since it was opened here."""
        values = {
            "the_name": self.name,
            "the_filter": self._filter,
            "the_transaction": checkpoint[0],
            "the_position": checkpoint[1],
            "at": utc_now(),
        }
        if connection.execute(_SAVE, values).rowcount == 0:
            self._stored_checkpoint(connection)  # an older ack, or a reset: say which

    def _checkpoint_of(self, event: RecordedEvent) -> tuple[int, int]:
        if not isinstance(event, RecordedEvent):
            raise InvalidInput("event", f"must be a RecordedEvent, not {type(event).__name__}")
        transaction_id = self._transactions.get(event.position)
        if transaction_id is None:
            raise InvalidInput("event", f"log position {event.position} was not delivered by the last fetch")
        return transaction_id, event.position

    def __repr__(self) -> str:
        return f"Subscription({self.name!r})"


def list_subscriptions(engine: Engine) -> list[SubscriptionStatus]:
    """Every subscription of the database, with its checkpoint and lag, by name."""
    with read_transaction(engine) as connection:
        table = subscription_checkpoints
        found = connection.execute(
            select(table.c.name, table.c.transaction_id, table.c.position, table.c.updated_at, table.c.event_types)
            .order_by(table.c.name)
        ).all()
        statuses = []
        for name, transaction_id, position, updated_at, stored_filter in found:
            after = in_commit_order(connection, [event_log.c.position], (transaction_id, position), final=True)
            lag = connection.execute(select(func.count()).select_from(after.subquery())).scalar_one()
            event_types = _types_of(stored_filter)
            statuses.append(
                SubscriptionStatus(
                    name,
                    transaction_id,
                    position,
                    int(lag),
                    updated_at,
                    None if event_types is None else tuple(sorted(event_types)),
                    filter_recorded=stored_filter is not None,
                )
            )
    return statuses


def reset_subscription(engine: Engine, name: str) -> bool:
    """Start the subscription `name` over: its checkpoint and filter are forgotten, and the next
    open starts from the beginning of the log with the filter it gives (every event is delivered
    again: a consumer that cannot take an event twice uses another name instead). An instance
    opened before refuses to go on. Returns whether there was such a subscription."""
    name = check_name(name)
    with write_transaction(engine) as connection:
        table = subscription_checkpoints
        return bool(connection.execute(table.delete().where(table.c.name == name)).rowcount)


def _checked_types(event_types: Collection[str] | None) -> frozenset[str] | None:
    if event_types is None:
        return None
    names = None if isinstance(event_types, str) else list(event_types)
    if names is None or not all(isinstance(name, str) for name in names):
        raise InvalidInput("event_types", "must be a collection of event type names")
    if not names:
        raise InvalidInput("event_types", "must name at least one event type (None: every type)")
    unknown = sorted(set(names) - set(EVENT_TYPES))
    if unknown:
        raise InvalidInput("event_types", f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
    return frozenset(names)


EVERY_TYPE = "*"
"""The stored filter of a subscription that delivers every type."""


def _filter_text(event_types: frozenset[str] | None) -> str:
    """The filter as stored: EVERY_TYPE, or the type names sorted and joined by commas."""
    return EVERY_TYPE if event_types is None else ",".join(sorted(event_types))


def _types_of(stored: str | None) -> frozenset[str] | None:
    return None if stored in (None, EVERY_TYPE) else frozenset(str(stored).split(","))


def _described(stored: str) -> str:
    return "every event type" if stored == EVERY_TYPE else f"{stored.replace(',', ', ')} only"


def _register(connection: Connection, name: str, wanted: str) -> None:
    """Record the subscription at the start of the log with its filter `wanted`, unless it is
    recorded already: then with that filter (one recorded before filters were kept takes it),
    else SubscriptionError."""
    table = subscription_checkpoints
    stored_filter = select(table.c.event_types).where(table.c.name == name)
    found = connection.execute(stored_filter).first()
    if found is None:
        row = {
            "name": name,
            "transaction_id": _START[0],
            "position": _START[1],
            "updated_at": utc_now(),
            "event_types": wanted,
        }
        try:
            with connection.begin_nested():
                connection.execute(table.insert(), row)
            return
        except IntegrityError:  # another process registered it first: compare with its filter
            found = connection.execute(stored_filter).first()
        if found is None:
            raise SubscriptionError(name, "was reset while it was being opened: open it again")
    stored = found.event_types
    if stored is None:  # recorded before migration 0010: this open's filter is the one it used
        connection.execute(
            table.update().where(table.c.name == name, table.c.event_types.is_(None)).values(event_types=wanted)
        )
        return
    if stored != wanted:
        raise SubscriptionError(
            name,
            f"delivers {_described(stored)}, not {_described(wanted).removesuffix(' only')}: its checkpoint "
            "has passed the events of the types it leaves out. Open it with the same event types, use "
            f"another name, or start it over from the beginning of the log: dala subscriptions reset {name}",
        )


_TABLE = subscription_checkpoints
_SAVE = (
    _TABLE.update()
    .where(
        _TABLE.c.name == bindparam("the_name"),
        _TABLE.c.event_types == bindparam("the_filter"),
        tuple_(_TABLE.c.transaction_id, _TABLE.c.position)
        < tuple_(bindparam("the_transaction"), bindparam("the_position")),
    )
    .values(transaction_id=bindparam("the_transaction"), position=bindparam("the_position"), updated_at=bindparam("at"))
)


_BEFORE = event_log.alias("before")
"""The previous version of each event read, whose place in commit order must come first."""


def _next_events(connection: Connection, after: tuple[int, int], event_types: frozenset[str] | None, limit: int) -> Any:
    c = event_log.c
    columns = [
        *(c[name] for name in RECORDED_FIELDS),
        c.transaction_id,
        _BEFORE.c.transaction_id.label("before_transaction_id"),
        _BEFORE.c.position.label("before_position"),
    ]
    query = in_commit_order(connection, columns, after).outerjoin_from(
        event_log, _BEFORE, (_BEFORE.c.learner_id == c.learner_id) & (_BEFORE.c.version == c.version - 1)
    )
    if event_types is not None:
        query = query.where(c.event_type.in_(bindparam("types", sorted(event_types), expanding=True)))
    return query.limit(limit)


def _check_order(found: Sequence[Any]) -> None:
    """CorruptEventError for the first event read whose previous version comes after it in
    commit order: within a stream a later version is written by a later transaction (or the
    same one, at a later position), so only an edit of `transaction_id` (outside the chain:
    the database fills it) makes one, and delivering it would put, say, an erasure before the
    events it erases. The previous version's own place was checked when it was read."""
    for row in found:
        before = (row.before_transaction_id, row.before_position)
        if row.before_position is not None and before > (row.transaction_id, row.position):
            raise CorruptEventError(
                row.position,
                row.event_type,
                f"learner {row.learner_id!r} version {row.version} comes before version {row.version - 1} in "
                f"commit order (transaction id and position {row.transaction_id}, {row.position}; version "
                f"{row.version - 1}'s {row.before_transaction_id}, {row.before_position}): the log's order was "
                "changed by hand; not delivered (run `dala verify`)",
            )
