"""Wiring: engines, the store and its inline projections, `init_db`, and the process default.

The one place where the parts are put together: an engine for SQLite or PostgreSQL, the
`SqlEventStore` on it with `projections.projectors.project_events` run inline in every
append, the log's migrations and the read models' tables. Everything else is handed a store
(or uses the process default made here).

The database is chosen, in order, by the `database_url` argument, the `DALA_DATABASE_URL`
environment variable, or the embedded default `database/edpsych_connect_dala.db` relative to
the working directory.

The log key (`DALA_LOG_KEY`, or the file named by `DALA_LOG_KEY_FILE`) is read here, once per
`init_db`, and handed to the store, the migrations and rebuilds: nothing else reads it.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import os
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection, Engine, create_engine, inspect, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from dala_events.dialects import (
    configure_key_store_sqlite,
    configure_sqlite,
    read_transaction,
    release_freed_space,
    write_transaction,
)
from dala_events.errors import DatabaseNotFound, InvalidInput, SchemaMismatchError
from dala_events.events import decode_json, dump_checked_json
from dala_events.store import EventStore, InMemoryEventStore, LogKey, SqlEventStore
from dala_events.store.keys import (
    KeyStore,
    LogCipher,
    MasterKey,
    MasterKeyError,
    MemoryKeyStore,
    SqlKeyStore,
    register_cipher,
    registered_cipher,
    write_secret_file,
)
from dala_events.store.sql import check_log_key
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


LOG_KEY_ENV = "DALA_LOG_KEY"
LOG_KEY_FILE_ENV = "DALA_LOG_KEY_FILE"


class Configured(enum.Enum):
    """`KEY`: the log key the environment configures (see `configured_log_key`)."""

    KEY = "configured"


CONFIGURED = Configured.KEY
KeyChoice = LogKey | None | Configured
"""A log key, None for none (plain SHA-256), or CONFIGURED: whatever the environment says."""


def configured_log_key() -> LogKey | None:
    """The log key the environment configures, or None (the chain is then plain SHA-256).

    `DALA_LOG_KEY` holds the key as hex digits (at least 64: 32 bytes, e.g. `openssl rand -hex
    32`); `DALA_LOG_KEY_FILE` names a file holding the same (surrounding whitespace ignored).
    Setting both is refused, as is a shorter key or text that is not hex.
    """
    value = os.environ.get(LOG_KEY_ENV, "").strip()
    path = os.environ.get(LOG_KEY_FILE_ENV, "").strip()
    if value and path:
        raise InvalidInput(LOG_KEY_ENV, f"set {LOG_KEY_ENV} or {LOG_KEY_FILE_ENV}, not both")
    if value:
        return LogKey.from_hex(value, source=LOG_KEY_ENV)
    if path:
        try:
            text_in_file = Path(path).expanduser().read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidInput(LOG_KEY_FILE_ENV, f"cannot read the key file {path!r}: {error}") from None
        return LogKey.from_hex(text_in_file, source=LOG_KEY_FILE_ENV)
    return None


KEY_STORE_ENV = "DALA_KEY_STORE"
MASTER_KEY_ENV = "DALA_MASTER_KEY"
MASTER_KEY_FILE_ENV = "DALA_MASTER_KEY_FILE"
KEY_STORE_SUFFIX = ".keys"
MASTER_KEY_SUFFIX = ".master"

_ciphers: dict[tuple[str, str], LogCipher] = {}


def configured_master_key(default_file: Path | None = None) -> MasterKey:
    """The master key the environment configures: `DALA_MASTER_KEY` (64 hex digits) or the file
    named by `DALA_MASTER_KEY_FILE`. Without either, `default_file` (the embedded default: a
    file beside the key store), created with a new random key and 0600 permissions when missing;
    with no default either, MasterKeyError."""
    value = os.environ.get(MASTER_KEY_ENV, "").strip()
    path = os.environ.get(MASTER_KEY_FILE_ENV, "").strip()
    if value and path:
        raise MasterKeyError(f"set {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV}, not both")
    if value:
        return MasterKey.from_hex(value, source=MASTER_KEY_ENV)
    if not path and default_file is not None:
        if not default_file.exists():
            with contextlib.suppress(FileExistsError):  # another process made it first
                write_secret_file(str(default_file), MasterKey.generate().hex() + "\n")
        path = str(default_file)
    if not path:
        raise MasterKeyError(
            f"no master key: set {MASTER_KEY_ENV} (64 hex digits, e.g. `openssl rand -hex 32`) or "
            f"{MASTER_KEY_FILE_ENV}; a PostgreSQL database or a key store named by {KEY_STORE_ENV} needs one"
        )
    return master_key_from_file(path, source=MASTER_KEY_FILE_ENV)


def master_key_from_file(path: str, *, source: str) -> MasterKey:
    """The master key held in the file at `path` (hex digits, surrounding whitespace ignored)."""
    try:
        text_in_file = Path(path).expanduser().read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise MasterKeyError(f"{source}: cannot read the master key file {path!r}: {error}") from None
    return MasterKey.from_hex(text_in_file, source=source)


def key_store_location(engine: Engine) -> tuple[str | None, Path | None]:
    """Where `engine`'s key store is: (SQLAlchemy URL, default master key file), or (None, None)
    for an in-memory SQLite database (whose keys live in memory with it).

    `DALA_KEY_STORE` (a path or a SQLAlchemy URL) names it; by default it is the SQLite file
    `<database>.keys` beside a SQLite database, and PostgreSQL needs `DALA_KEY_STORE` set."""
    configured = os.environ.get(KEY_STORE_ENV, "").strip()
    if configured:
        if "://" in configured:
            return configured, None
        path = Path(configured).expanduser()
        return f"sqlite:///{path}", None
    database = engine.url.database
    if engine.dialect.name != "sqlite":
        raise MasterKeyError(
            f"a PostgreSQL database needs a key store of its own: set {KEY_STORE_ENV} (a path or a "
            f"SQLAlchemy URL) and {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV}"
        )
    if database in (None, "", ":memory:"):
        return None, None
    path = Path(f"{Path(database).expanduser()}{KEY_STORE_SUFFIX}")
    return f"sqlite:///{path}", Path(f"{path}{MASTER_KEY_SUFFIX}")


def open_key_store(url: str, master_key: MasterKey) -> SqlKeyStore:
    """The key store at `url`; a SQLite file is created with 0600 permissions and deletes securely."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        engine = create_engine(parsed, connect_args={"timeout": 30})
        configure_key_store_sqlite(engine)
    else:
        engine = create_engine(parsed, pool_pre_ping=True)
    return SqlKeyStore(engine, master_key)


def configured_cipher(engine: Engine) -> LogCipher:
    """The cipher for `engine`'s log: its key store (see `key_store_location`) under the
    configured master key. One per key store and master key in a process (its data keys cached)."""
    found = registered_cipher(engine)
    if found is not None:
        return found
    return _configured_cipher(engine)


def _configured_cipher(engine: Engine) -> LogCipher:
    url, default_master = key_store_location(engine)
    if url is None:
        cipher = LogCipher(MemoryKeyStore())
    else:
        master_key = configured_master_key(default_master)
        with _lock:
            cached = _ciphers.get((url, master_key.key_id))
            if cached is None:
                cached = _ciphers[(url, master_key.key_id)] = LogCipher(open_key_store(url, master_key))
            cipher = cached
    register_cipher(engine, cipher)
    return cipher


def rotate_master_key(engine: Engine, new_master_key: MasterKey) -> int:
    """Re-wrap every data key of `engine`'s key store under `new_master_key` (the event log is
    not touched); returns how many. The configured master key must open the store first."""
    url, default_master = key_store_location(engine)
    if url is None:
        raise MasterKeyError("an in-memory database keeps its keys in memory: there is nothing to rotate")
    master_key = configured_master_key(default_master)
    key_store = open_key_store(url, master_key)
    try:
        count = key_store.rotate(new_master_key)
    finally:
        key_store.engine.dispose()
    with _lock:
        _ciphers.pop((url, master_key.key_id), None)
    if default_master is not None and not os.environ.get(MASTER_KEY_ENV) and not os.environ.get(MASTER_KEY_FILE_ENV):
        # The embedded default keeps the master key in its file: it must now hold the new one.
        replacement = default_master.with_name(default_master.name + ".new")
        replacement.unlink(missing_ok=True)
        write_secret_file(str(replacement), new_master_key.hex() + "\n")
        replacement.replace(default_master)
    return count


def _chosen(log_key: KeyChoice) -> LogKey | None:
    return configured_log_key() if isinstance(log_key, Configured) else log_key


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
        engine = create_engine(url, pool_pre_ping=True, **_JSON_COLUMNS)
        register_cipher(engine, functools.partial(_configured_cipher, engine))
        return engine
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
    # The key store is opened when first needed (a rebuild handed only the engine finds it).
    register_cipher(engine, functools.partial(_configured_cipher, engine))
    return engine


AUTO_REBUILD_ENV = "DALA_AUTO_REBUILD"
MIGRATIONS = "dala_events:migrations"
LOG_SCHEMA_HEAD = "0006"
"""The newest migration of the log (a test keeps it equal to the scripts' head): a database at
this revision is opened without loading Alembic, which costs a tenth of a second of start-up."""
_PG_SETUP_LOCK = 4242001


CipherChoice = LogCipher | Callable[[], LogCipher] | None
"""The cipher a migration that encrypts the log (0005) uses: one, a function that opens one
when it is first needed, or None for the one configured for the migrated database."""


def alembic_config(
    connection: Connection | None = None, *, log_key: KeyChoice = CONFIGURED, cipher: CipherChoice = None
) -> Config:
    """The Alembic configuration of the log's migrations, bound to `connection` if given.

    `log_key` is the key a migration that chains the log (0003, 0005) chains it with; `cipher`
    the cipher 0005 encrypts older events with (see `CipherChoice`).
    """
    from alembic.config import Config  # Alembic is loaded only when migrating (see LOG_SCHEMA_HEAD)

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    if connection is not None:
        config.attributes["connection"] = connection
    if not isinstance(log_key, Configured):
        config.attributes["log_key"] = log_key
    if cipher is not None:
        config.attributes["cipher"] = cipher
    return config


def _cipher_for(engine: Engine, cipher: LogCipher | None) -> CipherChoice:
    """`cipher`, else `engine`'s configured one, opened only if a migration needs it (an
    in-memory database's keys live with its engine, so it is looked up by that engine)."""
    return cipher if cipher is not None else functools.partial(configured_cipher, engine)


def clear_old_row_versions(engine: Engine) -> None:
    """After migration 0005 encrypted events in place, leave no copy of their clear text behind
    where the engine can (`dialects.release_freed_space` on event_log: SQLite checkpoints and
    truncates its WAL, PostgreSQL runs VACUUM; only VACUUM FULL rewrites the table's files, see
    the README). A failure is logged, not raised: the migration is committed."""
    try:
        _log.info("after encrypting old events: %s", release_freed_space(engine, ["event_log"]).done)
    except DBAPIError as error:
        _log.warning("clearing old row versions of event_log after encrypting it failed: %s", error)


def migrate(
    engine: Engine,
    revision: str = "head",
    *,
    downgrade: bool = False,
    log_key: KeyChoice = CONFIGURED,
    cipher: LogCipher | None = None,
) -> str | None:
    """Bring the event log and bookkeeping tables to `revision` (Alembic); returns where they end.

    A database whose event log predates the migrations is stamped with the first revision
    (the same table) before upgrading. Read models are not migrated: they are rebuilt. An
    upgrade through 0003 chains the existing events with `log_key` (by default the
    configured one); one through 0005 encrypts the events written before encryption at rest
    with `cipher` (by default `engine`'s configured one), re-chains them with `log_key`, and
    then clears the old row versions where the engine can (`clear_old_row_versions`).
    """
    done: dict[str, int] = {}
    with write_transaction(engine) as connection:
        _hold_setup_lock(connection)
        reached = _migrate(
            connection,
            revision,
            downgrade=downgrade,
            log_key=_chosen(log_key),
            cipher=_cipher_for(engine, cipher),
            done=done,
        )
    if done.get("events_encrypted"):
        clear_old_row_versions(engine)
    _log.info("event log schema at revision %s", reached or "base")
    return reached


def migrate_in(
    connection: Connection, revision: str, *, log_key: KeyChoice = CONFIGURED, cipher: LogCipher | None = None
) -> str | None:
    """Bring the log's schema to `revision` inside the caller's transaction, down or up as
    needed (a restore's target must first match its backup's schema). Going down still
    refuses to drop a log that holds events. 0005 encrypts with `cipher` (by default the
    connection's database's configured one); clearing old row versions is the caller's, after
    its commit (`clear_old_row_versions`)."""
    _hold_setup_lock(connection)
    order = [entry.revision for entry in reversed(migration_history())]
    current = log_schema_revision(connection)
    target = order[-1] if revision == "head" else revision
    downgrade = current in order and target in order and order.index(current) > order.index(target)
    return _migrate(connection, revision, downgrade=downgrade, log_key=_chosen(log_key), cipher=cipher)


def _migrate(
    connection: Connection,
    revision: str,
    *,
    downgrade: bool = False,
    log_key: LogKey | None = None,
    cipher: CipherChoice = None,
    done: dict[str, int] | None = None,
) -> str | None:
    """Run the migrations to `revision` on `connection`; what 0005 encrypted, if it ran, is
    put in `done` (`events_encrypted`, `streams_rechained`)."""
    from alembic import command  # loaded only when migrating (see LOG_SCHEMA_HEAD)
    from alembic.runtime.migration import MigrationContext
    from alembic.util import CommandError

    config = alembic_config(connection, log_key=log_key, cipher=cipher)
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
    if done is not None:
        done.update(config.attributes.get("log_encryption", {}))
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


def create_tables(
    engine: Engine, *, log_key: KeyChoice = CONFIGURED, cipher: LogCipher | None = None
) -> tuple[str, ...]:
    """Migrate the log to head and create missing read-model tables; returns stale projections.

    Idempotent. A projection is stale when its table definition changed since it was built
    (or it is missing while the log has events): it needs `dala rebuild`. Raises
    LogKeyError when `log_key` (by default the configured one) is not the key the log is
    chained with (see `check_log_key`). Migration 0005 encrypts older events with `cipher`
    (by default `engine`'s configured one); see `migrate`.
    """
    key = _chosen(log_key)
    done: dict[str, int] = {}
    with write_transaction(engine) as connection:
        _hold_setup_lock(connection)
        if log_schema_revision(connection) != LOG_SCHEMA_HEAD:
            _migrate(connection, "head", log_key=key, cipher=_cipher_for(engine, cipher), done=done)
        check_log_key(connection, key)
        stale = ensure_projections(connection)
    if done.get("events_encrypted"):
        clear_old_row_versions(engine)
    return stale


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


def store_for(engine: Engine, *, log_key: KeyChoice = CONFIGURED) -> SqlEventStore:
    """An event store on `engine` that keeps the eight read models up to date inline, chains
    what it appends with `log_key` (by default the configured one) and encrypts each learner's
    payloads with their data key from the configured key store (`configured_cipher`)."""
    return SqlEventStore(
        engine, inline_projectors=[project_events], log_key=_chosen(log_key), cipher=configured_cipher(engine)
    )


def in_memory_store(
    *, log_key: LogKey | None = None, key_store: KeyStore | None = None
) -> tuple[InMemoryEventStore, MemoryReadModels]:
    """An event store in memory and the read models it keeps up to date inline (for tests); its
    payloads encrypted like every store's, with data keys in `key_store` (default: in memory)."""
    read_models = MemoryReadModels()
    cipher = LogCipher(key_store if key_store is not None else MemoryKeyStore())
    return InMemoryEventStore(inline_projectors=[read_models.project], log_key=log_key, cipher=cipher), read_models


def init_db(database_url: str | None = None, *, check_projections: bool = True) -> Engine:
    """Connect, migrate the log, create missing tables, and make this the process default.

    Safe to call on every start. A read model whose definition changed is rebuilt from the log
    when DALA_AUTO_REBUILD allows it (the SQLite default), else SchemaMismatchError says to
    run `dala rebuild`; `check_projections=False` skips that (what `dala rebuild` itself
    uses). The log key is read from the environment here (`configured_log_key`); a key
    other than the one the log is chained with raises LogKeyError. `persistence_manager` and
    `LearnerProfile` use the default unless given a store.
    """
    log_key = configured_log_key()
    engine = create_dala_engine(database_url or configured_database_url())
    try:
        stale = create_tables(engine, log_key=log_key)
        if stale and check_projections:
            if not auto_rebuild_enabled(engine):
                raise stale_error(stale)
            rebuild(engine, projections=stale, log_key=log_key, cipher=configured_cipher(engine))
    except BaseException:
        engine.dispose()
        raise
    _make_default(engine, log_key)
    return engine


def open_db(database_url: str | None = None) -> Engine:
    """Connect to an existing database to read it, and make it the process default.

    Unlike `init_db` this creates, migrates and rebuilds nothing: a missing database is
    DatabaseNotFound, one without the event log or with an older log schema or out-of-date
    read models is SchemaMismatchError saying what to run.
    """
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
    _make_default(engine, configured_log_key())
    return engine


def _make_default(engine: Engine, log_key: LogKey | None) -> None:
    """Make `engine` (and a store on it chaining with `log_key`) the process default, closing
    the previous one."""
    global _default_engine, _default_store
    with _lock:
        previous = _default_engine
        _default_engine, _default_store = engine, store_for(engine, log_key=log_key)
    if previous is not None and previous is not engine:
        previous.dispose()


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
    """`store`, or the process default when none is given: what every `store=` argument means.
    Anything else than an EventStore is InvalidInput naming `store`."""
    if store is None:
        return get_store()
    if not isinstance(store, EventStore):
        raise InvalidInput("store", f"must be an EventStore or None, not {type(store).__name__}")
    return store


def sql_store_or_default(store: EventStore | None) -> SqlEventStore:
    """Like `store_or_default`, for what reads the read-model tables (getters): a SQL store."""
    chosen = store_or_default(store)
    if not isinstance(chosen, SqlEventStore):
        raise InvalidInput("store", f"the read-model getters need a SqlEventStore, not {type(chosen).__name__}")
    return chosen
