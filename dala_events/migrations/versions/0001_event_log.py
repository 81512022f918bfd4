"""The event log: one row per event, only ever inserted.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dala_events.errors import RefusedToDestroy

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_log",
        sa.Column(
            "position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("event_id", sa.Uuid(as_uuid=False), nullable=False, unique=True),
        sa.Column("learner_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.UniqueConstraint("learner_id", "version", name="uq_event_log_learner_version"),
    )


def downgrade() -> None:
    # The log is the only copy of every learner's history: never dropped while it holds events.
    events = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM event_log")).scalar_one()
    if events:
        raise RefusedToDestroy(
            f"refusing to drop event_log: it holds {events} events, the only copy of every learner's "
            "history (back it up and remove the database by hand if you really mean to)"
        )
    op.drop_table("event_log")
