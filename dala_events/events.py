"""The event catalog: one frozen pydantic model per fact about a learner, their union, and upcasters.

An event is the payload of one row of the event log: it says what happened, in the past tense,
and carries every value the read models need, so a projector or the aggregate only copies
values and never decides anything. Where a row lives (learner, version, time, actor) is the
envelope's business, not the event's; see `dala_events.store`.

This module imports nothing else of the package: it is the vocabulary the rest is written in.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, Literal, TypeAlias

import pydantic_core
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
)

# ---------------------------------------------------------------------------------------------
# The one clock and the event ids
# ---------------------------------------------------------------------------------------------


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC: the one clock every timestamp comes from.

    Looked up through the `datetime` class at call time so that freezegun controls it.
    """
    return datetime.now(UTC)


def new_event_id() -> str:
    """A time-ordered UUID (version 7 layout): 48 bits of Unix milliseconds, then random bits.

    Time order keeps the unique index on event_log.event_id append-mostly, which matters for
    write speed on both SQLite and PostgreSQL.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & 0xFFFF_FFFF_FFFF) << 80 | rand
    # version 7 in bits 76..79, RFC 4122 variant in bits 62..63
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


# ---------------------------------------------------------------------------------------------
# Field rules (invariant 7: refused with an error naming the field, before anything is written)
# ---------------------------------------------------------------------------------------------

MAX_LEARNER_ID_LENGTH = 128
MAX_TEXT_LENGTH = 500
MAX_DETAILS_BYTES = 64 * 1024
LO_STATUSES: tuple[str, ...] = ("not_started", "in_progress", "completed")


def check_learner_id(value: object) -> str:
    """Return `value` if it is a valid learner id, else raise ValueError saying why.

    A learner id is the name of a stream and a primary key: it must be a non-empty string of
    printable characters, at most 128 long. Surrounding whitespace is refused rather than
    trimmed, because " ann" and "ann" trimmed to one id would merge two children's records.
    """
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    if not value:
        raise ValueError("must not be empty")
    if value != value.strip():
        raise ValueError(f"must not start or end with whitespace: {value!r}")
    if len(value) > MAX_LEARNER_ID_LENGTH:
        raise ValueError(f"must be at most {MAX_LEARNER_ID_LENGTH} characters, got {len(value)}")
    if not value.isprintable():
        raise ValueError(f"must contain only printable characters: {value!r}")
    return value


encode_json: Callable[[Any], str] = json.JSONEncoder(
    allow_nan=False, ensure_ascii=False, separators=(",", ":")
).encode
"""Compact JSON text of a value, refusing NaN and infinities: how details and metadata are
stored. One encoder made once (json.dumps with options builds a new one on every call)."""


def dump_checked_json(value: Any) -> str:
    """Compact JSON text of a value already known to be plain JSON (a details object that
    passed `check_json_object`): pydantic-core's serializer, five times faster than the
    stdlib's, for the read models' JSON columns."""
    return pydantic_core.to_json(value).decode()


def decode_json(text: str | bytes) -> Any:
    """The value of JSON text (pydantic-core's parser, four times faster than `json.loads` on
    the small documents of the log). Raises ValueError for text that is not JSON."""
    return pydantic_core.from_json(text)


def check_json_object(value: object) -> dict[str, Any]:
    """Return `value` if it is a JSON object of at most 64 KiB, else raise ValueError.

    Details are stored as JSON in the log and the read models; refusing anything JSON cannot
    carry exactly (NaN, infinities, non-string keys, sets) means what is read back equals what
    was written.
    """
    if not isinstance(value, dict):
        raise ValueError(f"must be a JSON object (dict), not {type(value).__name__}")
    try:
        encoded = encode_json(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"must be JSON-serialisable without NaN or infinity: {exc}") from None
    if not all(isinstance(key, str) for key in value):
        raise ValueError("keys must be strings")
    size = len(encoded.encode("utf-8"))
    if size > MAX_DETAILS_BYTES:
        raise ValueError(f"must be at most {MAX_DETAILS_BYTES} bytes as JSON, got {size}")
    return value


def _check_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must be timezone-aware")
    return value.astimezone(UTC)


LearnerId: TypeAlias = Annotated[str, BeforeValidator(check_learner_id)]
"""A learner (stream) id: non-empty, printable, <= 128 chars, no surrounding whitespace."""

Text: TypeAlias = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_LENGTH)]
"""A name, category, description or identifier: stripped, then 1..500 characters."""

Score: TypeAlias = Annotated[float, Field(allow_inf_nan=False)]
"""A finite score."""

def _check_json_object_field(value: object, info: ValidationInfo) -> dict[str, Any]:
    # A payload read back from the log was checked when it was written and has just been
    # parsed from JSON text: re-serialising it to measure it again would only cost time.
    if isinstance(value, dict) and info.context is STORED:
        return value
    return check_json_object(value)


STORED: Final[dict[str, bool]] = {"stored": True}
"""Validation context of payloads read back from the event log (see `decode_event`)."""

JsonObject: TypeAlias = Annotated[dict[str, Any], BeforeValidator(_check_json_object_field)]
"""A JSON object of at most 64 KiB."""

LOStatus: TypeAlias = Literal["not_started", "in_progress", "completed"]
"""The closed set of learning-objective statuses."""

_TEXT_ADAPTER: TypeAdapter[str] = TypeAdapter(Text)


def check_text(value: object) -> str:
    """`value` as a Text field would hold it (stripped), or pydantic's ValidationError."""
    return _TEXT_ADAPTER.validate_python(value)


UtcDateTime: TypeAlias = Annotated[datetime, AfterValidator(_check_aware)]
"""A timezone-aware datetime, normalised to UTC."""


# ---------------------------------------------------------------------------------------------
# The events
# ---------------------------------------------------------------------------------------------


class DomainEvent(BaseModel):
    """Base of every event: frozen, strict about unknown fields, versioned.

    `schema_version` is the version of the payload's shape. When a shape changes, the class's
    `schema_version` goes up and an upcaster lifting the previous shape is registered, so every
    event ever written stays readable (invariant 5).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    schema_version: ClassVar[int] = 1
    event_type: str


class LearnerProfileCreated(DomainEvent):
    """A learner profile came into being (or came back after deletion)."""

    event_type: Literal["LearnerProfileCreated"] = "LearnerProfileCreated"


class LearnerProfileDeleted(DomainEvent):
    """The learner's profile was deleted: every read-model row of the learner goes."""

    event_type: Literal["LearnerProfileDeleted"] = "LearnerProfileDeleted"


class PreferenceSet(DomainEvent):
    """A preference of a category took a value (new, or different from before).

    Schema history: v1 carried `category` and `value`. v2 adds `previous_value`, the value it
    replaced (None for a new category), so an audit can say "visual -> auditory" from the
    event alone. v1 events are read with `previous_value=None`: what it replaced was not
    recorded then, and the upcaster does not guess.
    """

    schema_version: ClassVar[int] = 2
    event_type: Literal["PreferenceSet"] = "PreferenceSet"
    category: Text
    value: Text
    previous_value: Text | None = None


class PreferenceRemoved(DomainEvent):
    """The preference of a category was removed."""

    event_type: Literal["PreferenceRemoved"] = "PreferenceRemoved"
    category: Text


class InterestAdded(DomainEvent):
    """The learner is interested in something."""

    event_type: Literal["InterestAdded"] = "InterestAdded"
    interest_name: Text


class InterestRemoved(DomainEvent):
    """An interest no longer holds."""

    event_type: Literal["InterestRemoved"] = "InterestRemoved"
    interest_name: Text


class StruggleAreaAdded(DomainEvent):
    """The learner struggles with something."""

    event_type: Literal["StruggleAreaAdded"] = "StruggleAreaAdded"
    struggle_description: Text


class StruggleAreaRemoved(DomainEvent):
    """A struggle area no longer holds."""

    event_type: Literal["StruggleAreaRemoved"] = "StruggleAreaRemoved"
    struggle_description: Text


class CognitiveMetricRecorded(DomainEvent):
    """A diagnostic task produced metrics; they replace earlier ones of the same task."""

    event_type: Literal["CognitiveMetricRecorded"] = "CognitiveMetricRecorded"
    task_name: Text
    metric_details: JsonObject


class LearningObjectiveEvent(DomainEvent):
    """An LO's progress after the change: every column of its learning_objective_progress row.

    The aggregate decides the transition (which score is kept, when it was started); the event
    records the outcome, so the read model and the aggregate copy it without deciding again.
    """

    lo_id: Text
    status: LOStatus
    started_at: UtcDateTime
    completed_at: UtcDateTime | None = None
    score: Score | None = None
    details: JsonObject | None = None


class LearningObjectiveStarted(LearningObjectiveEvent):
    """Work on an LO began."""

    event_type: Literal["LearningObjectiveStarted"] = "LearningObjectiveStarted"


class LearningObjectiveProgressUpdated(LearningObjectiveEvent):
    """An LO's status, score or details changed."""

    event_type: Literal["LearningObjectiveProgressUpdated"] = "LearningObjectiveProgressUpdated"


class LearningObjectiveCompleted(LearningObjectiveEvent):
    """An LO was completed."""

    event_type: Literal["LearningObjectiveCompleted"] = "LearningObjectiveCompleted"


class BadgeAwarded(DomainEvent):
    """The learner earned a badge (earned_date is the event's date)."""

    event_type: Literal["BadgeAwarded"] = "BadgeAwarded"
    badge_id: Text
    badge_name: Text
    details: Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)] | None = None


class BadgeRevoked(DomainEvent):
    """A badge was taken back."""

    event_type: Literal["BadgeRevoked"] = "BadgeRevoked"
    badge_id: Text


class ActivityAttemptRecorded(DomainEvent):
    """The learner attempted an activity of an LO (attempt_timestamp is the event's time)."""

    event_type: Literal["ActivityAttemptRecorded"] = "ActivityAttemptRecorded"
    lo_id: Text
    activity_id: Text
    activity_type: Text
    score: Score | None = None
    completed: bool = False
    attempt_details: JsonObject | None = None


Event: TypeAlias = Annotated[
    LearnerProfileCreated
    | LearnerProfileDeleted
    | PreferenceSet
    | PreferenceRemoved
    | InterestAdded
    | InterestRemoved
    | StruggleAreaAdded
    | StruggleAreaRemoved
    | CognitiveMetricRecorded
    | LearningObjectiveStarted
    | LearningObjectiveProgressUpdated
    | LearningObjectiveCompleted
    | BadgeAwarded
    | BadgeRevoked
    | ActivityAttemptRecorded,
    Field(discriminator="event_type"),
]
"""Any event of the catalog, told apart by its `event_type`."""

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.model_fields["event_type"].default: cls
    for cls in (
        LearnerProfileCreated,
        LearnerProfileDeleted,
        PreferenceSet,
        PreferenceRemoved,
        InterestAdded,
        InterestRemoved,
        StruggleAreaAdded,
        StruggleAreaRemoved,
        CognitiveMetricRecorded,
        LearningObjectiveStarted,
        LearningObjectiveProgressUpdated,
        LearningObjectiveCompleted,
        BadgeAwarded,
        BadgeRevoked,
        ActivityAttemptRecorded,
    )
}
"""Every event type by its name, as stored in event_log.event_type."""


# ---------------------------------------------------------------------------------------------
# Serialising and upcasting
# ---------------------------------------------------------------------------------------------

Upcaster: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UnknownEventError(ValueError):
    """A stored event whose type or schema version this code cannot read."""


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function lifting a payload of `event_type` from `from_version` to the next.

    Upcasters chain: a v1 payload passes through the v1->v2 and then the v2->v3 function.
    """

    def register(function: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in _UPCASTERS:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")
        _UPCASTERS[key] = function
        return function

    return register


_WITHOUT_TYPE: Final[set[str]] = {"event_type"}


def encode_payload(event: DomainEvent) -> str:
    """The event's payload as compact JSON text, without the event_type (it has its own column).

    What `model_dump_json` writes, asked of the model's serializer directly: on the path of
    every append, the wrapper's own bookkeeping cost twice the serialising.
    """
    return type(event).__pydantic_serializer__.to_json(event, exclude=_WITHOUT_TYPE).decode()


def decode_event(event_type: str, schema_version: int, payload: str | Mapping[str, Any]) -> DomainEvent:
    """Turn a stored payload back into its current event model, upcasting old shapes.

    Raises UnknownEventError for a type or version this code does not know (the caller adds
    the log position), and pydantic's ValidationError for a payload that does not fit.
    """
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise UnknownEventError(f"unknown event type {event_type!r}")
    current = cls.schema_version
    if schema_version == current and isinstance(payload, str):
        # `model_validate_json`, minus its wrapper: this runs once per event of every read.
        event: DomainEvent = cls.__pydantic_validator__.validate_json(payload, context=STORED)
        return event
    if schema_version > current or schema_version < 1:
        raise UnknownEventError(
            f"{event_type} schema_version {schema_version} is not readable (this code reads versions 1..{current})"
        )
    data = dict(decode_json(payload) if isinstance(payload, str) else payload)
    for version in range(schema_version, current):
        lift = _UPCASTERS.get((event_type, version))
        if lift is None:
            raise UnknownEventError(f"no upcaster for {event_type} from schema_version {version}")
        data = lift(data)
    # What an upcaster produced is new data: it gets the full checks.
    return cls.model_validate(data)


# ---------------------------------------------------------------------------------------------
# The shipped evolutions (each class's docstring tells its schema history)
# ---------------------------------------------------------------------------------------------


@upcaster("PreferenceSet", 1)
def _preference_set_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: the replaced value was not recorded; say so with None."""
    return {**payload, "previous_value": None}
