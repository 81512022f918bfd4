"""The write side's storage: the event store contract and its implementations.

- `EventStore` (`store.contract`): the contract and the limits every store checks alike.
- `InMemoryEventStore` (`store.memory`): the contract in a list, for tests and scratch work.
- `SqlEventStore` (`store.sql`): the contract on SQLAlchemy Core, for SQLite and PostgreSQL,
  with the `event_log` and `projection_state` tables.
- `store.codec`: an event in its envelope <-> a plain row, and the rows' hash chain (keyed
  by a `LogKey`), the same for every store.
"""

from dala_events.envelopes import AppendedEvent, LoggedEvent, NewEvent, ProjectableEvent, RecordedEvent
from dala_events.store.codec import LogKey, LogKeyError
from dala_events.store.contract import DEFAULT_BATCH_SIZE, MAX_VERSION, EventStore, check_aware
from dala_events.store.memory import InMemoryEventStore
from dala_events.store.sql import LOG_METADATA, InlineProjector, SqlEventStore, event_log, log_chain, projection_state

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "LOG_METADATA",
    "MAX_VERSION",
    "AppendedEvent",
    "EventStore",
    "InMemoryEventStore",
    "InlineProjector",
    "LogKey",
    "LogKeyError",
    "LoggedEvent",
    "NewEvent",
    "ProjectableEvent",
    "RecordedEvent",
    "SqlEventStore",
    "check_aware",
    "event_log",
    "log_chain",
    "projection_state",
]
