"""Send each learner's xAPI statements to a learning record store (LRS) as they happen.

A consumer of the log through a subscription (`dala_events.subscriptions`): every activity
attempt, learning-objective change and badge becomes xAPI statements (`dala_events.xapi`),
POSTed to the LRS's statements endpoint; the subscription's checkpoint moves only once the LRS
has accepted them, so a crash or an unreachable LRS means the event is sent again, never lost.
Statement ids are derived from event ids: an LRS that already holds one ignores the repeat.
Each send is recorded in the learner's disclosure log.

    DALA_DATABASE_URL=... DALA_XAPI_HOMEPAGE=https://dala.example.org \\
        python examples/send_to_lrs.py https://lrs.example.org/xapi/statements "Basic <token>"
"""

from __future__ import annotations

import json
import sys
import urllib.request

from dala_events.app import Dala
from dala_events.envelopes import RecordedEvent
from dala_events.settings import Settings
from dala_events.xapi import check_homepage, learner_statements

SENT_TYPES = (
    "ActivityAttemptRecorded",
    "LearningObjectiveStarted",
    "LearningObjectiveProgressUpdated",
    "LearningObjectiveCompleted",
    "BadgeAwarded",
)


def forward(dala: Dala, endpoint: str, authorization: str, *, stop_when_idle: bool = False) -> int:
    """Send the statements of every event not yet sent; returns how many events were handled."""
    homepage = check_homepage(dala.settings.xapi_homepage or "", "DALA_XAPI_HOMEPAGE")
    subscription = dala.subscription("lrs", event_types=SENT_TYPES)

    def send(event: RecordedEvent) -> None:
        statements = learner_statements(event.learner_id, [event], homepage=homepage)
        if not statements:  # e.g. a learning objective set back to not started
            return
        dala.record_disclosure(event.learner_id, "export_xapi")
        request = urllib.request.Request(
            endpoint,
            data=json.dumps(statements).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Experience-API-Version": "1.0.3",
                "Authorization": authorization,
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # an HTTP error raises: not acknowledged
            response.read()

    return subscription.run(send, stop_when_idle=stop_when_idle, poll_interval=2.0)


if __name__ == "__main__":
    with Dala.open(Settings.from_env()) as store:
        forward(store, sys.argv[1], sys.argv[2])
