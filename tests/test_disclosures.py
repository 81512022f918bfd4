"""The record of disclosures: who was shown which learner's data, when and why."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import inspect

from dala_events import audit
from dala_events import persistence_manager as pm
from dala_events.attribution import recorded_as
from dala_events.database_setup import close_db, create_dala_engine, init_db, migrate, open_db
from dala_events.disclosures import disclosure_log, list_disclosures, record_disclosure
from dala_events.errors import ActorRequired, InvalidInput, LearnerNotFound, RefusedToDestroy, SchemaMismatchError
from dala_events.generate_interface import generate_interface
from dala_events.hlp_module import LearnerProfile
from dala_events.store import InMemoryEventStore, SqlEventStore
from projections.rebuild import rebuild

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _ann(store: SqlEventStore) -> LearnerProfile:
    with recorded_as("teacher:42"):
        profile = LearnerProfile("ann", store=store)
        profile.add_interest("Robotics")
        profile.record_activity_attempt("MATH_LO_001", "q1", "quiz", score=70.0, completed=True)
    return profile


# ---------------------------------------------------------------------------------------------
# The record
# ---------------------------------------------------------------------------------------------


def test_a_disclosure_records_who_when_what_and_why_under_recorded_as(store: SqlEventStore) -> None:
    with freeze_time(T0), recorded_as("teacher:42", reason="parent meeting") as block:
        first = record_disclosure("ann", "cli_profile", store=store)
        second = record_disclosure("ann", "cli_history", store=store)
    with freeze_time(T0):
        unattributed = record_disclosure("ann", "page", store=store)
    record_disclosure("bob", "page", store=store)
    assert (first.learner_id, first.what, first.actor, first.reason) == (
        "ann",
        "cli_profile",
        "teacher:42",
        "parent meeting",
    )
    assert first.disclosed_at == T0 and first.correlation_id == second.correlation_id == block.correlation_id
    assert (unattributed.actor, unattributed.reason) == ("system", None)
    uuid.UUID(unattributed.correlation_id)  # outside a block each disclosure is its own piece of work
    listed = list_disclosures("ann", store=store)
    assert listed == [first, second, unattributed]
    assert [d.id for d in listed] == sorted(d.id for d in listed)
    assert [d.what for d in list_disclosures("bob", store=store)] == ["page"]
    assert list_disclosures("nobody", store=store) == []


def test_the_record_holds_nothing_of_the_learner_but_the_id(store: SqlEventStore) -> None:
    columns = {column["name"] for column in inspect(store.engine).get_columns("disclosure_log")}
    assert columns == {"id", "learner_id", "disclosed_at", "what", "actor", "reason", "correlation_id"}
    assert set(disclosure_log.c.keys()) == columns


def test_bad_disclosures_are_refused_naming_the_field(store: SqlEventStore, memory_store: InMemoryEventStore) -> None:
    for what in ("", "Export", "export json", "x" * 41, "1page"):
        with pytest.raises(InvalidInput) as refused:
            record_disclosure("ann", what, store=store)
        assert refused.value.field == "what"
    for learner in ("", " ann", "a" * 129):
        with pytest.raises(InvalidInput) as refused:
            record_disclosure(learner, "page", store=store)
        assert refused.value.field == "learner_id"
    with pytest.raises(InvalidInput) as in_memory:
        record_disclosure("ann", "page", store=memory_store)  # type: ignore[arg-type]
    assert in_memory.value.field == "store"
    assert list_disclosures("ann", store=store) == []


def test_the_record_survives_deletion_and_rebuilds(store: SqlEventStore) -> None:
    _ann(store)
    with recorded_as("dpo:1", reason="subject access request"):
        pm.export_learner("ann", store=store)
    before = list_disclosures("ann", store=store)
    with recorded_as("dpo:1", reason="erasure request"):
        pm.delete_learner_profile("ann", store=store)
    rebuild(store.engine, cipher=store.cipher)
    assert pm.get_full_learner_profile_data("ann", store=store) is None
    assert list_disclosures("ann", store=store) == before


def test_pages_and_exports_record_and_the_librarys_own_reads_do_not(store: SqlEventStore, tmp_path: Path) -> None:
    _ann(store)
    pm.get_full_learner_profile_data("ann", store=store)
    pm.get_interests("ann", store=store)
    pm.list_learners(store=store)
    audit.history("ann", store=store)
    audit.profile_as_of("ann", version=2, store=store)
    audit.history_point("ann", version=2, store=store)
    audit.diff("ann", 1, 3, store=store)
    rebuild(store.engine, cipher=store.cipher)
    assert list_disclosures("ann", store=store) == []
    with recorded_as("teacher:42", reason="report"):
        page = generate_interface("ann", tmp_path / "ann.html", store=store)
    assert page.exists()
    pm.export_learner("ann", store=store)
    records = list_disclosures("ann", store=store)
    assert [(d.what, d.actor, d.reason) for d in records] == [
        ("page", "teacher:42", "report"),
        ("export_json", "system", None),
    ]
    with pytest.raises(LearnerNotFound):
        generate_interface("nobody", tmp_path / "nobody.html", store=store)
    assert list_disclosures("nobody", store=store) == []


def test_the_log_is_not_migrated_down_over_disclosures(database_url: str) -> None:
    engine = init_db(database_url)
    try:
        store = SqlEventStore(engine)
        record_disclosure("ann", "page", store=store)
        with pytest.raises(RefusedToDestroy, match="disclosure_log"):
            migrate(engine, "0002", downgrade=True)
        assert [d.what for d in list_disclosures("ann", store=store)] == ["page"]
    finally:
        close_db()


def test_an_older_log_schema_is_refused_by_reads_with_what_to_run(database_url: str) -> None:
    engine = create_dala_engine(database_url)
    try:
        assert migrate(engine) is not None
        assert migrate(engine, "0002", downgrade=True) == "0002"
        with pytest.raises(SchemaMismatchError, match="run `dala migrate`"):
            open_db(database_url)
        assert "disclosure_log" not in inspect(engine).get_table_names()
    finally:
        close_db()
        engine.dispose()


def test_with_require_actor_an_unnamed_disclosure_is_refused_and_nothing_is_shown(
    store: SqlEventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ann(store)
    monkeypatch.setenv("DALA_REQUIRE_ACTOR", "1")
    with pytest.raises(ActorRequired, match="this disclosure"):
        record_disclosure("ann", "page", store=store)
    with pytest.raises(ActorRequired):
        generate_interface("ann", tmp_path / "ann.html", store=store)
    assert not (tmp_path / "ann.html").exists()
    with pytest.raises(ActorRequired):
        pm.export_learner("ann", store=store)
    assert list_disclosures("ann", store=store) == []
    with recorded_as("teacher:42"):
        generate_interface("ann", tmp_path / "ann.html", store=store)
    assert [(d.what, d.actor) for d in list_disclosures("ann", store=store)] == [("page", "teacher:42")]


def test_a_disclosures_reason_is_stored_encrypted_and_goes_with_an_erasure(tmp_path: Path) -> None:
    from sqlalchemy import select as select_rows

    from dala_events.app import Dala
    from dala_events.disclosures import disclosure_log
    from dala_events.settings import Settings

    with Dala.open(Settings(database_url=f"sqlite:///{tmp_path}/dala.db")) as dala:
        dala.profile("ann").add_interest("Chess")
        with recorded_as("teacher:7", reason="meeting with ann's mother about her reading"):
            dala.record_disclosure("ann", "page")
        with dala.engine.connect() as connection:
            stored = connection.execute(select_rows(disclosure_log.c.reason)).scalar_one()
        assert "mother" not in stored and stored.startswith("dala-aes256gcm/1:")
        assert dala.disclosures("ann")[0].reason == "meeting with ann's mother about her reading"
        dala.erase("ann", reason="request 12")
        kept = dala.disclosures("ann")
        assert [(d.what, d.actor, d.reason) for d in kept][:1] == [("page", "teacher:7", None)]
