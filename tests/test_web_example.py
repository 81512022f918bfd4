"""The README's web example (`examples/web_app.py`): an asyncio application on the async API."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dala_events.app import Dala
from dala_events.attribution import recorded_as
from dala_events.settings import DEFAULT_DATABASE_URL, Settings
from examples import web_app
from examples.web_app import app

ROOT = Path(__file__).resolve().parent.parent


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
    with Dala.open(Settings(database_url=url)) as dala, recorded_as("dpo:1", reason="parent's request"):
        dala.erase("ann")
    with TestClient(app) as client:
        assert client.post("/learners/ann/interests", json={"interest": "Art"}).status_code == 410
        assert client.get("/learners/ann/interests").status_code == 410


def test_an_unknown_learner_is_not_found_and_a_body_that_is_not_json_is_a_bad_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/web.db"
    with Dala.open(Settings(database_url=url)) as dala:
        dala.profile("bob").start_lo("MATH_LO_001")  # a learner with no interests
    monkeypatch.setenv("DALA_DATABASE_URL", url)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/learners/nobody/interests", "/learners/nobody/history"):
            missing = client.get(path)
            assert missing.status_code == 404 and "nobody" in missing.json()["error"], path
        assert client.get("/learners/bob/interests").json() == []
        for body in (b"Robotics", b'{"interest": ', b'["Robotics"]'):
            refused = client.post("/learners/bob/interests", content=body, headers={"Content-Type": "application/json"})
            assert refused.status_code == 400 and "JSON object" in refused.json()["error"], body
            assert "Traceback" not in refused.text
        assert client.get("/learners/bob/interests").json() == []


def test_the_web_example_says_how_to_serve_the_database_make_demo_filled() -> None:
    """Its docstring installs the `web` extra (uvicorn with Starlette) and serves the default
    database, the one `make demo` (`dala demo`) filled, not a new one."""
    doc = web_app.__doc__ or ""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {requirement.split(">")[0] for requirement in extras["web"]} >= {"starlette", "uvicorn"}
    assert "pip install -e '.[web]'" in doc and "uvicorn examples.web_app:app" in doc
    assert "DALA_DATABASE_URL=" not in doc or f"DALA_DATABASE_URL={DEFAULT_DATABASE_URL} " in doc
