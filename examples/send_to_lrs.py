"""Send each learner's xAPI statements to a learning record store (LRS) as they happen.

A consumer of the log through a subscription (`dala_events.subscriptions`): every activity
attempt, learning-objective change and badge becomes xAPI statements (`dala_events.xapi`),
POSTed to the LRS's statements endpoint. The subscription's checkpoint moves only once the LRS
has accepted an event's statements (HTTP 2xx), so a crash, an unreachable LRS or one that
answers an error means the event is sent again, never lost. Statement ids are derived from
event ids: an LRS that already holds one ignores the repeat. Each send is recorded in the
learner's disclosure log.

An LRS that fails (no answer, or an HTTP error) is tried again after a pause that doubles from
1 second to a minute at most, each failure logged; the event and those after it wait in their
order. Without `--once` the feed runs until stopped and never gives up; with `--once` it sends
what there is and returns, or stops after 5 tries of one event, saying which was not sent (exit
status 1; what was sent before it stays sent).

    DALA_XAPI_HOMEPAGE=https://dala.example.org \\
        python examples/send_to_lrs.py [--once] https://lrs.example.org/xapi/statements "Basic <token>"
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from dala_events.app import Dala
from dala_events.envelopes import RecordedEvent
from dala_events.errors import DalaError
from dala_events.settings import Settings
from dala_events.xapi import check_homepage, learner_statements

SUBSCRIPTION = "lrs"
SENT_TYPES = (
    "ActivityAttemptRecorded",
    "LearningObjectiveStarted",
    "LearningObjectiveProgressUpdated",
    "LearningObjectiveCompleted",
    "BadgeAwarded",
)
RETRY_PAUSE_FIRST = 1.0
"""Seconds before the second try of an event; each further pause doubles."""
RETRY_PAUSE_MOST = 60.0
TRIES_WHEN_ONCE = 5
POLL_SECONDS = 2.0

_log = logging.getLogger("send_to_lrs")


class NotSent(Exception):
    """The LRS did not accept an event's statements in the tries `--once` allows."""

    def __init__(self, event: RecordedEvent, why: str, tries: int) -> None:
        self.event = event
        super().__init__(f"not sent: {_named(event)}: {why}, after {tries} tries")


class _Stopped(Exception):
    """Stopped while an event was waiting for the LRS: it is not acknowledged."""


@dataclass
class Tally:
    """What a feed has done so far."""

    events: int = 0
    """Events handled: sent, or with nothing to send (acknowledged either way)."""
    statements: int = 0
    """Statements the LRS accepted."""


def forward(
    dala: Dala,
    endpoint: str,
    authorization: str,
    *,
    once: bool = False,
    out: Callable[[str], object] = print,
    pause: Callable[[float], object] | None = None,
    stop: threading.Event | None = None,
    tally: Tally | None = None,
) -> Tally:
    """Send the statements of every event not yet sent; returns what was done (`tally`, kept
    up to date as it goes, if given).

    `once`: return when nothing is left, or raise NotSent after TRIES_WHEN_ONCE failed tries of
    one event; otherwise run until `stop` is set, trying a failing LRS again for as long as it
    takes. `out` is told each event sent; `pause(seconds)` waits between tries (default: on
    `stop`, so that setting it ends the wait).
    """
    done = tally or Tally()
    homepage = check_homepage(dala.settings.xapi_homepage or "", "DALA_XAPI_HOMEPAGE")
    subscription = dala.subscription(SUBSCRIPTION, event_types=SENT_TYPES)
    stop = stop or threading.Event()
    wait = stop.wait if pause is None else pause

    def send(event: RecordedEvent) -> None:
        statements = learner_statements(event.learner_id, [event], homepage=homepage)
        if not statements:  # e.g. a learning objective set back to not started
            done.events += 1
            return
        dala.record_disclosure(event.learner_id, "export_xapi")
        body = json.dumps(statements).encode()
        tries = 0
        while True:
            tries += 1
            why = _post(endpoint, authorization, body)
            if why is None:
                done.events, done.statements = done.events + 1, done.statements + len(statements)
                out(f"sent {_count(len(statements), 'statement')}: {_named(event)}")
                return
            if once and tries == TRIES_WHEN_ONCE:
                raise NotSent(event, why, tries)
            seconds = min(RETRY_PAUSE_MOST, RETRY_PAUSE_FIRST * 2 ** (tries - 1))
            _log.warning("%s: %s; retrying in %g s (try %d)", _named(event), why, seconds, tries + 1)
            wait(seconds)
            if stop.is_set():
                raise _Stopped

    with contextlib.suppress(_Stopped):  # what waited is not acknowledged: the next run sends it
        subscription.run(send, stop_when_idle=once, poll_interval=POLL_SECONDS, stop=stop)
    return done


def _post(endpoint: str, authorization: str, body: bytes) -> str | None:
    """POST the statements; None when the LRS accepted them, else why not."""
    request = urllib.request.Request(
        endpoint,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Experience-API-Version": "1.0.3",
            "Authorization": authorization,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return None  # 2xx: urllib raises HTTPError for every other answer
    except urllib.error.HTTPError as error:
        answer = error.read(200).decode("utf-8", "replace").strip()
        return f"the LRS answered HTTP {error.code}{f' ({answer})' if answer else ''}"
    except (OSError, http.client.HTTPException) as error:  # no answer: refused, reset, timed out
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        return f"no answer from the LRS ({reason})"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _named(event: RecordedEvent) -> str:
    return f"learner {event.learner_id!r} version {event.version} {event.event_type} (log position {event.position})"


def main(argv: list[str] | None = None) -> int:
    """The command: send, say what was sent; exit status 1 when something was not sent."""
    parser = argparse.ArgumentParser(description="Send the log's learning events to an LRS as xAPI statements.")
    parser.add_argument("endpoint", help="the LRS's statements endpoint, e.g. https://lrs.example.org/xapi/statements")
    parser.add_argument("authorization", help='the Authorization header, e.g. "Basic <token>"')
    parser.add_argument("--once", action="store_true", help="send what there is, then stop")
    args = parser.parse_args(argv)
    done = Tally()
    try:
        with Dala.open(Settings.from_env()) as dala:
            forward(dala, args.endpoint, args.authorization, once=args.once, out=print, tally=done)
    except (NotSent, DalaError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped: what was waiting for the LRS is sent by the next run", file=sys.stderr)
    print(f"{_count(done.events, 'event')} handled, {_count(done.statements, 'statement')} sent to the LRS")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sys.exit(main())
