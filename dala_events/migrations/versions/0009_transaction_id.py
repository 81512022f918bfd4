"""Each event's writing transaction, and the subscriptions' checkpoints: readers that never skip an event.

On PostgreSQL an event's position is taken when its row is inserted, but its transaction may
commit after transactions that took higher positions: a reader that goes by position alone
can pass an event that is not yet visible and never come back for it. `transaction_id` records
the writing transaction's id (`pg_current_xact_id()`, by default, for every insert); a reader
that reads only events whose transaction id is below the oldest transaction still running
(`pg_snapshot_xmin(pg_current_snapshot())`), in (transaction_id, position) order, sees a
prefix of the log that can no longer grow in the middle (see `dala_events.subscriptions`).

On SQLite a writer holds the database's write lock from its first statement to its commit, so
positions commit in order: the column is 0 there, and so for every event written before this
revision on either backend (those transactions ended long ago).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dala_events.dialects import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    columns = {column["name"] for column in sa.inspect(bind).get_columns("event_log")}
    if "transaction_id" not in columns:
        op.add_column("event_log", sa.Column("transaction_id", sa.BigInteger(), nullable=False, server_default="0"))
    existing = {index["name"] for index in sa.inspect(bind).get_indexes("event_log")}
    if bind.dialect.name == "postgresql":
        # xid8 is a 64-bit counter that never wraps; as bigint it compares the same way.
        op.execute("ALTER TABLE event_log ALTER COLUMN transaction_id SET DEFAULT (pg_current_xact_id()::text)::bigint")
        if "ix_event_log_transaction" not in existing:
            # Subscriptions read in (transaction_id, position) order; SQLite's read by position.
            op.create_index("ix_event_log_transaction", "event_log", ["transaction_id", "position"])
    if not sa.inspect(bind).has_table("subscription_checkpoints"):
        op.create_table(
            "subscription_checkpoints",
            sa.Column("name", sa.String(100), primary_key=True),
            sa.Column("transaction_id", sa.BigInteger(), nullable=False),
            sa.Column("position", sa.BigInteger(), nullable=False),
            sa.Column("updated_at", UTCDateTime(), nullable=False),
        )


def downgrade() -> None:
    op.drop_table("subscription_checkpoints")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_event_log_transaction", table_name="event_log")
    with op.batch_alter_table("event_log") as batch:
        batch.drop_column("transaction_id")
