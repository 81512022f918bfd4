"""An index of erasures: the learners whose stream ends in LearnerErased, found without reading
their streams.

A partial index (one entry per erased learner) on event_log's learner_id where the event type
is LearnerErased: what the store asks before a cut read with a cached data key, before reading
the whole log, and what `dala learners` asks to show who was erased.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ERASED = sa.text("event_type = 'LearnerErased'")


def upgrade() -> None:
    existing = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("event_log")}
    if "ix_event_log_erasures" in existing:  # a log made from the current table definition
        return
    op.create_index(
        "ix_event_log_erasures", "event_log", ["learner_id"], sqlite_where=_ERASED, postgresql_where=_ERASED
    )


def downgrade() -> None:
    op.drop_index("ix_event_log_erasures", table_name="event_log")
