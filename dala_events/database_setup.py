"""Engine creation and `init_db`: connect to SQLite or PostgreSQL and make sure the tables exist.

This is where the store and the projections are wired together: the process-wide default
EventStore runs `projections.projectors.project_events` inline in every append.

The database is chosen, in order, by the `database_url` argument, the `DALA_DATABASE_URL`
environment variable, or the embedded default `database/edpsych_connect_dala.db` relative to
the working directory.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from dala_events.dialects import configure_sqlite, write_transaction
from dala_events.errors import InvalidInput
from dala_events.store import LOG_METADATA, EventStore
from projections.database_models import READ_MODEL_METADATA
from projections.projectors import project_events

DATABASE_URL_ENV = "DALA_DATABASE_URL"
DEFAULT_DATABASE_PATH = Path("database") / "edpsych_connect_dala.db"

_lock = threading.RLock()
_default_engine: Engine | None = None
_default_store: EventStore | None = None


def configured_database_url() -> str:
    """The URL `init_db()` uses when given none: DALA_DATABASE_URL, or the embedded SQLite file."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    return url or f"sqlite:///{DEFAULT_DATABASE_PATH}"


def create_dala_engine(database_url: str | URL) -> Engine:
    """An engine for `database_url` set up the way the store needs it.

    `postgresql://` URLs use the psycopg 3 driver that ships with the package; a SQLite file's
    folder is created if missing; SQLite connections get the pragmas of `configure_sqlite`.
    """
    try:
        url = make_url(database_url)
    except Exception as error:
        raise InvalidInput("database_url", f"not a database URL: {error}") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return create_engine(url, pool_pre_ping=True)
    if backend != "sqlite":
        raise InvalidInput("database_url", f"only sqlite and postgresql are supported, not {backend!r}")
    if url.database in (None, "", ":memory:"):
        # One shared connection, or every checkout would see a different empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
    configure_sqlite(engine)
    return engine


def create_tables(engine: Engine) -> None:
    """Create the event log and the eight read-model tables where missing (idempotent)."""
    with write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            # Two processes starting at once must not both try to create the same tables.
            connection.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
        LOG_METADATA.create_all(connection, checkfirst=True)
        READ_MODEL_METADATA.create_all(connection, checkfirst=True)


def store_for(engine: Engine) -> EventStore:
    """An EventStore on `engine` that keeps the eight read models up to date inline."""
    return EventStore(engine, inline_projectors=[project_events])


def init_db(database_url: str | None = None) -> Engine:
    """Connect, create any missing tables, and make this database the process default.

    Safe to call on every start. `persistence_manager` and `LearnerProfile` use the default
    unless given a store of their own.
    """
    global _default_engine, _default_store
    engine = create_dala_engine(database_url or configured_database_url())
    create_tables(engine)
    with _lock:
        previous = _default_engine
        _default_engine, _default_store = engine, store_for(engine)
    if previous is not None and previous is not engine:
        previous.dispose()
    return engine


def close_db() -> None:
    """Forget the process default and close its connections."""
    global _default_engine, _default_store
    with _lock:
        engine, _default_engine, _default_store = _default_engine, None, None
    if engine is not None:
        engine.dispose()


def get_engine() -> Engine:
    """The process default engine, set up by `init_db()` on first use if nobody called it yet."""
    with _lock:
        if _default_engine is None:
            init_db()
        assert _default_engine is not None
        return _default_engine


def get_store() -> EventStore:
    """The process default EventStore (see `get_engine`)."""
    with _lock:
        if _default_store is None:
            init_db()
        assert _default_store is not None
        return _default_store
