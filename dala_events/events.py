"""The event catalog: one frozen pydantic model per fact about a learner, their union, and upcasters.

An event is the payload of one row of the event log: it says what happened, in the past tense,
and carries every value the read models need, so a projector or the aggregate only copies
values and never decides anything. Where a row lives (learner, version, time, actor) is the
envelope's business, not the event's; see `dala_events.store`.

This module imports nothing else of the package: it is the vocabulary the rest is written in.
"""

from __future__ import annotations

import json
import math
import os
import re
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
    Strict,
    StrictBool,
    StrictInt,
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

# The limits: one set, the same for every backend (in memory, SQLite, PostgreSQL) and every way
# in (the aggregate, the document's functions, the store). README.md "Limits" lists them.

MAX_LEARNER_ID_LENGTH = 128
"""A learner id is at most this many characters."""
MAX_TEXT_LENGTH = 500
"""A name, category, description, identifier or badge detail is at most this many characters."""
MAX_DETAILS_BYTES = 64 * 1024
"""A JSON object (details, metric details, metadata) is at most this many bytes as UTF-8 JSON."""
MAX_JSON_DEPTH = 32
"""A JSON object nests at most this many levels of objects and arrays, itself included: far
under what any JSON parser on the read path refuses, so what is written is always read back."""
MIN_JSON_INT = -(2**63)
MAX_JSON_INT = 2**63 - 1
"""Integers inside JSON are within the signed 64-bit range, which every JSON reader keeps exact."""
MIN_SCORE = 0.0
MAX_SCORE = 100.0
"""Scores are percentages, 0 to 100 (the demo's and the page's scale), and finite."""
EARLIEST_TIME = datetime(1, 1, 2, tzinfo=UTC)
LATEST_TIME = datetime(9999, 12, 30, tzinfo=UTC)
"""Times stored are within these, in UTC: a day inside the years 1 to 9999 that every backend
and Python's datetime hold, so a time shown in any time zone still has a year 1 to 9999."""
LO_STATUSES: tuple[str, ...] = ("not_started", "in_progress", "completed")

STORED: Final[dict[str, bool]] = {"stored": True}
"""Validation context of values read back from the event log or the read models (see
`decode_event`). They were checked when they were written: the types and closed sets are
still checked, but the limits are not applied again, so an event written before a limit was
tightened stays readable (invariant 5) and reading does not pay for the checks twice."""

_FORBIDDEN_IN_TEXT = re.compile("[\x00\ud800-\udfff]")
_NUL_PROBLEM = "must not contain NUL characters ('\\x00')"


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text on every backend, or None if it can.

    PostgreSQL text cannot hold NUL characters (SQLite can, so refusing them keeps the backends
    alike), and a lone surrogate ("\\ud800") is not Unicode text: no backend can encode it.
    """
    if value.isascii():  # the common case, without a regular expression
        return None if "\x00" not in value else _NUL_PROBLEM
    found = _FORBIDDEN_IN_TEXT.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return _NUL_PROBLEM
    return f"must not contain lone surrogates ({found.group()!r})"


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


def check_time(value: object) -> datetime:
    """`value` in UTC if it is a timezone-aware datetime within EARLIEST_TIME..LATEST_TIME
    (after conversion to UTC), else ValueError saying why.

    An offset that pushes a time past the years 1 to 9999 is refused like any other time out
    of range (Python itself could not convert it)."""
    if not isinstance(value, datetime):
        raise ValueError(f"must be a datetime, not {type(value).__name__}")
    try:
        aware = value.tzinfo is not None and value.utcoffset() is not None
    except (TypeError, ValueError) as error:  # a tzinfo giving no valid offset
        raise ValueError(f"must have a valid time zone: {error}") from None
    if not aware:
        raise ValueError(f"must be timezone-aware, got {value!r}")
    try:
        utc: datetime | None = value if value.tzinfo is UTC else value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_TIME <= utc <= LATEST_TIME:
        raise ValueError(
            f"must be between {EARLIEST_TIME.isoformat()} and {LATEST_TIME.isoformat()} in UTC, "
            f"got {value.isoformat()}"
        )
    return utc


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


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Refused(Exception):
    """A part of a JSON value the log cannot carry: what is wrong, and where (built on the way out)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.where = ""


def _checked_json_text(value: str) -> int:
    problem = text_problem(value)
    if problem is not None:
        raise _Refused(problem)
    return 6 * len(value) + 2  # at most 6 bytes a character as JSON: "\u001f"


def _json_bound(value: object, depth: int) -> int:
    """An upper bound of the UTF-8 JSON size of `value`, or _Refused for the first part of it
    the log cannot carry exactly.

    One walk for every rule, the size included as a bound: only when the bound exceeds the
    limit is the JSON text made and measured. `depth` is the nesting level of `value` if it is
    an object or array (the top object is level 1); the walk never goes deeper than
    MAX_JSON_DEPTH + 1 levels, so a cyclic or absurdly deep value cannot exhaust the stack."""
    if isinstance(value, str):
        return _checked_json_text(value)
    if value is None or isinstance(value, bool):
        return 5
    if isinstance(value, int):
        if MIN_JSON_INT <= value <= MAX_JSON_INT:
            return 20
        raise _Refused(f"integers must be within the signed 64-bit range {MIN_JSON_INT}..{MAX_JSON_INT}")
    if isinstance(value, float):
        if math.isfinite(value):
            return 24
        raise _Refused("must be JSON-serialisable without NaN or infinity")
    if not isinstance(value, dict | list):
        raise _Refused(f"must be JSON-serialisable: {type(value).__name__} is not a JSON value")
    if depth > MAX_JSON_DEPTH:
        raise _Refused(f"must be nested at most {MAX_JSON_DEPTH} levels deep")
    bound = 2
    if isinstance(value, list):
        for index, item in enumerate(value):
            if type(item) is str and item.isascii() and "\x00" not in item:  # the common case, inline
                bound += 6 * len(item) + 3
                continue
            try:
                bound += _json_bound(item, depth + 1) + 1
            except _Refused as refused:
                refused.where = f"[{index}]{refused.where}"
                raise
        return bound
    for key, item in value.items():
        if not isinstance(key, str):
            raise _Refused(f"keys must be strings, not {type(key).__name__} ({_short(key)})")
        try:
            if key.isascii() and "\x00" not in key:  # the common cases, inline
                bound += 6 * len(key) + 4
            else:
                bound += _checked_json_text(key) + 2
            kind = type(item)
            if kind is str and item.isascii() and "\x00" not in item:
                bound += 6 * len(item) + 2
            elif item is None or kind is bool:
                bound += 5
            elif kind is int and MIN_JSON_INT <= item <= MAX_JSON_INT:
                bound += 20
            elif kind is float and math.isfinite(item):
                bound += 24
            else:
                bound += _json_bound(item, depth + 1)
        except _Refused as refused:
            refused.where = f"[{_short(key)}]{refused.where}"
            raise
    return bound


def check_json_object(value: object) -> dict[str, Any]:
    """Return `value` if it is a JSON object that the log carries exactly, else raise ValueError.

    Details and metadata are stored as JSON in the log and the read models, on every backend.
    Refused, so that what is read back equals what was written and can always be read: not a
    dict; keys that are not strings; values JSON has no type for (sets, tuples, bytes, ...);
    NaN and infinities; integers outside the signed 64-bit range; NUL characters or lone
    surrogates in keys or strings; more than MAX_JSON_DEPTH (32) levels of nesting; more than
    MAX_DETAILS_BYTES (64 KiB) as UTF-8 JSON text.
    """
    if not isinstance(value, dict):
        raise ValueError(f"must be a JSON object (dict), not {type(value).__name__}")
    try:
        bound = _json_bound(value, 1)
    except _Refused as refused:
        where = refused.where if len(refused.where) <= 200 else refused.where[:197] + "..."
        raise ValueError(f"{refused.problem} (at {where})" if where else refused.problem) from None
    if bound > MAX_DETAILS_BYTES:
        encoded = encode_json(value)
        size = len(encoded) if encoded.isascii() else len(encoded.encode("utf-8"))
        if size > MAX_DETAILS_BYTES:
            raise ValueError(f"must be at most {MAX_DETAILS_BYTES} bytes as JSON, got {size}")
    return value


def _check_event_time(value: datetime, info: ValidationInfo) -> datetime:
    if info.context is STORED and value.tzinfo is not None:
        try:
            return value.astimezone(UTC)
        except OverflowError:  # written before times were bounded: read it as it was written
            return value
    return check_time(value)


def _check_text(value: str, info: ValidationInfo) -> str:
    # Lone surrogates never get this far: pydantic-core refuses them as it reads the string.
    if info.context is not STORED and "\x00" in value:
        raise ValueError(_NUL_PROBLEM)
    return value


def _check_score(value: float, info: ValidationInfo) -> float:
    if info.context is not STORED and not MIN_SCORE <= value <= MAX_SCORE:
        raise ValueError(f"must be a percentage from {MIN_SCORE:g} to {MAX_SCORE:g}, got {value!r}")
    return value


LearnerId: TypeAlias = Annotated[str, BeforeValidator(check_learner_id)]
"""A learner (stream) id: non-empty, printable, <= 128 chars, no surrounding whitespace."""

Text: TypeAlias = Annotated[
    str,
    Strict(),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_LENGTH),
    AfterValidator(_check_text),
]
"""A name, category, description or identifier: a str (bytes are refused, not decoded),
stripped, then 1..500 characters, with no NUL character or lone surrogate."""

FreeText: TypeAlias = Annotated[
    str, Strict(), StringConstraints(max_length=MAX_TEXT_LENGTH), AfterValidator(_check_text)
]
"""Free text kept as given (a badge's details): a str of at most 500 characters, with no NUL
character or lone surrogate."""

Score: TypeAlias = Annotated[float, Strict(), Field(allow_inf_nan=False), AfterValidator(_check_score)]
"""A percentage: a finite number (int or float; not a bool or a string) from 0 to 100."""


def _check_json_object_field(value: object, info: ValidationInfo) -> dict[str, Any]:
    # A payload read back from the log was checked when it was written and has just been
    # parsed from JSON text: re-serialising it to measure it again would only cost time.
    if isinstance(value, dict) and info.context is STORED:
        return value
    return check_json_object(value)


JsonObject: TypeAlias = Annotated[dict[str, Any], BeforeValidator(_check_json_object_field)]
"""A JSON object within the limits of `check_json_object` (64 KiB, 32 levels, ...)."""

LOStatus: TypeAlias = Literal["not_started", "in_progress", "completed"]
"""The closed set of learning-objective statuses."""

_TEXT_ADAPTER: TypeAdapter[str] = TypeAdapter(Text)


def check_text(value: object) -> str:
    """`value` as a Text field would hold it (stripped), or pydantic's ValidationError."""
    return _TEXT_ADAPTER.validate_python(value)


UtcDateTime: TypeAlias = Annotated[datetime, Strict(), AfterValidator(_check_event_time)]
"""A timezone-aware datetime within EARLIEST_TIME..LATEST_TIME, normalised to UTC."""


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
    holds_personal_data: ClassVar[bool] = True
    """Whether the payload may hold the learner's personal data: if so, the store encrypts it
    (and the reason recorded with it) under the learner's data key; if not, it stays readable
    after that key is destroyed."""
    event_type: str


class LearnerProfileCreated(DomainEvent):
    """A learner profile came into being (or came back after deletion)."""

    event_type: Literal["LearnerProfileCreated"] = "LearnerProfileCreated"


class LearnerProfileDeleted(DomainEvent):
    """The learner's profile was deleted: every read-model row of the learner goes."""

    event_type: Literal["LearnerProfileDeleted"] = "LearnerProfileDeleted"


class LearnerErased(DomainEvent):
    """The learner was erased (right to erasure): their data key was destroyed, so the content
    of every earlier event is unreadable, and every read-model row of the learner went.

    Holds no personal data: who erased (the actor), when (the event's time) and why (the
    reason) are its envelope, stored readable so the erasure stays on record. The learner id
    cannot be used again.
    """

    holds_personal_data: ClassVar[bool] = False
    event_type: Literal["LearnerErased"] = "LearnerErased"
    erased_up_to_version: StrictInt = Field(ge=0, le=2**31 - 1)
    """The stream's version before this event: the events whose content is erased."""


class ErasedContent(DomainEvent):
    """What reading the log gives for an event whose content was erased: its envelope (type,
    times, actor) is still in the log, its payload and reason are unreadable for good.

    Never appended (it is not in `EVENT_TYPES`); applying or projecting it changes nothing.
    """

    holds_personal_data: ClassVar[bool] = False
    event_type: Literal["ErasedContent"] = "ErasedContent"
    erased_event_type: str
    """The type of the event whose content was erased."""


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
    details: FreeText | None = None


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
    completed: StrictBool = False
    attempt_details: JsonObject | None = None


Event: TypeAlias = Annotated[
    LearnerProfileCreated
    | LearnerProfileDeleted
    | LearnerErased
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
        LearnerErased,
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
