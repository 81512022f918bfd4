"""Alembic environment of the event log and its bookkeeping tables.

The read models are not migrated: they are projections, rebuilt from the log when their
definitions change (`dala rebuild`). `dala migrate` and `init_db` hand in a connection inside
their own transaction; `alembic upgrade head` from the repository root connects to
`DALA_DATABASE_URL` (or the embedded SQLite default) itself.
"""

from __future__ import annotations

from alembic import context

from dala_events.database_setup import configured_database_url, configured_log_key, create_dala_engine
from dala_events.dialects import write_transaction
from dala_events.store import LOG_METADATA

config = context.config
target_metadata = LOG_METADATA
# The key a migration that chains the log chains it with: the caller's (`dala migrate`,
# `init_db`), else the configured one (`alembic upgrade`: DALA_LOG_KEY or DALA_LOG_KEY_FILE).
if not context.is_offline_mode() and "log_key" not in config.attributes:
    config.attributes["log_key"] = configured_log_key()


def run_offline() -> None:
    """Print the SQL instead of running it (`alembic upgrade head --sql`)."""
    url = config.get_main_option("sqlalchemy.url") or configured_database_url()
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
    engine = create_dala_engine(config.get_main_option("sqlalchemy.url") or configured_database_url())
    try:
        with write_transaction(engine) as own:
            context.configure(connection=own, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
