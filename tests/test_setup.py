"""Opening, migrating and rebuilding never destroy records by accident, and reads create nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from dala_events.database_setup import (
    LOG_SCHEMA_HEAD,
    close_db,
    create_dala_engine,
    migrate,
    migration_history,
    open_db,
)
from dala_events.errors import DatabaseNotFound, InvalidInput, RefusedToDestroy, SchemaMismatchError
from dala_events.hlp_module import LearnerProfile
from dala_events.store import SqlEventStore, event_log
from projections.projectors import interests
from projections.rebuild import rebuild


def test_the_head_revision_constant_is_the_scripts_head() -> None:
    assert migration_history()[0].revision == LOG_SCHEMA_HEAD


def test_opening_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such.db"
    with pytest.raises(DatabaseNotFound, match=str(missing)):
        open_db(f"sqlite:///{missing}")
    assert not (tmp_path / "no").exists()


def test_opening_a_database_without_the_log_or_at_an_old_revision_says_what_to_run(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    engine = create_dala_engine(f"sqlite:///{empty}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE something_else (x INTEGER)"))
    with pytest.raises(DatabaseNotFound, match="dala init"):
        open_db(f"sqlite:///{empty}")
    migrate(engine, "0001")
    engine.dispose()
    with pytest.raises(SchemaMismatchError, match="dala migrate"):
        open_db(f"sqlite:///{empty}")


def test_an_unknown_revision_is_refused_naming_the_known_ones(store: SqlEventStore) -> None:
    for revision in ("", "nope"):
        with pytest.raises(InvalidInput, match="known: head, base") as caught:
            migrate(store.engine, revision)
        assert caught.value.field == "revision"


def test_no_migration_drops_an_event_log_that_holds_events(store: SqlEventStore) -> None:
    LearnerProfile("ann", store=store).add_interest("Music")
    with pytest.raises(RefusedToDestroy, match="holds 2 events"):
        migrate(store.engine, "base", downgrade=True)
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(event_log)).scalar_one() == 2
    assert open_db(str(store.engine.url.render_as_string(hide_password=False))) is not None
    close_db()


def test_an_empty_log_may_be_migrated_down_and_up_again(tmp_path: Path) -> None:
    engine = create_dala_engine(f"sqlite:///{tmp_path}/fresh.db")
    try:
        assert migrate(engine) == LOG_SCHEMA_HEAD
        assert migrate(engine, "base", downgrade=True) is None
        assert migrate(engine) == LOG_SCHEMA_HEAD
    finally:
        engine.dispose()


def test_rebuild_refuses_to_empty_read_models_from_an_empty_log(store: SqlEventStore) -> None:
    LearnerProfile("ann", store=store).add_interest("Music")
    with store.engine.begin() as connection:
        connection.execute(event_log.delete())
    with pytest.raises(RefusedToDestroy, match="empty event log") as caught:
        rebuild(store.engine, cipher=store.cipher)
    assert "learner_profiles (1 rows)" in str(caught.value)
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(interests)).scalar_one() == 1
