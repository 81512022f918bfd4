"""The log codec: an event in its envelope <-> a plain row of the log, the same for every store.

A stored row is plain data (ids, numbers, times, JSON text). Every store implementation
writes rows made by `encode_row` and chained by `chain_rows`, and reads them back through
`decode_recorded` / `decode_logged`, so what one backend accepts, every backend reads back
the same way. Rows come back as named tuples of three shapes, read by name, never by index:
`StoredRow` (everything, the hash included), `ProjectableRow` (what a projector needs) and
`ChainRow`, a stored row with its two times as the text the chain hashes (`time_text`).

The hash chain (below) is computed here too, once for every store: each row's `hash` covers
its stored columns and the previous row's hash in its learner's stream.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol
from uuid import UUID

import pydantic

from dala_events.envelopes import LoggedEvent, NewEvent, RecordedEvent
from dala_events.errors import CorruptEventError, DalaError, InvalidInput
from dala_events.events import (
    EVENT_TYPES,
    DomainEvent,
    ErasedContent,
    UnknownEventError,
    decode_event,
    decode_json,
    dump_checked_json,
    encode_payload,
)
from dala_events.store.keys import ENCRYPTED_PREFIX, DataKeyErased, DataKeyMissing, LogCipher


class StoredRow(NamedTuple):
    """One event as every store keeps it and reads it back: the stored columns, the hash last
    (see `link_of`), both times as aware UTC datetimes."""

    position: int
    event_type: str
    schema_version: int
    payload: str
    event_id: str
    learner_id: str
    version: int
    occurred_at: datetime
    recorded_at: datetime
    metadata: str
    hash: str


class ChainRow(NamedTuple):
    """A stored event as a chain check reads it: the fields of `StoredRow`, the event id in
    canonical form and both times as the text the chain hashes (`time_text`), printed by the
    database, so a check hashes exactly what is stored."""

    position: int
    event_type: str
    schema_version: int
    payload: str
    event_id: str
    learner_id: str
    version: int
    occurred_at: str
    recorded_at: str
    metadata: str
    hash: str


class ProjectableRow(NamedTuple):
    """What a projector needs of a stored event: the shape a rebuild and an as-of view read."""

    position: int
    event_type: str
    schema_version: int
    payload: str
    learner_id: str
    version: int
    occurred_at: datetime


class EventRow(Protocol):
    """What decoding an event needs of any row shape."""

    @property
    def position(self) -> int: ...
    @property
    def event_type(self) -> str: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def payload(self) -> str: ...
    @property
    def learner_id(self) -> str: ...
    @property
    def version(self) -> int: ...


RECORDED_FIELDS = StoredRow._fields
"""The columns of a stored row, in the order stores return them."""

PROJECTABLE_FIELDS = ProjectableRow._fields
"""The columns of a projectable row, in the order stores return them."""


def encode_row(
    learner_id: str,
    version: int,
    new: NewEvent,
    recorded_at: datetime,
    cipher: LogCipher | None = None,
    *,
    create_key: bool = True,
) -> dict[str, Any]:
    """The log row of `new` as version `version` of the learner's stream (no position yet, no
    hash: the store chains it with `chain_rows` once it knows the stream's last hash).

    With a `cipher`, the payload and the metadata's `reason` are encrypted under the learner's
    data key (the envelope as associated data) before the row is chained, so the chain covers
    the ciphertext; an event that holds no personal data (`LearnerErased`) is stored readable.
    Without `create_key`, a learner who has no data key is DataKeyMissing (see `EventStore.append`)."""
    event = new.event
    event_type = event.event_type
    schema_version = type(event).schema_version
    payload = encode_payload(event)
    metadata = new.metadata
    if cipher is not None:
        payload, metadata = sealed(
            cipher, learner_id, version, event_type, schema_version, payload, metadata, create_key=create_key
        )
    return {
        "event_id": new.event_id,
        "learner_id": learner_id,
        "version": version,
        "event_type": event_type,
        "schema_version": schema_version,
        "occurred_at": new.occurred_at,
        "recorded_at": recorded_at,
        "payload": payload,
        # Checked as JSON the log carries (`check_json_object`) before it got here.
        "metadata": dump_checked_json(metadata),
    }


class SealedStreams:
    """Refuses personal text in the clear after a stream's content was seen encrypted: a line
    written around the store (without a log key, whoever can write can chain one). Rows are
    fed in each stream's version order; the events written before encryption at rest (and
    encrypted by migration 0005 since) come before any encrypted one."""

    def __init__(self) -> None:
        self.sealed: set[str] = set()

    def check(self, row: EventRow) -> None:
        """CorruptEventError when `row` holds personal text in the clear after sealed ones."""
        if row.payload.startswith(ENCRYPTED_PREFIX):
            self.sealed.add(row.learner_id)
        elif row.learner_id in self.sealed and _holds_personal_data(row.event_type):
            raise CorruptEventError(
                row.position,
                row.event_type,
                f"learner {row.learner_id!r} version {row.version}: the payload is stored in the clear after "
                "encrypted ones: it was written around the store (run `dala verify`)",
            )


def _holds_personal_data(event_type: str) -> bool:
    kind = EVENT_TYPES.get(event_type)
    return kind is None or kind.holds_personal_data


def in_the_clear(event_type: str, payload: str, metadata: Mapping[str, Any]) -> bool:
    """Whether an event's payload or reason, as stored, is personal text not encrypted: what
    `sealed` would change. An event that holds no personal data (`LearnerErased`) never is."""
    kind = EVENT_TYPES.get(event_type)
    if kind is not None and not kind.holds_personal_data:
        return False
    reason = metadata.get("reason")
    return not payload.startswith(ENCRYPTED_PREFIX) or (
        isinstance(reason, str) and not reason.startswith(ENCRYPTED_PREFIX)
    )


def sealed(
    cipher: LogCipher,
    learner_id: str,
    version: int,
    event_type: str,
    schema_version: int,
    payload: str,
    metadata: Mapping[str, Any],
    *,
    create_key: bool = True,
) -> tuple[str, Mapping[str, Any]]:
    """The payload and metadata of an event as the log stores them: the payload and the
    metadata's `reason` encrypted under the learner's data key with the envelope as associated
    data, each unless it is already; unchanged for an event that holds no personal data. The
    one rule for new events and for the migration that encrypts old ones. The learner's data key
    is made when missing only with `create_key` (else DataKeyMissing)."""
    kind = EVENT_TYPES.get(event_type)
    if kind is not None and not kind.holds_personal_data:
        return payload, metadata
    if not payload.startswith(ENCRYPTED_PREFIX):
        payload = cipher.encrypt(
            payload, learner_id, version, event_type, schema_version, "payload", create=create_key
        )
    reason = metadata.get("reason")
    if isinstance(reason, str) and not reason.startswith(ENCRYPTED_PREFIX):
        reason = cipher.encrypt(reason, learner_id, version, event_type, schema_version, "reason", create=create_key)
        metadata = {**metadata, "reason": reason}
    return payload, metadata


def _plain(row: EventRow, text: str, field: str, cipher: LogCipher | None) -> str:
    """`text` of a row (its payload or reason) decrypted, when it is encrypted."""
    if cipher is None:
        if text.startswith(ENCRYPTED_PREFIX):
            raise CorruptEventError(
                row.position, row.event_type, f"{field} is encrypted and no key store is configured"
            )
        return text
    try:
        return cipher.decrypt(text, row.learner_id, row.version, row.event_type, row.schema_version, field)
    except DataKeyMissing as error:
        raise CorruptEventError(row.position, row.event_type, str(error)) from error
    except InvalidInput as error:
        raise CorruptEventError(row.position, row.event_type, str(error)) from error


def decode_event_of(row: EventRow, cipher: LogCipher | None = None) -> DomainEvent:
    """The event of a row, its payload decrypted with `cipher` (keyed by the row's learner and
    version).

    An `ErasedContent` standing in for the event when its learner's data key was destroyed by
    their erasure: the envelope is still in the log, the content is gone for good."""
    try:
        payload = row.payload
        if payload.startswith(ENCRYPTED_PREFIX):
            try:
                payload = _plain(row, payload, "payload", cipher)
            except DataKeyErased:
                return ErasedContent(erased_event_type=row.event_type)
        return decode_event(row.event_type, row.schema_version, payload)
    except pydantic.ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in error.errors())
        raise CorruptEventError(row.position, row.event_type, f"payload does not fit the event: {problems}") from error
    except (UnknownEventError, ValueError) as error:
        raise CorruptEventError(row.position, row.event_type, str(error)) from error


def decode_logged(row: ProjectableRow, cipher: LogCipher | None = None) -> LoggedEvent:
    """A projectable row as a LoggedEvent."""
    return LoggedEvent(row.position, row.learner_id, row.version, row.occurred_at, decode_event_of(row, cipher))


def decode_recorded(row: StoredRow, cipher: LogCipher | None = None) -> RecordedEvent:
    """A stored row as a RecordedEvent."""
    event = decode_event_of(row, cipher)
    try:
        metadata = decode_json(row.metadata)
    except ValueError as error:
        raise CorruptEventError(row.position, row.event_type, f"metadata is not JSON: {error}") from error
    reason = metadata.get("reason") if isinstance(metadata, dict) else None
    if isinstance(reason, str) and (cipher is not None or reason.startswith(ENCRYPTED_PREFIX)):
        if type(event) is ErasedContent and reason.startswith(ENCRYPTED_PREFIX):
            metadata["reason"] = None  # erased with the content it explained
        else:
            metadata["reason"] = _plain(row, reason, "reason", cipher)
    return RecordedEvent(
        row.position,
        row.event_id,
        row.learner_id,
        row.version,
        row.event_type,
        row.schema_version,
        row.occurred_at,
        row.recorded_at,
        event,
        metadata,
    )


def projectable(row: StoredRow) -> ProjectableRow:
    """The projectable shape of a stored row."""
    return ProjectableRow(
        row.position, row.event_type, row.schema_version, row.payload, row.learner_id, row.version, row.occurred_at
    )


# ---------------------------------------------------------------------------------------------
# The hash chain
# ---------------------------------------------------------------------------------------------
#
# Each row's `hash` links it to the row before it in its learner's stream:
#
#     hash_n = HMAC-SHA256(log key, message_n)      with a log key
#     hash_n = SHA-256(message_n)                    without one (a checksum: it catches
#                                                    accidents, not someone who can write)
#
# message_n is the UTF-8 encoding of CHAIN_FORMAT followed by ten fields, each written as its
# length in characters (decimal), a colon and its text, in this order: hash_{n-1} (empty for
# version 1), event_id (canonical lowercase 8-4-4-4-12 form), learner_id, version, event_type,
# schema_version (decimal), occurred_at and recorded_at (UTC, "YYYY-MM-DD HH:MM:SS.ffffff"),
# payload and metadata (the stored text exactly). The log position is left out: a restore may
# renumber it. What is hashed is what is stored, never a decoded value, so a payload stored
# encrypted is chained as its ciphertext.

CHAIN_FORMAT = "dala-event-chain/1\n"
"""The first bytes of every hashed message: names the message format, so a later format
cannot be mistaken for this one."""

HASH_LENGTH = 64
"""Hex digits of a stored hash (SHA-256 and HMAC-SHA256 alike)."""

MIN_LOG_KEY_BYTES = 32
"""The shortest log key taken: 256 bits, the size of HMAC-SHA256's output."""

_KEY_ID_MESSAGE = b"dala-events log key id"


class LogKeyError(DalaError):
    """The log key is not the one the log is chained with (or one is missing)."""


class LogKey:
    """The secret that keys the log's hash chain (HMAC-SHA256): at least 32 bytes.

    Without it, write access to the database cannot make a row that verifies. `key_id` names
    the key without revealing it (an HMAC of a fixed text), so a log, a checkpoint and a
    process can say which key they use.
    """

    __slots__ = ("_hmac", "key_id")

    def __init__(self, secret: bytes, *, source: str = "log key") -> None:
        if not isinstance(secret, bytes):
            raise InvalidInput(source, f"must be bytes, not {type(secret).__name__}")
        if len(secret) < MIN_LOG_KEY_BYTES:
            raise InvalidInput(source, f"must be at least {MIN_LOG_KEY_BYTES} bytes, got {len(secret)}")
        self._hmac = hmac.new(secret, digestmod=hashlib.sha256)
        self.key_id = hmac.new(secret, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]

    @classmethod
    def from_hex(cls, text: str, *, source: str = "log key") -> LogKey:
        """The key written as hex digits (64 or more: `secrets.token_hex(32)` makes one)."""
        digits = "".join(text.split())
        if not all(c in string.hexdigits for c in digits):
            raise InvalidInput(source, "must be hex digits (e.g. the output of `openssl rand -hex 32`)")
        if len(digits) < 2 * MIN_LOG_KEY_BYTES or len(digits) % 2:  # hex digits all, but not whole bytes enough
            raise InvalidInput(
                source,
                f"must be at least {MIN_LOG_KEY_BYTES} bytes ({2 * MIN_LOG_KEY_BYTES} hex digits, two a byte), "
                f"got {len(digits)} hex digits",
            )
        return cls(bytes.fromhex(digits), source=source)

    def sign(self, message: bytes) -> str:
        """HMAC-SHA256 of `message` under this key, in hex."""
        mac = self._hmac.copy()
        mac.update(message)
        return mac.hexdigest()

    def __repr__(self) -> str:
        return f"LogKey(key_id={self.key_id!r})"


def chain_mode(key: LogKey | None) -> str:
    """How a chain is hashed: "hmac-sha256" with a key, "sha256" without."""
    return "sha256" if key is None else "hmac-sha256"


def hasher(key: LogKey | None) -> Callable[[bytes], str]:
    """The function that hashes a chain message: HMAC-SHA256 under `key`, or SHA-256."""
    if key is None:
        return _sha256_hex
    return key.sign


def _sha256_hex(message: bytes) -> str:
    return hashlib.sha256(message).hexdigest()


def time_text(moment: datetime) -> str:
    """A timestamp as the chain hashes it: UTC, "YYYY-MM-DD HH:MM:SS.ffffff" (SQLite's stored form)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(" ", "microseconds")[:-6]


def event_id_text(event_id: str) -> str:
    """An event id as the chain hashes it, and as every store reads it back: lowercase 8-4-4-4-12."""
    canonical_dashes = len(event_id) == 36 and event_id[8] == event_id[13] == event_id[18] == event_id[23] == "-"
    if canonical_dashes and event_id.islower():
        return event_id
    return str(UUID(event_id))


def chain_message(
    previous: str,
    event_id: str,
    learner_id: str,
    version: int,
    event_type: str,
    schema_version: int,
    occurred_at: str,
    recorded_at: str,
    payload: str,
    metadata: str,
) -> bytes:
    """The bytes hashed for one row (see the comment above `CHAIN_FORMAT`); times as `time_text`."""
    v = str(version)
    s = str(schema_version)
    return (
        f"{CHAIN_FORMAT}{len(previous)}:{previous}{len(event_id)}:{event_id}{len(learner_id)}:{learner_id}"
        f"{len(v)}:{v}{len(event_type)}:{event_type}{len(s)}:{s}{len(occurred_at)}:{occurred_at}"
        f"{len(recorded_at)}:{recorded_at}{len(payload)}:{payload}{len(metadata)}:{metadata}"
    ).encode()


def chain_rows(rows: Sequence[dict[str, Any]], previous: str, key: LogKey | None) -> None:
    """Give each new row (from `encode_row`, in version order) its `hash`, chained from `previous`
    (the stream's last stored hash, "" for a new stream). Every store appends through this.

    The two times are also left in the row as the text hashed, `occurred_text` and
    `recorded_text`: the form SQLite stores, so the SQL store formats them once for both.
    """
    digest = hasher(key)
    recorded: datetime | None = None
    recorded_text = ""
    for row in rows:
        if row["recorded_at"] is not recorded:  # one append shares one recorded_at
            recorded = row["recorded_at"]
            recorded_text = time_text(row["recorded_at"])
        occurred_text = row["occurred_text"] = time_text(row["occurred_at"])
        row["recorded_text"] = recorded_text
        previous = row["hash"] = digest(
            chain_message(
                previous,
                event_id_text(row["event_id"]),
                row["learner_id"],
                row["version"],
                row["event_type"],
                row["schema_version"],
                occurred_text,
                recorded_text,
                row["payload"],
                row["metadata"],
            )
        )


def link_of(
    row: ChainRow,
    previous: str,
    digest: Callable[[bytes], str],
    *,
    learner_id: str | None = None,
    version: int | None = None,
) -> str:
    """The hash a chain row should carry if it follows `previous`.

    `learner_id` / `version` put other values in their place: what the row would hash to had
    it been written to another stream or as another version (how a check tells a moved or
    renumbered event from a changed one).
    """
    return digest(
        chain_message(
            previous,
            row.event_id,
            row.learner_id if learner_id is None else learner_id,
            row.version if version is None else version,
            row.event_type,
            row.schema_version,
            row.occurred_at,
            row.recorded_at,
            row.payload,
            row.metadata,
        )
    )


def stored_link(
    row: StoredRow, previous: str, digest: Callable[[bytes], str], recorded_text: str | None = None
) -> str:
    """`link_of` for a stored row (times as datetimes), without building its chain row: what
    every audit read computes per event, so it is kept to the hashed message itself.
    `recorded_text`: `time_text(row.recorded_at)` when the caller has it (one append's events
    share their recorded time)."""
    return digest(
        chain_message(
            previous,
            event_id_text(row.event_id),
            row.learner_id,
            row.version,
            row.event_type,
            row.schema_version,
            time_text(row.occurred_at),
            time_text(row.recorded_at) if recorded_text is None else recorded_text,
            row.payload,
            row.metadata,
        )
    )


def as_chain_row(row: StoredRow) -> ChainRow:
    """A stored row as a chain row: the event id in canonical form and the two times as
    `time_text`, as the SQL store reads them for checking (`SqlEventStore.stored_rows`)."""
    return ChainRow(
        position=row.position,
        event_type=row.event_type,
        schema_version=row.schema_version,
        payload=row.payload,
        event_id=event_id_text(row.event_id),
        learner_id=row.learner_id,
        version=row.version,
        occurred_at=time_text(row.occurred_at),
        recorded_at=time_text(row.recorded_at),
        metadata=row.metadata,
        hash=row.hash,
    )


def parse_time_text(text: str) -> datetime:
    """The UTC datetime of a time's chain text (or of other ISO text a hand may have stored)."""
    try:
        return datetime.fromisoformat(text + "+00:00")
    except ValueError:  # text with a zone of its own, not written by a store
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def decode_chain_row_as_logged(row: ChainRow, cipher: LogCipher | None = None) -> LoggedEvent:
    """A chain row as a LoggedEvent: what is projected once the row's hash is checked."""
    try:
        occurred_at = parse_time_text(row.occurred_at)
    except (TypeError, ValueError) as error:
        raise CorruptEventError(row.position, row.event_type, f"occurred_at is not a time: {error}") from error
    return LoggedEvent(row.position, row.learner_id, row.version, occurred_at, decode_event_of(row, cipher))
