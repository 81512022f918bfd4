"""The event store contract: what every store does, and the limits every store checks the same way.

An event store keeps one append-only stream of events per learner and one global order
(positions) across them. `EventStore` states the contract and checks every argument before
a backend sees it, so the in-memory store and the SQL store (SQLite and PostgreSQL) answer
the same input the same way; backends implement only the row-level methods at the bottom.

- `append(learner_id, events, expected_version)`: versions expected+1, +2, ... in one
  transaction with the backend's inline projections, or ConcurrencyError and nothing written.
- `read_stream`: a learner's events in version order, optionally cut by version, recorded
  time and type. `read_all` / `read_all_batches` / `read_for_projection`: the whole log in
  position order, in bounded batches.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

from dala_events.envelopes import AppendedEvent, LoggedEvent, NewEvent, RecordedEvent, StreamSummary
from dala_events.errors import ConcurrencyError, CorruptEventError, InvalidInput, LearnerErasedError
from dala_events.events import (
    EARLIEST_TIME,
    EVENT_TYPES,
    LATEST_TIME,
    DomainEvent,
    check_json_object,
    check_learner_id,
    check_time,
    decode_json,
    utc_now,
)
from dala_events.store.codec import (
    LogKey,
    ProjectableRow,
    SealedStreams,
    StoredRow,
    chain_rows,
    decode_logged,
    decode_recorded,
    encode_row,
    hasher,
    in_the_clear,
    stored_link,
    time_text,
)
from dala_events.store.codec import projectable as to_projectable
from dala_events.store.keys import ENCRYPTED_PREFIX, DataKeyErased, DataKeyMissing, LogCipher

_log = logging.getLogger("dala_events.store")

DEFAULT_BATCH_SIZE = 2_000
"""Rows per read when walking the whole log (rebuilds, backups, `read_all`)."""
STREAM_BATCH_SIZE = 250
"""Rows per read of one learner's stream (history, as-of views, exports): each batch is read,
checked and decoded in a few milliseconds, so an asyncio caller's loop is never held longer
(`dala_events.aio`), while a 5,000-event history takes 20 reads."""
MAX_PAGE = 10_000
"""The most stream summaries one `list_streams` call returns."""
MAX_VERSION = 2**31 - 1
"""The highest stream version (and version argument) a store takes: a 32-bit column on every backend."""
MAX_POSITION = 2**63 - 1
"""The highest log position: a 64-bit column on every backend. Positions and batch sizes asked
for beyond it are clamped, so no driver is handed a number its column cannot hold."""
EARLIEST = EARLIEST_TIME
LATEST = LATEST_TIME
"""Time bounds outside these are clamped: every backend stores the years 1 to 9999."""
_EVENT_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

ERASED_EVENT_TYPE = "LearnerErased"
"""The event that ends an erased learner's stream: nothing is appended after it."""


class _Link(NamedTuple):
    """The last row checked of a stream (version, hash): what the next row must chain to; and
    whether the stream's content was seen encrypted already (`codec.SealedStreams`)."""

    version: int
    hash: str
    sealed: bool = False


_NO_LINK = _Link(0, "")


class StreamTip(NamedTuple):
    """A stream's last event as an append reads it inside its transaction: what decides
    whether the append may go on and what it chains from."""

    version: int
    """0 for a stream with no events."""
    hash: str
    """"" for a stream with no events."""
    event_type: str | None
    """None for a stream with no events."""


EMPTY_STREAM = StreamTip(0, "", None)


def check_aware(field_name: str, value: datetime | None) -> datetime | None:
    """`value` if it is None or a timezone-aware datetime, else InvalidInput naming the field."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInput(field_name, f"must be a datetime, not {type(value).__name__}")
    try:
        aware = value.tzinfo is not None and value.utcoffset() is not None
    except (TypeError, ValueError) as error:  # a tzinfo giving no valid offset
        raise InvalidInput(field_name, f"must have a valid time zone: {error}") from None
    if not aware:
        raise InvalidInput(field_name, f"must be timezone-aware, got {value!r}")
    return value


def check_count(field_name: str, value: object, *, minimum: int = 0, learner_id: str | None = None) -> int:
    """`value` if it is a whole number >= `minimum` (not a bool), else InvalidInput naming the field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field_name, f"must be a whole number, not {type(value).__name__}", learner_id=learner_id)
    if value < minimum:
        raise InvalidInput(field_name, f"must be >= {minimum}, got {value}", learner_id=learner_id)
    return value


def check_kind(field_name: str, value: object, kinds: type | tuple[type, ...], what: str) -> None:
    """InvalidInput naming the field unless `value` is one of `kinds` (`what` says which, for
    people): a wrong argument is the package's error, never an AttributeError from deep inside."""
    if not isinstance(value, kinds):
        raise InvalidInput(field_name, f"must be {what}, not {type(value).__name__}")


def valid_learner_id(learner_id: object) -> str:
    """`learner_id` if it is a valid stream name, else InvalidInput naming `learner_id`."""
    try:
        return check_learner_id(learner_id)
    except ValueError as error:
        raise InvalidInput("learner_id", str(error)) from None


def _checked_new_event(new: object, learner_id: str) -> NewEvent:
    """`new` if it is a NewEvent the log can store and read back (its event id in canonical
    lower case, its time in UTC), else InvalidInput naming the field."""
    if not isinstance(new, NewEvent) or not isinstance(new.event, DomainEvent):
        raise InvalidInput("events", f"must be NewEvent tuples, not {type(new).__name__}", learner_id=learner_id)
    if EVENT_TYPES.get(new.event.event_type) is not type(new.event):
        raise InvalidInput(
            "events", f"{type(new.event).__name__} is not an event type of the catalog", learner_id=learner_id
        )
    try:
        occurred_at = check_time(new.occurred_at)
    except ValueError as error:
        raise InvalidInput("occurred_at", str(error), learner_id=learner_id) from None
    event_id = new.event_id
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        raise InvalidInput(
            "event_id", f"must be a UUID in 8-4-4-4-12 hex form, got {event_id!r:.60}", learner_id=learner_id
        )
    try:
        check_json_object(new.metadata)
    except ValueError as error:
        raise InvalidInput("metadata", str(error), learner_id=learner_id) from None
    lowered = event_id.lower()
    if lowered != event_id or occurred_at is not new.occurred_at:
        # What every backend reads back: the inline projection then derives what a rebuild does.
        new = new._replace(event_id=lowered, occurred_at=occurred_at)
    return new


def _clamped(field_name: str, value: datetime | None, default: datetime) -> datetime:
    checked = check_aware(field_name, value)
    if checked is None:
        return default
    try:
        return min(max(checked.astimezone(UTC), EARLIEST), LATEST)
    except OverflowError:  # an offset pushes it past year 1 or 9999
        return EARLIEST if checked.year < 5000 else LATEST


class EventStore(ABC):
    """Appends events to learners' streams and reads them back (see the module docstring)."""

    cipher: LogCipher | None = None
    """Encrypts each learner's payloads and reasons at rest (`store.keys`); None: plain text."""
    log_key: LogKey | None = None
    """Keys the hash chain of what is appended (None: plain SHA-256, see `codec`)."""

    # -- writing ---------------------------------------------------------------------------

    def append(self, learner_id: str, events: Sequence[NewEvent], expected_version: int) -> int:
        """Append `events` to the learner's stream as versions expected_version+1, +2, ...

        In one transaction: check the stream is at `expected_version`, store the events, run
        the inline projections. Returns the stream's new version. Raises ConcurrencyError,
        having written nothing, when another writer moved the stream first, and
        LearnerErasedError for an erased learner's stream (an erasure is its last event).
        """
        learner_id = valid_learner_id(learner_id)
        check_count("expected_version", expected_version, learner_id=learner_id)
        if isinstance(events, str | bytes) or not isinstance(events, Iterable):
            raise InvalidInput(
                "events", f"must be a sequence of NewEvent tuples, not {type(events).__name__}", learner_id=learner_id
            )
        events = [_checked_new_event(new, learner_id) for new in events]
        if expected_version + len(events) > MAX_VERSION:
            raise InvalidInput("version", f"a stream holds at most {MAX_VERSION} events", learner_id=learner_id)
        if not events:
            return expected_version
        recorded_at = utc_now()
        try:
            rows = self._encoded(learner_id, expected_version, events, recorded_at)
        except DataKeyErased as erased:  # no key is made for an erased learner
            raise LearnerErasedError(learner_id, erased_at=erased.erased_at) from None
        appended = [
            AppendedEvent(learner_id, expected_version + offset, new.occurred_at, new.event)
            for offset, new in enumerate(events, start=1)
        ]
        self._append_rows(learner_id, expected_version, rows, appended)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "learner %r: appended versions %d..%d (%s)",
                learner_id,
                expected_version + 1,
                expected_version + len(events),
                ", ".join(new.event.event_type for new in events),
            )
        return expected_version + len(events)

    def _encoded(
        self, learner_id: str, expected_version: int, events: list[NewEvent], recorded_at: datetime
    ) -> list[dict[str, Any]]:
        """The rows of `events`, encrypted under the learner's data key.

        A data key is made with a learner's first event, or the first after events written in
        the clear (before encryption at rest, or by a store without a cipher), never while the
        stream holds events encrypted under a key the key store lacks: a new key could never read
        them, and a later `dala keys restore` of the old one would meet it as a conflict.
        DataKeyMissing names the learner and what to restore; nothing is written."""

        def encode(create_key: bool) -> list[dict[str, Any]]:
            return [
                encode_row(learner_id, expected_version + offset, new, recorded_at, self.cipher, create_key=create_key)
                for offset, new in enumerate(events, start=1)
            ]

        if expected_version == 0 or self.cipher is None:
            return encode(True)
        try:
            return encode(False)
        except DataKeyMissing:
            encrypted = self._encrypted_versions(learner_id)
            if encrypted:
                raise DataKeyMissing(
                    learner_id,
                    f"learner {learner_id!r}: {len(encrypted)} of their events are encrypted under a data key the key "
                    f"store {self.cipher.key_store.location} does not hold, so no new key is made for them (it "
                    "could never read their history): restore their key from a key backup (`dala keys restore "
                    "FILE`) and run `dala rebuild`; nothing was written",
                ) from None
            return encode(True)

    def _encrypted_versions(self, learner_id: str) -> list[int]:
        """The versions of the learner's events whose payload is stored encrypted."""
        rows = self._stream_rows(learner_id, 0, MAX_VERSION, EARLIEST, LATEST, MAX_VERSION)
        return [row.version for row in rows if row.payload.startswith(ENCRYPTED_PREFIX)]

    # -- reading ---------------------------------------------------------------------------

    def stream_version(self, learner_id: str) -> int:
        """The learner's latest version (0 for a stream with no events)."""
        return self._stream_version(valid_learner_id(learner_id))

    def read_stream(
        self,
        learner_id: str,
        *,
        up_to_version: int | None = None,
        until: datetime | None = None,
        since: datetime | None = None,
        event_types: Collection[str] | None = None,
        after_version: int = 0,
    ) -> list[RecordedEvent]:
        """The learner's events in version order.

        Optionally only those after a version (what a writer that holds the stream up to it
        has not seen), up to a version, recorded within [since, until], of the given types.
        Times are compared with `recorded_at`: when the store learned of the event.
        """
        learner_id = valid_learner_id(learner_id)
        check_count("after_version", after_version, learner_id=learner_id)
        wanted: frozenset[str] | None = None
        if event_types is not None:
            # listed once: a generator is read here, not used up by the check
            names = None if isinstance(event_types, str) or not isinstance(event_types, Iterable) else list(event_types)
            if names is None or not all(isinstance(name, str) for name in names):
                raise InvalidInput("event_types", "must be a collection of event type names", learner_id=learner_id)
            unknown = sorted(set(names) - set(EVENT_TYPES))
            if unknown:
                raise InvalidInput(
                    "event_types",
                    f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}",
                    learner_id=learner_id,
                )
            wanted = frozenset(names)
        cipher = self.cipher
        events: list[RecordedEvent] = []
        for rows in self._checked_batches(
            learner_id, up_to_version, since, until, STREAM_BATCH_SIZE, after_version=min(after_version, MAX_VERSION)
        ):
            events.extend(decode_recorded(row, cipher) for row in rows if wanted is None or row.event_type in wanted)
        return events

    def read_stream_for_projection(
        self,
        learner_id: str,
        *,
        up_to_version: int | None = None,
        until: datetime | None = None,
        batch_size: int = STREAM_BATCH_SIZE,
    ) -> Iterator[list[LoggedEvent]]:
        """Like `read_stream`, but only what a projector needs (no ids, no metadata), in
        batches of at most `batch_size` events, so a long stream's events need not all be
        alive at once."""
        for rows in self._projectable_rows(learner_id, up_to_version, until, batch_size):
            yield [decode_logged(row, self.cipher) for row in rows]

    def events_for_projection(
        self,
        learner_id: str,
        *,
        up_to_version: int | None = None,
        until: datetime | None = None,
        batch_size: int = STREAM_BATCH_SIZE,
    ) -> Iterator[LoggedEvent]:
        """Like `read_stream_for_projection`, one event at a time, each decoded only when it is
        reached: what an as-of view runs through the projectors, so that no more than one
        decoded event is alive at once (the garbage collector's walks over a batch of them cost
        as-of views more than a third of their time). Rows are still read `batch_size` at a
        time, each batch checked before its first event is given."""
        cipher = self.cipher
        for rows in self._projectable_rows(learner_id, up_to_version, until, batch_size):
            for row in rows:
                yield decode_logged(row, cipher)

    def _projectable_rows(
        self, learner_id: str, up_to_version: int | None, until: datetime | None, batch_size: int
    ) -> Iterator[list[ProjectableRow]]:
        batch_size = min(check_count("batch_size", batch_size, minimum=1), MAX_VERSION)
        for rows in self._checked_batches(learner_id, up_to_version, None, until, batch_size):
            yield [to_projectable(row) for row in rows]

    def read_all(
        self, after_position: int = 0, limit: int | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[RecordedEvent]:
        """Every event after `after_position` in log order, at most `limit` of them.

        Fetched `batch_size` rows at a time by position, so memory stays bounded however long
        the log.
        """
        for batch in self.read_all_batches(after_position, limit, batch_size=batch_size):
            yield from batch

    def read_all_batches(
        self, after_position: int = 0, limit: int | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[list[RecordedEvent]]:
        """Like `read_all`, one list per batch."""
        for rows in self._batches(after_position, limit, batch_size, projectable=False):
            yield [decode_recorded(row, self.cipher) for row in rows]

    def read_for_projection(
        self, after_position: int = 0, limit: int | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[list[LoggedEvent]]:
        """Like `read_all_batches`, but only what a projector needs: the shape a rebuild streams."""
        for rows in self._batches(after_position, limit, batch_size, projectable=True):
            yield [decode_logged(row, self.cipher) for row in rows]

    @abstractmethod
    def last_position(self) -> int:
        """The position of the newest event in the log (0 when empty)."""

    def list_streams(self, *, after: str | None = None, limit: int = 100) -> list[StreamSummary]:
        """The learners' streams in learner-id order, at most `limit`, starting after the id
        `after` (keyset paging: pass the last id of one page to get the next)."""
        if after is not None:
            after = valid_learner_id(after)
        check_count("limit", limit, minimum=1)
        return self._stream_summaries(after, min(limit, MAX_PAGE))

    # -- the checks every backend shares ---------------------------------------------------

    def _checked_batches(
        self,
        learner_id: str,
        up_to_version: int | None,
        since: datetime | None,
        until: datetime | None,
        batch_size: int,
        *,
        after_version: int = 0,
    ) -> Iterator[list[StoredRow]]:
        """The learner's rows in the window, `batch_size` at a time, each checked against its
        stream's chain before its batch is given (`_check_links`, the link carried from one batch
        to the next), after the checks every backend shares. Each batch is one read: between
        them an asyncio caller's loop serves others (`dala_events.aio`), and no one read holds
        a long stream's rows and their decoding at once."""
        learner_id = valid_learner_id(learner_id)
        if up_to_version is not None:
            check_count("up_to_version", up_to_version, learner_id=learner_id)
        cipher = self.cipher
        cut = up_to_version is not None or since is not None or until is not None or after_version > 0
        up_to = MAX_VERSION if up_to_version is None else min(up_to_version, MAX_VERSION)
        since, until = _clamped("since", since, EARLIEST), _clamped("until", until, LATEST)
        link = _NO_LINK
        after = after_version
        while True:
            rows = self._stream_rows(learner_id, after, up_to, since, until, batch_size)
            first = link is _NO_LINK
            if first and (cut or len(rows) == batch_size) and cipher is not None and cipher.holds_key(learner_id):
                # A key cached here may have been destroyed by another process's erasure since; a
                # cut read, or a first batch, may not reach the LearnerErased that says so: ask the log.
                self._forget_erased(cipher, [learner_id])
            link = self._check_links(learner_id, rows, link)
            if cipher is not None and rows and rows[-1].event_type == ERASED_EVENT_TYPE:
                # Erased (an erasure is a stream's last event), maybe by another process: drop a
                # cached key. Erased at: when the erasure was recorded, as `erasures` says.
                cipher.forget(learner_id, erased_at=rows[-1].recorded_at)
            if rows:
                yield rows
            if len(rows) < batch_size:
                return
            after = rows[-1].version

    def _check_links(self, learner_id: str, rows: list[StoredRow], link: _Link = _NO_LINK) -> _Link:
        """CorruptEventError for the first row that does not verify against its stream's chain:
        what an audit reads (history, as-of views, diffs, exports) is what was written, or
        refused, never a forged line shown as genuine. A row whose predecessor was not read
        (a cut read) is checked against that predecessor's stored hash. `link`: the last row
        checked before these (a previous batch's); returns the last of these."""
        digest = hasher(self.log_key)
        sealed = SealedStreams()
        if link.sealed:
            sealed.sealed.add(learner_id)
        previous_version, previous, _ = link
        recorded_at, recorded_text = None, ""
        for row in rows:
            sealed.check(row)
            if row.recorded_at != recorded_at:  # one append's events share their recorded time
                recorded_at, recorded_text = row.recorded_at, time_text(row.recorded_at)
            if row.version != previous_version + 1:
                stored = "" if row.version == 1 else self._hash_of(learner_id, row.version - 1)
                if stored is None:
                    raise CorruptEventError(
                        row.position, row.event_type, f"learner {learner_id!r} version {row.version - 1} is missing"
                    )
                previous = stored
            if stored_link(row, previous, digest, recorded_text) != row.hash:
                raise CorruptEventError(
                    row.position,
                    row.event_type,
                    f"learner {learner_id!r} version {row.version} does not verify against its stream's chain "
                    "(changed, moved or forged): run `dala verify`",
                )
            previous_version, previous = row.version, row.hash
        return _Link(previous_version, previous, learner_id in sealed.sealed)

    def _forget_erased(self, cipher: LogCipher, learner_ids: Collection[str] | None) -> None:
        for learner_id, erased_at in self._erasures(learner_ids).items():
            cipher.forget(learner_id, erased_at=erased_at)

    def unencrypted_versions(self, learner_id: str) -> list[int]:
        """The versions of the learner's events whose personal content is stored in the clear
        (written by a store without a cipher, after migration 0005 encrypted the older ones):
        what destroying their data key would not make unreadable."""
        learner_id = valid_learner_id(learner_id)
        rows = self._stream_rows(learner_id, 0, MAX_VERSION, EARLIEST, LATEST, MAX_VERSION)
        return [row.version for row in rows if in_the_clear(row.event_type, row.payload, decode_json(row.metadata))]

    def erasures(self, learner_ids: Collection[str] | None = None) -> dict[str, datetime]:
        """When each erased learner among `learner_ids` (all learners when None) was erased:
        the recorded time of their stream's `LearnerErased`."""
        if learner_ids is not None:
            learner_ids = [valid_learner_id(learner_id) for learner_id in learner_ids]
        return self._erasures(learner_ids)

    @contextmanager
    def writing_alone(self, learner_id: str) -> Iterator[None]:
        """A block in which no other writer that also asks for it writes the learner: how a
        command that keeps meeting other writers gets its turn (see
        `LearnerRepository.run_command`). Writers that do not ask are not held off; the
        append's version check still decides. Nothing to do where one process writes (memory);
        the SQL store takes a lock on PostgreSQL."""
        valid_learner_id(learner_id)
        yield

    def forget_erased_keys(self) -> None:
        """Make the cipher drop every cached data key whose learner was erased (maybe by another
        process): what reads the whole log (`read_all`, a rebuild) runs first, so a long-running
        process never decrypts with a key an erasure destroyed."""
        if self.cipher is not None and self.cipher.holds_keys():
            self._forget_erased(self.cipher, None)

    def _batches(
        self, after_position: int, limit: int | None, batch_size: int, *, projectable: bool
    ) -> Iterator[list[Any]]:
        check_count("after_position", after_position)
        batch_size = min(check_count("batch_size", batch_size, minimum=1), MAX_VERSION)
        if limit is not None:
            check_count("limit", limit)
        if after_position >= MAX_POSITION:
            return
        self.forget_erased_keys()
        fetch = self._log_fetcher(projectable=projectable)
        remaining = limit
        position = after_position
        while remaining is None or remaining > 0:
            size = batch_size if remaining is None else min(batch_size, remaining)
            rows = fetch(position, size)
            if not rows:
                return
            yield rows
            position = rows[-1].position
            if remaining is not None:
                remaining -= len(rows)
            if len(rows) < size:
                return

    # -- what a backend implements ---------------------------------------------------------

    def _chained(self, learner_id: str, expected_version: int, rows: list[dict[str, Any]], tip: StreamTip) -> None:
        """The rule every backend applies to an append, inside its transaction, given its
        stream's `tip` as read there: the stream must be at `expected_version`
        (ConcurrencyError), and an erased learner's stream takes no more events
        (LearnerErasedError: an erasure is a stream's last event); then the rows are chained
        from the tip's hash (`codec.chain_rows`). Backends only read the tip and store."""
        if tip.event_type == ERASED_EVENT_TYPE:  # first: a writer that held the stream before says why
            raise LearnerErasedError(learner_id)
        if tip.version != expected_version:
            raise ConcurrencyError(learner_id, expected_version, tip.version)
        chain_rows(rows, tip.hash, self.log_key)

    @abstractmethod
    def _append_rows(
        self, learner_id: str, expected_version: int, rows: list[dict[str, Any]], appended: list[AppendedEvent]
    ) -> None:
        """In one transaction: read the stream's tip, hand it to `_chained` (which checks and
        chains the rows), store `rows` (from `codec.encode_row`) and run the inline projections
        on `appended` (the same events); InvalidInput for an event id already in the log."""

    @abstractmethod
    def _stream_version(self, learner_id: str) -> int:
        """The learner's latest version, 0 for none."""

    @abstractmethod
    def _stream_rows(
        self,
        learner_id: str,
        after_version: int,
        up_to_version: int,
        since: datetime,
        until: datetime,
        limit: int,
    ) -> list[StoredRow]:
        """The first `limit` of the learner's rows with after_version < version <= up_to_version
        and since <= recorded_at <= until, in version order."""

    @abstractmethod
    def _hash_of(self, learner_id: str, version: int) -> str | None:
        """The stored hash of the learner's event at `version` (None: there is none)."""

    @abstractmethod
    def _erasures(self, learner_ids: Collection[str] | None) -> dict[str, datetime]:
        """Learner id -> recorded time of its LearnerErased, for the given learners (all when None)."""

    @abstractmethod
    def _stream_summaries(self, after: str | None, limit: int) -> list[StreamSummary]:
        """At most `limit` stream summaries with learner ids after `after`, in id order."""

    @abstractmethod
    def _log_fetcher(self, *, projectable: bool) -> Callable[[int, int], list[Any]]:
        """A function giving at most `size` rows after a position, in position order, as
        `StoredRow`s (`ProjectableRow`s when `projectable`)."""
