"""The log codec: an event in its envelope <-> a plain row of the log, the same for every store.

A stored row is plain data (ids, numbers, times, JSON text). Every store implementation
writes rows made by `encode_row` and reads them back through `decode_recorded` /
`decode_logged`, so what one backend accepts, every backend reads back the same way.
Rows come back as tuples in one of two shapes, `RECORDED_FIELDS` (everything) or
`PROJECTABLE_FIELDS` (what a projector needs).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pydantic

from dala_events.envelopes import LoggedEvent, NewEvent, RecordedEvent
from dala_events.errors import CorruptEventError
from dala_events.events import DomainEvent, UnknownEventError, decode_event, decode_json, encode_json, encode_payload

RECORDED_FIELDS = (
    "position",
    "event_type",
    "schema_version",
    "payload",
    "event_id",
    "learner_id",
    "version",
    "occurred_at",
    "recorded_at",
    "metadata",
)
"""The columns of a recorded row, in the order stores return them."""

PROJECTABLE_FIELDS = ("position", "event_type", "schema_version", "payload", "learner_id", "version", "occurred_at")
"""The columns of a projectable row, in the order stores return them."""


def encode_row(learner_id: str, version: int, new: NewEvent, recorded_at: datetime) -> dict[str, Any]:
    """The log row of `new` as version `version` of the learner's stream (no position yet)."""
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


def decode_event_of(row: tuple[Any, ...]) -> DomainEvent:
    """The event of a row that starts (position, event_type, schema_version, payload)."""
    try:
        return decode_event(row[1], row[2], row[3])
    except pydantic.ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in error.errors())
        raise CorruptEventError(row[0], row[1], f"payload does not fit the event: {problems}") from error
    except (UnknownEventError, ValueError) as error:
        raise CorruptEventError(row[0], row[1], str(error)) from error


def decode_logged(row: tuple[Any, ...]) -> LoggedEvent:
    """A projectable row (`PROJECTABLE_FIELDS`) as a LoggedEvent."""
    return LoggedEvent(row[0], row[4], row[5], row[6], decode_event_of(row))


def decode_recorded(row: tuple[Any, ...]) -> RecordedEvent:
    """A recorded row (`RECORDED_FIELDS`) as a RecordedEvent."""
    event = decode_event_of(row)
    try:
        metadata = decode_json(row[9])
    except ValueError as error:
        raise CorruptEventError(row[0], row[1], f"metadata is not JSON: {error}") from error
    # position, event_id, learner_id, version, event_type, schema_version, occurred_at, recorded_at
    return RecordedEvent(row[0], row[4], row[5], row[6], row[1], row[2], row[7], row[8], event, metadata)


def projectable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The projectable shape of a recorded row."""
    return (row[0], row[1], row[2], row[3], row[5], row[6], row[7])
