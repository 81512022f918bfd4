"""Export: everything held about a learner as one JSON document (subject access, portability)."""

from __future__ import annotations

import json

import pytest

from dala_events import persistence_manager as pm
from dala_events.attribution import recorded_as
from dala_events.disclosures import list_disclosures
from dala_events.errors import LearnerNotFound
from dala_events.store import SqlEventStore
from tests.helpers import varied_learner


def test_the_json_export_holds_the_profile_the_history_and_the_disclosures(store: SqlEventStore) -> None:
    profile = varied_learner(store)
    with recorded_as("dpo:1", reason="subject access request 17"):
        export = pm.export_learner("ann", store=store)
    document = json.loads(json.dumps(export.model_dump(mode="json")))
    assert document["format"] == "dala-learner-export" and document["format_version"] == 1
    assert document["learner_id"] == "ann"
    live = pm.get_full_learner_profile_data("ann", store=store)
    assert live is not None and document["profile"] == live.model_dump(mode="json")

    history = document["history"]
    assert [event["version"] for event in history] == list(range(1, profile.version + 1))
    assert history[0]["event_type"] == "LearnerProfileCreated"
    assert history[1]["payload"] == {"interest_name": "Robotics"}
    assert history[1]["metadata"]["actor"] == "teacher:42"
    assert history[1]["metadata"]["reason"] == "initial interview"
    assert history[1]["recorded_at"] == "2026-03-02T09:00:00Z"
    entered_later = history[-1]
    assert (
        entered_later["occurred_at"] == "2026-03-06T09:00:00Z"
        and entered_later["recorded_at"] == "2026-03-07T09:00:00Z"
    )

    (disclosure,) = document["disclosures"]
    assert disclosure["what"] == "export_json" and disclosure["actor"] == "dpo:1"
    assert disclosure["reason"] == "subject access request 17"
    assert [d.what for d in list_disclosures("ann", store=store)] == ["export_json"]


def test_a_deleted_learner_is_exported_without_a_profile_but_with_the_whole_history(store: SqlEventStore) -> None:
    varied_learner(store)
    pm.delete_learner_profile("ann", store=store)
    export = pm.export_learner("ann", store=store)
    assert export.profile is None
    assert export.history[-1].event_type == "LearnerProfileDeleted"
    assert len(export.history) == store.stream_version("ann")


def test_an_unknown_learner_has_no_export_and_nothing_is_recorded(store: SqlEventStore) -> None:
    with pytest.raises(LearnerNotFound, match="no recorded changes"):
        pm.export_learner("nobody", store=store)
    assert list_disclosures("nobody", store=store) == []
