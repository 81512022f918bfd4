"""The README's web example (`examples/web_app.py`): an asyncio application on the async API."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dala_events.app import Dala
from dala_events.attribution import recorded_as
from dala_events.settings import Settings
from examples.web_app import app


def test_the_web_example_records_who_changed_what_and_answers_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/web.db"
    monkeypatch.setenv("DALA_DATABASE_URL", url)
    with TestClient(app) as client:
        added = client.post("/learners/ann/interests", json={"interest": "Robotics"}, headers={"X-Actor": "teacher:7"})
        assert added.status_code == 201 and added.json() == {"added": True}
        again = client.post("/learners/ann/interests", json={"interest": "Robotics"}, headers={"X-Actor": "teacher:7"})
        assert again.status_code == 200 and again.json() == {"added": False}
        assert client.get("/learners/ann/interests").json() == ["Robotics"]
        history = client.get("/learners/ann/history").json()
        assert [(h["type"], h["by"], h["why"]) for h in history] == [
            ("LearnerProfileCreated", "teacher:7", "teacher's screen"),
            ("InterestAdded", "teacher:7", "teacher's screen"),
        ]
        empty = client.post("/learners/ann/interests", json={"interest": ""}, headers={"X-Actor": "teacher:7"})
        assert empty.status_code == 422 and empty.json()["field"] == "interest_name"
        assert client.get("/learners/nobody/history").json() == []
    with Dala.open(Settings(database_url=url)) as dala, recorded_as("dpo:1", reason="parent's request"):
        dala.erase("ann")
    with TestClient(app) as client:
        assert client.post("/learners/ann/interests", json={"interest": "Art"}).status_code == 410
