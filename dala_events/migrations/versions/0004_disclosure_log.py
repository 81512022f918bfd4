"""The disclosure log: who was shown which learner's data, when and why; only ever inserted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dala_events.errors import RefusedToDestroy

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "disclosure_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("learner_id", sa.String(128), nullable=False),
        sa.Column("disclosed_at", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("what", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("correlation_id", sa.String(100), nullable=False),
    )
    op.create_index("ix_disclosure_log_learner_id", "disclosure_log", ["learner_id", "id"])


def downgrade() -> None:
    # The record of who saw a child's data outlives erasure: never dropped while it holds rows.
    disclosures = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM disclosure_log")).scalar_one()
    if disclosures:
        raise RefusedToDestroy(
            f"refusing to drop disclosure_log: it holds {disclosures} records of who was shown which "
            "learner's data (back it up and drop the table by hand if you really mean to)"
        )
    op.drop_index("ix_disclosure_log_learner_id", table_name="disclosure_log")
    op.drop_table("disclosure_log")
