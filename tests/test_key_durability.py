"""A learner's data key is durable before any event encrypted with it is committed.

A process that creates learners is killed (`os._exit`, no clean-up) at each point of a batched
save: after the key store's commit and before the events', after the events', and inside the
key store's transaction before its commit. Whatever the point, every event in the log has its
key, and every event decrypts; a key without events (the process died before they committed)
is harmless and is used by the next save.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dala_events.app import Dala
from dala_events.settings import Settings
from dala_events.store.keys import DataKeyMissing
from tests.conftest import POSTGRES_URL, TEST_MASTER_KEY, require_postgres, reset_postgres

LEARNERS = ("ann", "bea", "cy")
KILLED = 17

_WRITER = """
import os, sys
from dala_events.app import Dala
from dala_events.settings import Settings
from dala_events.store.keys import SqlKeyStore
from dala_events.store.sql import SqlEventStore

point = sys.argv[1]
append, store_new = SqlEventStore._append_rows, SqlKeyStore._store_new

def killed_before_the_events(self, *args):
    os._exit({killed})

def killed_after_the_events(self, *args):
    append(self, *args)
    os._exit({killed})

def killed_before_the_key_commits(self, learner_id, wrapped):
    if learner_id == {last!r}:
        os._exit({killed})
    return store_new(self, learner_id, wrapped)

if point == "before-events":
    SqlEventStore._append_rows = killed_before_the_events
elif point == "after-events":
    SqlEventStore._append_rows = killed_after_the_events
else:
    SqlKeyStore._store_new = killed_before_the_key_commits
with Dala.open(Settings.from_env()) as dala:
    for learner in {learners!r}:
        profile = dala.profile(learner, persistence_enabled=False)  # created in memory, saved once
        profile.add_interest("Robotics")
        profile.add_struggle_area("Fractions")
        profile.save()
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A fresh database with a key store file of its own (beside it on SQLite)."""
    if request.param == "sqlite":
        return Settings(database_url=f"sqlite:///{tmp_path}/school.db")
    require_postgres()
    reset_postgres()
    master = tmp_path / "master.key"
    master.write_text(TEST_MASTER_KEY + "\n")
    return Settings(database_url=POSTGRES_URL, key_store=str(tmp_path / "school.keys"), master_key_file=master)


def _write_until_killed(settings: Settings, point: str, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DALA_")}
    env["DALA_DATABASE_URL"] = settings.database_url
    if settings.key_store is not None:
        env["DALA_KEY_STORE"] = settings.key_store
    if settings.master_key_file is not None:
        env["DALA_MASTER_KEY_FILE"] = str(settings.master_key_file)
    script = _WRITER.format(killed=KILLED, learners=LEARNERS, last=LEARNERS[-1])
    done = subprocess.run(
        [sys.executable, "-c", script, point], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == KILLED, done.stderr


def _check_every_event_has_its_key(dala: Dala) -> dict[str, int]:
    """Events per learner; each learner with events has its key and every event decrypts."""
    events = {}
    for learner in LEARNERS:
        history = dala.history(learner)  # decrypts every event: CorruptEventError without the key
        events[learner] = len(history)
        if history:
            assert dala.cipher.key_store.data_key(learner)
    return events


@pytest.mark.parametrize("point", ["before-events", "after-events", "before-the-key-commits"])
def test_no_event_is_ever_committed_without_its_key(settings: Settings, point: str, tmp_path: Path) -> None:
    with Dala.open(settings):
        pass  # the database and its key store exist before the writer starts
    _write_until_killed(settings, point, tmp_path)
    with Dala.open(settings) as dala:
        events = _check_every_event_has_its_key(dala)
        first = LEARNERS[0]
        if point == "before-events":
            # Killed after the key store's commit, before the events': the key, no event.
            assert events == {learner: 0 for learner in LEARNERS}
            assert dala.cipher.key_store.data_key(first)
        elif point == "after-events":
            assert events[first] > 0 and all(count == 0 for count in list(events.values())[1:])
        else:
            # Killed inside the last learner's key transaction: the learners before it are whole.
            assert all(events[learner] > 0 for learner in LEARNERS[:-1]) and events[LEARNERS[-1]] == 0
            with pytest.raises(DataKeyMissing):
                dala.cipher.key_store.data_key(LEARNERS[-1])
        # A later save of the same learners works, with the key made before (when there is one).
        for learner in LEARNERS:
            profile = dala.profile(learner)
            profile.add_interest("Chess")
        assert all(count > 0 for count in _check_every_event_has_its_key(dala).values())
