"""Audit layer: history with attribution, profiles as of a time or version, diffs, and event
versioning read through every path. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from dala_events import audit
from dala_events import persistence_manager as pm
from dala_events.attribution import occurring_at, recorded_as
from dala_events.errors import CorruptEventError, InvalidInput
from dala_events.events import PreferenceSet, new_event_id
from dala_events.hlp_module import LearnerProfile, LearnerState
from dala_events.store import SqlEventStore, event_log
from dala_events.store.codec import chain_rows, sealed
from projections.rebuild import rebuild_projections
from tests.helpers import aggregate_snapshot, profile_snapshot, read_model_rows

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _write_day_by_day(store: SqlEventStore) -> LearnerProfile:
    """Three days of changes to one learner, by different actors."""
    with freeze_time(T0), recorded_as("teacher:42", reason="initial interview"):
        profile = LearnerProfile("ann", store=store)
        profile.update_preference("visual_preference_task_1", "visual")
        profile.add_interest("Robotics")
    with freeze_time(T0 + timedelta(days=1)), recorded_as("system:assessment"):
        profile.update_preference("visual_preference_task_1", "auditory")
        profile.add_struggle_area("Reading fluency")
        profile.add_cognitive_metric("story_weaver", {"accuracy": 0.8})
    with freeze_time(T0 + timedelta(days=2)), recorded_as("learner:ann"):
        profile.remove_interest("Robotics")
        profile.add_badge("b1", "First steps")
    return profile


def test_history_lists_who_changed_what_and_when(store: SqlEventStore) -> None:
    _write_day_by_day(store)
    events = audit.history("ann", store=store)
    assert [event.version for event in events] == list(range(1, 9))
    assert [event.event_type for event in events][:3] == ["LearnerProfileCreated", "PreferenceSet", "InterestAdded"]
    assert {event.metadata["actor"] for event in events[:3]} == {"teacher:42"}
    assert events[1].metadata["reason"] == "initial interview"
    assert events[3].metadata["actor"] == "system:assessment"
    assert events[3].event == PreferenceSet(
        category="visual_preference_task_1", value="auditory", previous_value="visual"
    )
    assert events[3].recorded_at == T0 + timedelta(days=1)
    assert [event.position for event in events] == sorted(event.position for event in events)

    day_two = audit.history("ann", since=T0 + timedelta(hours=1), until=T0 + timedelta(days=1, hours=1), store=store)
    assert [event.version for event in day_two] == [4, 5, 6]
    only = audit.history("ann", event_types=["InterestAdded", "InterestRemoved"], store=store)
    assert [event.event_type for event in only] == ["InterestAdded", "InterestRemoved"]
    assert audit.history("nobody", store=store) == []
    with pytest.raises(InvalidInput, match="event_types"):
        audit.history("ann", event_types=["NoSuchEvent"], store=store)
    with pytest.raises(InvalidInput, match="since"):
        audit.history("ann", since=datetime(2026, 1, 1), store=store)


def test_profile_as_of_time_and_version_matches_the_read_models_then(store: SqlEventStore) -> None:
    _write_day_by_day(store)
    day_one = audit.profile_as_of("ann", at=T0 + timedelta(hours=12), store=store)
    assert day_one is not None
    assert [(p.category, p.value) for p in day_one.preferences] == [("visual_preference_task_1", "visual")]
    assert [i.interest_name for i in day_one.interests] == ["Robotics"]
    assert day_one.struggles == [] and day_one.badges == []

    now = pm.get_full_learner_profile_data("ann", store=store)
    assert audit.profile_as_of("ann", version=8, store=store) == now
    assert audit.profile_as_of("ann", at=T0 + timedelta(days=30), store=store) == now
    assert audit.profile_as_of("ann", at=T0 - timedelta(days=1), store=store) is None
    assert audit.profile_as_of("ann", version=0, store=store) is None
    with pytest.raises(InvalidInput, match="exactly one"):
        audit.profile_as_of("ann", store=store)
    with pytest.raises(InvalidInput, match="version"):
        audit.profile_as_of("ann", version=-1, store=store)


def test_profile_as_of_is_none_after_deletion_and_back_after_recreation(store: SqlEventStore) -> None:
    profile = LearnerProfile("bo", store=store)
    profile.add_interest("Music")
    profile.delete()
    again = LearnerProfile("bo", store=store)
    again.add_interest("Art")
    assert audit.profile_as_of("bo", version=2, store=store) is not None
    assert audit.profile_as_of("bo", version=3, store=store) is None
    latest = audit.profile_as_of("bo", version=5, store=store)
    assert latest is not None and [i.interest_name for i in latest.interests] == ["Art"]


def test_diff_reports_rows_added_changed_and_removed(store: SqlEventStore) -> None:
    _write_day_by_day(store)
    result = audit.diff("ann", T0 + timedelta(hours=12), T0 + timedelta(days=2, hours=1), store=store)
    assert (result.start_version, result.end_version) == (3, 8)
    changes = {(row.section, row.key, row.change) for row in result.rows}
    assert changes == {
        ("preferences", "visual_preference_task_1", "changed"),
        ("interests", "Robotics", "removed"),
        ("struggles", "Reading fluency", "added"),
        ("cognitive_metrics", "story_weaver", "added"),
        ("badges", "b1", "added"),
    }
    (changed,) = result.changed
    assert set(changed.fields) == {"value", "timestamp"}
    assert changed.before is not None and changed.before["value"] == "visual"
    assert changed.after is not None and changed.after["value"] == "auditory"
    assert result.existed_before and result.exists_after
    assert audit.diff("ann", 8, 8, store=store).rows == ()
    created = audit.diff("ann", 0, 2, store=store)
    assert not created.existed_before and [row.change for row in created.rows] == ["added"]
    with pytest.raises(InvalidInput, match="start"):
        audit.diff("ann", datetime(2026, 3, 1), 2, store=store)


def test_diff_by_when_changes_happened_counts_a_backdated_change_where_it_happened(store: SqlEventStore) -> None:
    with freeze_time(T0), recorded_as("teacher:42"):
        profile = LearnerProfile("ann", store=store)
        profile.add_interest("Robotics")
    with freeze_time(T0 + timedelta(days=1)), recorded_as("teacher:42"):
        profile.add_struggle_area("Reading fluency")
    with freeze_time(T0 + timedelta(days=2)), recorded_as("teacher:42"), occurring_at(T0 + timedelta(hours=12)):
        profile.add_interest("Music")  # typed in on day 2, happened on day 0
    since, until = T0 + timedelta(hours=6), T0 + timedelta(days=1, hours=12)
    result = audit.diff("ann", happened_since=since, happened_until=until, store=store)
    assert {(row.section, row.key, row.change) for row in result.rows} == {
        ("interests", "Music", "added"),
        ("struggles", "Reading fluency", "added"),
    }
    listed = audit.history("ann", happened_since=since, happened_until=until, store=store)
    assert sorted(event.event_type for event in listed) == ["InterestAdded", "StruggleAreaAdded"]
    assert (result.start_version, result.end_version) == (2, 4) and result.existed_before
    assert (result.happened_since, result.happened_until) == (since, until)
    everything = audit.diff("ann", happened_until=until, store=store)
    assert not everything.existed_before and everything.exists_after and len(everything.added) == 3
    assert audit.diff("ann", happened_since=T0 + timedelta(days=3), store=store).rows == ()
    with pytest.raises(InvalidInput, match="start"):
        audit.diff("ann", 1, 2, happened_since=since, store=store)
    with pytest.raises(InvalidInput, match="happened_since"):
        audit.diff("ann", happened_since=until, happened_until=since, store=store)
    with pytest.raises(InvalidInput, match="happened_until"):
        audit.diff("ann", happened_until=datetime(2026, 3, 1), store=store)


LEARNER_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("update_preference"), st.sampled_from(["style", "pace"]), st.sampled_from(["a", "b"])),
        st.tuples(st.just("add_interest"), st.sampled_from(["Robotics", "Music"])),
        st.tuples(st.just("remove_interest"), st.sampled_from(["Robotics", "Music"])),
        st.tuples(st.just("start_lo"), st.sampled_from(["LO1", "LO2"])),
        st.tuples(st.just("mark_lo_completed"), st.sampled_from(["LO1", "LO2"])),
        st.tuples(st.just("record_activity_attempt"), st.just("LO1"), st.sampled_from(["a1", "a2"]), st.just("quiz")),
        st.tuples(st.just("delete")),
    ),
    min_size=1,
    max_size=25,
)


_LEARNER_NUMBERS = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=LEARNER_STEPS)
def test_as_of_every_version_agrees_with_the_aggregate_replayed_that_far(
    sqlite_store: SqlEventStore, steps: list[tuple[str, ...]]
) -> None:
    """The as-of view (projectors into scratch tables) and the aggregate's own fold agree at
    every version: two independent readings of the same events."""
    learner = f"p{next(_LEARNER_NUMBERS)}"
    profile = LearnerProfile(learner, persistence_enabled=False, store=sqlite_store)
    for name, *args in steps:
        if profile.exists:  # a deleted profile takes no more changes
            getattr(profile, name)(*args)
    profile.save()
    events = sqlite_store.read_stream(learner)
    state_profile = LearnerProfile(learner, persistence_enabled=False, store=sqlite_store)
    for version in range(1, len(events) + 1):
        state = LearnerState()
        for event in events[:version]:
            state.apply(event.event, event.occurred_at)
        state_profile._state = state
        expected = aggregate_snapshot(state_profile) if state.exists else None
        assert profile_snapshot(audit.profile_as_of(learner, version=version, store=sqlite_store)) == expected


# ---------------------------------------------------------------------------------------------
# Event versioning: an old row shape read through every path
# ---------------------------------------------------------------------------------------------


def _insert_raw(
    store: SqlEventStore,
    learner_id: str,
    version: int,
    event_type: str,
    schema_version: int,
    payload: dict[str, object] | str,
    *,
    metadata: str | None = None,
) -> None:
    """A row as an older version of the code wrote it, chained (migration 0003) and, when its
    payload is given as data, encrypted (migration 0005); text is stored as it is."""
    at = T0 + timedelta(minutes=version)
    event_id = new_event_id()
    row = {
        "event_id": event_id,
        "learner_id": learner_id,
        "version": version,
        "event_type": event_type,
        "schema_version": schema_version,
        "occurred_at": at,
        "recorded_at": at,
        "payload": payload if isinstance(payload, str) else json.dumps(payload),
        "metadata": metadata or json.dumps({"actor": "teacher:7", "reason": None, "correlation_id": event_id}),
    }
    if store.cipher is not None and not isinstance(payload, str):
        row["payload"], _ = sealed(store.cipher, learner_id, version, event_type, schema_version, row["payload"], {})
    with store.engine.begin() as connection:
        previous = connection.execute(
            select(event_log.c.hash).where(event_log.c.learner_id == learner_id, event_log.c.version == version - 1)
        ).scalar()
        chain_rows([row], previous or "", store.log_key)  # old rows were chained by migration 0003
        connection.execute(insert(event_log).values({c.name: row[c.name] for c in event_log.c if c.name in row}))


def test_a_v1_preference_event_written_as_old_rows_is_read_through_every_path(store: SqlEventStore) -> None:
    """PreferenceSet v1 had no previous_value; rows of that shape stay readable everywhere."""
    _insert_raw(store, "old", 1, "LearnerProfileCreated", 1, {})
    _insert_raw(store, "old", 2, "PreferenceSet", 1, {"category": "style", "value": "visual"})
    _insert_raw(store, "old", 3, "PreferenceSet", 1, {"category": "style", "value": "auditory"})
    lifted = PreferenceSet(category="style", value="auditory", previous_value=None)

    # the aggregate
    profile = LearnerProfile.load("old", store=store)
    assert profile.preferences["style"] == "auditory" and profile.version == 3
    # history
    events = audit.history("old", store=store)
    assert [event.schema_version for event in events] == [1, 1, 1]
    assert events[2].event == lifted
    # projectors, through a rebuild
    rebuild_projections(store.engine, cipher=store.cipher)
    assert [(p.category, p.value) for p in pm.get_preferences("old", store=store)] == [("style", "auditory")]
    # as-of
    then = audit.profile_as_of("old", version=2, store=store)
    assert then is not None and then.preferences[0].value == "visual"
    # a new change on top is written as v2
    profile.update_preference("style", "kinaesthetic")
    newest = audit.history("old", store=store)[-1]
    assert newest.schema_version == PreferenceSet.schema_version == 2
    assert newest.event == PreferenceSet(category="style", value="kinaesthetic", previous_value="auditory")


@pytest.mark.parametrize(
    ("event_type", "schema_version", "payload", "problem"),
    [
        ("PreferenceSet", 9, {"category": "a", "value": "b"}, "schema_version 9"),
        ("MysteryHappened", 1, {}, "unknown event type"),
        ("InterestAdded", 1, {"interest": "x"}, "interest_name"),
    ],
)
def test_unreadable_events_name_their_log_position(
    store: SqlEventStore, event_type: str, schema_version: int, payload: dict[str, object], problem: str
) -> None:
    LearnerProfile("ok", store=store).add_interest("Music")
    _insert_raw(store, "bad", 1, event_type, schema_version, payload)
    position = store.last_position()
    for read in (
        lambda: audit.history("bad", store=store),
        lambda: LearnerProfile.load("bad", store=store),
        lambda: rebuild_projections(store.engine, cipher=store.cipher),
        lambda: audit.profile_as_of("bad", version=1, store=store),
    ):
        with pytest.raises(CorruptEventError, match=f"position {position} .*{problem}"):
            read()
    # the failed rebuild left the live tables alone
    assert pm.get_interests("ok", store=store)[0].interest_name == "Music"


@pytest.mark.parametrize(
    ("column", "text", "schema_version", "problem"),
    [
        ("payload", '{"interest_name": "Mus', 1, "payload does not fit"),
        ("payload", "not json", 1, "payload does not fit"),
        ("payload", '{"category": "style"', 1, "EOF while parsing"),  # an old shape, read for upcasting
        ("metadata", "{oops", 1, "metadata is not JSON"),
    ],
)
def test_text_that_is_not_json_names_its_log_position(
    store: SqlEventStore, column: str, text: str, schema_version: int, problem: str
) -> None:
    event_type = "PreferenceSet" if "category" in text else "InterestAdded"
    if column == "payload":
        _insert_raw(store, "bad", 1, event_type, schema_version, text)
    else:
        _insert_raw(store, "bad", 1, event_type, schema_version, '{"interest_name": "Music"}', metadata=text)
    position = store.last_position()
    with pytest.raises(CorruptEventError, match=f"position {position} .*{problem}"):
        audit.history("bad", store=store)


def test_rebuild_equals_inline_after_the_audit_paths_ran(store: SqlEventStore) -> None:
    _write_day_by_day(store)
    before = read_model_rows(store.engine)
    audit.profile_as_of("ann", version=4, store=store)
    audit.diff("ann", 1, 8, store=store)
    assert read_model_rows(store.engine) == before  # the scratch database is not the live one
    rebuild_projections(store.engine, cipher=store.cipher)
    assert read_model_rows(store.engine) == before
