"""The learner repository: load a learner aggregate from an event store, and save it back.

The one place where the aggregate meets a store: loading replays the learner's stream,
saving appends what is pending at the version the aggregate was loaded at (so a writer
that moved the stream meanwhile makes the save fail with ConcurrencyError, writing nothing).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import TypeVar

from dala_events.aggregate import LearnerAggregate
from dala_events.errors import ConcurrencyError
from dala_events.store import EventStore

A = TypeVar("A", bound=LearnerAggregate)
T = TypeVar("T")

COMMAND_ATTEMPTS = 25
"""How often a command is tried before its ConcurrencyError is raised (a learner written by
that many others in a row is not a learner but a queue)."""
ALONE_AFTER = 3
"""Tries made alongside other writers before a command asks to write the learner alone."""
RETRY_BASE_SECONDS = 0.005
RETRY_MAX_SECONDS = 0.25


class LearnerRepository:
    """Learner aggregates stored as event streams in one `EventStore`."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def load(self, learner_id: str) -> LearnerAggregate:
        """The learner's aggregate as its stream leaves it (a fresh one for a new learner)."""
        return self.load_into(LearnerAggregate(learner_id))

    def load_into(self, aggregate: A) -> A:
        """Replay the stream of `aggregate`'s learner into it, and return it."""
        aggregate.replay(self.store.read_stream(aggregate.learner_id))
        return aggregate

    def catch_up(self, aggregate: LearnerAggregate) -> None:
        """Fold into `aggregate` (nothing pending) the events appended after its version: only
        those, not the whole stream."""
        aggregate.replay(self.store.read_stream(aggregate.learner_id, after_version=aggregate.saved_version))

    def run_command(self, aggregate: A, change: Callable[[A], T], *, attempts: int = COMMAND_ATTEMPTS) -> T:
        """Make `change` on `aggregate` (nothing pending, its changes not saved as they are
        made) and save it; when another writer appended first (ConcurrencyError), go back to
        the state before the change, read the events appended since, and decide again: at most
        `attempts` times, with jittered, growing pauses between tries. Nothing is applied
        twice: each try starts from what is stored. Returns what `change` returned on the try
        that was saved; after the last try the ConcurrencyError is raised, nothing pending."""
        for attempt in range(1, attempts + 1):
            # A command that keeps colliding takes its turn: it catches up and saves while
            # other such commands wait (`writing_alone`), so it cannot starve.
            alone = self.store.writing_alone(aggregate.learner_id) if attempt > ALONE_AFTER else nullcontext()
            with alone:
                if attempt > ALONE_AFTER:
                    self.catch_up(aggregate)
                before = aggregate.saved_point()
                result = change(aggregate)
                try:
                    self.save(aggregate)
                    return result
                except ConcurrencyError:
                    aggregate.back_to(before)  # the change is dropped, given up or not
                    if attempt == attempts:
                        raise
            if attempt < ALONE_AFTER:
                self.catch_up(aggregate)
                # Full jitter: writers that collided spread out instead of colliding again.
                time.sleep(random.uniform(0, min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2**attempt)))
        raise AssertionError("unreachable")  # pragma: no cover

    def save(self, aggregate: LearnerAggregate) -> int:
        """Append the aggregate's pending events in one transaction; returns the stream version.

        A no-op when nothing is pending. Raises ConcurrencyError, having written nothing, when
        the stream moved since the aggregate was loaded.
        """
        pending = aggregate.pending
        if pending:
            aggregate.mark_saved(self.store.append(aggregate.learner_id, pending, aggregate.saved_version))
        return aggregate.saved_version
