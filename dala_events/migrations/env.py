"""Alembic environment of the event log and its bookkeeping tables.

The read models are not migrated: they are projections, rebuilt from the log when their
definitions change (`dala rebuild`). `dala migrate` and `init_db` hand in a connection inside
their own transaction; `alembic upgrade head` from the repository root connects to
`DALA_DATABASE_URL` (or the embedded SQLite default) itself.
"""

from __future__ import annotations

from alembic import context

from dala_events.dialects import write_transaction
from dala_events.settings import Settings
from dala_events.store import LOG_METADATA
from dala_events.wiring import Mode, Storage

config = context.config
target_metadata = LOG_METADATA


def run_offline() -> None:
    """Print the SQL instead of running it (`alembic upgrade head --sql`)."""
    url = config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the caller's connection, or on a new engine for the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    # `alembic upgrade` from the repository root: the configured database, log key and key store.
    settings = Settings.from_env().with_database(config.get_main_option("sqlalchemy.url") or None)
    with Storage.open(settings, Mode.RAW_CREATE) as storage, write_transaction(storage.engine) as own:
        config.attributes["log_key"] = settings.log_key
        config.attributes["cipher"] = storage.open_cipher
        context.configure(connection=own, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
