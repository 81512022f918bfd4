"""One PostgreSQL key store for many processes: each learner gets exactly one data key, and
every event decrypts, when K processes create the same learners at once; an erasure by one
process is refused by the others' next append."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from dala_events.app import Dala
from dala_events.attribution import recorded_as
from dala_events.errors import LearnerErasedError
from dala_events.hlp_module import LearnerProfile
from dala_events.settings import Settings
from dala_events.store.keys import MasterKey, data_keys
from tests.conftest import POSTGRES_URL, TEST_MASTER_KEY, require_postgres, reset_postgres

KEY_DATABASE = f"{make_url(POSTGRES_URL).database}_keys"
"""The key store's database: named after the configured test database, so that two runs on one
server (each with its own DALA_TEST_POSTGRES_URL) never meet."""
WRITERS = 4
SHARED = [f"shared-{n}" for n in range(12)]


@pytest.fixture
def key_store_url() -> Iterator[str]:
    """A database of its own for the key store, on the test server (created and dropped here)."""
    require_postgres()
    reset_postgres()
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {KEY_DATABASE} WITH (FORCE)"))
            connection.execute(text(f"CREATE DATABASE {KEY_DATABASE}"))
        yield make_url(POSTGRES_URL).set(database=KEY_DATABASE).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {KEY_DATABASE} WITH (FORCE)"))
    finally:
        admin.dispose()


def _settings(key_store_url: str) -> Settings:
    return Settings(database_url=POSTGRES_URL, key_store=key_store_url, master_key=MasterKey.from_hex(TEST_MASTER_KEY))


def _create(key_store_url: str, worker: int) -> int:
    """In a child process: create the shared learners (as every other worker does) and one of
    its own, each with an interest; returns the events written. The creation is part of the
    command, so a worker that another beat to it reads theirs and tries again (a creation on its
    own would be refused as stale: how often depends on the machine's timing)."""

    def created_with_an_interest(profile: LearnerProfile) -> None:
        profile.create()
        profile.add_interest(f"from {worker}")

    written = 0
    with Dala.open(_settings(key_store_url)) as dala:
        for learner in [*SHARED, f"own-{worker}"]:
            LearnerProfile.open(learner, store=dala.store).run_command(created_with_an_interest)
            written += 1
    return written


@pytest.mark.slow
def test_processes_creating_the_same_learners_share_one_key_each(key_store_url: str) -> None:
    Dala.open(_settings(key_store_url)).close()
    with ProcessPoolExecutor(max_workers=WRITERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert sum(pool.map(_create, [key_store_url] * WRITERS, range(WRITERS), timeout=600)) == WRITERS * (
            len(SHARED) + 1
        )
    learners = [*SHARED, *(f"own-{worker}" for worker in range(WRITERS))]
    keys = create_engine(key_store_url)
    try:
        with keys.connect() as connection:
            counted = dict(
                connection.execute(select(data_keys.c.learner_id, func.count()).group_by(data_keys.c.learner_id)).all()
            )
    finally:
        keys.dispose()
    assert counted == {learner: 1 for learner in learners}
    with Dala.open(_settings(key_store_url)) as dala:
        for learner in SHARED:  # every event decrypts with the one key
            interests = [e.event.interest_name for e in dala.history(learner) if e.event_type == "InterestAdded"]  # type: ignore[attr-defined]
            assert sorted(interests) == sorted(f"from {worker}" for worker in range(WRITERS))


def test_an_erasure_in_one_process_is_refused_by_the_next_append_of_another(key_store_url: str) -> None:
    with Dala.open(_settings(key_store_url)) as first, Dala.open(_settings(key_store_url)) as second:
        first.profile("ann").add_interest("Robotics")
        stale = second.profile("ann")  # its key is cached in this process now
        with recorded_as(actor="dpo:jane"):
            first.erase("ann", reason="parent's request")
        with pytest.raises(LearnerErasedError):
            stale.add_interest("Chess")
        assert all(
            e.event_type == "LearnerErased" or type(e.event).__name__ == "ErasedContent" for e in second.history("ann")
        )
