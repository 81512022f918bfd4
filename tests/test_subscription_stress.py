"""Four writer processes and three subscriptions at once, one subscriber killed and restarted
midway: each subscription sees every event exactly once, each learner's in version order."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, select, text

from dala_events.envelopes import RecordedEvent
from dala_events.store import event_log
from tests.conftest import POSTGRES_URL, require_postgres, reset_postgres

WRITERS = 4
LEARNERS_EACH = 3
CHANGES_EACH = 12
SUBSCRIPTIONS = ("lrs", "analytics", "parents")
KILLED = "analytics"


def _settings(database: tuple[str, str]) -> Any:
    """The settings of (database URL, key store path): one key store file every process shares."""
    from dala_events.settings import Settings
    from dala_events.store.keys import MasterKey
    from tests.conftest import TEST_MASTER_KEY

    url, key_store = database
    return Settings(database_url=url, key_store=key_store, master_key=MasterKey.from_hex(TEST_MASTER_KEY))


def _write(database_url: tuple[str, str], worker: int) -> None:
    from dala_events.app import Dala

    with Dala.open(_settings(database_url)) as dala:
        for change in range(CHANGES_EACH):
            for number in range(LEARNERS_EACH):
                dala.profile(f"w{worker}-l{number}").add_interest(f"interest {change}")


def _follow(database_url: tuple[str, str], name: str, progressed: Any, stop: Any) -> None:
    """Copy every delivered event into `delivered` with the checkpoint's transaction (exactly
    once), until `stop`, then everything left."""
    from dala_events.app import Dala

    def copy(event: RecordedEvent, connection: Connection) -> None:
        connection.execute(
            text("INSERT INTO delivered (subscription, position, learner_id, version) VALUES (:s, :p, :l, :v)"),
            {"s": name, "p": event.position, "l": event.learner_id, "v": event.version},
        )
        progressed.set()

    with Dala.open(_settings(database_url)) as dala:
        subscription = dala.subscription(name)
        subscription.run(copy, in_transaction=True, poll_interval=0.02, batch_size=7, stop=stop)
        subscription.run(copy, in_transaction=True, stop_when_idle=True, batch_size=7)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(database URL, key store path)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/stress.db", f"{tmp_path}/stress.keys"
    require_postgres()
    reset_postgres()
    return POSTGRES_URL, f"{tmp_path}/stress.keys"


@pytest.mark.slow
def test_every_subscription_sees_every_event_once_in_each_learners_order(database_url: tuple[str, str]) -> None:
    from dala_events.app import Dala

    Dala.open(_settings(database_url)).close()
    engine = create_engine(database_url[0])
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS delivered"))
        connection.execute(
            text(
                "CREATE TABLE delivered (n INTEGER PRIMARY KEY GENERATED ALWAYS AS IDENTITY, subscription TEXT, "
                "position BIGINT, learner_id TEXT, version INTEGER, UNIQUE (subscription, position))"
                if engine.dialect.name == "postgresql"
                else "CREATE TABLE delivered (n INTEGER PRIMARY KEY AUTOINCREMENT, subscription TEXT, "
                "position BIGINT, learner_id TEXT, version INTEGER, UNIQUE (subscription, position))"
            )
        )
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    progress = {name: context.Event() for name in SUBSCRIPTIONS}
    followers = {
        name: context.Process(target=_follow, args=(database_url, name, progress[name], stop)) for name in SUBSCRIPTIONS
    }
    writers = [context.Process(target=_write, args=(database_url, worker)) for worker in range(WRITERS)]
    try:
        for process in [*followers.values(), *writers]:
            process.start()
        assert progress[KILLED].wait(120), "the subscriber never delivered anything"
        followers[KILLED].kill()  # mid-batch, no clean-up: its open transaction rolls back
        followers[KILLED].join(60)
        progress[KILLED].clear()
        followers[KILLED] = context.Process(target=_follow, args=(database_url, KILLED, progress[KILLED], stop))
        followers[KILLED].start()
        for writer in writers:
            writer.join(300)
            assert writer.exitcode == 0
        stop.set()
        for follower in followers.values():
            follower.join(300)
            assert follower.exitcode == 0
        with engine.connect() as connection:
            logged = connection.execute(select(event_log.c.position, event_log.c.learner_id, event_log.c.version)).all()
            for name in SUBSCRIPTIONS:
                seen = connection.execute(
                    text("SELECT position, learner_id, version FROM delivered WHERE subscription = :s ORDER BY n"),
                    {"s": name},
                ).all()
                assert sorted(tuple(row) for row in seen) == sorted(tuple(row) for row in logged), name
                order: dict[str, list[int]] = {}
                for _position, learner, version in seen:
                    order.setdefault(learner, []).append(version)
                assert all(versions == sorted(versions) for versions in order.values()), name
        assert len(logged) == WRITERS * LEARNERS_EACH * (1 + CHANGES_EACH)
    finally:
        stop.set()
        for process in [*followers.values(), *writers]:
            if process.is_alive():
                process.kill()
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS delivered"))
        engine.dispose()
