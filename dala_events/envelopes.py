"""Events in their envelopes: what the aggregate hands the store, and what the store hands back.

An event (`dala_events.events`) says what happened; its envelope says to whom, in which
order, when, and on whose authority. These are plain named tuples, free of any database
code, so the aggregate can make them and every store implementation can return them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from dala_events.attribution import current_attribution, occurrence_time
from dala_events.events import DomainEvent, new_event_id


class NewEvent(NamedTuple):
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
        return cls(event, event_id, occurred_at or occurrence_time(), current_attribution().metadata_for(event_id))


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
    """An event as a projector reads it back from the log: its position and what it projects."""

    position: int
    learner_id: str
    version: int
    occurred_at: datetime
    event: DomainEvent


class RecordedEvent(NamedTuple):
    """An event as stored: its place in the log and its stream, its times, the fact, the metadata.

    `schema_version` is the version the payload was written with; `event` has been upcast to
    the current model. A named tuple: reading a long history builds thousands of them.
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


class StreamSummary(NamedTuple):
    """One learner's stream at a glance: how many events, when the first and last were recorded
    (None, and `damaged` naming the rows, where no recorded time reads back)."""

    learner_id: str
    version: int
    first_recorded_at: datetime | None
    last_recorded_at: datetime | None
    damaged: str | None = None
    """The rows whose recorded time does not read back (a damaged database), if any."""
