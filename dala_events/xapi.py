"""A learner's learning as xAPI 1.0.3 statements, for a Learning Record Store (LRS).

`export_learner_xapi(learner_id)` turns the learner's activity attempts, learning-objective
progress and badges, read from the event log, into one JSON array of statements:

- `id`: a UUID (version 5) of the event id, so exporting again gives the same ids and an LRS
  that already holds a statement recognises it;
- `actor`: an Agent identified by an account: `homePage` is DALA_XAPI_HOMEPAGE (required: the
  platform's own address, an absolute http(s) URL), `name` the learner id;
- `verb`, from the ADL vocabulary where it has one:
  - an activity attempt: `completed` when the attempt was completed, else `attempted`
    (a score does not make an attempt passed or failed: activities have no pass mark);
  - a learning objective: `attempted` when work on it begins (in progress), `progressed` when
    it changes while in progress, and on completion `passed` (score at least PASS_MARK,
    60 of 100) or `failed` (below it), or `completed` when it has no score; a change back to
    not started has no verb and gives no statement;
  - a badge earned: `http://id.tincanapi.com/verb/earned` (the xAPI registry's verb for
    earning an award; ADL has none). A revoked badge gives no statement: taking one back
    would need a voiding statement, which an LRS refuses from a source not allowed to void;
- `object`: an Activity whose id is an IRI under the home page (`{homePage}/activities/{lo}/
  {activity}`, `{homePage}/objectives/{lo}`, `{homePage}/badges/{badge}`, each id
  percent-encoded), with a name, a description and an ADL or registry activity type;
- `result`: `score` (`raw`; `min` 0, `max` 100 and `scaled` = raw / 100 when the score lies on
  the 0-100 scale, as every score should), `completion`, and `success` where a pass mark decides;
- `context`: the platform, and an attempt's objective as its parent activity;
- `timestamp`: when it happened (`occurred_at`); `stored`: when it was recorded
  (`recorded_at`; an LRS replaces it with the time it stores the statement). Both RFC 3339 UTC.

The statements carry nothing about the learner but the id and what they did. Exporting is a
disclosure: `export_xapi` is recorded before the statements are returned.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from dala_events import audit
from dala_events.database_setup import sql_store_or_default
from dala_events.disclosures import record_disclosure
from dala_events.envelopes import RecordedEvent
from dala_events.errors import InvalidInput, LearnerNotFound
from dala_events.events import (
    ActivityAttemptRecorded,
    BadgeAwarded,
    LearningObjectiveCompleted,
    LearningObjectiveEvent,
    LearningObjectiveProgressUpdated,
    LearningObjectiveStarted,
)
from dala_events.settings import Settings
from dala_events.store import SqlEventStore
from dala_events.store.contract import check_kind
from dala_events.summaries import curriculum_titles

XAPI_HOMEPAGE_ENV = "DALA_XAPI_HOMEPAGE"
PLATFORM = "DALA"
LANGUAGE = "en"
"""The language tag of every display, name and description (RFC 5646)."""

PASS_MARK = 60.0
"""A learning objective completed with a score of at least this (of 100) is `passed`; below, `failed`."""
SCORE_MIN, SCORE_MAX = 0, 100
"""Scores are percentages."""

STATEMENT_NAMESPACE = uuid.UUID("6f1c2a4e-9b7d-5e3f-8a21-d4c0b5e7f913")
"""The namespace of the statement ids: uuid5(STATEMENT_NAMESPACE, event_id). Never change it,
or statements already sent to an LRS would come back under new ids."""

VERBS: dict[str, str] = {
    "attempted": "http://adlnet.gov/expapi/verbs/attempted",
    "progressed": "http://adlnet.gov/expapi/verbs/progressed",
    "completed": "http://adlnet.gov/expapi/verbs/completed",
    "passed": "http://adlnet.gov/expapi/verbs/passed",
    "failed": "http://adlnet.gov/expapi/verbs/failed",
    "earned": "http://id.tincanapi.com/verb/earned",
}
"""Each verb's IRI; its key is its display in English."""

ASSESSMENT = "http://adlnet.gov/expapi/activities/assessment"
OBJECTIVE = "http://adlnet.gov/expapi/activities/objective"
BADGE = "http://activitystrea.ms/schema/1.0/badge"
_ATTEMPT_TYPES: dict[str, str] = {
    "quiz": ASSESSMENT,
    "test": ASSESSMENT,
    "assessment": ASSESSMENT,
    "exam": ASSESSMENT,
    "game": "http://adlnet.gov/expapi/activities/simulation",
    "simulation": "http://adlnet.gov/expapi/activities/simulation",
    "reading": "http://adlnet.gov/expapi/activities/lesson",
    "lesson": "http://adlnet.gov/expapi/activities/lesson",
    "video": "http://adlnet.gov/expapi/activities/media",
}
OTHER_ACTIVITY = "http://adlnet.gov/expapi/activities/interaction"
_OBJECTIVE_EVENTS = (LearningObjectiveStarted, LearningObjectiveProgressUpdated, LearningObjectiveCompleted)
"""The type of an activity whose `activity_type` is none of the above (practice, ...)."""


def configured_homepage() -> str:
    """DALA_XAPI_HOMEPAGE, checked; InvalidInput naming it when it is unset or not a URL."""
    return check_homepage(Settings.from_env().xapi_homepage or "", XAPI_HOMEPAGE_ENV)


def check_homepage(value: str, field: str = "homepage") -> str:
    """`value` if it is an absolute http(s) URL without query or fragment, else InvalidInput."""
    example = "e.g. https://learning.example.org"
    check_kind(field, value, str, "a URL (str)")
    if not value:
        raise InvalidInput(
            field,
            f"must be set to the platform's home page for xAPI ({example}): statements identify the "
            "learner by an account on it",
        )
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in value)
    ):
        raise InvalidInput(
            field, f"must be an absolute http(s) URL without query or fragment ({example}), got {value!r}"
        )
    return value


def statement_id(event_id: str) -> str:
    """The statement id of the event `event_id`: stable, a UUID (version 5, RFC 4122 variant)."""
    return str(uuid.uuid5(STATEMENT_NAMESPACE, event_id))


def xapi_score(raw: float) -> dict[str, float | int]:
    """The xAPI score of a percentage: raw, min, max and scaled (raw / 100); only `raw` for a
    score off the 0-100 scale, whose scaled value would be meaningless."""
    if not SCORE_MIN <= raw <= SCORE_MAX:
        return {"raw": raw}
    return {"scaled": raw / SCORE_MAX, "raw": raw, "min": SCORE_MIN, "max": SCORE_MAX}


def xapi_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a Z."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def learner_statements(
    learner_id: str,
    events: Iterable[RecordedEvent],
    *,
    homepage: str,
    titles: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The xAPI statements of a learner's events, in log order (see the module docstring).

    `titles` names learning objectives (default: none, the id is the name).
    """
    home = check_homepage(homepage)
    base = home.rstrip("/")
    names = titles or {}
    statuses: dict[str, str] = {}
    statements: list[dict[str, Any]] = []

    def objective(lo_id: str) -> dict[str, Any]:
        name = names.get(lo_id, lo_id)
        return {
            "objectType": "Activity",
            "id": f"{base}/objectives/{quote(lo_id, safe='')}",
            "definition": {
                "name": {LANGUAGE: name},
                "description": {LANGUAGE: f"Learning objective {lo_id}"},
                "type": OBJECTIVE,
            },
        }

    for recorded in events:
        event = recorded.event
        verb: str | None = None
        result: dict[str, Any] = {}
        context: dict[str, Any] = {"platform": PLATFORM}
        if isinstance(event, ActivityAttemptRecorded):
            verb = "completed" if event.completed else "attempted"
            lo_name = names.get(event.lo_id, event.lo_id)
            activity = {
                "objectType": "Activity",
                "id": f"{base}/activities/{quote(event.lo_id, safe='')}/{quote(event.activity_id, safe='')}",
                "definition": {
                    "name": {LANGUAGE: event.activity_id},
                    "description": {LANGUAGE: f"{event.activity_type} activity of {lo_name}"},
                    "type": _ATTEMPT_TYPES.get(event.activity_type.lower(), OTHER_ACTIVITY),
                },
            }
            if event.score is not None:
                result["score"] = xapi_score(event.score)
            result["completion"] = event.completed
            context["contextActivities"] = {"parent": [objective(event.lo_id)]}
            target = activity
        elif isinstance(event, _OBJECTIVE_EVENTS):
            verb = _objective_verb(event, statuses.get(event.lo_id))
            statuses[event.lo_id] = event.status
            if verb is None:
                continue
            if event.score is not None:
                result["score"] = xapi_score(event.score)
            if verb in ("passed", "failed"):
                result["success"] = verb == "passed"
            result["completion"] = event.status == "completed"
            target = objective(event.lo_id)
        elif isinstance(event, BadgeAwarded):
            verb = "earned"
            target = {
                "objectType": "Activity",
                "id": f"{base}/badges/{quote(event.badge_id, safe='')}",
                "definition": {
                    "name": {LANGUAGE: event.badge_name},
                    "description": {LANGUAGE: event.details or f"Badge {event.badge_name}"},
                    "type": BADGE,
                },
            }
        else:
            continue
        statement: dict[str, Any] = {
            "id": statement_id(recorded.event_id),
            "actor": {"objectType": "Agent", "account": {"homePage": home, "name": learner_id}},
            "verb": {"id": VERBS[verb], "display": {LANGUAGE: verb}},
            "object": target,
        }
        if result:
            statement["result"] = result
        statement["context"] = context
        statement["timestamp"] = xapi_time(recorded.occurred_at)
        statement["stored"] = xapi_time(recorded.recorded_at)
        statements.append(statement)
    return statements


def _objective_verb(event: LearningObjectiveEvent, before: str | None) -> str | None:
    if event.status == "completed":
        if event.score is None:
            return "completed"
        return "passed" if event.score >= PASS_MARK else "failed"
    if event.status == "in_progress":
        return "progressed" if before == "in_progress" else "attempted"
    return None  # back to not started: no xAPI verb says it


def export_learner_xapi(
    learner_id: str, *, homepage: str | None = None, store: SqlEventStore | None = None
) -> list[dict[str, Any]]:
    """The learner's activity attempts, learning-objective progress and badges as xAPI 1.0.3
    statements, in the order they were recorded.

    `homepage` defaults to DALA_XAPI_HOMEPAGE (InvalidInput naming it when unset or not a
    URL). Records the disclosure (`export_xapi`) before returning. LearnerNotFound for a
    learner with no recorded changes.
    """
    home = check_homepage(homepage) if homepage is not None else configured_homepage()
    chosen = sql_store_or_default(store)
    events = audit.history(learner_id, store=chosen)
    if not events:
        raise LearnerNotFound(learner_id, f"learner {learner_id!r} has no recorded changes")
    statements = learner_statements(learner_id, events, homepage=home, titles=curriculum_titles())
    record_disclosure(learner_id, "export_xapi", store=chosen)
    return statements


__all__ = [
    "PASS_MARK",
    "STATEMENT_NAMESPACE",
    "VERBS",
    "XAPI_HOMEPAGE_ENV",
    "check_homepage",
    "configured_homepage",
    "export_learner_xapi",
    "learner_statements",
    "statement_id",
    "xapi_score",
]
