"""Where everything of a configured store lives, and what a backup must carry (`dala status`).

`store_status(storage)` says, without creating or changing anything: the database (and whether
it exists), its schema revision against this code's, how many learners and events its log holds
and whether a restore is unfinished; the key store (and whether it exists, its id, the id of the
master key its keys are wrapped with, how many keys and erasures it holds); where the master key
comes from (a variable or a file: never the key, only its id); the log key's id and how the log
is chained; the page folder; and the list of what a backup procedure must carry, each with
where it is and how it is kept. It connects only to a database that exists (a SQLite file is
looked for first), and reads the key store only where one was made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from dala_events.dialects import read_transaction
from dala_events.schema import LOG_SCHEMA_HEAD, log_schema_revision
from dala_events.settings import LOG_KEY_ENV, LOG_KEY_FILE_ENV
from dala_events.store import event_log, log_chain
from dala_events.store.keys import KeyStoreError, MasterKeyError
from dala_events.store.sql import unfinished_restore
from dala_events.wiring import Storage, key_store_exists, key_store_location, key_store_summary, master_key_of


@dataclass
class DatabaseStatus:
    """The event database: where, whether it exists, its revision and what its log holds."""

    url: str
    exists: bool
    schema_revision: str | None = None
    code_revision: str = LOG_SCHEMA_HEAD
    learners: int | None = None
    events: int | None = None
    log_chain: dict[str, Any] | None = None
    restore_unfinished: str | None = None
    problem: str | None = None


@dataclass
class KeyStoreStatus:
    """The key store: where, whether one was made, its ids and what it holds (never a key)."""

    location: str
    exists: bool
    id: str | None = None
    master_key_id: str | None = None
    data_keys: int | None = None
    erasures: int | None = None
    problem: str | None = None


@dataclass
class MasterKeyStatus:
    """Where the master key comes from (a variable or a file, never the key) and its id."""

    source: str
    file: str | None
    present: bool
    id: str | None = None
    opens_key_store: bool | None = None
    problem: str | None = None


@dataclass
class Carried:
    """One thing a backup procedure must carry: what, where it is, how it is kept."""

    what: str
    where: str
    how: str


@dataclass
class StoreStatus:
    """What `dala status` shows (see the module docstring)."""

    database: DatabaseStatus
    key_store: KeyStoreStatus
    master_key: MasterKeyStatus
    log_key_id: str | None
    page_folder: str
    backup: list[Carried] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def problems(self) -> list[str]:
        """What stands in the way of using or restoring the store, each in one line."""
        in_use = self.key_store.exists or bool(self.database.events)
        found = [
            f"{what}: {problem}"
            for what, problem in (
                ("database", self.database.problem),
                ("key store", self.key_store.problem),
                ("master key", self.master_key.problem if in_use else None),
                ("restore", self.database.restore_unfinished),
            )
            if problem is not None
        ]
        if self.database.events and not self.key_store.exists and self.key_store.problem is None:
            found.append("key store: missing, while the log holds events (`dala keys restore FILE`)")
        chained = self.database.log_chain
        if chained is not None and chained.get("key_id") != self.log_key_id:
            found.append(
                f"log key: the log is chained with {chained.get('key_id') or 'no key'}, the configuration gives "
                f"{self.log_key_id or 'none'} ({LOG_KEY_ENV} or {LOG_KEY_FILE_ENV})"
            )
        return found


def store_status(storage: Storage) -> StoreStatus:
    """Where everything of `storage` lives (see the module docstring). Open it as `Mode.RAW_CREATE`
    (`app.Dala.status` does): that connects to nothing, and this connects only where a database
    exists."""
    database = _database(storage)
    key_store = _key_store(storage)
    master = _master_key(storage, key_store)
    log_key = storage.settings.log_key
    log_key_id = None if log_key is None else log_key.key_id
    return StoreStatus(
        database=database,
        key_store=key_store,
        master_key=master,
        log_key_id=log_key_id,
        page_folder=str(storage.page_dir),
        backup=_carried(database, key_store, master, log_key_id),
    )


def _database(storage: Storage) -> DatabaseStatus:
    engine = storage.engine
    url = engine.url.render_as_string(hide_password=True)
    database = engine.url.database
    if engine.dialect.name == "sqlite":
        if database in (None, "", ":memory:"):
            return DatabaseStatus(url, exists=False)
        url = database
        if not Path(database).expanduser().is_file():
            return DatabaseStatus(url, exists=False)
    try:
        with read_transaction(engine) as connection:
            status = DatabaseStatus(url, exists=True, schema_revision=log_schema_revision(connection))
            tables = set(inspect(connection).get_table_names())
            if "event_log" in tables:
                learners, events = connection.execute(
                    select(func.count(func.distinct(event_log.c.learner_id)), func.count())
                ).one()
                status.learners, status.events = int(learners), int(events)
            if "log_chain" in tables:
                chained = connection.execute(select(log_chain.c.mode, log_chain.c.key_id)).first()
                status.log_chain = None if chained is None else {"mode": chained.mode, "key_id": chained.key_id}
            unfinished = unfinished_restore(connection)
            status.restore_unfinished = None if unfinished is None else str(unfinished)
            return status
    except SQLAlchemyError as error:
        first = (str(getattr(error, "orig", None) or error).strip().splitlines() or [type(error).__name__])[0]
        return DatabaseStatus(url, exists=False, problem=f"cannot be read: {first}")


def _key_store(storage: Storage) -> KeyStoreStatus:
    try:
        location = storage.key_store_location()
        url = storage.key_store_url
    except MasterKeyError as error:  # PostgreSQL with no key store configured
        return KeyStoreStatus("none configured", exists=False, problem=str(error))
    if url is None:
        return KeyStoreStatus(location, exists=False, problem="in memory, with an in-memory database")
    try:
        if not key_store_exists(url):
            return KeyStoreStatus(location, exists=False)
        summary = key_store_summary(url)
    except KeyStoreError as error:
        return KeyStoreStatus(location, exists=False, problem=str(error))
    return KeyStoreStatus(location, True, *summary)


def _master_key(storage: Storage, key_store: KeyStoreStatus) -> MasterKeyStatus:
    settings = storage.settings
    status = MasterKeyStatus(storage.master_key_source(), None, present=False)
    default_file: Path | None = None
    if settings.master_key is None and settings.master_key_file is None:
        try:
            default_file = key_store_location(settings, storage.engine)[1]
        except MasterKeyError as error:  # PostgreSQL needs one configured
            status.problem = str(error)
            return status
        if default_file is None:
            status.problem = "in memory, with an in-memory database"
            return status
    file = default_file if settings.master_key is None and default_file is not None else settings.master_key_file
    if settings.master_key is None and file is not None:
        status.file = str(file)
        if not file.is_file():
            status.problem = "the file is missing"
            return status
    try:
        status.id = master_key_of(settings, default_file).key_id
    except MasterKeyError as error:
        status.problem = str(error)
        return status
    status.present = True
    if key_store.master_key_id is not None:
        status.opens_key_store = status.id == key_store.master_key_id
        if not status.opens_key_store:
            status.problem = f"the key store's keys are wrapped with master key {key_store.master_key_id}"
    return status


def _carried(
    database: DatabaseStatus, key_store: KeyStoreStatus, master: MasterKeyStatus, log_key_id: str | None
) -> list[Carried]:
    carried = [
        Carried(
            "the event log and the record of disclosures",
            database.url,
            "`dala backup LOG_FILE --keys KEYS_FILE` (the log, then the keys; safe while the platform writes)",
        ),
        Carried(
            "the learners' data keys",
            key_store.location,
            "the KEYS_FILE of the same command (or `dala keys backup KEYS_FILE`, taken after the log's backup)",
        ),
        Carried(
            "the master key",
            master.source,
            "a copy kept offline, apart from both backup files (a secrets manager, a sealed envelope); "
            "no backup holds it",
        ),
    ]
    if log_key_id is not None:
        carried.append(
            Carried(
                "the log key",
                f"{LOG_KEY_ENV} or {LOG_KEY_FILE_ENV} (id {log_key_id})",
                "a copy kept apart from the backups: a restore and `dala verify` need it",
            )
        )
    return carried
