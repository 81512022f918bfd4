"""xAPI: a learner's attempts, objective progress and badges as statements an LRS accepts."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import pytest

from dala_events.attribution import recorded_as
from dala_events.disclosures import list_disclosures
from dala_events.envelopes import RecordedEvent
from dala_events.errors import InvalidInput, LearnerNotFound
from dala_events.events import ActivityAttemptRecorded
from dala_events.store import SqlEventStore
from dala_events.xapi import (
    PASS_MARK,
    STATEMENT_NAMESPACE,
    VERBS,
    export_learner_xapi,
    learner_statements,
    statement_id,
    xapi_score,
)
from tests.helpers import T0, varied_learner
from tests.xapi_rules import batch_problems, statement_problems

HOME = "https://learning.example.org"


def _verbs(statements: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(s["verb"]["display"]["en"], s["object"]["id"].rsplit("/", 1)[-1]) for s in statements]


def test_every_xapi_statement_is_one_an_lrs_accepts(store: SqlEventStore) -> None:
    varied_learner(store)
    statements = export_learner_xapi("ann", homepage=HOME, store=store)
    assert batch_problems(json.loads(json.dumps(statements))) == []
    assert len(statements) == 12


def test_xapi_verbs_follow_what_happened_and_the_pass_mark(store: SqlEventStore) -> None:
    varied_learner(store)
    statements = export_learner_xapi("ann", homepage=HOME, store=store)
    assert _verbs(statements) == [
        ("attempted", "MATH_LO_001"),  # work on the objective begins
        ("completed", "quiz%201%2F%C3%BC"),  # a completed attempt
        ("attempted", "practice-2"),  # an attempt not completed
        ("attempted", "reading-3"),
        ("progressed", "MATH_LO_001"),  # a change while in progress
        ("passed", "MATH_LO_001"),  # completed, 75 >= 60
        ("failed", "Maths%20%2F%20Year%203"),  # completed, 59.5 < PASS_MARK
        ("completed", "ART_LO_009"),  # completed without a score
        ("attempted", "SCI_LO_002"),  # then back to not started: no statement
        ("earned", "trail%20blazer"),
        ("earned", "b2"),  # then revoked: no statement
        ("completed", "paper-test"),
    ]
    by_verb = {statement["verb"]["display"]["en"]: statement["verb"]["id"] for statement in statements}
    assert by_verb == VERBS
    assert PASS_MARK == 60.0
    passed, failed = statements[5], statements[6]
    assert passed["result"] == {
        "score": {"scaled": 0.75, "raw": 75.0, "min": 0, "max": 100},
        "success": True,
        "completion": True,
    }
    assert failed["result"]["success"] is False and failed["result"]["completion"] is True
    assert statements[7]["result"] == {"completion": True}
    assert statements[0]["result"] == {"completion": False}
    assert statements[1]["result"] == {"score": {"scaled": 0.8, "raw": 80.0, "min": 0, "max": 100}, "completion": True}
    assert statements[3]["result"] == {"completion": False}


def test_xapi_statements_identify_the_learner_the_objects_and_the_times(store: SqlEventStore) -> None:
    profile = varied_learner(store)
    statements = export_learner_xapi("ann", homepage=HOME + "/", store=store)
    events = {statement_id(event.event_id): event for event in store.read_stream("ann")}
    for statement in statements:
        assert statement["actor"] == {"objectType": "Agent", "account": {"homePage": HOME + "/", "name": "ann"}}
        assert statement["object"]["id"].startswith(HOME + "/")
        assert statement["context"]["platform"] == "DALA"
        event = events[statement["id"]]
        assert uuid.UUID(statement["id"]) == uuid.uuid5(STATEMENT_NAMESPACE, event.event_id)
        assert uuid.UUID(statement["id"]).version == 5
        assert datetime.fromisoformat(statement["timestamp"]) == event.occurred_at
        assert datetime.fromisoformat(statement["stored"]) == event.recorded_at
    attempt = statements[1]
    assert attempt["object"]["id"] == f"{HOME}/activities/MATH_LO_001/quiz%201%2F%C3%BC"
    assert attempt["object"]["definition"] == {
        "name": {"en": "quiz 1/ü"},
        "description": {"en": "quiz activity of Know number bonds to 20"},
        "type": "http://adlnet.gov/expapi/activities/assessment",
    }
    (parent,) = attempt["context"]["contextActivities"]["parent"]
    assert parent["id"] == f"{HOME}/objectives/MATH_LO_001"
    assert parent["definition"]["type"] == "http://adlnet.gov/expapi/activities/objective"
    badge = statements[9]["object"]
    assert badge["id"] == f"{HOME}/badges/trail%20blazer"
    assert badge["definition"]["type"] == "http://activitystrea.ms/schema/1.0/badge"
    assert badge["definition"]["name"] == {"en": "Trailblazer"}
    last = statements[-1]
    assert last["timestamp"] == "2026-03-06T09:00:00.000000Z" and last["stored"] == "2026-03-07T09:00:00.000000Z"
    assert profile.version == store.stream_version("ann")


def test_xapi_statement_ids_are_stable_and_each_export_is_a_disclosure(store: SqlEventStore) -> None:
    varied_learner(store)
    with recorded_as("lrs:sync", reason="nightly"):
        first = export_learner_xapi("ann", homepage=HOME, store=store)
    second = export_learner_xapi("ann", homepage=HOME, store=store)
    assert first == second
    records = list_disclosures("ann", store=store)
    assert [(d.what, d.actor, d.reason) for d in records] == [
        ("export_xapi", "lrs:sync", "nightly"),
        ("export_xapi", "system", None),
    ]


def test_the_xapi_home_page_is_required_and_checked(store: SqlEventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    varied_learner(store)
    monkeypatch.delenv("DALA_XAPI_HOMEPAGE", raising=False)
    with pytest.raises(InvalidInput) as unset:
        export_learner_xapi("ann", store=store)
    assert unset.value.field == "DALA_XAPI_HOMEPAGE" and "home page" in str(unset.value)
    for bad in ("learning.example.org", "ftp://example.org", "https://", "https://x.org/?a=1", "https://x.org/#top"):
        monkeypatch.setenv("DALA_XAPI_HOMEPAGE", bad)
        with pytest.raises(InvalidInput) as refused:
            export_learner_xapi("ann", store=store)
        assert refused.value.field == "DALA_XAPI_HOMEPAGE"
    assert list_disclosures("ann", store=store) == []
    monkeypatch.setenv("DALA_XAPI_HOMEPAGE", "https://platform.example.org/dala")
    statements = export_learner_xapi("ann", store=store)
    assert statements[0]["actor"]["account"]["homePage"] == "https://platform.example.org/dala"
    assert statements[0]["object"]["id"] == "https://platform.example.org/dala/objectives/MATH_LO_001"


def test_a_score_off_the_percentage_scale_keeps_only_its_raw_value() -> None:
    assert xapi_score(0.0) == {"scaled": 0.0, "raw": 0.0, "min": 0, "max": 100}
    assert xapi_score(100.0)["scaled"] == 1.0
    assert xapi_score(150.0) == {"raw": 150.0} and xapi_score(-5.0) == {"raw": -5.0}
    # Scores are refused off the scale when entered; an old event might still hold one.
    odd = ActivityAttemptRecorded.model_construct(
        lo_id="L", activity_id="a", activity_type="quiz", score=150.0, completed=True, attempt_details=None
    )
    recorded = RecordedEvent(
        1, "0190a5c8-0000-7000-8000-000000000001", "ann", 1, "ActivityAttemptRecorded", 1, T0, T0, odd, {}
    )
    (statement,) = learner_statements("ann", [recorded], homepage=HOME)
    assert statement["result"] == {"score": {"raw": 150.0}, "completion": True}
    assert statement_problems(statement) == []


def test_the_checker_refuses_what_an_lrs_refuses() -> None:
    good = {
        "id": str(uuid.uuid4()),
        "actor": {"objectType": "Agent", "account": {"homePage": HOME, "name": "ann"}},
        "verb": {"id": VERBS["passed"], "display": {"en-GB": "passed"}},
        "object": {"objectType": "Activity", "id": f"{HOME}/objectives/x"},
        "result": {"score": {"scaled": 0.5, "raw": 50, "min": 0, "max": 100}, "success": True},
        "timestamp": "2026-03-02T09:00:00.000Z",
    }
    assert statement_problems(good) == []
    broken: list[dict[str, Any]] = [
        {k: v for k, v in good.items() if k != "actor"},
        good | {"id": "not-a-uuid"},
        good | {"actor": {"account": {"homePage": "example.org", "name": "ann"}}},
        good | {"actor": {"mbox": "mailto:a@example.org", "account": {"homePage": HOME, "name": "ann"}}},
        good | {"verb": {"id": "passed", "display": {"en": "passed"}}},
        good | {"verb": {"id": VERBS["passed"], "display": {"english": "passed"}}},
        good | {"object": {"id": "objectives x"}},
        good | {"result": {"score": {"scaled": 1.5}}},
        good | {"result": {"score": {"raw": 120, "min": 0, "max": 100}}},
        good | {"result": {"score": {"raw": "50"}}},
        good | {"result": {"completion": 1}},
        good | {"result": {"success": None}},
        good | {"context": {}},
        good | {"timestamp": "2026-03-02T09:00:00"},
        good | {"timestamp": "2999-01-01T00:00:00Z"},
        good | {"colour": "blue"},
    ]
    for statement in broken:
        assert statement_problems(statement), statement
    assert batch_problems([good, good]) == ["two statements share an id"]


def test_an_unknown_learner_has_no_statements_and_nothing_is_recorded(store: SqlEventStore) -> None:
    with pytest.raises(LearnerNotFound, match="no recorded changes"):
        export_learner_xapi("nobody", homepage=HOME, store=store)
    assert list_disclosures("nobody", store=store) == []
