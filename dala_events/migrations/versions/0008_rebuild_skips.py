"""The learners a rebuild left out on the operator's word (`dala rebuild --skip LEARNER`).

A rebuild refuses to run while any learner's events cannot be read (a missing or damaged data
key), naming every such learner. The operator may choose to rebuild the others: the learners
left out are recorded here, with when, so that `dala verify` keeps saying the read models lack
them until a rebuild without `--skip` (after their keys are restored) clears the record.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dala_events.dialects import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("rebuild_skips"):  # a log made from the current definitions
        return
    op.create_table(
        "rebuild_skips",
        sa.Column("learner_id", sa.String(128), primary_key=True),
        sa.Column("skipped_at", UTCDateTime(), nullable=False),
        sa.Column("why", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rebuild_skips")
