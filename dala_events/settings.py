"""Settings: everything a configured store is built from, read from the environment in one place.

`Settings.from_env()` reads every `DALA_*` variable the store uses, once, and checks each (a
typo is `InvalidInput` or `MasterKeyError` naming the variable, never a silent default). Tests
and applications that configure the store themselves build `Settings(...)` directly; nothing
else in the package reads the environment for these values.

| variable | field | default |
|---|---|---|
| DALA_DATABASE_URL | database_url | the SQLite file `database/edpsych_connect_dala.db` |
| DALA_LOG_KEY, DALA_LOG_KEY_FILE | log_key | none: the chain is plain SHA-256 |
| DALA_KEY_STORE | key_store | the SQLite file `<database>.keys` beside a SQLite database |
| DALA_MASTER_KEY, DALA_MASTER_KEY_FILE | master_key, master_key_file | the file `<key store>.master` |
| DALA_NEW_MASTER_KEY | new_master_key | none (`dala keys rotate` needs one) |
| DALA_AUTO_REBUILD | auto_rebuild | on for SQLite, off for PostgreSQL |
| DALA_PAGE_DIR | page_dir | `interface/` beside a SQLite database, else `database/interface` |
| DALA_XAPI_HOMEPAGE | xapi_homepage | none (`dala export --format xapi` needs one) |
| DALA_TIME_ZONE | time_zone | UTC |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dala_events.errors import InvalidInput, in_words
from dala_events.store.codec import LogKey
from dala_events.store.keys import MasterKey, MasterKeyError
from dala_events.switches import switch

DATABASE_URL_ENV = "DALA_DATABASE_URL"
LOG_KEY_ENV = "DALA_LOG_KEY"
LOG_KEY_FILE_ENV = "DALA_LOG_KEY_FILE"
KEY_STORE_ENV = "DALA_KEY_STORE"
MASTER_KEY_ENV = "DALA_MASTER_KEY"
MASTER_KEY_FILE_ENV = "DALA_MASTER_KEY_FILE"
NEW_MASTER_KEY_ENV = "DALA_NEW_MASTER_KEY"
AUTO_REBUILD_ENV = "DALA_AUTO_REBUILD"
PAGE_DIR_ENV = "DALA_PAGE_DIR"
XAPI_HOMEPAGE_ENV = "DALA_XAPI_HOMEPAGE"
TIME_ZONE_ENV = "DALA_TIME_ZONE"

DEFAULT_DATABASE_PATH = Path("database") / "edpsych_connect_dala.db"
DEFAULT_DATABASE_URL = f"sqlite:///{DEFAULT_DATABASE_PATH}"
DEFAULT_PAGE_DIR = Path("database") / "interface"
KEY_STORE_SUFFIX = ".keys"
MASTER_KEY_SUFFIX = ".master"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """How to build a configured store (`wiring.Storage`, `app.Dala`): which database, which
    keys, which policies. Immutable; `with_database` gives a copy for another database."""

    database_url: str = DEFAULT_DATABASE_URL
    """A SQLAlchemy URL: `sqlite:///path` (the embedded default) or `postgresql://...`."""
    log_key: LogKey | None = None
    """Keys the log's hash chain (HMAC-SHA256); None: plain SHA-256."""
    key_store: str | None = None
    """Where learners' data keys are: a path (a SQLite file) or a SQLAlchemy URL. None: the file
    `<database>.keys` beside a SQLite database; a PostgreSQL database needs one named."""
    master_key: MasterKey | None = None
    """The key wrapping every data key; None: read from `master_key_file`."""
    master_key_file: Path | None = None
    """A file holding the master key as hex; None: `<key store>.master` beside a default key store."""
    new_master_key: MasterKey | None = None
    """The key `rotate_master_key` re-wraps the data keys under when it is given none."""
    auto_rebuild: bool | None = None
    """Rebuild out-of-date read models at start-up; None: on for SQLite, off for PostgreSQL."""
    page_dir: Path | None = None
    """Where learners' pages are written (and removed on erasure); None: see `pages_folder`."""
    xapi_homepage: str | None = None
    """The account homepage of xAPI statements' actors (checked when an xAPI export runs)."""
    time_zone: tzinfo = UTC
    """The school's time zone: learners' pages show times in it, naming it (a `ZoneInfo`)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the `DALA_*` variables of `environ` (default: `os.environ`), checked."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            return env.get(name, "").strip()

        master_value, master_path = get(MASTER_KEY_ENV), get(MASTER_KEY_FILE_ENV)
        if master_value and master_path:
            raise MasterKeyError(f"set {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV}, not both")
        new_master = get(NEW_MASTER_KEY_ENV)
        return cls(
            database_url=get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL,
            log_key=_log_key(get(LOG_KEY_ENV), get(LOG_KEY_FILE_ENV)),
            key_store=get(KEY_STORE_ENV) or None,
            master_key=MasterKey.from_hex(master_value, source=MASTER_KEY_ENV) if master_value else None,
            master_key_file=Path(master_path).expanduser() if master_path else None,
            new_master_key=MasterKey.from_hex(new_master, source=NEW_MASTER_KEY_ENV) if new_master else None,
            auto_rebuild=switch(AUTO_REBUILD_ENV, get(AUTO_REBUILD_ENV)),
            page_dir=Path(get(PAGE_DIR_ENV)).expanduser() if get(PAGE_DIR_ENV) else None,
            xapi_homepage=get(XAPI_HOMEPAGE_ENV) or None,
            time_zone=_time_zone(get(TIME_ZONE_ENV)),
        )

    def with_database(self, database_url: str | None) -> Settings:
        """These settings for `database_url` instead (unchanged when None): what `--database-url` does."""
        return self if database_url is None else replace(self, database_url=database_url)


def _time_zone(name: str) -> tzinfo:
    """`DALA_TIME_ZONE`: an IANA time zone name (`Europe/London`), from the system's time zone
    database (or the `tzdata` package where the system has none); unset: UTC."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of zones (Europe)
        raise InvalidInput(
            TIME_ZONE_ENV, f"unknown time zone {name!r}: give an IANA name such as Europe/London or America/New_York"
        ) from None


def _log_key(value: str, path: str) -> LogKey | None:
    """`DALA_LOG_KEY` holds the key as hex digits (at least 64: 32 bytes, e.g. `openssl rand -hex
    32`); `DALA_LOG_KEY_FILE` names a file holding the same. Both at once is refused."""
    if value and path:
        raise InvalidInput(LOG_KEY_ENV, f"set {LOG_KEY_ENV} or {LOG_KEY_FILE_ENV}, not both")
    if value:
        return LogKey.from_hex(value, source=LOG_KEY_ENV)
    if path:
        try:
            text_in_file = Path(path).expanduser().read_text(encoding="ascii")
        except OSError as error:
            raise InvalidInput(LOG_KEY_FILE_ENV, f"cannot read the key file {path!r}: {in_words(error)}") from None
        except UnicodeDecodeError:
            raise InvalidInput(LOG_KEY_FILE_ENV, f"the key file {path!r} holds more than hex digits") from None
        return LogKey.from_hex(text_in_file, source=LOG_KEY_FILE_ENV)
    return None


def master_key_from_file(path: Path, *, source: str) -> MasterKey:
    """The master key held in the file at `path` (hex digits, surrounding whitespace ignored)."""
    try:
        text_in_file = path.expanduser().read_text(encoding="ascii")
    except OSError as error:
        raise MasterKeyError(f"{source}: cannot read the master key file {str(path)!r}: {in_words(error)}") from None
    except UnicodeDecodeError:
        raise MasterKeyError(f"{source}: the master key file {str(path)!r} holds more than hex digits") from None
    return MasterKey.from_hex(text_in_file, source=source)
