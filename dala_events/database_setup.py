"""The document's set-up functions (`init_db`, `get_engine`, ...) over a process default store.

The document's module-level API (`persistence_manager.*`, `get_or_create_learner_profile`)
works without being handed a store: it uses the process default made here, a
`wiring.Storage` built from `Settings.from_env()` by `init_db` (or on first use). This module
is only that default and thin forms of the wiring for code written against the document;
applications that open several databases, and tests, build their own `app.Dala` or
`wiring.Storage` from `Settings` and close it.

The database is chosen, in order, by the `database_url` argument, the `DALA_DATABASE_URL`
environment variable, or the embedded default `database/edpsych_connect_dala.db` relative to
the working directory.
"""

from __future__ import annotations

import enum
import threading
from pathlib import Path

from sqlalchemy import Engine

from dala_events.errors import InvalidInput
from dala_events.schema import (
    LOG_SCHEMA_HEAD,
    alembic_config,
    clear_old_row_versions,
    log_schema_revision,
    migrate_in,
    migration_history,
)
from dala_events.schema import (
    create_tables as _create_tables,
)
from dala_events.schema import (
    migrate as _migrate,
)
from dala_events.settings import DATABASE_URL_ENV, DEFAULT_DATABASE_PATH, Settings
from dala_events.store import EventStore, InMemoryEventStore, LogKey, SqlEventStore
from dala_events.store.keys import KeyStore, LogCipher, MasterKey, MasterKeyError, MemoryKeyStore
from dala_events.wiring import Mode, Storage, create_dala_engine, master_key_of, open_key_store
from dala_events.wiring import key_store_location as _key_store_location
from projections.memory import MemoryReadModels

__all__ = [
    "CONFIGURED",
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_PATH",
    "LOG_SCHEMA_HEAD",
    "alembic_config",
    "clear_old_row_versions",
    "close_db",
    "configured_cipher",
    "configured_database_url",
    "configured_log_key",
    "create_dala_engine",
    "create_tables",
    "default_storage",
    "get_engine",
    "get_store",
    "in_memory_store",
    "init_db",
    "log_schema_revision",
    "migrate",
    "migrate_in",
    "migration_history",
    "open_db",
    "rotate_master_key",
    "sql_store_or_default",
    "store_for",
    "store_or_default",
]

_lock = threading.RLock()
_default: Storage | None = None


class Configured(enum.Enum):
    """`KEY`: the log key the environment configures (`Settings.from_env().log_key`)."""

    KEY = "configured"


CONFIGURED = Configured.KEY
KeyChoice = LogKey | None | Configured
"""A log key, None for none (plain SHA-256), or CONFIGURED: whatever the environment says."""


def _chosen(log_key: KeyChoice) -> LogKey | None:
    return Settings.from_env().log_key if isinstance(log_key, Configured) else log_key


def configured_database_url() -> str:
    """The URL `init_db()` uses when given none: DALA_DATABASE_URL, or the embedded SQLite file."""
    return Settings.from_env().database_url


def configured_log_key() -> LogKey | None:
    """The log key the environment configures (DALA_LOG_KEY or DALA_LOG_KEY_FILE), or None."""
    return Settings.from_env().log_key


def _settings(database_url: str | None) -> Settings:
    return Settings.from_env().with_database(database_url)


def init_db(database_url: str | None = None, *, check_projections: bool = True) -> Engine:
    """Connect, migrate the log, create missing tables, and make this the process default.

    Safe to call on every start. A read model whose definition changed is rebuilt from the log
    when DALA_AUTO_REBUILD allows it (the SQLite default), else SchemaMismatchError says to
    run `dala rebuild`; `check_projections=False` skips that. A log key other than the one the
    log is chained with raises LogKeyError. `persistence_manager` and `LearnerProfile` use the
    default unless given a store.
    """
    storage = Storage.open(_settings(database_url), Mode.CREATE if check_projections else Mode.MIGRATE)
    _make_default(storage)
    return storage.engine


def open_db(database_url: str | None = None) -> Engine:
    """Connect to an existing database to read it, and make it the process default.

    Unlike `init_db` this creates, migrates and rebuilds nothing: a missing database is
    DatabaseNotFound, one without the event log or with an older log schema or out-of-date
    read models is SchemaMismatchError saying what to run.
    """
    storage = Storage.open(_settings(database_url), Mode.READ)
    _make_default(storage)
    return storage.engine


def _make_default(storage: Storage) -> None:
    """Make `storage` the process default, closing the previous one."""
    global _default
    with _lock:
        previous, _default = _default, storage
    if previous is not None and previous is not storage:
        previous.close()


def close_db() -> None:
    """Forget the process default and close its connections (and its key store's)."""
    global _default
    with _lock:
        storage, _default = _default, None
    if storage is not None:
        storage.close()


def default_storage() -> Storage:
    """The process default configured store, set up by `init_db()` on first use."""
    with _lock:
        if _default is None:
            init_db()
        assert _default is not None
        return _default


def get_engine() -> Engine:
    """The process default engine, set up by `init_db()` on first use if nobody called it yet."""
    return default_storage().engine


def get_store() -> SqlEventStore:
    """The process default EventStore (see `get_engine`)."""
    return default_storage().store


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


def _storage_on(engine: Engine) -> Storage:
    """The process default when it is on `engine`, else a configured store around `engine`
    (its key store closed when it is garbage collected: prefer `Storage.open` and `close`)."""
    with _lock:
        if _default is not None and _default.engine is engine:
            return _default
    return Storage(Settings.from_env().with_database(engine.url.render_as_string(hide_password=False)), engine)


def store_for(engine: Engine, *, log_key: KeyChoice = CONFIGURED) -> SqlEventStore:
    """An event store on `engine` that keeps the eight read models up to date inline, chains
    what it appends with `log_key` (by default the configured one) and encrypts each learner's
    payloads with their data key from the configured key store."""
    storage = _storage_on(engine)
    if isinstance(log_key, Configured) or log_key == storage.log_key:
        return storage.store
    return SqlEventStore(
        engine, inline_projectors=storage.store.inline_projectors, log_key=log_key, cipher=storage.cipher
    )


def configured_cipher(engine: Engine) -> LogCipher:
    """The cipher of `engine`'s log under the configured key store and master key."""
    return _storage_on(engine).cipher


def create_tables(
    engine: Engine, *, log_key: KeyChoice = CONFIGURED, cipher: LogCipher | None = None
) -> tuple[str, ...]:
    """`schema.create_tables` with the configured log key and `engine`'s configured cipher by default."""
    return _create_tables(
        engine, log_key=_chosen(log_key), cipher=cipher if cipher is not None else _storage_on(engine).open_cipher
    )


def migrate(
    engine: Engine,
    revision: str = "head",
    *,
    downgrade: bool = False,
    log_key: KeyChoice = CONFIGURED,
    cipher: LogCipher | None = None,
) -> str | None:
    """`schema.migrate` with the configured log key and `engine`'s configured cipher by default."""
    return _migrate(
        engine,
        revision,
        downgrade=downgrade,
        log_key=_chosen(log_key),
        cipher=cipher if cipher is not None else _storage_on(engine).open_cipher,
    )


def rotate_master_key(engine: Engine, new_master_key: MasterKey) -> int:
    """Re-wrap every data key of `engine`'s key store under `new_master_key` (see
    `wiring.Storage.rotate_master_key`)."""
    return _storage_on(engine).rotate_master_key(new_master_key)


def key_store_location(engine: Engine) -> tuple[str | None, Path | None]:
    """Where the configured key store of `engine`'s log is (see `wiring.key_store_location`)."""
    return _key_store_location(Settings.from_env(), engine)


def in_memory_store(
    *, log_key: LogKey | None = None, key_store: KeyStore | None = None
) -> tuple[InMemoryEventStore, MemoryReadModels]:
    """An event store in memory and the read models it keeps up to date inline (for tests); its
    payloads encrypted like every store's, with data keys in `key_store` (default: in memory)."""
    read_models = MemoryReadModels()
    cipher = LogCipher(key_store if key_store is not None else MemoryKeyStore())
    return InMemoryEventStore(inline_projectors=[read_models.project], log_key=log_key, cipher=cipher), read_models


# The wiring's helpers under the names code written against this module used.
__all__ += ["MasterKeyError", "key_store_location", "master_key_of", "open_key_store"]
