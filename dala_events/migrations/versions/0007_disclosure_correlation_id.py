"""The disclosure record's correlation id takes 200 characters, as every correlation id does.

`recorded_as` accepts correlation ids of up to 200 characters (the limit every store and API
checks), but `disclosure_log.correlation_id` was 100: PostgreSQL refused a longer one with a
DataError after the caller had been told it was fine. The column is widened; nothing is lost.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("disclosure_log") as batch:
        batch.alter_column(
            "correlation_id", existing_type=sa.String(100), type_=sa.String(200), existing_nullable=False
        )


def downgrade() -> None:
    longest = op.get_bind().execute(sa.text("SELECT MAX(LENGTH(correlation_id)) FROM disclosure_log")).scalar()
    if longest is not None and longest > 100:
        raise RuntimeError(f"refusing to narrow disclosure_log.correlation_id: a record holds {longest} characters")
    with op.batch_alter_table("disclosure_log") as batch:
        batch.alter_column(
            "correlation_id", existing_type=sa.String(200), type_=sa.String(100), existing_nullable=False
        )
