"""Several OS processes writing at once: versions stay contiguous, read models equal a rebuild."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest
from sqlalchemy import select

from dala_events import persistence_manager as pm
from dala_events.store import SqlEventStore, event_log
from projections.rebuild import rebuild_projections
from tests.helpers import hammer, read_model_rows

WORKERS = 4
ROUNDS = 15


@pytest.mark.slow
def test_processes_appending_to_own_and_shared_learners(store: SqlEventStore, database_url: str) -> None:
    pm.create_learner_profile("shared")
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        conflicts = sum(pool.map(hammer, [database_url] * WORKERS, range(WORKERS), [ROUNDS] * WORKERS))

    with store.engine.connect() as connection:
        rows = connection.execute(select(event_log.c.learner_id, event_log.c.version)).all()
    versions: dict[str, list[int]] = {}
    for learner_id, version in rows:
        versions.setdefault(learner_id, []).append(version)
    for learner_id, found in versions.items():
        assert sorted(found) == list(range(1, len(found) + 1)), learner_id
    assert len(versions["shared"]) == 1 + 2 * WORKERS * ROUNDS
    assert all(len(versions[f"own-{w}"]) == 1 + ROUNDS for w in range(WORKERS))
    assert len(pm.get_interests("shared")) == WORKERS * ROUNDS
    assert len(pm.get_activity_attempts("shared")) == WORKERS * ROUNDS
    assert conflicts >= 0

    inline = read_model_rows(store.engine)
    rebuild_projections(store.engine, cipher=store.cipher)
    assert read_model_rows(store.engine) == inline
