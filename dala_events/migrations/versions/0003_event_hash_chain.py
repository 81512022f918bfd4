"""The hash chain: event_log.hash on every row, and log_chain recording how it is keyed.

Existing events are chained here, stream by stream in version order, with the log key the
migration is run with (`dala migrate` / `init_db`: the configured one; `alembic upgrade`:
DALA_LOG_KEY or DALA_LOG_KEY_FILE), then the column is made NOT NULL. The hashes are
computed from the stored rows, so this runs online only.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from dala_events.dialects import UTCDateTime
from dala_events.events import utc_now
from dala_events.store.codec import LogKey, chain_mode
from dala_events.store.sql import rechain_log

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FILL_BATCH = 5_000


def _event_log(*, hash_nullable: bool) -> sa.Table:
    """event_log as 0001 made it plus the hash column: what SQLite's table copy recreates."""
    return sa.Table(
        "event_log",
        sa.MetaData(),
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
        sa.Column("hash", sa.String(64), nullable=hash_nullable),
        sa.UniqueConstraint("learner_id", "version", name="uq_event_log_learner_version"),
    )


_rows = sa.table(
    "event_log",
    sa.column("position", sa.BigInteger()),
    sa.column("learner_id", sa.String()),
    sa.column("version", sa.Integer()),
    sa.column("hash", sa.String()),
)

_log_chain = sa.table(
    "log_chain",
    sa.column("id", sa.Integer()),
    sa.column("mode", sa.String()),
    sa.column("key_id", sa.String()),
    sa.column("chained_at", UTCDateTime()),
)




def upgrade() -> None:
    if context.is_offline_mode():
        raise RuntimeError("revision 0003 computes each event's hash from its stored row: run it online")
    connection = op.get_bind()
    key: LogKey | None = context.config.attributes["log_key"]
    existing = {column["name"] for column in sa.inspect(connection).get_columns("event_log")}
    if "hash" not in existing:
        op.add_column("event_log", sa.Column("hash", sa.String(64), nullable=True))
    rechain_log(connection, key, with_hash=False, batch_size=FILL_BATCH)
    with op.batch_alter_table("event_log", copy_from=_event_log(hash_nullable=True)) as batch:
        batch.alter_column("hash", existing_type=sa.String(64), nullable=False)
    op.create_table(
        "log_chain",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=True),
        sa.Column("chained_at", sa.TIMESTAMP(timezone=True), nullable=False),
    )
    connection.execute(
        _log_chain.insert().values(
            id=1, mode=chain_mode(key), key_id=None if key is None else key.key_id, chained_at=utc_now()
        )
    )


def downgrade() -> None:
    op.drop_table("log_chain")
    with op.batch_alter_table("event_log", copy_from=_event_log(hash_nullable=False)) as batch:
        batch.drop_column("hash")
