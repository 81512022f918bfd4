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
from dala_events.errors import ConcurrencyError, InvalidInput, LearnerErasedError
from dala_events.store.codec import RECORDED_FIELDS, LogKey, as_chain_row, chain_rows, projectable
from dala_events.store.contract import DEFAULT_BATCH_SIZE, ERASED_EVENT_TYPE, EventStore, Row, check_count
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
        self._rows: list[Row] = []
        self._streams: dict[str, list[Row]] = {}
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
            actual = len(stream)
            if actual != expected_version:
                raise ConcurrencyError(learner_id, expected_version, actual)
            ids = [row["event_id"] for row in rows]
            if len(set(ids)) != len(ids) or not self._event_ids.isdisjoint(ids):
                raise InvalidInput("event_id", "an event with this id is already in the log", learner_id=learner_id)
            if stream and stream[-1][1] == ERASED_EVENT_TYPE:  # an erasure is the stream's last word
                raise LearnerErasedError(learner_id)
            chain_rows(rows, stream[-1][10] if stream else "", self.log_key)
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
    def _stored(position: int, row: dict[str, Any]) -> Row:
        # Times come back in UTC, as the SQL store returns them.
        values = {**row, "position": position}
        for name in ("occurred_at", "recorded_at"):
            moment: datetime = values[name]
            values[name] = moment.astimezone(UTC)
        return tuple(values[name] for name in RECORDED_FIELDS)

    def stored_rows(
        self,
        after_position: int = 0,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        learner_ids: Collection[str] | None = None,
    ) -> Iterator[list[Row]]:
        """The chain rows after `after_position` in log order, in batches, optionally of the
        given learners only (as `SqlEventStore.stored_rows`)."""
        check_count("after_position", after_position)
        check_count("batch_size", batch_size, minimum=1)
        wanted = None if learner_ids is None else frozenset(learner_ids)
        with self._lock:
            rows = [as_chain_row(row) for row in self._rows[after_position:] if wanted is None or row[5] in wanted]
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
        *,
        projectable: bool,
    ) -> list[Row]:
        with self._lock:
            stream = self._streams.get(learner_id, ())[after_version:up_to_version]
            rows = [row for row in stream if since <= row[8] <= until][:limit]
        return [_shape(row, projectable) for row in rows]

    def _erasures(self, learner_ids: Collection[str] | None) -> dict[str, datetime]:
        with self._lock:
            streams = self._streams if learner_ids is None else {n: self._streams.get(n, []) for n in learner_ids}
            # An erasure is a stream's last event.
            last = {name: stream[-1] for name, stream in streams.items() if stream}
            return {name: row[8] for name, row in last.items() if row[1] == ERASED_EVENT_TYPE}

    def _stream_summaries(self, after: str | None, limit: int) -> list[StreamSummary]:
        with self._lock:
            names = sorted(name for name in self._streams if after is None or name > after)[:limit]
            return [
                StreamSummary(name, len(stream), stream[0][8], stream[-1][8])
                for name in names
                if (stream := self._streams[name])
            ]

    def _log_fetcher(self, *, projectable: bool) -> Callable[[int, int], list[Row]]:
        def fetch(after: int, size: int) -> list[Row]:
            with self._lock:
                rows = self._rows[after : after + size]
            return [_shape(row, projectable) for row in rows]

        return fetch


def _shape(row: Row, as_projectable: bool) -> Row:
    return projectable(row) if as_projectable else row
