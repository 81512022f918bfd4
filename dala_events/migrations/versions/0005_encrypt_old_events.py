"""Encrypt the events written before encryption at rest, re-chain their streams, record it.

A log started before encryption at rest holds its older payloads and reasons in the clear.
This revision encrypts each of those texts with the learner's data key (made if the learner
has none), the row's own envelope as associated data, exactly as `codec.encode_row` encrypts a
new event; events that hold no personal data (`LearnerErased`) stay readable. The chain covers
what is stored, so every stream with a changed row is re-chained from version 1 with the log
key the migration runs with (`dala migrate` / `init_db`: the configured one; `alembic
upgrade`: DALA_LOG_KEY or DALA_LOG_KEY_FILE). Before a stream is re-chained its stored links
are checked with that key: a stream that does not verify is refused (CorruptEventError), since
re-chaining it would hide the change. Streams are read in keyset batches, so memory stays
bounded; the hashes are computed from the stored rows, so this runs online only.

The cipher is the one handed in (`config.attributes["cipher"]`: a LogCipher, or a function
that opens one: `wiring.Storage.open_cipher` for the migrated database; `alembic upgrade`'s
environment hands the configured one); it is only opened when there is something to
encrypt, and a wrong master key fails with MasterKeyError before any row is
changed. `log_encryption` records when this ran, how many events it encrypted and how many
streams it re-chained (0 and 0 for a log with nothing in the clear).

The downgrade drops `log_encryption` only: it never decrypts anything.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from dala_events.dialects import UTCDateTime
from dala_events.errors import CorruptEventError
from dala_events.events import decode_json, encode_json, utc_now
from dala_events.store.codec import ChainRow, LogKey, hasher, in_the_clear, link_of, sealed
from dala_events.store.keys import LogCipher, MasterKeyError
from dala_events.store.sql import check_log_key, rows_by_stream

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 5_000

_rows = sa.table(
    "event_log",
    sa.column("position", sa.BigInteger()),
    sa.column("payload", sa.Text()),
    sa.column("metadata", sa.Text()),
    sa.column("hash", sa.String()),
)

_log_encryption = sa.table(
    "log_encryption",
    sa.column("id", sa.Integer()),
    sa.column("encrypted_at", UTCDateTime()),
    sa.column("events_encrypted", sa.BigInteger()),
    sa.column("streams_rechained", sa.BigInteger()),
)

_UNCHANGED: tuple[str, str] | None = None




class _Encrypter:
    """Encrypts what a row holds in the clear; opens the cipher (and checks the log key) on
    first use, so a log with nothing in the clear needs neither a key store nor a master key."""

    def __init__(self, connection: sa.Connection, key: LogKey | None) -> None:
        self.connection = connection
        self.key = key
        self._cipher: LogCipher | None = None

    def cipher(self) -> LogCipher:
        if self._cipher is None:
            check_log_key(self.connection, self.key)
            given = context.config.attributes.get("cipher")
            if isinstance(given, LogCipher):
                self._cipher = given
            elif callable(given):  # opened on first use (see `schema.alembic_config`)
                self._cipher = given()
            else:
                raise MasterKeyError("events stored in the clear need encrypting, and no key store was handed in")
        return self._cipher

    def encrypted(self, row: ChainRow) -> tuple[str, str] | None:
        """The row's (payload, metadata) with its clear texts encrypted; None when nothing is."""
        try:
            values = decode_json(row.metadata) if '"reason"' in row.metadata else {}
        except ValueError as error:
            raise CorruptEventError(row.position, row.event_type, f"metadata is not JSON: {error}") from error
        if not isinstance(values, dict) or not in_the_clear(row.event_type, row.payload, values):
            return _UNCHANGED
        new_payload, new_values = sealed(
            self.cipher(), row.learner_id, row.version, row.event_type, row.schema_version, row.payload, values
        )
        return new_payload, row.metadata if new_values is values else encode_json(new_values)


def _encrypt_and_rechain(connection: sa.Connection, key: LogKey | None) -> tuple[int, int]:
    """Encrypt every clear text of the log and re-chain the streams that changed; returns
    (events encrypted, streams re-chained)."""
    digest = hasher(key)
    encrypter = _Encrypter(connection, key)
    update = (
        _rows.update()
        .where(_rows.c.position == sa.bindparam("at"))
        .values(
            payload=sa.bindparam("new_payload"), metadata=sa.bindparam("new_metadata"), hash=sa.bindparam("new_hash")
        )
    )
    encrypted = rechained = 0
    learner: str | None = None
    stored_previous = new_previous = ""
    dirty = False
    unverified: ChainRow | None = None  # the first row of the stream whose stored link fails
    for rows in rows_by_stream(connection, BATCH):
        changes = []
        for row in rows:
            if row.learner_id != learner:
                learner, stored_previous, new_previous, dirty, unverified = row.learner_id, "", "", False, None
            if unverified is None and link_of(row, stored_previous, digest) != row.hash:
                unverified = row
            stored_previous = row.hash
            texts = encrypter.encrypted(row)
            if texts is not None:
                encrypted += 1
                if not dirty:
                    dirty = True
                    rechained += 1
            if dirty and unverified is not None:
                raise CorruptEventError(
                    unverified.position,
                    unverified.event_type,
                    f"learner {unverified.learner_id!r} version {unverified.version}: its stored hash does not "
                    "verify with the log key, so its stream is not re-chained (that would hide the change); "
                    "run `dala verify`",
                )
            if not dirty:
                new_previous = row.hash
                continue
            payload, metadata = (row.payload, row.metadata) if texts is None else texts
            new_previous = link_of(row._replace(payload=payload, metadata=metadata), new_previous, digest)
            if texts is not None or new_previous != row.hash:
                changes.append(
                    {"at": row.position, "new_payload": payload, "new_metadata": metadata, "new_hash": new_previous}
                )
        if changes:
            connection.execute(update, changes)
    return encrypted, rechained


def _ensure_secure_delete(connection: sa.Connection) -> None:
    """On SQLite, make sure the pages the clear texts leave are overwritten with zeros (store
    connections have `secure_delete` on already: see `dialects.configure_sqlite`)."""
    if connection.dialect.name == "sqlite" and connection.exec_driver_sql("PRAGMA secure_delete").scalar() != 1:
        connection.exec_driver_sql("PRAGMA secure_delete = ON")


def upgrade() -> None:
    if context.is_offline_mode():
        raise RuntimeError("revision 0005 encrypts the stored events and re-chains them: run it online")
    connection = op.get_bind()
    _ensure_secure_delete(connection)
    encrypted, rechained = _encrypt_and_rechain(connection, context.config.attributes["log_key"])
    op.create_table(
        "log_encryption",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("encrypted_at", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("events_encrypted", sa.BigInteger(), nullable=False),
        sa.Column("streams_rechained", sa.BigInteger(), nullable=False),
    )
    connection.execute(
        _log_encryption.insert().values(
            id=1, encrypted_at=utc_now(), events_encrypted=encrypted, streams_rechained=rechained
        )
    )
    context.config.attributes["log_encryption"] = {"events_encrypted": encrypted, "streams_rechained": rechained}


def downgrade() -> None:
    # Only the record goes: the events stay encrypted (this never decrypts anything).
    op.drop_table("log_encryption")
