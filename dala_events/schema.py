"""The log's schema: Alembic migrations of the event log and bookkeeping tables, and the
read-model tables created where missing.

Used by the wiring (`wiring.Storage` migrates and checks at start-up), `dala migrate` and
restores. The log key a migration chains with (0003, 0005) and the cipher 0005 encrypts older
events with are always handed in: nothing here reads the environment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from dala_events.dialects import release_freed_space, write_transaction
from dala_events.errors import DatabaseFault, InvalidInput
from dala_events.store import LogKey
from dala_events.store.keys import LogCipher
from dala_events.store.sql import check_log_key, unfinished_restore
from projections.rebuild import ensure_projections

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

_log = logging.getLogger("dala_events.schema")

MIGRATIONS = "dala_events:migrations"
LOG_SCHEMA_HEAD = "0010"
"""The newest migration of the log (a test keeps it equal to the scripts' head): a database at
this revision is opened without loading Alembic, which costs a tenth of a second of start-up."""
_PG_SETUP_LOCK = 4242001

CipherChoice = LogCipher | Callable[[], LogCipher] | None
"""The cipher a migration that encrypts the log (0005) uses: one, a function that opens one
when it is first needed, or None where the log holds nothing to encrypt (0005 refuses to run
on events in the clear without one)."""


def alembic_config(
    connection: Connection | None = None, *, log_key: LogKey | None = None, cipher: CipherChoice = None
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
        config.attributes["log_key"] = log_key
    if cipher is not None:
        config.attributes["cipher"] = cipher
    return config


def clear_old_row_versions(engine: Engine) -> None:
    """After migration 0005 encrypted events in place, leave no copy of their clear text behind
    where the engine can (`dialects.release_freed_space` on event_log: SQLite checkpoints and
    truncates its WAL, PostgreSQL runs VACUUM; only VACUUM FULL rewrites the table's files, see
    the README). A failure is logged, not raised: the migration is committed."""
    try:
        _log.info("after encrypting old events: %s", release_freed_space(engine, ["event_log"]).done)
    except (DBAPIError, DatabaseFault) as error:
        _log.warning("clearing old row versions of event_log after encrypting it failed: %s", error)


def migrate(
    engine: Engine,
    revision: str = "head",
    *,
    downgrade: bool = False,
    log_key: LogKey | None = None,
    cipher: CipherChoice = None,
) -> str | None:
    """Bring the event log and bookkeeping tables to `revision` (Alembic); returns where they end.

    A database whose event log predates the migrations is stamped with the first revision
    (the same table) before upgrading. Read models are not migrated: they are rebuilt. An
    upgrade through 0003 chains the existing events with `log_key`; one through 0005 encrypts
    the events written before encryption at rest with `cipher`, re-chains them with `log_key`,
    and then clears the old row versions where the engine can (`clear_old_row_versions`).
    """
    done: dict[str, int] = {}
    with write_transaction(engine) as connection:
        _hold_setup_lock(connection)
        reached = _migrate(connection, revision, downgrade=downgrade, log_key=log_key, cipher=cipher, done=done)
    if done.get("events_encrypted"):
        clear_old_row_versions(engine)
    _log.info("event log schema at revision %s", reached or "base")
    return reached


def migrate_in(
    connection: Connection, revision: str, *, log_key: LogKey | None = None, cipher: CipherChoice = None
) -> str | None:
    """Bring the log's schema to `revision` inside the caller's transaction, down or up as
    needed (a restore's target must first match its backup's schema). Going down still
    refuses to drop a log that holds events. 0005 encrypts with `cipher`; clearing old row
    versions is the caller's, after its commit (`clear_old_row_versions`)."""
    _hold_setup_lock(connection)
    order = [entry.revision for entry in reversed(migration_history())]
    current = log_schema_revision(connection)
    target = order[-1] if revision == "head" else revision
    downgrade = current in order and target in order and order.index(current) > order.index(target)
    return _migrate(connection, revision, downgrade=downgrade, log_key=log_key, cipher=cipher)


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


def create_tables(engine: Engine, *, log_key: LogKey | None = None, cipher: CipherChoice = None) -> tuple[str, ...]:
    """Migrate the log to head and create missing read-model tables; returns stale projections.

    Idempotent. A projection is stale when its table definition changed since it was built
    (or it is missing while the log has events): it needs `dala rebuild`. Raises
    LogKeyError when `log_key` is not the key the log is chained with (see `check_log_key`),
    and RestoreUnfinished while a restore is not finished (see `app.Dala.restore`).
    Migration 0005 encrypts older events with `cipher`; see `migrate`.
    """
    done: dict[str, int] = {}
    with write_transaction(engine) as connection:
        _hold_setup_lock(connection)
        if log_schema_revision(connection) != LOG_SCHEMA_HEAD:
            _migrate(connection, "head", log_key=log_key, cipher=cipher, done=done)
        check_log_key(connection, log_key)
        unfinished = unfinished_restore(connection, table_known=True)
        if unfinished is not None:
            raise unfinished
        stale = ensure_projections(connection)
    if done.get("events_encrypted"):
        clear_old_row_versions(engine)
    return stale
