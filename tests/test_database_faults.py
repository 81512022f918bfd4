"""Faults of the database reach callers as the package's DatabaseFault naming the database (a
SQLite file's path, a URL without its password), the driver's error chained: a database that
may not be written, a full one, a damaged file, a PostgreSQL session ended under a call. The
synchronous and the async API alike. A statement refused for what it asked is no fault: a
stale append stays ConcurrencyError."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text

from dala_events import aio
from dala_events.app import Dala, Mode
from dala_events.dialects import _observed
from dala_events.envelopes import ProjectableEvent
from dala_events.errors import ConcurrencyError, DatabaseFault
from dala_events.hlp_module import LearnerProfile
from dala_events.settings import Settings
from dala_events.store import SqlEventStore
from dala_events.store.keys import MasterKey
from tests.conftest import POSTGRES_URL, TEST_MASTER_KEY, require_postgres, reset_postgres


def _sqlite(tmp_path: Path) -> tuple[Settings, Path]:
    path = tmp_path / "faults.db"
    settings = Settings(database_url=f"sqlite:///{path}", page_dir=tmp_path / "pages")
    with Dala.open(settings) as dala:
        dala.profile("ann").add_interest("Robotics")
    return settings, path


def _on_every_connection(engine: Engine, pragma: str) -> None:
    """Each new connection of `engine` runs `pragma` (and the pooled ones are let go)."""
    event.listen(engine, "connect", lambda connection, _record: connection.execute(pragma))
    engine.dispose()


def _pages(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("PRAGMA page_count").scalar_one())


def _check(fault: DatabaseFault, database: str, problem: str, cause: type[BaseException]) -> None:
    assert fault.database == database
    assert str(fault).startswith(f"the database {database} cannot be used: {problem}; ")
    assert isinstance(fault.__cause__, cause), repr(fault.__cause__)


# -- SQLite: a database that may not be written, a full one, a damaged file ----------------------


def test_a_sqlite_database_that_may_not_be_written_is_a_fault_naming_the_file(tmp_path: Path) -> None:
    """What a read-only file gives (SQLite's SQLITE_READONLY: "attempt to write a readonly
    database"), here made by SQLite's own switch so that it holds for every user (root writes
    to a file whose mode says read-only)."""
    settings, path = _sqlite(tmp_path)
    with Dala.open(settings, mode=Mode.READ) as dala:
        _on_every_connection(dala.engine, "PRAGMA query_only = ON")
        assert dala.profile("ann", create=False).interests == ["Robotics"]  # reads go on
        with pytest.raises(DatabaseFault) as caught:
            dala.profile("ann").add_interest("Chess")
    _check(caught.value, str(path), "attempt to write a readonly database", sqlite3.OperationalError)
    assert "cannot be written here" in str(caught.value) and not caught.value.disconnected


def test_a_full_sqlite_database_is_a_fault_and_keeps_what_it_had(tmp_path: Path) -> None:
    settings, path = _sqlite(tmp_path)
    with Dala.open(settings) as dala:
        _on_every_connection(dala.engine, f"PRAGMA max_page_count = {_pages(dala.engine)}")
        profile = dala.profile("ann")
        saved = 0
        with pytest.raises(DatabaseFault) as caught:
            for n in range(500):  # until a write needs a page more than the file may have
                profile.add_interest(f"interest {n} " + "x" * 400)
                saved += 1
    _check(caught.value, str(path), "database or disk is full", sqlite3.OperationalError)
    assert "free space" in str(caught.value)
    with Dala.open(settings, mode=Mode.READ) as dala:
        assert len(dala.profile("ann", create=False).interests) == 1 + saved  # the failed change left nothing


def test_a_damaged_sqlite_file_is_a_fault_naming_it(tmp_path: Path) -> None:
    settings, path = _sqlite(tmp_path)
    with path.open("r+b") as file:
        file.write(b"\0" * 100)  # the header
    with pytest.raises(DatabaseFault) as caught:
        Dala.open(settings, mode=Mode.READ)
    _check(caught.value, str(path), "file is not a database", sqlite3.DatabaseError)
    assert "restore it from a backup" in str(caught.value)


def test_the_async_api_raises_the_same_faults(tmp_path: Path) -> None:
    settings, path = _sqlite(tmp_path)

    async def write_refused() -> DatabaseFault:
        async with await aio.AsyncDala.open(settings, mode=Mode.READ) as dala:
            _on_every_connection(dala.sync.engine, "PRAGMA query_only = ON")
            profile = await dala.profile("ann")
            with pytest.raises(DatabaseFault) as caught:
                await profile.add_interest("Chess")
            return caught.value

    _check(asyncio.run(write_refused()), str(path), "attempt to write a readonly database", sqlite3.OperationalError)
    with path.open("r+b") as file:
        file.write(b"\0" * 100)
    with pytest.raises(DatabaseFault) as caught:
        asyncio.run(aio.AsyncDala.open(settings, mode=Mode.READ))
    _check(caught.value, str(path), "file is not a database", sqlite3.DatabaseError)


def test_a_stale_append_is_still_a_concurrency_error(tmp_path: Path) -> None:
    settings, _ = _sqlite(tmp_path)
    with Dala.open(settings) as dala:
        stale = LearnerProfile("ann", persistence_enabled=False, store=dala.store)
        dala.profile("ann").add_interest("Chess")
        stale.add_interest("Art")
        with pytest.raises(ConcurrencyError):
            stale.save()


def test_the_fast_path_runs_while_only_the_package_listens_for_errors(tmp_path: Path) -> None:
    """The package's fault listener does not turn the append's driver fast path off (its work is
    done there too); anyone else's error listener does, so that it sees every failure."""
    settings, _ = _sqlite(tmp_path)
    with Dala.open(settings) as dala, dala.engine.connect() as connection:
        assert not _observed(connection)

        def theirs(_context: Any) -> None:
            return None

        event.listen(dala.engine, "handle_error", theirs)
        try:
            assert _observed(connection)
        finally:
            event.remove(dala.engine, "handle_error", theirs)


# -- PostgreSQL: a session ended under a call ------------------------------------------------------


def _postgres_settings(tmp_path: Path) -> Settings:
    require_postgres()
    reset_postgres()
    return Settings(
        database_url=POSTGRES_URL,
        key_store=str(tmp_path / "faults.keys"),
        master_key=MasterKey.from_hex(TEST_MASTER_KEY),
        page_dir=tmp_path / "pages",
    )


def _named(url: str) -> str:
    """A PostgreSQL database as a fault names it: its URL without password or driver."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=True)


@pytest.fixture
def terminator() -> Iterator[Callable[[int], None]]:
    """Ends a PostgreSQL session by its pid, as an operator's pg_terminate_backend would, and
    waits (at most 10 s) until it is gone."""
    engine = create_engine(POSTGRES_URL)

    def terminate(pid: int) -> None:
        with engine.connect() as connection:
            ended = connection.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}).scalar_one()
            connection.commit()
        assert ended, f"session {pid} did not end"

    try:
        yield terminate
    finally:
        engine.dispose()


def _ending_its_session(terminate: Callable[[int], None]) -> Callable[[Connection, Sequence[ProjectableEvent]], None]:
    """An inline projector that ends its own append's session halfway through the append."""

    def end(connection: Connection, events: Sequence[ProjectableEvent]) -> None:
        if any(event.learner_id == "ended" for event in events):
            terminate(connection.connection.driver_connection.info.backend_pid)  # type: ignore[union-attr]

    return end


def _pooled_session(engine: Engine) -> int:
    """The pid of the session a pooled connection of `engine` holds (back in the pool after)."""
    with engine.connect() as connection:
        return int(connection.connection.driver_connection.info.backend_pid)  # type: ignore[union-attr]


def test_a_postgresql_session_ended_under_an_append_is_a_fault_and_the_next_call_works(
    tmp_path: Path, terminator: Callable[[int], None]
) -> None:
    settings = _postgres_settings(tmp_path)
    with Dala.open(settings) as dala:
        dala.profile("ann").add_interest("Robotics")
        # An idle pooled session ended between calls: the pool's pre-ping replaces it unseen.
        terminator(_pooled_session(dala.engine))
        assert dala.profile("ann", create=False).interests == ["Robotics"]
        # A session ended under a call: the caller is told, in the package's words.
        store = dala.store
        ending = SqlEventStore(
            dala.engine,
            inline_projectors=(*store.inline_projectors, _ending_its_session(terminator)),
            log_key=store.log_key,
            cipher=store.cipher,
        )
        with pytest.raises(DatabaseFault) as caught:
            LearnerProfile("ended", store=ending).add_interest("Chess")
        assert caught.value.disconnected and "the connection to it was lost" in str(caught.value)
        assert caught.value.database == _named(POSTGRES_URL)
        assert isinstance(caught.value.__cause__, Exception) and "psycopg" in type(caught.value.__cause__).__module__
        assert dala.store.stream_version("ended") == 0  # nothing of it was written
        dala.profile("ended").add_interest("Chess")  # the next call gets a new session
        assert dala.profile("ended", create=False).interests == ["Chess"]


def test_a_postgresql_session_ended_under_an_awaited_append_is_the_same_fault(
    tmp_path: Path, terminator: Callable[[int], None]
) -> None:
    settings = _postgres_settings(tmp_path)

    async def run() -> DatabaseFault:
        async with await aio.AsyncDala.open(settings) as dala:
            sync = dala.sync.store
            ending = SqlEventStore(
                dala.sync.engine,
                inline_projectors=(*sync.inline_projectors, _ending_its_session(terminator)),
                log_key=sync.log_key,
                cipher=sync.cipher,
            )
            store = aio.AsyncEventStore(ending, dala.run, dala.sync.storage)
            with pytest.raises(DatabaseFault) as caught:
                await aio.create_learner_profile("ended", store=store)
            assert await dala.store.stream_version("ended") == 0
            await aio.create_learner_profile("ended", store=dala.store)  # a new session
            assert await dala.store.stream_version("ended") == 1
            return caught.value

    fault = asyncio.run(run())
    assert fault.disconnected and "the connection to it was lost" in str(fault)
    assert fault.database == _named(POSTGRES_URL)
