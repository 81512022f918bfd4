"""The README's consumer (`examples/send_to_lrs.py`) against a stand-in LRS on localhost: what
it sends and says, `--once`, a failing LRS retried with growing pauses (injected: nothing
sleeps here), and nothing acknowledged that the LRS did not accept."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from dala_events.app import Dala
from dala_events.settings import Settings
from dala_events.xapi import statement_id

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "send_to_lrs.py"
AUTHORIZATION = "Basic dGVzdDp0ZXN0"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("send_to_lrs", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as `python examples/send_to_lrs.py` has it (its dataclass looks there)
    spec.loader.exec_module(module)
    return module


class _LRS(BaseHTTPRequestHandler):
    """Stores the statements of every POST it accepts; answers the statuses queued in `failing`
    first (each one request), and 503 while `refuse` is set."""

    received: ClassVar[list[dict[str, Any]]] = []
    failing: ClassVar[list[int]] = []
    requests: ClassVar[int] = 0
    refuse: ClassVar[threading.Event] = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests += 1
        status = self.failing.pop(0) if self.failing else 503 if self.refuse.is_set() else 200
        if status != 200 or self.headers["X-Experience-API-Version"] != "1.0.3":
            self.send_response(status if status != 200 else 400)
            self.end_headers()
            self.wfile.write(b"statements not stored")
            return
        self.received.extend(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps([statement["id"] for statement in body]).encode())

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def lrs() -> Iterator[str]:
    _LRS.received, _LRS.failing, _LRS.requests = [], [], 0
    _LRS.refuse.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LRS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/xapi/statements"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dala(tmp_path: Path) -> Iterator[Dala]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/school.db", xapi_homepage="https://dala.example.org")
    with Dala.open(settings) as opened:
        profile = opened.profile("ann")
        profile.add_interest("Robotics")  # not a learning event: not sent
        profile.start_lo("MATH_LO_001")
        profile.record_activity_attempt("MATH_LO_001", "act-1", "quiz", score=80.0, completed=True)
        yield opened


class _Pauses(list[float]):
    """Records each pause the feed asks for, without waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_each_learning_event_reaches_the_lrs_once_and_what_was_sent_is_said(dala: Dala, lrs: str) -> None:
    send_to_lrs = _example()
    said: list[str] = []
    assert send_to_lrs.forward(dala, lrs, AUTHORIZATION, once=True, out=said.append).events == 2
    sent = [event for event in dala.history("ann") if event.event_type in send_to_lrs.SENT_TYPES]
    assert [statement["id"] for statement in _LRS.received] == [statement_id(e.event_id) for e in sent]
    assert {d.what for d in dala.disclosures("ann")} == {"export_xapi"}
    assert said == [
        f"sent 1 statement: learner 'ann' version {e.version} {e.event_type} (log position {e.position})"
        for e in sent
    ]
    assert send_to_lrs.forward(dala, lrs, AUTHORIZATION, once=True, out=said.append).events == 0  # nothing new
    assert len(_LRS.received) == 2


def test_a_failing_lrs_is_retried_with_growing_pauses_and_nothing_is_lost(
    dala: Dala, lrs: str, caplog: pytest.LogCaptureFixture
) -> None:
    send_to_lrs = _example()
    _LRS.failing = [500, 500, 502]
    pauses = _Pauses()
    with caplog.at_level(logging.WARNING, logger="send_to_lrs"):
        done = send_to_lrs.forward(dala, lrs, AUTHORIZATION, once=True, out=lambda _: None, pause=pauses)
    assert (done.events, done.statements) == (2, 2)
    assert pauses == [1.0, 2.0, 4.0]
    assert len(_LRS.received) == 2 and _LRS.requests == 5  # each event's statements stored once
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 3 and "HTTP 500" in warnings[0] and "learner 'ann' version 3" in warnings[0]
    assert "retrying in 1 s" in warnings[0]


def test_with_once_an_lrs_that_keeps_failing_stops_the_feed_with_nothing_acknowledged(dala: Dala, lrs: str) -> None:
    send_to_lrs = _example()
    _LRS.refuse.set()
    pauses = _Pauses()
    with pytest.raises(send_to_lrs.NotSent, match=r"learner 'ann' version 3 .*HTTP 503.* after 5 tries") as stopped:
        send_to_lrs.forward(dala, lrs, AUTHORIZATION, once=True, out=lambda _: None, pause=pauses)
    assert stopped.value.event.version == 3
    assert pauses == [1.0, 2.0, 4.0, 8.0]
    assert dala.subscription(send_to_lrs.SUBSCRIPTION, event_types=send_to_lrs.SENT_TYPES).checkpoint() == (-1, 0)
    _LRS.refuse.clear()
    assert send_to_lrs.forward(dala, lrs, AUTHORIZATION, once=True, out=lambda _: None).events == 2
    assert len(_LRS.received) == 2


def test_a_feed_that_runs_on_never_gives_up_and_sends_in_order_once_the_lrs_is_back(dala: Dala, lrs: str) -> None:
    """Without --once the feed keeps going: the pause grows to a minute at most, the events wait
    in their order, and once the LRS takes them they are sent and acknowledged."""
    send_to_lrs = _example()
    _LRS.failing = [500] * 9 + [200, 503]  # the first event after 9 refusals, the second after 1
    pauses = _Pauses()
    stop = threading.Event()
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if len(said) == 2:
            stop.set()

    assert send_to_lrs.forward(dala, lrs, AUTHORIZATION, out=say, pause=pauses, stop=stop).events == 2
    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 1.0]
    assert [statement["verb"]["id"].rsplit("/", 1)[-1] for statement in _LRS.received] == ["attempted", "completed"]
    assert dala.subscription(send_to_lrs.SUBSCRIPTION, event_types=send_to_lrs.SENT_TYPES).fetch() == []


def test_the_command_sends_once_and_says_so(
    dala: Dala, lrs: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    send_to_lrs = _example()
    monkeypatch.setenv("DALA_DATABASE_URL", dala.settings.database_url)
    monkeypatch.setenv("DALA_XAPI_HOMEPAGE", "https://dala.example.org")
    assert send_to_lrs.main(["--once", lrs, AUTHORIZATION]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[-1] == "2 events handled, 2 statements sent to the LRS"
    _LRS.refuse.set()
    dala.profile("ann").add_badge("trailblazer", "Trailblazer")
    monkeypatch.setattr(send_to_lrs, "RETRY_PAUSE_FIRST", 0.0)  # no waiting in a test
    assert send_to_lrs.main(["--once", lrs, AUTHORIZATION]) == 1
    captured = capsys.readouterr()
    assert "not sent: learner 'ann' version 5 BadgeAwarded" in captured.err and "Traceback" not in captured.err
    _LRS.refuse.clear()
    assert send_to_lrs.main(["--once", lrs, AUTHORIZATION]) == 0  # the badge waited, and goes now
    assert capsys.readouterr().out.splitlines()[-1] == "1 event handled, 1 statement sent to the LRS"
    assert _LRS.received[-1]["verb"]["id"].endswith("/earned") and len(_LRS.received) == 3
