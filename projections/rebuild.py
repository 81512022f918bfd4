"""Rebuild the eight read models from the event log.

Empties the tables and replays the whole log through the same projectors the inline
projection uses, in one transaction: readers see the old rows until it commits, and a
failure leaves them untouched. The log is read in batches, so memory stays bounded.
"""

from __future__ import annotations

from sqlalchemy import Engine

from dala_events.dialects import write_transaction
from dala_events.store import DEFAULT_BATCH_SIZE, EventStore
from projections.projectors import CHILD_TABLES, RowChanges, apply_events, learner_profiles


def rebuild_projections(engine: Engine | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Replace every read-model row by a replay of the log; returns the number of events replayed."""
    if engine is None:
        from dala_events.database_setup import get_engine

        engine = get_engine()
    store = EventStore(engine)
    replayed = 0
    with write_transaction(engine) as connection:
        for table in CHILD_TABLES:
            connection.execute(table.delete())
        connection.execute(learner_profiles.delete())
        changes = RowChanges(connection)
        for batch in store.read_all_batches(batch_size=batch_size, connection=connection):
            apply_events(changes, batch)
            changes.flush()
            replayed += len(batch)
    return replayed
