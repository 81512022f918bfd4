"""Erasure by crypto-shredding: the learner's data key destroyed, their read-model rows gone,
`LearnerErased` recorded; what every way of reading then says, on both backends, and that no
readable copy of the child's data is left in the database's files or in a restored backup."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from dala_events import audit, persistence_manager
from dala_events.attribution import recorded_as
from dala_events.backup import backup_log, restore_log
from dala_events.cli import main
from dala_events.database_setup import close_db, create_dala_engine, in_memory_store, init_db, store_for
from dala_events.envelopes import NewEvent
from dala_events.erasure import erase_learner
from dala_events.errors import (
    ActorRequired,
    ConcurrencyError,
    ErasureFailed,
    InvalidInput,
    LearnerErasedError,
    LearnerNotFound,
)
from dala_events.events import ErasedContent, InterestAdded, LearnerErased, LearnerProfileCreated
from dala_events.hlp_module import LearnerProfile
from dala_events.integrity import verify_log
from dala_events.repository import LearnerRepository
from dala_events.store import SqlEventStore, event_log
from dala_events.store.keys import LogCipher, SqlKeyStore
from dala_events.wiring import Mode
from projections.database_models import READ_MODELS
from projections.memory import MemoryReadModels
from projections.projectors import project_events
from projections.rebuild import rebuild
from tests.helpers import read_model_rows

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECRETS = ("Quillwortzebra", "Marmaladeheron", "Saffronnarwhal", "Tamarindgecko")
"""What only the erased learner's data holds (interest, struggle, badge name, reason)."""
KEPT = ("Bluebellotter", "Cobaltlynx")
"""What only the other learners' data holds."""


def _fill(store: SqlEventStore | object) -> None:
    """`bea` (to be erased) and `ann`, `cy` (to be kept), each with something of their own."""
    with freeze_time(T0), recorded_as("teacher:42", reason=f"interview {SECRETS[3]}"):
        bea = LearnerProfile("bea", store=store)  # type: ignore[arg-type]
        bea.add_interest(SECRETS[0])
        bea.add_struggle_area(SECRETS[1])
        bea.add_badge("b1", SECRETS[2])
        bea.record_activity_attempt("MATH_LO_001", "quiz-1", "quiz", score=80.0, completed=True)
    with freeze_time(T0 + timedelta(hours=1)), recorded_as("teacher:7"):
        ann = LearnerProfile("ann", store=store)  # type: ignore[arg-type]
        ann.add_interest(KEPT[0])
        cy = LearnerProfile("cy", store=store)  # type: ignore[arg-type]
        cy.add_struggle_area(KEPT[1])


def _erase(store: SqlEventStore | object, learner_id: str = "bea") -> persistence_manager.Erasure:
    with freeze_time(T0 + timedelta(days=1)), recorded_as("dpo:jane"):
        return persistence_manager.erase_learner(learner_id, reason="parent's request, ref 114", store=store)  # type: ignore[arg-type]


def _learner_rows(store: SqlEventStore, learner_id: str) -> int:
    count = 0
    with store.engine.connect() as connection:
        for model in READ_MODELS:
            column = model.table.c["id" if model.table.name == "learner_profiles" else "learner_id"]
            count += connection.execute(select(func.count()).where(column == learner_id)).scalar_one()
    return count


def test_erasing_one_learner_among_others(store: SqlEventStore) -> None:
    _fill(store)
    others = {name: persistence_manager.get_full_learner_profile_data(name, store=store) for name in ("ann", "cy")}
    before = audit.history("bea", store=store)
    assert _learner_rows(store, "bea") > 0

    result = _erase(store)

    assert not result.already_erased and result.key_destroyed
    record = result.record
    assert (record.actor, record.reason, record.erased_up_to_version) == ("dpo:jane", "parent's request, ref 114", 5)
    assert _learner_rows(store, "bea") == 0
    assert persistence_manager.get_full_learner_profile_data("bea", store=store) is None
    for name, profile in others.items():
        assert persistence_manager.get_full_learner_profile_data(name, store=store) == profile
    # The history keeps every envelope (who, when, what kind of change), not the content.
    after = audit.history("bea", store=store)
    assert len(after) == len(before) + 1
    for old, new in zip(before, after, strict=False):
        assert isinstance(new.event, ErasedContent)
        assert new.event.erased_event_type == old.event_type == new.event_type
        assert (new.version, new.occurred_at, new.recorded_at) == (old.version, old.occurred_at, old.recorded_at)
        assert new.metadata["actor"] == old.metadata["actor"] and new.metadata["reason"] is None
    assert isinstance(after[-1].event, LearnerErased)
    assert after[-1].metadata["actor"] == "dpo:jane"
    shown = repr(after) + persistence_manager.export_learner("bea", store=store).model_dump_json()
    assert not any(secret in shown for secret in SECRETS)
    # The chain covers what is stored: it still verifies; a rebuild projects what inline did.
    assert verify_log(store.engine, None).intact
    inline = read_model_rows(store.engine)
    rebuild(store.engine, cipher=store.cipher)
    assert read_model_rows(store.engine) == inline
    # The other learners read back in full.
    assert [event.event.interest_name for event in audit.history("ann", store=store)[1:]] == [KEPT[0]]


def test_every_way_of_reading_an_erased_learner_says_so(store: SqlEventStore) -> None:
    _fill(store)
    _erase(store)
    expected = re.escape("was erased at 2026-03-03 09:00:00 UTC by dpo:jane (parent's request, ref 114)")
    with pytest.raises(LearnerErasedError, match=expected):
        audit.profile_as_of("bea", version=3, store=store)
    with pytest.raises(LearnerErasedError, match=expected):
        audit.profile_as_of("bea", at=T0 - timedelta(days=1), store=store)  # before it began
    with pytest.raises(LearnerErasedError, match=expected):
        audit.diff("bea", 1, 3, store=store)
    assert re.search(expected, str(audit.missing_profile_error("bea", store=store)))
    assert type(audit.missing_profile_error("bea", store=store)) is LearnerErasedError
    assert type(audit.missing_profile_error("ann-never", store=store)) is LearnerNotFound
    # The id is taken for good: a new profile is refused, however asked for.
    with pytest.raises(LearnerErasedError, match=expected):
        persistence_manager.create_learner_profile("bea", store=store)
    with pytest.raises(LearnerErasedError, match=expected):
        LearnerProfile("bea", store=store)
    with pytest.raises(LearnerErasedError):
        persistence_manager.add_interest("bea", persistence_manager.InterestData(interest_name="x"), store=store)
    version = store.stream_version("bea")
    with pytest.raises(LearnerErasedError, match="'bea' was erased"):  # even straight into the store
        store.append("bea", [NewEvent.now(LearnerProfileCreated())], version)
    assert store.stream_version("bea") == version
    summary = {learner.learner_id: learner for learner in persistence_manager.list_learners(store=store)}["bea"]
    assert (summary.has_profile, summary.erased) == (False, True)


def test_the_sqlite_files_hold_none_of_the_erased_learners_strings(tmp_path: Path) -> None:
    engine = init_db(f"sqlite:///{tmp_path}/dala.db")
    try:
        store = store_for(engine)
        _fill(store)
        files = lambda: [path for path in tmp_path.iterdir() if path.name.startswith("dala.db")]  # noqa: E731
        everything = b"".join(path.read_bytes() for path in files())
        assert all(secret.encode() in everything for secret in SECRETS[:3])  # the read models held them
        _erase(store)
        # Checked while the database is still open (the WAL in use), then once it is closed.
        for path in files():
            data = path.read_bytes()
            assert not any(secret.encode() in data for secret in SECRETS), path.name
        assert KEPT[0].encode() in (tmp_path / "dala.db").read_bytes() + (tmp_path / "dala.db-wal").read_bytes()
    finally:
        close_db()
    assert {path.name for path in files()} >= {"dala.db", "dala.db.keys", "dala.db.keys.master"}
    for path in files():
        assert not any(secret.encode() in path.read_bytes() for secret in SECRETS), path.name


def test_an_old_backup_restored_after_the_erasure_yields_nothing_of_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source.db"
    engine = init_db(f"sqlite:///{source}")
    try:
        store = store_for(engine)
        _fill(store)
        backup = backup_log(engine, tmp_path / "before-erasure.backup").path
        _erase(store)
    finally:
        close_db()
    # A fresh database restored from the old backup, with the current key store.
    monkeypatch.setenv("DALA_KEY_STORE", f"{source}.keys")
    monkeypatch.setenv("DALA_MASTER_KEY_FILE", f"{source}.keys.master")
    target = create_dala_engine(f"sqlite:///{tmp_path}/restored.db")
    restore_log(target, backup)
    target.dispose()
    engine = init_db(f"sqlite:///{tmp_path}/restored.db")
    try:
        store = store_for(engine)
        rebuild(engine, cipher=store.cipher)
        history = audit.history("bea", store=store)
        assert history and all(isinstance(event.event, ErasedContent) for event in history)
        shown = [
            repr(history),
            repr(read_model_rows(engine)),
            persistence_manager.export_learner("bea", store=store).model_dump_json(),
            repr(list(store.read_all())),
        ]
        assert not any(secret in text for secret in SECRETS for text in shown)
        assert persistence_manager.get_full_learner_profile_data("bea", store=store) is None
        # The key store remembers the erasure: the restored log cannot bring the learner back.
        with pytest.raises(LearnerErasedError, match="'bea' was erased at 2026-03-03"):
            persistence_manager.create_learner_profile("bea", store=store)
        assert persistence_manager.get_interests("ann", store=store)[0].interest_name == KEPT[0]
        assert verify_log(engine, None).intact
    finally:
        close_db()


def test_an_interrupted_erasure_reads_as_erased_and_erasing_again_completes_it(sqlite_store: SqlEventStore) -> None:
    _fill(sqlite_store)
    # Stopped after LearnerErased was appended, before the key was destroyed.
    repository = LearnerRepository(sqlite_store)
    aggregate = repository.load("bea")
    with recorded_as("dpo:jane", reason="request"):
        assert aggregate.erase()
    repository.save(aggregate)
    assert sqlite_store.cipher is not None
    assert sqlite_store.cipher.key_store.erased_at("bea") is None
    fresh = store_for(sqlite_store.engine)
    assert all(isinstance(event.event, (ErasedContent, LearnerErased)) for event in audit.history("bea", store=fresh))

    result = erase_learner("bea", reason="completing it", store=sqlite_store)
    assert result.already_erased and result.key_destroyed
    assert result.record.reason == "request"  # the erasure's own record, not the retry's
    assert sqlite_store.cipher.key_store.erased_at("bea") is not None
    assert sqlite_store.stream_version("bea") == 6
    again = erase_learner("bea", reason="once more", store=sqlite_store)
    assert again.already_erased and not again.key_destroyed and sqlite_store.stream_version("bea") == 6


def test_an_erasure_needs_a_known_learner_a_reason_and_with_require_actor_an_actor(
    sqlite_store: SqlEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(sqlite_store)
    with pytest.raises(LearnerNotFound, match="'nobody' has no recorded changes"):
        erase_learner("nobody", reason="x", store=sqlite_store)
    with pytest.raises(InvalidInput, match="reason"):
        erase_learner("bea", reason="  ", store=sqlite_store)
    monkeypatch.setenv("DALA_REQUIRE_ACTOR", "1")
    with pytest.raises(ActorRequired, match="erasure"):
        erase_learner("bea", reason="request", store=sqlite_store)
    assert sqlite_store.stream_version("bea") == 5
    assert sqlite_store.cipher is not None and sqlite_store.cipher.key_store.erased_at("bea") is None
    with recorded_as("dpo:jane"):
        assert erase_learner("bea", reason="request", store=sqlite_store).record.actor == "dpo:jane"


def test_a_store_that_does_not_encrypt_cannot_erase(sqlite_store: SqlEventStore) -> None:
    plain = SqlEventStore(sqlite_store.engine, cipher=None)
    with pytest.raises(InvalidInput, match="does not encrypt"):
        erase_learner("bea", reason="request", store=plain)


def test_erasure_in_memory_uses_the_same_events_and_projectors() -> None:
    store, read_models = in_memory_store()
    _fill(store)
    result = _erase(store)
    assert result.freed_space == "in memory: nothing stored on disk"
    assert read_models.profile("bea") is None and read_models.profile("ann") is not None
    assert all(isinstance(event.event, (ErasedContent, LearnerErased)) for event in audit.history("bea", store=store))


def _cli(tmp_path: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    url = f"sqlite:///{tmp_path}/dala.db"
    result = CliRunner().invoke(main, ["--database-url", url, *args], input=input, catch_exceptions=False)
    return result.exit_code, result.output


def test_dala_erase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engine = init_db(f"sqlite:///{tmp_path}/dala.db")
    try:
        _fill(store_for(engine))
    finally:
        close_db()
    page = tmp_path / "interface" / "bea.html"  # beside the database it belongs to
    assert _cli(tmp_path, "interface", "bea")[0] == 0 and page.is_file()

    code, output = _cli(tmp_path, "erase", "bea", "--yes")
    assert code == 2 and "--reason" in output
    code, output = _cli(tmp_path, "erase", "bea", "--reason", "request 114")  # no terminal, no --yes
    assert code == 2 and "--yes" in output
    assert _cli(tmp_path, "profile", "bea")[0] == 0  # nothing was erased

    code, output = _cli(tmp_path, "--actor", "dpo:jane", "erase", "bea", "--reason", "request 114", "--yes")
    assert code == 0, output
    assert "bea erased at" in output and "by dpo:jane" in output and "5 changes is unreadable" in output
    assert "WAL checkpointed" in output and not page.exists()

    reads = (
        ("profile", "bea"),
        ("profile", "bea", "--version", "2"),
        ("profile", "bea", "--version", "0"),
        ("diff", "bea", "1", "3"),
        ("interface", "bea"),
    )
    for args in reads:
        code, output = _cli(tmp_path, *args)
        assert code == 1 and "'bea' was erased at" in output and "by dpo:jane (request 114)" in output, args
    code, output = _cli(tmp_path, "history", "bea", "--json")
    assert code == 0 and not any(secret in output for secret in SECRETS)
    events = json.loads(output)
    assert [event["event_type"] for event in events][-1] == "LearnerErased"
    code, output = _cli(tmp_path, "history", "bea")
    assert code == 0 and "[erased] Interest added" in output and "Learner erased" in output
    assert _cli(tmp_path, "verify")[0] == 0
    # The record of who was shown the child's data outlives the erasure (the page, the profile).
    code, output = _cli(tmp_path, "disclosures", "bea", "--json")
    assert code == 0 and [row["what"] for row in json.loads(output)][:2] == ["page", "cli_profile"]
    code, output = _cli(tmp_path, "--actor", "dpo:jane", "erase", "bea", "--reason", "again", "--yes")
    assert code == 0 and "already erased" in output


def test_erasing_with_the_wrong_master_key_fails_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = init_db(f"sqlite:///{tmp_path}/dala.db")
    try:
        _fill(store_for(engine))
    finally:
        close_db()
    monkeypatch.setenv("DALA_KEY_STORE", f"{tmp_path}/dala.db.keys")
    monkeypatch.setenv("DALA_MASTER_KEY", "11" * 32)
    code, output = _cli(tmp_path, "--actor", "dpo:jane", "erase", "bea", "--reason", "request", "--yes")
    assert code == 1 and "master key" in output
    engine = create_dala_engine(f"sqlite:///{tmp_path}/dala.db", create=False)
    try:
        with engine.connect() as connection:
            types = connection.execute(select(event_log.c.event_type).where(event_log.c.learner_id == "bea")).scalars()
            assert "LearnerErased" not in list(types)
    finally:
        engine.dispose()
    monkeypatch.setenv("DALA_MASTER_KEY", "")
    monkeypatch.setenv("DALA_MASTER_KEY_FILE", f"{tmp_path}/dala.db.keys.master")
    assert _cli(tmp_path, "profile", "bea")[0] == 0  # the right key still reads everything


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    interests=st.lists(
        st.lists(st.sampled_from(["Robotics", "Music", "Dinosaurs", "Quillwortzebra"]), max_size=4),
        min_size=1,
        max_size=5,
    ),
    erased=st.sets(st.integers(min_value=0, max_value=4)),
)
def test_any_erasure_leaves_the_others_alone_and_a_replay_equals_inline(
    interests: list[list[str]], erased: set[int]
) -> None:
    store, read_models = in_memory_store()
    names = [f"learner-{number}" for number in range(len(interests))]
    for name, wanted in zip(names, interests, strict=True):
        profile = LearnerProfile(name, store=store)
        for interest in wanted:
            profile.add_interest(interest)
    kept = {name: read_models.profile(name) for index, name in enumerate(names) if index not in erased}
    for index in sorted(erased):
        if index < len(names):
            erase_learner(names[index], reason="request", store=store)
    replayed = MemoryReadModels()
    for batch in store.read_for_projection():
        replayed.project(batch)
    def without_ids(rows: dict[str, list[dict[str, object]]]) -> dict[str, list[dict[str, object]]]:
        return {
            table: [{k: v for k, v in row.items() if k != "id" or table == "learner_profiles"} for row in found]
            for table, found in rows.items()
        }

    for name in names:
        assert without_ids(replayed.learner_rows(name)) == without_ids(read_models.learner_rows(name))
        if name in kept:
            assert read_models.profile(name) == kept[name]
        else:
            assert read_models.profile(name) is None
            history = audit.history(name, store=store)
            assert all(type(event.event) is ErasedContent for event in history[:-1])
            assert type(history[-1].event) is LearnerErased


def _another_process(store: SqlEventStore) -> tuple[SqlEventStore, LogCipher]:
    """A store as a second process would make it: its own cipher (own cache of data keys) on
    the same key store."""
    assert isinstance(store.cipher, LogCipher) and isinstance(store.cipher.key_store, SqlKeyStore)
    cipher = LogCipher(SqlKeyStore(store.cipher.key_store.engine, store.cipher.key_store.master_key))
    return SqlEventStore(store.engine, inline_projectors=[project_events], cipher=cipher), cipher


def test_a_process_that_cached_the_key_learns_of_an_erasure_made_elsewhere(store: SqlEventStore) -> None:
    _fill(store)
    other, cipher = _another_process(store)
    assert len(audit.history("bea", store=other)) == 5 and cipher.holds_key("bea")  # its key is cached there
    _erase(store)  # by "this" process: the other one's cache still holds the key
    assert cipher.holds_key("bea")
    # Cut reads do not reach the LearnerErased: the store asks the log first.
    cut = audit.history("bea", until=T0 + timedelta(hours=1), store=other)
    assert cut and all(isinstance(event.event, ErasedContent) for event in cut)
    assert not cipher.holds_key("bea")
    with pytest.raises(LearnerErasedError, match="by dpo:jane"):
        audit.profile_as_of("bea", version=3, store=other)


def test_a_cached_key_cannot_write_after_an_erasure_or_leak_through_the_whole_log(store: SqlEventStore) -> None:
    _fill(store)
    (writer, writer_cipher), (rebuilder, rebuilder_cipher) = _another_process(store), _another_process(store)
    for other in (writer, rebuilder):
        audit.history("bea", store=other)  # both cache bea's key
    version = store.stream_version("bea")
    _erase(store)
    # The erasure is the stream's last word, whatever key a writer holds.
    new = [NewEvent.now(LearnerProfileCreated()), NewEvent.now(InterestAdded(interest_name=SECRETS[0]))]
    with pytest.raises(LearnerErasedError, match="'bea'"):
        writer.append("bea", new, version + 1)
    assert store.stream_version("bea") == version + 1 and _learner_rows(store, "bea") == 0
    # Reading the whole log, and a rebuild, drop the keys of erased learners first.
    assert writer_cipher.holds_key("bea")
    assert not any(secret in repr(list(writer.read_all())) for secret in SECRETS)
    assert not writer_cipher.holds_key("bea")
    inline = read_model_rows(store.engine)
    assert rebuilder_cipher.holds_key("bea")
    rebuild(store.engine, cipher=rebuilder_cipher)
    assert read_model_rows(store.engine) == inline and not rebuilder_cipher.holds_key("bea")


def test_a_learner_with_events_stored_unencrypted_is_not_erased(sqlite_store: SqlEventStore) -> None:
    plain = SqlEventStore(sqlite_store.engine, inline_projectors=[project_events], cipher=None)
    profile = LearnerProfile("old1", store=plain)
    profile.add_interest(SECRETS[0])
    LearnerProfile.load("old1", store=sqlite_store).add_interest("Music")  # encrypted
    assert sqlite_store.unencrypted_versions("old1") == [1, 2]
    with pytest.raises(ErasureFailed, match=r"'old1' was not erased: 2 of their events are stored unencrypted"):
        erase_learner("old1", reason="request", store=sqlite_store)
    assert sqlite_store.stream_version("old1") == 3
    assert sqlite_store.cipher is not None and sqlite_store.cipher.key_store.erased_at("old1") is None


def test_an_erasure_that_keeps_losing_the_race_gives_up_saying_why(
    sqlite_store: SqlEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(sqlite_store)
    attempts = []

    def always_moved(self: LearnerRepository, aggregate: object) -> int:
        attempts.append(1)
        raise ConcurrencyError("bea", 5, 6)

    monkeypatch.setattr(LearnerRepository, "save", always_moved)
    with pytest.raises(ErasureFailed, match="changed under each of 20 attempts"):
        erase_learner("bea", reason="request", store=sqlite_store)
    assert len(attempts) == 20
    assert sqlite_store.cipher is not None and sqlite_store.cipher.key_store.erased_at("bea") is None


def test_a_reader_that_holds_the_wal_is_reported_and_erasing_again_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from dala_events import dialects

    monkeypatch.setattr(dialects, "SQLITE_BUSY_TIMEOUT_MS", 50)
    engine = init_db(f"sqlite:///{tmp_path}/dala.db")
    try:
        store = store_for(engine)
        _fill(store)
        reader = sqlite3.connect(tmp_path / "dala.db")
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM interests").fetchone()  # holds a snapshot in the WAL
        result = _erase(store)
        assert not result.freed_space_complete and "run it again" in result.freed_space
        assert any(secret.encode() in (tmp_path / "dala.db-wal").read_bytes() for secret in SECRETS)
        reader.rollback()
        reader.close()
        again = _erase(store)
        assert again.already_erased and again.freed_space_complete
        data = (tmp_path / "dala.db").read_bytes() + (tmp_path / "dala.db-wal").read_bytes()
        assert not any(secret.encode() in data for secret in SECRETS)
    finally:
        close_db()


def test_vacuum_full_on_request(store: SqlEventStore) -> None:
    _fill(store)
    with recorded_as("dpo:jane"):
        result = erase_learner("bea", reason="request", store=store, vacuum_full=True)
    if store.engine.dialect.name == "postgresql":
        assert "VACUUM FULL rewrote 8 tables" in result.freed_space
    else:
        assert "WAL checkpointed and truncated" in result.freed_space
    assert "key store: deleted rows overwritten (secure_delete)" in result.freed_space
    assert result.freed_space_complete and _learner_rows(store, "bea") == 0


def test_dala_erase_exits_1_when_old_pages_remain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dala_events import erasure
    from dala_events.dialects import FreedSpace

    engine = init_db(f"sqlite:///{tmp_path}/dala.db")
    try:
        _fill(store_for(engine))
    finally:
        close_db()
    monkeypatch.setattr(erasure, "release_freed_space", lambda *_args, **_kw: FreedSpace("WAL still held", False))
    code, output = _cli(tmp_path, "--actor", "dpo:jane", "erase", "bea", "--reason", "request", "--yes")
    assert code == 1 and "bea erased at" in output
    assert "recorded and their key destroyed, but old pages remain: run it again" in output


def test_restoring_a_backup_older_than_an_erasure_records_the_erasure_again(tmp_path: Path) -> None:
    from dala_events.app import Dala
    from dala_events.settings import Settings

    school = Settings(database_url=f"sqlite:///{tmp_path}/school.db")
    with Dala.open(school) as dala:
        _fill(dala.store)
        dala.backup(tmp_path / "before-erasure.backup")
        with recorded_as("dpo:jane"):
            dala.erase("bea", reason="request 114")
    moved = Settings(
        database_url=f"sqlite:///{tmp_path}/moved.db",
        key_store=f"{tmp_path}/school.db.keys",
        master_key_file=tmp_path / "school.db.keys.master",
    )
    with Dala.open(moved, mode=Mode.RAW_CREATE) as dala:
        dala.restore(tmp_path / "before-erasure.backup")
        history = dala.history("bea")
        assert history[-1].event_type == "LearnerErased" and history[-1].metadata["actor"] == "system:restore"
        assert "after the restored backup was made" in history[-1].metadata["reason"]
        assert all(isinstance(event.event, ErasedContent) for event in history[:-1])
        report = dala.verify()
        assert report.intact and report.keys is not None and report.keys.ok, report.keys
        assert [event.event_type for event in dala.history("ann")][-1] == "InterestAdded"


def test_dala_erase_says_which_backups_still_hold_the_key_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dala_events.cli as cli

    monkeypatch.chdir(tmp_path)
    engine = init_db(f"sqlite:///{tmp_path}/dala.db")
    try:
        _fill(store_for(engine))  # bea's key is made at T0, 2026-03-02 09:00 UTC
    finally:
        close_db()
    code, output = _cli(tmp_path, "erase", "--help")
    assert code == 0 and "not even from a backup" not in output
    assert "key backup" in " ".join(output.split()) and "delete" in output

    asked: list[str] = []
    monkeypatch.setattr(cli, "_on_a_terminal", lambda: True)
    monkeypatch.setattr(cli.click, "confirm", lambda text, **_kw: asked.append(text) or True)
    code, output = _cli(tmp_path, "--actor", "dpo:jane", "erase", "bea", "--reason", "request 114")
    assert code == 0, output
    assert len(asked) == 1 and "backups included" not in asked[0]
    assert "key backups taken since 2026-03-02 09:00 UTC" in asked[0] and "still hold" in asked[0]
    flat = " ".join(output.split())
    assert "key backups taken from 2026-03-02 09:00 UTC until now still hold bea's data key" in flat, flat
    assert "delete them" in flat and "erasure deadline" in flat
