"""Encryption at rest: payloads and reasons stored encrypted per learner, the key store and its
master key, and what a wrong or missing master key does."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from dala_events import audit
from dala_events.attribution import recorded_as
from dala_events.database_setup import close_db, create_dala_engine, init_db, store_for
from dala_events.errors import CorruptEventError
from dala_events.hlp_module import LearnerProfile
from dala_events.store import SqlEventStore, event_log
from dala_events.store.codec import hasher, link_of
from dala_events.store.keys import ENCRYPTED_PREFIX, MasterKey, MasterKeyError, MemoryKeyStore
from tests.conftest import TEST_MASTER_KEY

SECRET = "Zanzibarquokka"
REASON = "Plumtreeoctopus"


def _write_secrets(store: SqlEventStore, learner_id: str = "ann") -> None:
    profile = LearnerProfile(learner_id, store=store)
    profile.add_interest(SECRET)
    with recorded_as("teacher-1", reason=REASON):
        profile.remove_interest(SECRET)  # the read models no longer hold it: only the log did


def test_the_log_holds_only_ciphertext_and_reads_back_plain(store: SqlEventStore) -> None:
    _write_secrets(store)
    with store.engine.connect() as connection:
        rows = connection.execute(select(event_log.c.payload, event_log.c.metadata)).all()
    assert rows and all(payload.startswith(ENCRYPTED_PREFIX) for payload, _ in rows)
    assert not any(
        SECRET in payload or SECRET in str(metadata) or REASON in str(metadata) for payload, metadata in rows
    )
    history = audit.history("ann", store=store)
    assert [getattr(item.event, "interest_name", None) for item in history][-2:] == [SECRET, SECRET]
    assert history[-1].metadata["reason"] == REASON


def test_the_sqlite_files_hold_no_learner_string_of_the_log(tmp_path: Path) -> None:
    database = tmp_path / "dala.db"
    engine = init_db(f"sqlite:///{database}")
    try:
        _write_secrets(store_for(engine))
    finally:
        close_db()
    files = [path for path in tmp_path.iterdir() if path.name.startswith("dala.db")]
    assert {path.name for path in files} >= {"dala.db", "dala.db.keys", "dala.db.keys.master"}
    for path in files:
        data = path.read_bytes()
        assert SECRET.encode() not in data and REASON.encode() not in data, path.name
    for name in ("dala.db.keys", "dala.db.keys.master"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600


def test_ciphertext_moved_to_another_event_does_not_decrypt(sqlite_store: SqlEventStore) -> None:
    _write_secrets(sqlite_store)
    with sqlite_store.engine.begin() as connection:
        added = connection.execute(select(event_log.c.payload).where(event_log.c.version == 2)).scalar_one()
        connection.execute(update(event_log).where(event_log.c.version == 3).values(payload=added))
    with pytest.raises(CorruptEventError, match="does not verify against its stream's chain"):
        audit.history("ann", store=sqlite_store)
    # Without a log key whoever can write can re-chain the stream: the cipher still refuses.
    previous = ""
    with sqlite_store.engine.begin() as connection:
        for row in [row for batch in sqlite_store.stored_rows() for row in batch if row.learner_id == "ann"]:
            previous = link_of(row, previous, hasher(None))
            connection.execute(update(event_log).where(event_log.c.position == row.position).values(hash=previous))
    with pytest.raises(CorruptEventError, match="does not authenticate"):
        audit.history("ann", store=sqlite_store)


def test_a_wrong_master_key_is_refused_and_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/dala.db"
    monkeypatch.setenv("DALA_MASTER_KEY", TEST_MASTER_KEY)
    engine = init_db(url)
    try:
        _write_secrets(store_for(engine))
    finally:
        close_db()
    monkeypatch.setenv("DALA_MASTER_KEY", "a5" * 32)
    with pytest.raises(MasterKeyError, match="not with the configured one"):
        init_db(url)
    close_db()
    monkeypatch.setenv("DALA_MASTER_KEY", "00" * 16)
    with pytest.raises(MasterKeyError, match="exactly 32 bytes"):
        init_db(url)
    close_db()
    engine = create_dala_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(event_log)).scalar_one() == 3
    finally:
        engine.dispose()


def test_postgresql_needs_a_key_store_and_master_key_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from dala_events.database_setup import key_store_location

    monkeypatch.setenv("DALA_KEY_STORE", "")
    engine = create_dala_engine("postgresql://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(MasterKeyError, match="DALA_KEY_STORE"):
            key_store_location(engine)
    finally:
        engine.dispose()


def test_rotating_the_master_key_rewraps_every_data_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dala_events.database_setup import rotate_master_key

    url = f"sqlite:///{tmp_path}/dala.db"
    monkeypatch.setenv("DALA_MASTER_KEY", TEST_MASTER_KEY)
    engine = init_db(url)
    try:
        store = store_for(engine)
        _write_secrets(store, "ann")
        _write_secrets(store, "bob")
        with engine.connect() as connection:
            log_before = connection.execute(select(event_log)).all()
    finally:
        close_db()
    new_key = "c3" * 32
    engine = create_dala_engine(url)
    try:
        assert rotate_master_key(engine, MasterKey.from_hex(new_key)) == 2
    finally:
        engine.dispose()
    monkeypatch.setenv("DALA_MASTER_KEY", new_key)
    engine = init_db(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(select(event_log)).all() == log_before
        assert audit.history("bob", store=store_for(engine))[-1].metadata["reason"] == REASON
    finally:
        close_db()
    monkeypatch.setenv("DALA_MASTER_KEY", TEST_MASTER_KEY)
    with pytest.raises(MasterKeyError):
        init_db(url)
    close_db()


def test_the_in_memory_key_store_forgets_nothing_it_was_given() -> None:
    keys = MemoryKeyStore()
    first = keys.data_key("ann", create=True)
    assert keys.data_key("ann") == first
    assert keys.rotate(MasterKey.generate()) == 1
    assert keys.data_key("ann") == first
    assert keys.destroy("ann") and not keys.destroy("ann")
