"""Fixtures: one database fixture parametrised over SQLite and PostgreSQL, and a fake store.

PostgreSQL is the server at DALA_TEST_POSTGRES_URL (default: the local `test` database).
When it cannot be reached the PostgreSQL cases are skipped with the reason, except under
CI=true, where they fail: CI must test both backends.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from dala_events.database_setup import close_db, in_memory_store, init_db, store_for
from dala_events.store import LOG_METADATA, InMemoryEventStore, SqlEventStore
from projections.database_models import READ_MODEL_METADATA
from projections.memory import MemoryReadModels

POSTGRES_URL = os.environ.get("DALA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _postgres_problem() -> str | None:
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return None
    except Exception as error:  # any failure to connect means: no PostgreSQL here
        return f"PostgreSQL at {POSTGRES_URL} unreachable: {type(error).__name__}"
    finally:
        engine.dispose()


_POSTGRES_PROBLEM: list[str | None] = []


def require_postgres() -> None:
    """Skip (locally) or fail (in CI) when PostgreSQL cannot be reached."""
    if not _POSTGRES_PROBLEM:
        _POSTGRES_PROBLEM.append(_postgres_problem())
    problem = _POSTGRES_PROBLEM[0]
    if problem is not None:
        if IN_CI:
            pytest.fail(f"{problem}; CI must run the PostgreSQL tests")
        pytest.skip(problem)


def reset_postgres() -> None:
    """Drop every table of ours (and Alembic's bookkeeping) so each test starts empty, and
    configure a fresh key store and a master key for it (PostgreSQL needs them configured)."""
    if not os.environ.get("DALA_KEY_STORE"):  # a test may have chosen one (shared by two databases)
        os.environ["DALA_KEY_STORE"] = str(Path(tempfile.mkdtemp(prefix="dala-keys-")) / "test.keys")
        os.environ["DALA_MASTER_KEY"] = TEST_MASTER_KEY
        os.environ["DALA_MASTER_KEY_FILE"] = ""
    # Its DROPs wait for every lock on the tables: a transaction an earlier test left open fails
    # this one within two minutes rather than hanging it.
    engine = create_engine(POSTGRES_URL, connect_args={"options": "-c lock_timeout=120000"})
    try:
        with engine.begin() as connection:
            READ_MODEL_METADATA.drop_all(connection)
            LOG_METADATA.drop_all(connection)
            for table in ("alembic_version", "projection_state", "disclosure_log", "subscription_checkpoints"):
                connection.execute(text(f"DROP TABLE IF EXISTS {table} CASCADE"))
            connection.execute(text("DROP SCHEMA IF EXISTS dala_rebuild CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A URL of an empty database, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/dala-test.db"
        return
    require_postgres()
    reset_postgres()
    yield POSTGRES_URL


TEST_MASTER_KEY = "5a" * 32
"""The master key of the tests' PostgreSQL key stores (a PostgreSQL database needs one configured)."""

KEY_ENV = ("DALA_KEY_STORE", "DALA_MASTER_KEY", "DALA_MASTER_KEY_FILE")


@pytest.fixture(autouse=True)
def _key_store_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a test sets of the key store's variables (`reset_postgres` does) ends with it."""
    for name in KEY_ENV:
        monkeypatch.setenv(name, os.environ.get(name, ""))


@pytest.fixture
def store(database_url: str) -> Iterator[SqlEventStore]:
    """The process default store on a fresh database (inline projections on)."""
    engine = init_db(database_url)
    try:
        yield store_for(engine)
    finally:
        close_db()


@pytest.fixture
def sqlite_store(tmp_path: os.PathLike[str]) -> Iterator[SqlEventStore]:
    """A store on a fresh SQLite file only, for tests about the aggregate's logic."""
    engine = init_db(f"sqlite:///{tmp_path}/dala-unit.db")
    try:
        yield store_for(engine)
    finally:
        close_db()


@pytest.fixture
def memory_store() -> InMemoryEventStore:
    """An in-memory store, no database: for the aggregate's and the projectors' unit tests."""
    return in_memory_store()[0]


@pytest.fixture
def memory_read_models() -> tuple[InMemoryEventStore, MemoryReadModels]:
    """An in-memory store and the read models it keeps up to date inline."""
    return in_memory_store()
