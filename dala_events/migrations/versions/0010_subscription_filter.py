"""Each subscription's filter, kept with its checkpoint.

A subscription's checkpoint moves past every event before the last one acknowledged, those its
filter (`event_types`) left out included: opened later under the same name with another filter,
it would never deliver the events of the types it added. So the filter belongs to the
subscription and is stored with its checkpoint: "*" for every type, else the type names,
sorted, joined by commas. Opening a subscription with another filter is refused; `dala
subscriptions reset NAME` starts it over from the beginning of the log (see
`dala_events.subscriptions`).

Subscriptions recorded before this revision have no filter recorded (NULL): the next open
records the one it gives, as that open would have used it before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("subscription_checkpoints")}
    if "event_types" not in columns:  # a log made from the current definitions has it
        op.add_column("subscription_checkpoints", sa.Column("event_types", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscription_checkpoints") as batch:
        batch.drop_column("event_types")
