"""The learner repository: load a learner aggregate from an event store, and save it back.

The one place where the aggregate meets a store: loading replays the learner's stream,
saving appends what is pending at the version the aggregate was loaded at (so a writer
that moved the stream meanwhile makes the save fail with ConcurrencyError, writing nothing).
"""

from __future__ import annotations

from typing import TypeVar

from dala_events.aggregate import LearnerAggregate
from dala_events.store import EventStore

A = TypeVar("A", bound=LearnerAggregate)


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

    def save(self, aggregate: LearnerAggregate) -> int:
        """Append the aggregate's pending events in one transaction; returns the stream version.

        A no-op when nothing is pending. Raises ConcurrencyError, having written nothing, when
        the stream moved since the aggregate was loaded.
        """
        pending = aggregate.pending
        if pending:
            aggregate.mark_saved(self.store.append(aggregate.learner_id, pending, aggregate.saved_version))
        return aggregate.saved_version
