"""Alembic environment of the event log and its bookkeeping tables.

The read models are not migrated: they are projections, rebuilt from the log when their
definitions change (`dala rebuild`). `dala migrate` and `init_db` hand in a connection inside
their own transaction; `alembic upgrade head` from the repository root connects to
`DALA_DATABASE_URL` (or the embedded SQLite default) itself.

What autogenerate (`alembic check`, `alembic revision --autogenerate`) compares: every table the
migrations own (`LOG_METADATA`: the log, its bookkeeping, the record of disclosures, the
subscriptions' checkpoints) against the database, leaving out by name the tables no migration
makes: the eight read models and a rebuild's shadows of them (SQLite; PostgreSQL keeps those in
a schema of their own, which is not compared), and a key store's tables where one shares the
database. Otherwise Alembic would propose to drop them, the read models with the rest. An index
made on PostgreSQL only (`COMMIT_ORDER_INDEX`) is compared there only.
"""

from __future__ import annotations

from alembic import context

from dala_events.dialects import write_transaction
from dala_events.settings import Settings
from dala_events.store import LOG_METADATA
from dala_events.store.keys import data_keys
from dala_events.store.sql import COMMIT_ORDER_INDEX
from dala_events.wiring import Mode, Storage
from projections.catalog import projection_names
from projections.rebuild import SHADOW_SUFFIX

config = context.config
target_metadata = LOG_METADATA

NOT_MIGRATED = frozenset(
    [*projection_names(), *(f"{name}{SHADOW_SUFFIX}" for name in projection_names()), *data_keys.metadata.tables]
)
"""The tables of the database no migration owns, left out of autogenerate's comparison."""


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """Whether autogenerate compares the named object: everything but `NOT_MIGRATED` tables."""
    return not (type_ == "table" and name in NOT_MIGRATED)


def include_object(item: object, name: str | None, type_: str, reflected: bool, _compare_to: object) -> bool:
    """Whether autogenerate compares a declared object: not an index made on another database only."""
    return not (
        type_ == "index"
        and not reflected
        and name == COMMIT_ORDER_INDEX.name
        and context.get_context().dialect.name != "postgresql"
    )


def run_offline() -> None:
    """Print the SQL instead of running it (`alembic upgrade head --sql`)."""
    url = config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url
    context.configure(
        url=url,
        target_metadata=target_metadata,
        include_name=include_name,
        include_object=include_object,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the caller's connection, or on a new engine for the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_name=include_name,
            include_object=include_object,
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    # `alembic upgrade` from the repository root: the configured database, log key and key store.
    settings = Settings.from_env().with_database(config.get_main_option("sqlalchemy.url") or None)
    with Storage.open(settings, Mode.RAW_CREATE) as storage, write_transaction(storage.engine) as own:
        config.attributes["log_key"] = settings.log_key
        config.attributes["cipher"] = storage.open_cipher
        context.configure(
            connection=own,
            target_metadata=target_metadata,
            include_name=include_name,
            include_object=include_object,
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
