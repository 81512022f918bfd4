"""The README's consumer (`examples/send_to_lrs.py`) against a stand-in LRS on localhost."""

from __future__ import annotations

import importlib.util
import json
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


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("send_to_lrs", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _LRS(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    refuse: ClassVar[threading.Event] = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.refuse.is_set() or self.headers["X-Experience-API-Version"] != "1.0.3":
            self.send_response(503)
            self.end_headers()
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
    _LRS.received = []
    _LRS.refuse.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LRS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/xapi/statements"
    finally:
        server.shutdown()
        server.server_close()


def test_each_learning_event_reaches_the_lrs_once_and_a_refusal_is_sent_again(tmp_path: Path, lrs: str) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/school.db", xapi_homepage="https://dala.example.org")
    send_to_lrs = _example()
    with Dala.open(settings) as dala:
        profile = dala.profile("ann")
        profile.add_interest("Robotics")  # not a learning event: not sent
        profile.start_lo("MATH_LO_001")
        profile.record_activity_attempt("MATH_LO_001", "act-1", "quiz", score=80.0, completed=True)
        assert send_to_lrs.forward(dala, lrs, "Basic dGVzdDp0ZXN0", stop_when_idle=True) == 2
        sent = [event for event in dala.history("ann") if event.event_type in send_to_lrs.SENT_TYPES]
        assert [statement["id"] for statement in _LRS.received] == [statement_id(e.event_id) for e in sent]
        assert {d.what for d in dala.disclosures("ann")} == {"export_xapi"}

        profile.add_badge("trailblazer", "Trailblazer")
        _LRS.refuse.set()
        with pytest.raises(OSError):  # the LRS is down: the badge is not acknowledged
            send_to_lrs.forward(dala, lrs, "Basic dGVzdDp0ZXN0", stop_when_idle=True)
        _LRS.refuse.clear()
        assert send_to_lrs.forward(dala, lrs, "Basic dGVzdDp0ZXN0", stop_when_idle=True) == 1
        assert len(_LRS.received) == 3 and _LRS.received[-1]["verb"]["id"].endswith("/earned")
