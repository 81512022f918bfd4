"""Wiring: one configured store built from `Settings`, owning every resource it opens.

`Storage.open(settings)` puts the parts together, in one place: an engine for SQLite or
PostgreSQL, the key store and the cipher under the master key, the log key, the
`SqlEventStore` with `projections.projectors.project_events` run inline in every append, the
log's migrations and the read models' tables, and where learners' pages go. `close()` (or
leaving a `with` block) disposes of both engines; nothing is kept in a module-level registry,
so a closed store leaves nothing alive behind it. Use cases are handed its parts; `app.Dala`
offers them as methods, and `database_setup` keeps the document's process default on top.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import logging
import os
import re
import threading
import unicodedata
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, inspect, make_url, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from dala_events.dialects import configure_key_store_sqlite, configure_sqlite, name_database_faults, read_transaction
from dala_events.errors import DatabaseNotFound, InvalidInput, SchemaMismatchError
from dala_events.events import decode_json, dump_checked_json
from dala_events.schema import LOG_SCHEMA_HEAD, create_tables, log_schema_revision
from dala_events.settings import (
    DEFAULT_PAGE_DIR,
    KEY_STORE_ENV,
    KEY_STORE_SUFFIX,
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    MASTER_KEY_SUFFIX,
    Settings,
    master_key_from_file,
)
from dala_events.store import SqlEventStore, event_log
from dala_events.store.keys import (
    ENCRYPTED_PREFIX,
    KeySnapshot,
    KeyStore,
    KeyStoreError,
    KeyStoreMissing,
    LogCipher,
    MasterKey,
    MasterKeyError,
    MemoryKeyStore,
    SqlKeyStore,
    data_keys,
    erased_keys,
    key_store_info,
    write_secret_file,
)
from dala_events.store.sql import check_log_key, unfinished_restore
from projections.projectors import project_events
from projections.rebuild import rebuild, stale_error, stale_projections

_log = logging.getLogger("dala_events.wiring")

_JSON_COLUMNS: dict[str, Any] = {"json_serializer": dump_checked_json, "json_deserializer": decode_json}

EngineFactory = Callable[..., Engine]
"""Makes an engine from a URL and `create_engine`'s keyword arguments (as `create_engine` does)."""


class Mode(enum.Enum):
    """How `Storage.open` treats the database."""

    CREATE = "create"
    """Set it up: create the file and folder, migrate, create missing tables, rebuild stale
    read models when allowed (`dala init`, `demo`, the process default)."""
    MIGRATE = "migrate"
    """Like CREATE, but leave stale read models as they are."""
    UPGRADE = "upgrade"
    """Like MIGRATE, for an existing database only (what a rebuild opens with): a missing
    SQLite file is DatabaseNotFound, never created."""
    READ = "read"
    """Open an existing, current database; create, migrate and rebuild nothing."""
    RAW = "raw"
    """Connect only, to an existing SQLite file or any server (verify, backup, migrate, keys)."""
    RAW_CREATE = "raw-create"
    """Connect only, creating a SQLite file's folder (restore into a new database)."""


def create_dala_engine(
    database_url: str | URL, *, create: bool = True, postgresql_engine: EngineFactory | None = None
) -> Engine:
    """An engine for `database_url` set up the way the store needs it.

    `postgresql://` URLs use the psycopg 3 driver that ships with the package, through
    `postgresql_engine` when given (`dala_events.aio` passes one that makes the synchronous face
    of an `AsyncEngine` on psycopg's asyncio connection); SQLite
    connections get the pragmas of `configure_sqlite`. With `create` a SQLite file's folder is
    created if missing; without it a missing file is DatabaseNotFound and nothing is created,
    so a typo in a path never looks like a missing learner (the folder is made at the first
    connection, not before). JSON columns are written compact and read back with pydantic-core's
    JSON codec. A failure of the database itself (full, read-only, damaged, the connection lost)
    is raised as DatabaseFault naming it (`dialects.name_database_faults`).
    """
    try:
        url = make_url(database_url)
    except Exception as error:
        raise InvalidInput("database_url", f"not a database URL ({error}); e.g. sqlite:///database/dala.db") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        engine = (postgresql_engine or create_engine)(url, pool_pre_ping=True, **_JSON_COLUMNS)
        name_database_faults(engine)
        return engine
    if backend != "sqlite":
        raise InvalidInput("database_url", f"only sqlite and postgresql are supported, not {backend!r}")
    if url.database in (None, "", ":memory:"):
        # One shared connection, or every checkout would see a different empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False}, **_JSON_COLUMNS)
    else:
        path = Path(url.database).expanduser()
        new = create and not path.exists()
        if not create and not path.is_file():
            raise DatabaseNotFound(str(path))
        engine = create_engine(url, connect_args={"timeout": 30}, **_JSON_COLUMNS)
        if create:
            # The folder is made when the file is (the first connection): a command refused before
            # it connects (a restore whose checks fail) leaves no empty folder behind.
            event.listen(engine, "do_connect", functools.partial(_make_folder, path))
        if new:
            event.listen(engine, "connect", functools.partial(_private_when_new, path), once=True)
    configure_sqlite(engine)
    name_database_faults(engine)
    return engine


def _make_folder(path: Path, *_connecting: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)


def _private_when_new(path: Path, *_connection: Any) -> None:
    """A database file SQLite has just created holds children's data: readable by its owner
    only (0600; its WAL and shared-memory files take the same). An existing file keeps the
    permissions its operator gave it."""
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            os.chmod(path, 0o600)


_KEPT_PAGE_NAME = re.compile(r"[a-z0-9_-]+")
_READABLE_PART_LENGTH = 64


def page_file_name(learner_id: str) -> str:
    """The file name of the learner's page: one file per learner id, whatever the file system.

    A plain id (only `a-z`, `0-9`, `_` and `-`) keeps its name: `student123.html`. Any other id
    becomes `<readable>.<digest>.html`: its lowercase ASCII form (accents dropped, anything else
    `_`, at most 64 characters; `learner` when nothing is left) and the first 16 hex digits of
    the SHA-256 of the id itself, so "Ann" and "ann", "a/b" and "a_b", "." and "..", or two ids
    that only look alike never share a page (a file system that ignores case or normalises
    Unicode included: every name is lowercase ASCII). A kept name holds no `.`, so the two forms
    never meet. Every page path is decided here (`Storage.page_path`, the process default's and
    the async API's, `generate_interface.default_interface_path`), and erasure removes this file.
    """
    if _KEPT_PAGE_NAME.fullmatch(learner_id):
        return f"{learner_id}.html"
    decomposed = unicodedata.normalize("NFKD", learner_id.lower())
    unaccented = "".join(c for c in decomposed if not unicodedata.combining(c))
    readable = re.sub(r"[^a-z0-9_-]+", "_", unaccented).strip("_")[:_READABLE_PART_LENGTH] or "learner"
    digest = hashlib.sha256(learner_id.encode("utf-8")).hexdigest()[:16]
    return f"{readable}.{digest}.html"


def _sqlite_file(engine: Engine) -> Path | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return None
    return Path(database).expanduser()


def key_store_location(settings: Settings, engine: Engine) -> tuple[str | None, Path | None]:
    """Where the key store of `engine`'s log is: (SQLAlchemy URL, default master key file), or
    (None, None) for an in-memory SQLite database (whose keys live in memory with it).

    `settings.key_store` (a path or a SQLAlchemy URL) names it; by default it is the SQLite file
    `<database>.keys` beside a SQLite database, and PostgreSQL needs one named."""
    if settings.key_store:
        if "://" in settings.key_store:
            return settings.key_store, None
        return f"sqlite:///{Path(settings.key_store).expanduser()}", None
    if engine.dialect.name != "sqlite":
        raise MasterKeyError(
            f"a PostgreSQL database needs a key store of its own: set {KEY_STORE_ENV} (a path or a "
            f"SQLAlchemy URL) and {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV}"
        )
    database = _sqlite_file(engine)
    if database is None:
        return None, None
    path = Path(f"{database}{KEY_STORE_SUFFIX}")
    return f"sqlite:///{path}", Path(f"{path}{MASTER_KEY_SUFFIX}")


def master_key_of(settings: Settings, default_file: Path | None, *, create: bool = False) -> MasterKey:
    """The configured master key: `settings.master_key`, else the file `settings.master_key_file`,
    else `default_file` (the embedded default beside the key store), created with a new random
    key and 0600 permissions only when `create` (a key store is being created with it) and it is
    missing; a missing file is otherwise MasterKeyError naming it: a new key never silently
    replaces a lost one."""
    if settings.master_key is not None:
        return settings.master_key
    path = settings.master_key_file
    if path is None and default_file is not None:
        if create and not default_file.exists():
            with contextlib.suppress(FileExistsError):  # another process made it first
                write_secret_file(str(default_file), MasterKey.generate().hex() + "\n")
        elif not default_file.exists():
            key_store = default_file.with_name(default_file.name.removesuffix(MASTER_KEY_SUFFIX))
            if key_store.is_file() and key_store.stat().st_size > 0:
                raise MasterKeyError(
                    f"the master key file {default_file} is missing, but the key store beside it holds data keys "
                    "wrapped by it: restore the file from where you keep the master key (a new key cannot open "
                    "the store); nothing was read or written"
                )
            raise MasterKeyError(
                f"the master key file {default_file} is missing and there is no key store beside it yet: put the "
                f"school's master key there (64 hex digits, from where it is kept apart from the backups), or set "
                f"{MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV}; no backup holds it; nothing was read or written"
            )
        path = default_file
    if path is None:
        raise MasterKeyError(
            f"no master key: set {MASTER_KEY_ENV} (64 hex digits, e.g. `openssl rand -hex 32`) or "
            f"{MASTER_KEY_FILE_ENV}; a PostgreSQL database or a key store named by {KEY_STORE_ENV} needs one"
        )
    return master_key_from_file(path, source=MASTER_KEY_FILE_ENV)


def _key_store_engine(url: str, postgresql_engine: EngineFactory | None = None) -> tuple[Engine, Path | None]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        engine = create_engine(parsed, connect_args={"timeout": 30})
        configure_key_store_sqlite(engine)
        return engine, Path(parsed.database).expanduser()
    if postgresql_engine is not None and parsed.get_backend_name() == "postgresql":
        return postgresql_engine(parsed, pool_pre_ping=True), None
    return create_engine(parsed, pool_pre_ping=True), None


def key_store_exists(url: str, *, postgresql_engine: EngineFactory | None = None) -> bool:
    """Whether a key store was ever created at `url`: a non-empty SQLite file, or a database
    holding the key store's tables. KeyStoreError, naming it, when that cannot be told.
    `postgresql_engine`: as in `create_dala_engine`."""
    engine, path = _key_store_engine(url, postgresql_engine)
    location = str(path) if path is not None else engine.url.render_as_string(hide_password=True)
    try:
        if path is not None:
            return path.is_file() and path.stat().st_size > 0
        with engine.connect() as connection:
            return inspect(connection).has_table("key_store_info")
    except (SQLAlchemyError, OSError) as error:
        raise KeyStoreError(f"the key store {location} cannot be reached: {str(error).splitlines()[0]}") from error
    finally:
        engine.dispose()


def key_store_summary(url: str) -> tuple[str | None, str | None, int, int]:
    """What the key store at `url` (one that exists) says of itself, read only: its id, the id
    of the master key its keys are wrapped with, how many data keys and erasures it holds.
    KeyStoreError, naming it, when it cannot be read."""
    engine, path = _key_store_engine(url)
    location = str(path) if path is not None else engine.url.render_as_string(hide_password=True)
    try:
        with read_transaction(engine) as connection:
            rows = connection.execute(select(key_store_info.c.name, key_store_info.c.value))
            info = {name: value for name, value in rows}
            keys = connection.execute(select(func.count()).select_from(data_keys)).scalar_one()
            erasures = connection.execute(select(func.count()).select_from(erased_keys)).scalar_one()
        return info.get("store_id"), info.get("master_key_id"), int(keys), int(erasures)
    except (SQLAlchemyError, OSError) as error:
        raise KeyStoreError(f"the key store {location} cannot be read: {str(error).splitlines()[0]}") from error
    finally:
        engine.dispose()


def open_key_store(url: str, master_key: MasterKey, *, postgresql_engine: EngineFactory | None = None) -> SqlKeyStore:
    """The key store at `url` (created when missing: a SQLite file with 0600 permissions, which
    deletes securely). Whether it may be created is the caller's decision (`Storage.key_store`).
    `postgresql_engine`: as in `create_dala_engine`, for a PostgreSQL key store (a SQLite
    file's few, short statements keep the standard driver)."""
    engine, path = _key_store_engine(url, postgresql_engine)
    try:
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            except OSError as error:
                raise KeyStoreError(f"the key store {path} cannot be opened: {error.strerror or error}") from error
        return SqlKeyStore(engine, master_key, location=None if path is None else str(path))
    except BaseException:
        engine.dispose()
        raise


def _replace_durably(source: Path, target: Path) -> None:
    """Rename `source` over `target` and make the rename itself durable (the folder synced)."""
    source.replace(target)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class NoKeyStore(KeyStore):
    """Where there is no key store and none may be made (a database opened to read whose log
    holds nothing encrypted): no learner has a key, and making one is refused."""

    def __init__(self, location: str) -> None:
        super().__init__(MasterKey.generate())
        self.location = location

    def _load(self, learner_id: str) -> bytes | None:
        return None

    def erased_at(self, learner_id: str) -> datetime | None:
        return None

    def _store_new(self, learner_id: str, wrapped: bytes) -> bytes:
        raise KeyStoreMissing(
            f"no key store at {self.location}: the database was opened to read only (open it to write, "
            "e.g. `dala init`, to create one)"
        )

    def _rewrap(self, rewrap: object, new_key_id: str) -> int:
        return 0

    def snapshot(self) -> KeySnapshot:
        return KeySnapshot(store_id="none", master_key_id="none", keys=[], tombstones=[])

    def _destroy(self, learner_id: str, at: datetime) -> bool:
        raise KeyStoreMissing(f"no key store at {self.location}: there is no key to destroy")


class Storage:
    """A configured store: the engine, the key store and cipher, the log key, the event store
    with its inline projections, and the pages' folder, built from one `Settings`.

    Build it with `Storage.open(settings, mode)`; `close()` frees everything it opened.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        may_create_keys: bool = True,
        postgresql_engine: EngineFactory | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.postgresql_engine = postgresql_engine
        """How a PostgreSQL key store's engine is made (see `create_dala_engine`): None, the
        standard one."""
        self.may_create_keys = may_create_keys
        """Whether a missing key store may be created (for a log holding nothing encrypted)."""
        self.log_key = settings.log_key
        self.closed = False
        self._lock = threading.Lock()
        self._key_store: KeyStore | None = None
        self._cipher: LogCipher | None = None
        self._store: SqlEventStore | None = None

    @property
    def key_store(self) -> KeyStore:
        """The learners' data keys (see `key_store_location`), opened on first use: what only
        checks or copies the log (verify, backup) never opens it.

        A key store (and the embedded default's master key file) is created only where none
        exists, `may_create_keys` allows it, and the log holds no encrypted event. Where the log
        holds encrypted events and the key store is missing, KeyStoreMissing names it and the
        learners it would decrypt; nothing is created or written."""
        with self._lock:
            if self._key_store is None:
                self._key_store = self._open_key_store()
            return self._key_store

    def _open_key_store(self) -> KeyStore:
        url, default_master = key_store_location(self.settings, self.engine)
        if url is None:
            return MemoryKeyStore()
        location = self.key_store_location()
        if key_store_exists(url, postgresql_engine=self.postgresql_engine):
            master_key = master_key_of(self.settings, default_master)
            try:
                return open_key_store(url, master_key, postgresql_engine=self.postgresql_engine)
            except MasterKeyError as refused:
                return self._finish_rotation(url, default_master, refused)
        encrypted = self.encrypted_learners(limit=10)
        if encrypted:
            shown = ", ".join(repr(name) for name in encrypted) + (", ..." if len(encrypted) == 10 else "")
            raise KeyStoreMissing(
                f"the key store {location} is missing, and the event log holds encrypted events (learners "
                f"{shown}): restore the key store from its backup (`dala keys restore`) or point "
                f"{KEY_STORE_ENV} at it; nothing was created or written"
            )
        if not self.may_create_keys:
            return NoKeyStore(location)
        master_key = master_key_of(self.settings, default_master, create=True)
        return open_key_store(url, master_key, postgresql_engine=self.postgresql_engine)

    def key_store_to_restore_into(self) -> SqlKeyStore:
        """The key store, opened or created to restore a key backup into, whatever the log holds
        (the one way a key store is made beside encrypted events). The master key must be the
        one the backup's keys are wrapped with, so it is never generated here: a missing master
        key file is MasterKeyError naming it."""
        with self._lock:
            if isinstance(self._key_store, SqlKeyStore):
                return self._key_store
            url, default_master = key_store_location(self.settings, self.engine)
            if url is None:
                raise KeyStoreError("an in-memory database keeps its keys in memory: there is nothing to restore into")
            key_store = open_key_store(
                url, master_key_of(self.settings, default_master), postgresql_engine=self.postgresql_engine
            )
            self._key_store = key_store
            return key_store

    def encrypted_learners(self, *, limit: int | None = None) -> list[str]:
        """Learners with at least one encrypted event in the log (at most `limit` of them)."""
        with read_transaction(self.engine) as connection:
            if not inspect(connection).has_table("event_log"):
                return []
            query = (
                select(event_log.c.learner_id)
                .where(event_log.c.payload.startswith(ENCRYPTED_PREFIX, autoescape=True))
                .distinct()
                .order_by(event_log.c.learner_id)
            )
            if limit is not None:
                query = query.limit(limit)
            return list(connection.execute(query).scalars())

    def key_store_location(self) -> str:
        """Where the key store is, for people: a file path, a URL without its password, or
        "in memory"."""
        url = key_store_location(self.settings, self.engine)[0]
        if url is None:
            return "in memory"
        return make_url(url).render_as_string(hide_password=True).removeprefix("sqlite:///")

    def master_key_source(self) -> str:
        """Where the master key comes from, for people (never the key itself): the variable
        DALA_MASTER_KEY, the file DALA_MASTER_KEY_FILE names, or the embedded default's file."""
        if self.settings.master_key is not None:
            return f"the variable {MASTER_KEY_ENV}"
        if self.settings.master_key_file is not None:
            return str(self.settings.master_key_file)
        try:
            default_file = key_store_location(self.settings, self.engine)[1]
        except MasterKeyError:
            return f"none: set {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV}"
        return "in memory" if default_file is None else str(default_file)

    @property
    def key_store_url(self) -> str | None:
        """Where the key store is (a SQLAlchemy URL; None: in memory with an in-memory database)."""
        return key_store_location(self.settings, self.engine)[0]

    @property
    def cipher(self) -> LogCipher:
        """Encrypts and decrypts each learner's payloads with their data key (caches the keys)."""
        if self._cipher is None:
            key_store = self.key_store
            with self._lock:
                if self._cipher is None:
                    self._cipher = LogCipher(key_store)
        return self._cipher

    @property
    def store(self) -> SqlEventStore:
        """The event store: chains with the log key, encrypts with the cipher, and keeps the
        eight read models up to date inline in every append."""
        if self._store is None:
            cipher = self.cipher
            with self._lock:
                if self._store is None:
                    self._store = SqlEventStore(
                        self.engine, inline_projectors=[project_events], log_key=self.log_key, cipher=cipher
                    )
        return self._store

    def open_cipher(self) -> LogCipher:
        """`cipher`, as a function: what a migration that may need it is handed (opened only if used)."""
        return self.cipher

    @classmethod
    def open(
        cls,
        settings: Settings | None = None,
        mode: Mode = Mode.CREATE,
        *,
        postgresql_engine: EngineFactory | None = None,
    ) -> Storage:
        """Connect to `settings.database_url` (default settings: `Settings.from_env()`) as `mode` says.

        CREATE migrates the log, creates missing tables and rebuilds stale read models when
        `settings.auto_rebuild` allows it (the SQLite default), else SchemaMismatchError says to
        run `dala rebuild`; READ refuses a missing, unmigrated or stale database
        (DatabaseNotFound, SchemaMismatchError) and changes nothing; RAW only connects. A log
        key other than the one the log is chained with, or none for a keyed log, is LogKeyError
        in every mode but RAW, before anything is read: every read checks the events' links,
        which would all fail and read as forgery (`integrity.verify_log`, which opens RAW,
        checks the same first).
        `postgresql_engine` makes the engines of a PostgreSQL log and key store (see
        `create_dala_engine`: how `dala_events.aio` puts them on psycopg's asyncio connections).
        """
        settings = Settings.from_env() if settings is None else settings
        engine = create_dala_engine(
            settings.database_url,
            create=mode in (Mode.CREATE, Mode.MIGRATE, Mode.RAW_CREATE),
            postgresql_engine=postgresql_engine,
        )
        storage = cls(
            settings,
            engine,
            may_create_keys=mode in (Mode.CREATE, Mode.MIGRATE, Mode.UPGRADE, Mode.RAW_CREATE),
            postgresql_engine=postgresql_engine,
        )
        try:
            if mode in (Mode.CREATE, Mode.MIGRATE, Mode.UPGRADE):
                storage._set_up(rebuild_stale=mode is Mode.CREATE)
            elif mode is Mode.READ:
                storage._check_current()
            if mode in (Mode.CREATE, Mode.MIGRATE, Mode.UPGRADE, Mode.READ):
                storage.key_store  # noqa: B018 - a wrong master key is refused at start, not at the first read
        except BaseException:
            storage.close()
            raise
        return storage

    def _set_up(self, *, rebuild_stale: bool) -> None:
        stale = create_tables(self.engine, log_key=self.log_key, cipher=self.open_cipher)
        if not rebuild_stale:
            return
        if stale and not self.rebuilds_on_start:
            raise stale_error(stale)
        if stale:
            rebuild(self.engine, projections=stale, log_key=self.log_key, cipher=self.cipher)

    def _check_current(self) -> None:
        with read_transaction(self.engine) as connection:
            revision = log_schema_revision(connection)
            if revision is None and "event_log" not in inspect(connection).get_table_names():
                raise DatabaseNotFound(
                    self.engine.url.render_as_string(hide_password=True),
                    "the database holds no DALA event log; create one with `dala init`",
                )
            if revision != LOG_SCHEMA_HEAD:
                raise SchemaMismatchError(
                    f"the event log's schema is at revision {revision or 'none'}, this code needs "
                    f"{LOG_SCHEMA_HEAD}; run `dala migrate`"
                )
            check_log_key(connection, self.log_key)
            unfinished = unfinished_restore(connection, table_known=True)
            if unfinished is not None:
                raise unfinished
            stale = stale_projections(connection)
        if stale:
            raise stale_error(stale)

    @property
    def rebuilds_on_start(self) -> bool:
        """Whether opening it rebuilds stale read models itself: `settings.auto_rebuild`, by
        default on for SQLite (embedded, one application) and off for PostgreSQL (a shared
        server, where a rebuild is an operator's decision)."""
        if self.settings.auto_rebuild is not None:
            return self.settings.auto_rebuild
        return self.engine.dialect.name == "sqlite"

    @property
    def page_dir(self) -> Path:
        """Where learners' pages go: `settings.page_dir`, else `interface/` beside a SQLite
        database file, else `database/interface` under the working directory."""
        if self.settings.page_dir is not None:
            return self.settings.page_dir
        database = _sqlite_file(self.engine)
        return DEFAULT_PAGE_DIR if database is None else database.parent / "interface"

    def page_path(self, learner_id: str) -> Path:
        """Where the learner's page goes: `<page_dir>/<page_file_name(learner_id)>`."""
        return self.page_dir / page_file_name(learner_id)

    def rotate_master_key(self, new_master_key: MasterKey | None = None) -> int:
        """Re-wrap every data key under `new_master_key` (default: `settings.new_master_key`)
        without touching the event log; returns how many. The configured master key must open
        the key store first. Where the master key lives in the embedded default file, the file
        then holds the new key; elsewhere, configure the new key where the old one was.

        With the default file the two steps are made recoverable: the new key is first written,
        durably, to `<master>.new`; then the key store is re-wrapped (one transaction); then the
        file is renamed over the old one. A rotation stopped between the last two is finished by
        the next open (`_finish_rotation`), so nobody is locked out."""
        new_key = new_master_key if new_master_key is not None else self.settings.new_master_key
        if new_key is None:
            raise MasterKeyError("give the new master key (--new-master-key-file or DALA_NEW_MASTER_KEY)")
        url, default_master = key_store_location(self.settings, self.engine)
        if url is None:
            raise MasterKeyError("an in-memory database keeps its keys in memory: there is nothing to rotate")
        key_store = self.key_store
        pending = self._pending_master_file(default_master)
        if pending is not None:
            pending.unlink(missing_ok=True)
            write_secret_file(str(pending), new_key.hex() + "\n", durable=True)
        count = key_store.rotate(new_key)
        if pending is not None and default_master is not None:
            _replace_durably(pending, default_master)
        return count

    def _pending_master_file(self, default_master: Path | None) -> Path | None:
        """Where a rotation keeps the new master key until the key store holds it: beside the
        embedded default's file (None when the master key is configured elsewhere)."""
        if default_master is None or self.settings.master_key is not None or self.settings.master_key_file is not None:
            return None
        return default_master.with_name(default_master.name + ".new")

    def _finish_rotation(self, url: str, default_master: Path | None, refused: MasterKeyError) -> SqlKeyStore:
        """The key store, when the master key file refused by it belongs to a rotation stopped
        after the key store took the new key: the pending new key opens it, and it replaces the
        old file. Otherwise `refused` is raised."""
        pending = self._pending_master_file(default_master)
        if pending is None or default_master is None or not pending.is_file():
            raise refused
        master_key = master_key_from_file(pending, source=str(pending))
        key_store = open_key_store(url, master_key, postgresql_engine=self.postgresql_engine)
        _replace_durably(pending, default_master)
        _log.warning("finished a master key rotation that stopped before %s was replaced", default_master)
        return key_store

    def close(self) -> None:
        """Close every connection of the database and of the key store. Idempotent."""
        self.closed = True
        self.engine.dispose()
        if isinstance(self._key_store, SqlKeyStore):
            self._key_store.engine.dispose()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Storage {self.engine.url.render_as_string(hide_password=True)} ({state})>"
