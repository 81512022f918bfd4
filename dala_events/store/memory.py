"""The in-memory event store: the contract without a database, for tests and scratch work.

Rows are kept exactly as the SQL store writes them (payload and metadata as JSON text, made
by the same codec, chained by the same `codec.chain_rows`), so reading them back runs the
same decoding and the same checks, and the hashes equal the SQL store's for the same events;
only where they live differs. Appends are atomic under a lock: the rows and the inline
projections of one append happen together or, if a projection fails, not at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from dala_events.envelopes import AppendedEvent, ProjectableEvent, StreamSummary
from dala_events.errors import InvalidInput
from dala_events.store.codec import ChainRow, LogKey, ProjectableRow, StoredRow, as_chain_row, projectable
from dala_events.store.contract import (
    DEFAULT_BATCH_SIZE,
    EMPTY_STREAM,
    ERASED_EVENT_TYPE,
    EventStore,
    StreamTip,
    check_count,
)
from dala_events.store.keys import LogCipher

MemoryProjector = Callable[[Sequence[ProjectableEvent]], None]
"""An inline projection of the in-memory store: called with each append's events, inside the
append (an exception undoes the append)."""


class InMemoryEventStore(EventStore):
    """An `EventStore` holding its log in a list: nothing survives the process."""

    def __init__(
        self,
        *,
        inline_projectors: Sequence[MemoryProjector] = (),
        log_key: LogKey | None = None,
        cipher: LogCipher | None = None,
    ) -> None:
        self.inline_projectors = tuple(inline_projectors)
        self.log_key = log_key
        self.cipher = cipher
        self._lock = threading.RLock()
        self._rows: list[StoredRow] = []
        self._streams: dict[str, list[StoredRow]] = {}
        self._event_ids: set[str] = set()

    def last_position(self) -> int:
        """The position of the newest event in the log (0 when empty)."""
        with self._lock:
            return len(self._rows)

    def _append_rows(
        self, learner_id: str, expected_version: int, rows: list[dict[str, Any]], appended: list[AppendedEvent]
    ) -> None:
        with self._lock:
            stream = self._streams.get(learner_id, [])
            tip = StreamTip(len(stream), stream[-1].hash, stream[-1].event_type) if stream else EMPTY_STREAM
            self._chained(learner_id, expected_version, rows, tip)
            ids = [row["event_id"] for row in rows]
            if len(set(ids)) != len(ids) or not self._event_ids.isdisjoint(ids):
                raise InvalidInput("event_id", "an event with this id is already in the log", learner_id=learner_id)
            stored = [self._stored(len(self._rows) + offset, row) for offset, row in enumerate(rows, start=1)]
            self._rows.extend(stored)
            self._streams.setdefault(learner_id, []).extend(stored)
            self._event_ids.update(ids)
            try:
                for project in self.inline_projectors:
                    project(appended)
            except BaseException:
                del self._rows[-len(stored) :]
                del self._streams[learner_id][-len(stored) :]
                if not self._streams[learner_id]:
                    del self._streams[learner_id]
                self._event_ids.difference_update(ids)
                raise

    @staticmethod
    def _stored(position: int, row: dict[str, Any]) -> StoredRow:
        # Times come back in UTC, as the SQL store returns them.
        values = {**row, "position": position}
        for name in ("occurred_at", "recorded_at"):
            moment: datetime = values[name]
            values[name] = moment.astimezone(UTC)
        return StoredRow(**{name: values[name] for name in StoredRow._fields})

    def stored_rows(
        self,
        after_position: int = 0,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        learner_ids: Collection[str] | None = None,
    ) -> Iterator[list[ChainRow]]:
        """The chain rows after `after_position` in log order, in batches, optionally of the
        given learners only (as `SqlEventStore.stored_rows`)."""
        check_count("after_position", after_position)
        check_count("batch_size", batch_size, minimum=1)
        wanted = None if learner_ids is None else frozenset(learner_ids)
        with self._lock:
            rows = [
                as_chain_row(row) for row in self._rows[after_position:] if wanted is None or row.learner_id in wanted
            ]
        for start in range(0, len(rows), batch_size):
            yield rows[start : start + batch_size]

    def _stream_version(self, learner_id: str) -> int:
        with self._lock:
            return len(self._streams.get(learner_id, ()))

    def _stream_rows(
        self,
        learner_id: str,
        after_version: int,
        up_to_version: int,
        since: datetime,
        until: datetime,
        limit: int,
    ) -> list[StoredRow]:
        with self._lock:
            stream = self._streams.get(learner_id, ())[after_version:up_to_version]
            return [row for row in stream if since <= row.recorded_at <= until][:limit]

    def _hash_of(self, learner_id: str, version: int) -> str | None:
        with self._lock:
            stream = self._streams.get(learner_id, ())
            return stream[version - 1].hash if 0 < version <= len(stream) else None

    def _erasures(self, learner_ids: Collection[str] | None) -> dict[str, datetime]:
        with self._lock:
            streams = self._streams if learner_ids is None else {n: self._streams.get(n, []) for n in learner_ids}
            # An erasure is a stream's last event.
            last = {name: stream[-1] for name, stream in streams.items() if stream}
            return {name: row.recorded_at for name, row in last.items() if row.event_type == ERASED_EVENT_TYPE}

    def _stream_summaries(self, after: str | None, limit: int) -> list[StreamSummary]:
        with self._lock:
            names = sorted(name for name in self._streams if after is None or name > after)[:limit]
            return [
                StreamSummary(name, len(stream), stream[0].recorded_at, stream[-1].recorded_at)
                for name in names
                if (stream := self._streams[name])
            ]

    def _log_fetcher(self, *, projectable: bool) -> Callable[[int, int], list[StoredRow] | list[ProjectableRow]]:
        def fetch(after: int, size: int) -> list[StoredRow] | list[ProjectableRow]:
            with self._lock:
                rows = self._rows[after : after + size]
            return _shaped(rows, projectable)

        return fetch


def _shaped(rows: list[StoredRow], as_projectable: bool) -> list[StoredRow] | list[ProjectableRow]:
    return [projectable(row) for row in rows] if as_projectable else rows
