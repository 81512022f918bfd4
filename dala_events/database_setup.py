"""Wiring: engines, the store and its inline projections, `init_db`, and the process default.

The one place where the parts are put together: an engine for SQLite or PostgreSQL, the
`SqlEventStore` on it with `projections.projectors.project_events` run inline in every
append, the log's migrations and the read models' tables. Everything else is handed a store
(or uses the process default made here).

The database is chosen, in order, by the `database_url` argument, the `DALA_DATABASE_URL`
environment variable, or the embedded default `database/edpsych_connect_dala.db` relative to
the working directory.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection, Engine, create_engine, inspect, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from dala_events.dialects import configure_sqlite, read_transaction, write_transaction
from dala_events.errors import DatabaseNotFound, InvalidInput, SchemaMismatchError
from dala_events.events import decode_json, dump_checked_json
from dala_events.store import EventStore, InMemoryEventStore, SqlEventStore
from projections.memory import MemoryReadModels
from projections.projectors import project_events
from projections.rebuild import ensure_projections, rebuild, stale_error, stale_projections

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

_log = logging.getLogger("dala_events.database_setup")

DATABASE_URL_ENV = "DALA_DATABASE_URL"
DEFAULT_DATABASE_PATH = Path("database") / "edpsych_connect_dala.db"

_lock = threading.RLock()
_default_engine: Engine | None = None
_default_store: SqlEventStore | None = None


def configured_database_url() -> str:
    """The URL `init_db()` uses when given none: DALA_DATABASE_URL, or the embedded SQLite file."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    return url or f"sqlite:///{DEFAULT_DATABASE_PATH}"


_JSON_COLUMNS: dict[str, Any] = {"json_serializer": dump_checked_json, "json_deserializer": decode_json}


def create_dala_engine(database_url: str | URL, *, create: bool = True) -> Engine:
    """An engine for `database_url` set up the way the store needs it.

    `postgresql://` URLs use the psycopg 3 driver that ships with the package; SQLite
    connections get the pragmas of `configure_sqlite`. With `create` (set-up: init, demo,
    migrate, restore) a SQLite file's folder is created if missing; without it (every command
    that only reads) a missing file is DatabaseNotFound and nothing is created, so a typo in
    a path never looks like a missing learner. JSON columns are written compact and read back
    with pydantic-core's JSON codec: what they hold are details objects every event checked
    when it was made.
    """
    try:
        url = make_url(database_url)
    except Exception as error:
        raise InvalidInput("database_url", f"not a database URL ({error}); e.g. sqlite:///database/dala.db") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return create_engine(url, pool_pre_ping=True, **_JSON_COLUMNS)
    if backend != "sqlite":
        raise InvalidInput("database_url", f"only sqlite and postgresql are supported, not {backend!r}")
    if url.database in (None, "", ":memory:"):
        # One shared connection, or every checkout would see a different empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False}, **_JSON_COLUMNS)
    else:
        path = Path(url.database).expanduser()
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.is_file():
            raise DatabaseNotFound(str(path))
        engine = create_engine(url, connect_args={"timeout": 30}, **_JSON_COLUMNS)
    configure_sqlite(engine)
    return engine


AUTO_REBUILD_ENV = "DALA_AUTO_REBUILD"
MIGRATIONS = "dala_events:migrations"
LOG_SCHEMA_HEAD = "0004"
"""The newest migration of the log (a test keeps it equal to the scripts' head): a database at
this revision is opened without loading Alembic, which costs a tenth of a second of start-up."""
_PG_SETUP_LOCK = 4242001


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration of the log's migrations, bound to `connection` if given."""
    from alembic.config import Config  # Alembic is loaded only when migrating (see LOG_SCHEMA_HEAD)

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, revision: str = "head", *, downgrade: bool = False) -> str | None:
    """Bring the event log and bookkeeping tables to `revision` (Alembic); returns where they end.

    A database whose event log predates the migrations is stamped with the first revision
    (the same table) before upgrading. Read models are not migrated: they are rebuilt.
    """
    with write_transaction(engine) as connection:
        _hold_setup_lock(connection)
        reached = _migrate(connection, revision, downgrade=downgrade)
    _log.info("event log schema at revision %s", reached or "base")
    return reached


def _migrate(connection: Connection, revision: str, *, downgrade: bool = False) -> str | None:
    from alembic import command  # loaded only when migrating (see LOG_SCHEMA_HEAD)
    from alembic.runtime.migration import MigrationContext
    from alembic.util import CommandError

    config = alembic_config(connection)
    migrations = _migrations()
    known = [script.revision for script in migrations.walk_revisions()]
    if not revision or (revision not in ("head", "base") and revision not in known):
        raise InvalidInput(
            "revision", f"unknown revision {revision!r}; known: head, base, {', '.join(reversed(known))}"
        )
    target = migrations.get_current_head() if revision == "head" else revision
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None and "event_log" in inspect(connection).get_table_names():
        command.stamp(config, "0001")
        current = "0001"
    if current != target:
        try:
            if downgrade:
                command.downgrade(config, revision)
            else:
                command.upgrade(config, revision)
        except CommandError as error:
            raise InvalidInput("revision", f"{error}; use --downgrade to go back to an older revision") from None
    return MigrationContext.configure(connection).get_current_revision()


class Revision(NamedTuple):
    """One migration of the log."""

    revision: str
    down_revision: str | None
    title: str


def migration_history() -> list[Revision]:
    """The log's migrations, newest first."""
    revisions = []
    for script in _migrations().walk_revisions():
        down = script.down_revision
        title = (script.doc or "").strip().splitlines()[0] if script.doc else ""
        revisions.append(
            Revision(script.revision, down if isinstance(down, str) or down is None else ",".join(down), title)
        )
    return revisions


def log_schema_revision(connection: Connection) -> str | None:
    """The log's migration revision as the database records it (None: not migrated), read
    with plain SQL."""
    if "alembic_version" not in inspect(connection).get_table_names():
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


@lru_cache(maxsize=1)
def _migrations() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def _hold_setup_lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Two processes starting at once must not both try to create the same tables.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SETUP_LOCK})


def create_tables(engine: Engine) -> tuple[str, ...]:
    """Migrate the log to head and create missing read-model tables; returns stale projections.

    Idempotent. A projection is stale when its table definition changed since it was built
    (or it is missing while the log has events): it needs `dala rebuild`.
    """
    with write_transaction(engine) as connection:
        _hold_setup_lock(connection)
        if log_schema_revision(connection) != LOG_SCHEMA_HEAD:
            _migrate(connection, "head")
        return ensure_projections(connection)


def auto_rebuild_enabled(engine: Engine) -> bool:
    """Whether `init_db` rebuilds stale projections itself: DALA_AUTO_REBUILD=1/0, by default
    on for SQLite (embedded, one application) and off for PostgreSQL (a shared server, where
    a rebuild is an operator's decision)."""
    value = os.environ.get(AUTO_REBUILD_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    if value:
        raise InvalidInput(AUTO_REBUILD_ENV, f"must be 1 or 0, not {value!r}")
    return engine.dialect.name == "sqlite"


def store_for(engine: Engine) -> SqlEventStore:
    """An event store on `engine` that keeps the eight read models up to date inline."""
    return SqlEventStore(engine, inline_projectors=[project_events])


def in_memory_store() -> tuple[InMemoryEventStore, MemoryReadModels]:
    """An event store in memory and the read models it keeps up to date inline (for tests)."""
    read_models = MemoryReadModels()
    return InMemoryEventStore(inline_projectors=[read_models.project]), read_models


def init_db(database_url: str | None = None, *, check_projections: bool = True) -> Engine:
    """Connect, migrate the log, create missing tables, and make this the process default.

    Safe to call on every start. A read model whose definition changed is rebuilt from the log
    when DALA_AUTO_REBUILD allows it (the SQLite default), else SchemaMismatchError says to
    run `dala rebuild`; `check_projections=False` skips that (what `dala rebuild` itself
    uses). `persistence_manager` and `LearnerProfile` use the default unless given a store.
    """
    global _default_engine, _default_store
    engine = create_dala_engine(database_url or configured_database_url())
    try:
        stale = create_tables(engine)
        if stale and check_projections:
            if not auto_rebuild_enabled(engine):
                raise stale_error(stale)
            rebuild(engine, projections=stale)
    except BaseException:
        engine.dispose()
        raise
    with _lock:
        previous = _default_engine
        _default_engine, _default_store = engine, store_for(engine)
    if previous is not None and previous is not engine:
        previous.dispose()
    return engine


def open_db(database_url: str | None = None) -> Engine:
    """Connect to an existing database to read it, and make it the process default.

    Unlike `init_db` this creates, migrates and rebuilds nothing: a missing database is
    DatabaseNotFound, one without the event log or with an older log schema or out-of-date
    read models is SchemaMismatchError saying what to run.
    """
    global _default_engine, _default_store
    url = database_url or configured_database_url()
    engine = create_dala_engine(url, create=False)
    try:
        with read_transaction(engine) as connection:
            revision = log_schema_revision(connection)
            if revision is None and "event_log" not in inspect(connection).get_table_names():
                raise DatabaseNotFound(
                    engine.url.render_as_string(hide_password=True),
                    "the database holds no DALA event log; create one with `dala init`",
                )
            if revision != LOG_SCHEMA_HEAD:
                raise SchemaMismatchError(
                    f"the event log's schema is at revision {revision or 'none'}, this code needs "
                    f"{LOG_SCHEMA_HEAD}; run `dala migrate`"
                )
            stale = stale_projections(connection)
        if stale:
            raise stale_error(stale)
    except BaseException:
        engine.dispose()
        raise
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


def get_store() -> SqlEventStore:
    """The process default EventStore (see `get_engine`)."""
    with _lock:
        if _default_store is None:
            init_db()
        assert _default_store is not None
        return _default_store


def store_or_default(store: EventStore | None) -> EventStore:
    """`store`, or the process default when none is given: what every `store=` argument means."""
    return store if store is not None else get_store()


def sql_store_or_default(store: EventStore | None) -> SqlEventStore:
    """Like `store_or_default`, for what reads the read-model tables (getters): a SQL store."""
    chosen = store_or_default(store)
    if not isinstance(chosen, SqlEventStore):
        raise InvalidInput("store", f"the read-model getters need a SqlEventStore, not {type(chosen).__name__}")
    return chosen
