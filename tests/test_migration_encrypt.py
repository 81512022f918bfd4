"""Migration 0005: a log written before encryption at rest is encrypted in place, re-chained,
and the migration records what it did. On SQLite and PostgreSQL, with and without a log key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Row, func, select, update

from dala_events import audit
from dala_events.attribution import recorded_as
from dala_events.database_setup import (
    LOG_SCHEMA_HEAD,
    configured_cipher,
    create_dala_engine,
    log_schema_revision,
    migrate,
)
from dala_events.dialects import write_transaction
from dala_events.envelopes import NewEvent
from dala_events.errors import CorruptEventError
from dala_events.events import LearnerErased, decode_json
from dala_events.hlp_module import LearnerProfile
from dala_events.integrity import load_checkpoint, verify_log, write_checkpoint
from dala_events.store import LogKey, SqlEventStore, event_log
from dala_events.store.keys import ENCRYPTED_PREFIX, MasterKeyError
from dala_events.store.sql import DATABASE_COLUMNS, log_encryption
from projections.projectors import project_events
from projections.rebuild import ensure_projections, rebuild
from tests.conftest import TEST_MASTER_KEY
from tests.helpers import read_model_rows

LOG_KEY = LogKey(bytes(range(32)))
GONE_INTEREST = "Quillwortpangolin"
"""Added and removed again: afterwards only the log holds it, so only the log can leak it."""
REASONS = {"ann": "Marmaladeheronnote", "bob": "Thistlewombatcall", "cat": "Lanternnarwhalchat"}
LEARNERS = ("ann", "bob", "cat", "dan")
"""dan's events are written with no reason."""


def _old_log(url: str, log_key: LogKey | None) -> Engine:
    """A database at revision 0004 whose events were written the old way: payloads and
    reasons in the clear (a store without a cipher), then a few written encrypted by the store
    as it is now (a log that went on being written before it was migrated)."""
    engine = create_dala_engine(url)
    assert migrate(engine, "0004", log_key=log_key) == "0004"
    with write_transaction(engine) as connection:
        ensure_projections(connection)
    old = SqlEventStore(engine, inline_projectors=[project_events], log_key=log_key, cipher=None)
    for learner in LEARNERS:
        profile = LearnerProfile(learner, store=old)
        profile.update_preference("style", "visual")
        with recorded_as("teacher-1", reason=REASONS.get(learner)):
            profile.add_interest(GONE_INTEREST)
            profile.add_struggle_area(f"Fractions of {learner}")
        profile.remove_interest(GONE_INTEREST)
        profile.add_badge("b1", "Starter")
    new = SqlEventStore(engine, inline_projectors=[project_events], log_key=log_key, cipher=configured_cipher(engine))
    with recorded_as("teacher-2", reason="Written encrypted already"):
        LearnerProfile("ann", store=new).add_badge("b2", "Second")
    return engine


def _log(engine: Engine) -> list[Row[Any]]:
    """The log's rows as events (not the columns a later migration adds for the database's bookkeeping)."""
    columns = [column for column in event_log.columns if column.name not in DATABASE_COLUMNS]
    with engine.connect() as connection:
        return list(connection.execute(select(*columns).order_by(event_log.c.position)).all())


def _reason(metadata: str) -> object:
    return decode_json(metadata).get("reason")


def _histories(engine: Engine, log_key: LogKey | None) -> dict[str, list[Any]]:
    reader = SqlEventStore(engine, log_key=log_key, cipher=configured_cipher(engine))
    return {learner: audit.history(learner, store=reader) for learner in LEARNERS}


def _record(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as connection:
        return tuple(connection.execute(select(log_encryption)).one())


@pytest.mark.parametrize("log_key", [LOG_KEY, None], ids=["keyed", "unkeyed"])
def test_old_events_are_encrypted_rechained_and_read_back_the_same(
    database_url: str, log_key: LogKey | None, tmp_path: Path
) -> None:
    engine = _old_log(database_url, log_key)
    try:
        before = _log(engine)
        in_clear = [row for row in before if not row.payload.startswith(ENCRYPTED_PREFIX)]
        assert len(in_clear) == len(before) - 1  # all but the one the encrypting store wrote
        histories = _histories(engine, log_key)
        assert histories["ann"][-1].metadata["reason"] == "Written encrypted already"
        inline = read_model_rows(engine)
        old_heads = verify_log(engine, log_key).heads
        checkpoint_file = tmp_path / "before.json"
        write_checkpoint(checkpoint_file, old_heads, log_key)

        assert migrate(engine, log_key=log_key) == LOG_SCHEMA_HEAD

        after = _log(engine)
        assert [(row.position, row.event_id, row.learner_id, row.version) for row in after] == [
            (row.position, row.event_id, row.learner_id, row.version) for row in before
        ]
        for row in after:
            assert row.payload.startswith(ENCRYPTED_PREFIX), row
            reason = _reason(row.metadata)
            assert reason is None or str(reason).startswith(ENCRYPTED_PREFIX), row
        assert sum(isinstance(_reason(row.metadata), str) for row in after) == len(REASONS) * 2 + 1  # dan recorded none
        assert _histories(engine, log_key) == histories
        report = verify_log(engine, log_key)
        assert report.intact and report.verified == len(after) and report.hint is None
        assert report.encryption is not None and report.encryption.events_encrypted == len(in_clear)
        assert {head.learner_id: head.last_hash for head in report.heads} != {
            head.learner_id: head.last_hash for head in old_heads
        }

        encrypted_at, events, streams = _record(engine)[1:]
        assert (events, streams) == (len(in_clear), len(LEARNERS))
        rebuild(engine, log_key=log_key, cipher=configured_cipher(engine))
        assert read_model_rows(engine) == inline

        assert migrate(engine, log_key=log_key) == LOG_SCHEMA_HEAD  # nothing left to do: nothing changes
        assert _log(engine) == after and _record(engine)[1:] == (encrypted_at, events, streams)

        stale = verify_log(engine, log_key, checkpoint=load_checkpoint(checkpoint_file, log_key))
        assert not stale.intact and stale.counts() == {"changed": len(LEARNERS)}
        assert all("encryption migration (0005)" in problem.detail for problem in stale.problems)
        assert stale.hint is not None and "re-chained by the encryption migration" in stale.hint
        assert "new checkpoint" in stale.hint and encrypted_at.isoformat() in stale.hint
        write_checkpoint(checkpoint_file, report.heads, log_key)
        fresh = verify_log(engine, log_key, checkpoint=load_checkpoint(checkpoint_file, log_key))
        assert fresh.intact and fresh.hint is None
    finally:
        engine.dispose()


def test_a_log_with_nothing_in_the_clear_is_recorded_as_such(database_url: str) -> None:
    engine = create_dala_engine(database_url)
    try:
        assert migrate(engine) == LOG_SCHEMA_HEAD
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(event_log)).scalar_one() == 0
        assert _record(engine)[0] == 1 and _record(engine)[2:] == (0, 0)
        assert migrate(engine, "0004", downgrade=True) == "0004"  # drops the record, decrypts nothing
        with engine.connect() as connection:
            assert log_schema_revision(connection) == "0004"
            assert not connection.dialect.has_table(connection, "log_encryption")
    finally:
        engine.dispose()


def test_events_without_personal_data_stay_readable_but_are_rechained(database_url: str) -> None:
    engine = create_dala_engine(database_url)
    try:
        migrate(engine, "0004", log_key=LOG_KEY)
        old = SqlEventStore(engine, log_key=LOG_KEY, cipher=None)  # no read models: only the log matters here
        with recorded_as("teacher-1", reason=REASONS["ann"]):
            LearnerProfile("ann", store=old).add_interest(GONE_INTEREST)
            old.append("ann", [NewEvent.now(LearnerErased(erased_up_to_version=2))], 2)
        migrate(engine, log_key=LOG_KEY)
        rows = _log(engine)
        assert [row.event_type for row in rows][-1] == "LearnerErased"
        assert all(row.payload.startswith(ENCRYPTED_PREFIX) for row in rows[:-1])
        assert rows[-1].payload == '{"erased_up_to_version":2}' and _reason(rows[-1].metadata) == REASONS["ann"]
        assert _record(engine)[2:] == (2, 1)
        assert verify_log(engine, LOG_KEY).intact
    finally:
        engine.dispose()


def test_no_learner_string_is_left_in_the_sqlite_files(tmp_path: Path) -> None:
    database = tmp_path / "old.db"
    engine = _old_log(f"sqlite:///{database}", LOG_KEY)
    secrets = [GONE_INTEREST, *REASONS.values()]
    try:

        def files_holding_a_secret() -> set[str]:
            found = set()
            for path in tmp_path.glob("old.db*"):
                data = path.read_bytes()
                found |= {path.name for secret in secrets if secret.encode() in data}
            return found

        assert files_holding_a_secret()  # the old way left them in the clear
        assert migrate(engine, log_key=LOG_KEY) == LOG_SCHEMA_HEAD
        assert files_holding_a_secret() == set()
        wal = tmp_path / "old.db-wal"
        assert not wal.exists() or wal.stat().st_size == 0  # checkpointed and truncated
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    finally:
        engine.dispose()


def test_a_wrong_master_key_fails_the_migration_and_changes_nothing(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DALA_MASTER_KEY", TEST_MASTER_KEY)
    monkeypatch.setenv("DALA_MASTER_KEY_FILE", "")
    engine = _old_log(database_url, LOG_KEY)  # its last write made the key store, under TEST_MASTER_KEY
    before = _log(engine)
    engine.dispose()
    monkeypatch.setenv("DALA_MASTER_KEY", "a5" * 32)
    engine = create_dala_engine(database_url)
    try:
        with pytest.raises(MasterKeyError, match="not with the configured one"):
            migrate(engine, log_key=LOG_KEY)
        with engine.connect() as connection:
            assert log_schema_revision(connection) == "0004"
            assert not connection.dialect.has_table(connection, "log_encryption")
        assert _log(engine) == before
        assert sum(not row.payload.startswith(ENCRYPTED_PREFIX) for row in before) == len(before) - 1
    finally:
        engine.dispose()


def test_a_stream_that_does_not_verify_is_not_rechained(database_url: str) -> None:
    engine = _old_log(database_url, LOG_KEY)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(event_log)
                .where(event_log.c.learner_id == "bob", event_log.c.version == 2)
                .values(payload='{"category":"style","value":"auditory"}')
            )
        before = _log(engine)
        with pytest.raises(CorruptEventError, match="learner 'bob' version 2: its stored hash does not verify"):
            migrate(engine, log_key=LOG_KEY)
        assert _log(engine) == before
        with engine.connect() as connection:
            assert log_schema_revision(connection) == "0004"
    finally:
        engine.dispose()


def test_dala_verify_says_what_the_encryption_migration_did(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dala_events.cli import main

    url = f"sqlite:///{tmp_path}/old.db"
    engine = _old_log(url, None)
    migrate(engine, log_key=None)
    engine.dispose()
    result = CliRunner().invoke(main, ["--database-url", url, "verify"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the report is wrapped at the terminal's width: read as words
    assert "24 encrypted and 4 streams re-chained by migration 0005 at" in said
    assert "intact" in result.output
