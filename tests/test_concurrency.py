"""Several OS processes writing at once: versions stay contiguous, read models equal a rebuild."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest
from sqlalchemy import select

from dala_events import persistence_manager as pm
from dala_events.store import SqlEventStore, event_log
from projections.rebuild import rebuild_projections
from tests.helpers import hammer, hot_writer, read_model_rows

WORKERS = 4
ROUNDS = 15


@pytest.mark.slow
def test_processes_appending_to_own_and_shared_learners(store: SqlEventStore, database_url: str) -> None:
    pm.create_learner_profile("shared")
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        conflicts = sum(pool.map(hammer, [database_url] * WORKERS, range(WORKERS), [ROUNDS] * WORKERS, timeout=600))

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


HOT_WRITERS = 8
HOT_ROUNDS = 10


@pytest.mark.slow
def test_eight_processes_writing_one_learner_through_the_persistence_manager(
    store: SqlEventStore, database_url: str
) -> None:
    """The document's writers are commands: a conflict re-reads only what the other writer
    appended and decides again, so nothing is lost or applied twice."""
    pm.create_learner_profile("hot")
    with ProcessPoolExecutor(max_workers=HOT_WRITERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        caught_up = sum(
            pool.map(
                hot_writer,
                [database_url] * HOT_WRITERS,
                range(HOT_WRITERS),
                [HOT_ROUNDS] * HOT_WRITERS,
                timeout=600,
            )
        )

    recorded = sorted(attempt.activity_id for attempt in pm.get_activity_attempts("hot"))
    assert recorded == sorted(f"w{w}-{n}" for w in range(HOT_WRITERS) for n in range(HOT_ROUNDS))
    with store.engine.connect() as connection:
        versions = connection.execute(select(event_log.c.version).where(event_log.c.learner_id == "hot")).scalars()
        assert sorted(versions) == list(range(1, 2 + HOT_WRITERS * HOT_ROUNDS))
    assert caught_up >= 0  # how often writers met: reported by the run, not fixed by it
    inline = read_model_rows(store.engine)
    rebuild_projections(store.engine, cipher=store.cipher)
    assert read_model_rows(store.engine) == inline


def test_a_learner_created_by_another_writer_at_the_same_moment_is_loaded_not_refused(store: SqlEventStore) -> None:
    """get-or-create across processes: when another writer creates the learner between this
    profile's load and its creation, the creation is read back and nothing more is recorded."""
    from dala_events.hlp_module import LearnerProfile

    raced: list[bool] = []

    class CreatedElsewhereFirst(LearnerProfile):
        def create(self) -> bool:
            if not raced:
                raced.append(True)
                LearnerProfile("raced", store=store)  # the other writer wins the race
            return super().create()

    profile = CreatedElsewhereFirst("raced", store=store)
    assert raced and profile.exists and profile.version == 1 and profile.saved_version == 1
    assert [event.event_type for event in store.read_stream("raced")] == ["LearnerProfileCreated"]
