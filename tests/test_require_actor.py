"""DALA_REQUIRE_ACTOR: no change to a child's record is made without naming who made it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dala_events import persistence_manager as pm
from dala_events.attribution import recorded_as
from dala_events.errors import ActorRequired, InvalidInput
from dala_events.hlp_module import LearnerProfile, get_or_create_learner_profile
from dala_events.store import InMemoryEventStore, SqlEventStore
from tests.helpers import log_row_count


def _ann(store: SqlEventStore) -> LearnerProfile:
    with recorded_as("teacher:42"):
        profile = LearnerProfile("ann", store=store)
        profile.add_interest("Robotics")
    return profile


@pytest.fixture
def actor_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DALA_REQUIRE_ACTOR", "1")


def test_without_the_setting_an_unnamed_change_is_systems(memory_store: InMemoryEventStore) -> None:
    profile = LearnerProfile("ann", store=memory_store)
    profile.add_interest("Robotics")
    assert [event.metadata["actor"] for event in memory_store.read_stream("ann")] == ["system", "system"]


@pytest.mark.usefixtures("actor_required")
def test_a_write_without_an_actor_is_refused_and_nothing_is_written(store: SqlEventStore) -> None:
    profile = _ann(store)
    written = log_row_count(store.engine)
    with pytest.raises(ActorRequired) as refused:
        profile.add_interest("Music")
    assert isinstance(refused.value, InvalidInput) and refused.value.field == "actor"
    assert "DALA_REQUIRE_ACTOR" in str(refused.value) and "--actor" in str(refused.value)
    assert "Music" not in profile.interests and profile.version == profile.saved_version
    with pytest.raises(ActorRequired):
        get_or_create_learner_profile("bob", store=store)
    with pytest.raises(ActorRequired):
        pm.add_interest("ann", pm.InterestData(interest_name="Chess"), store=store)
    with recorded_as(reason="no actor named"), pytest.raises(ActorRequired):
        profile.add_interest("Music")
    assert log_row_count(store.engine) == written
    assert [i.interest_name for i in pm.get_interests("ann", store=store)] == ["Robotics"]

    with recorded_as("teacher:7", reason="parent meeting"), recorded_as(reason="inner block names no actor"):
        assert profile.add_interest("Music")
    assert store.read_stream("ann")[-1].metadata["actor"] == "teacher:7"


@pytest.mark.usefixtures("actor_required")
def test_with_persistence_off_the_change_is_refused_when_it_is_made(memory_store: InMemoryEventStore) -> None:
    with recorded_as("teacher:7"):
        profile = LearnerProfile("ann", persistence_enabled=False, store=memory_store)
        profile.add_interest("Robotics")
    with pytest.raises(ActorRequired):
        profile.add_struggle_area("Fractions")
    assert len(profile.pending_events) == 2
    profile.save()  # what was attributed is saved, whoever calls save()
    assert [event.metadata["actor"] for event in memory_store.read_stream("ann")] == ["teacher:7", "teacher:7"]


@pytest.mark.usefixtures("actor_required")
def test_an_erasure_without_an_actor_is_refused(store: SqlEventStore) -> None:
    _ann(store)
    with pytest.raises(ActorRequired, match="this erasure"):
        pm.delete_learner_profile("ann", store=store)
    with pytest.raises(ActorRequired, match="this write"):
        LearnerProfile.load("ann", store=store).delete()
    assert pm.get_full_learner_profile_data("ann", store=store) is not None
    with recorded_as("dpo:1", reason="erasure request"):
        pm.delete_learner_profile("ann", store=store)
    assert pm.get_full_learner_profile_data("ann", store=store) is None


@pytest.mark.parametrize(
    ("value", "required"), [("", False), ("0", False), ("off", False), ("true", True), ("YES", True)]
)
def test_the_setting_reads_the_usual_words(
    value: str, required: bool, memory_store: InMemoryEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DALA_REQUIRE_ACTOR", value)
    if required:
        with pytest.raises(ActorRequired):
            LearnerProfile("ann", store=memory_store)
    else:
        LearnerProfile("ann", store=memory_store)
        assert memory_store.stream_version("ann") == 1


def test_a_misspelt_setting_refuses_rather_than_turning_the_check_off(
    memory_store: InMemoryEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DALA_REQUIRE_ACTOR", "ture")
    with pytest.raises(InvalidInput) as refused:
        LearnerProfile("ann", store=memory_store)
    assert refused.value.field == "DALA_REQUIRE_ACTOR"
    assert memory_store.stream_version("ann") == 0
    with recorded_as("teacher:1"):  # a named actor never needs the setting read
        LearnerProfile("ann", store=memory_store)


SWITCH_WORDS = ["1", "0", "true", "False", " YES ", "no", "On", "off", "", "   "]


@pytest.mark.parametrize("value", [*SWITCH_WORDS, "maybe", "ture", "2", "y"])
def test_every_switch_follows_one_rule(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """DALA_REQUIRE_ACTOR, read where each change is attributed, reads a value as
    DALA_AUTO_REBUILD (a setting) does, and refuses what it refuses with the same words."""
    from dala_events.attribution import actor_required
    from dala_events.settings import Settings

    monkeypatch.setenv("DALA_REQUIRE_ACTOR", value)
    try:
        rebuild: object = Settings.from_env({"DALA_AUTO_REBUILD": value}).auto_rebuild
    except InvalidInput as error:
        rebuild = str(error).replace("DALA_AUTO_REBUILD", "<switch>")
    try:
        required: object = actor_required()
    except InvalidInput as error:
        required = str(error).replace("DALA_REQUIRE_ACTOR", "<switch>")
    if value.strip():
        assert required == rebuild, (required, rebuild)
    else:  # unset: each its default (off for the actor check, by database for rebuilds)
        assert (required, rebuild) == (False, None)
    if value not in SWITCH_WORDS:
        assert isinstance(required, str) and required.startswith("<switch>: must be 1 or 0")
        assert all(word in required for word in ("true", "false", "yes", "no", "on", "off")), required
        assert repr(value) in required


def test_a_bad_actor_from_the_environment_is_named_as_the_variable(tmp_path: Path) -> None:
    from tests.test_cli_values import error_line, invoke

    from_environment = invoke(tmp_path, "learners", env={"DALA_ACTOR": "not an actor"})
    assert error_line(from_environment).startswith("error: DALA_ACTOR: must be a str like")
    given = invoke(tmp_path, "learners", "--actor", "not an actor")
    assert error_line(given, status=2).startswith("error: --actor: must be a str like")
    after_the_name = invoke(tmp_path, "learners", "--actor", "not an actor", env={"DALA_ACTOR": "teacher:1"})
    assert error_line(after_the_name, status=2).startswith("error: --actor: must be a str like")
