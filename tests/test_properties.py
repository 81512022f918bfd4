"""Property: whatever the mutations, the aggregate, the inline read models, a rebuild and a
fresh process all agree."""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dala_events import persistence_manager as pm
from dala_events.hlp_module import LearnerProfile
from dala_events.store import SqlEventStore
from projections.rebuild import rebuild_projections
from tests.helpers import aggregate_snapshot, key_environment, profile_snapshot, read_model_rows, reload_snapshots

NAMES = st.sampled_from(["Robotics", "Music", "Dinosaurs", " Music "])
SCORES = st.none() | st.floats(min_value=0, max_value=100, allow_nan=False)
DETAILS = st.none() | st.fixed_dictionaries({"step": st.integers(0, 3)})
LOS = st.sampled_from(["LO1", "LO2"])

mutation = st.one_of(
    st.tuples(st.just("update_preference"), st.sampled_from(["style", "pace"]), st.sampled_from(["a", "b"])),
    st.tuples(st.just("remove_preference"), st.sampled_from(["style", "pace"])),
    st.tuples(st.just("add_interest"), NAMES),
    st.tuples(st.just("remove_interest"), NAMES),
    st.tuples(st.just("add_struggle_area"), NAMES),
    st.tuples(st.just("remove_struggle_area"), NAMES),
    st.tuples(
        st.just("add_cognitive_metric"), st.sampled_from(["t1", "t2"]), st.fixed_dictionaries({"a": st.integers(0, 2)})
    ),
    st.tuples(st.just("start_lo"), LOS),
    st.tuples(
        st.just("update_lo_progress"),
        LOS,
        st.sampled_from(["not_started", "in_progress", "completed"]),
        SCORES,
        DETAILS,
    ),
    st.tuples(st.just("mark_lo_completed"), LOS, SCORES, DETAILS),
    st.tuples(st.just("add_badge"), st.sampled_from(["b1", "b2"]), st.just("Badge")),
    st.tuples(st.just("revoke_badge"), st.sampled_from(["b1", "b2"])),
    st.tuples(st.just("record_activity_attempt"), LOS, st.just("A1"), st.just("quiz"), SCORES),
    st.tuples(st.just("delete")),
    st.tuples(st.just("save")),
    st.tuples(st.just("toggle_persistence")),
)
_run = itertools.count()


@pytest.fixture(scope="module")
def fresh_process() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.integers(0, 2), mutation), max_size=40))
def test_aggregate_read_models_rebuild_and_fresh_process_agree(
    store: SqlEventStore, database_url: str, fresh_process: ProcessPoolExecutor, plan: list[tuple[int, tuple]]
) -> None:
    run = next(_run)
    learner_ids = [f"run{run}-learner{n}" for n in range(3)]
    profiles = {learner_id: LearnerProfile(learner_id, store=store) for learner_id in learner_ids}
    for index, (method, *args) in plan:
        learner_id = learner_ids[index]
        profile = profiles[learner_id]
        if method == "save":
            profile.save()
        elif method == "toggle_persistence":
            profile.persistence_enabled = not profile.persistence_enabled
        elif method == "delete":
            if profile.exists:
                profile.delete()
            profile.save()
            profiles[learner_id] = LearnerProfile(learner_id, store=store)
        else:
            getattr(profile, method)(*args)
    for profile in profiles.values():
        profile.save()

    # (a) the aggregate in memory == (b) the inline read models
    in_memory = {learner_id: aggregate_snapshot(profile) for learner_id, profile in profiles.items()}
    inline = {learner_id: profile_snapshot(pm.get_full_learner_profile_data(learner_id)) for learner_id in learner_ids}
    assert inline == in_memory
    # (c) == the read models after a rebuild, row for row
    inline_rows = read_model_rows(store.engine)
    rebuild_projections(store.engine, cipher=store.cipher)
    assert read_model_rows(store.engine) == inline_rows
    assert {i: profile_snapshot(pm.get_full_learner_profile_data(i)) for i in learner_ids} == in_memory
    # (d) == profiles reloaded in a fresh process
    assert (
        fresh_process.submit(reload_snapshots, database_url, learner_ids, key_environment()).result(timeout=300)
        == in_memory
    )
