"""A small checker of xAPI 1.0.3 statements: the rules an LRS applies before accepting one.

From the specification's Part Two (Experience API Data): 2.2 Formatting Requirements (no
null values or empty objects, no properties the specification does not allow, IRIs with a
scheme, RFC 5646 language tags), 2.4 Statement Properties (required actor, verb and object;
the Agent's one inverse functional identifier; the account's IRL homePage and name; the
Activity and its definition; result and score; context and contextActivities), 4.4 UUIDs
(standard string form) and 4.5 ISO 8601 timestamps (with a time zone, not in the future for
`timestamp`). `statement_problems` returns what is wrong, empty when nothing is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

STATEMENT_KEYS = {
    "id",
    "actor",
    "verb",
    "object",
    "result",
    "context",
    "timestamp",
    "stored",
    "authority",
    "version",
    "attachments",
}
AGENT_KEYS = {"objectType", "name", "mbox", "mbox_sha1sum", "openid", "account"}
IFI_KEYS = ("mbox", "mbox_sha1sum", "openid", "account")
ACTIVITY_KEYS = {"objectType", "id", "definition"}
DEFINITION_KEYS = {
    "name",
    "description",
    "type",
    "moreInfo",
    "extensions",
    "interactionType",
    "correctResponsesPattern",
    "choices",
    "scale",
    "source",
    "target",
    "steps",
}
RESULT_KEYS = {"score", "success", "completion", "response", "duration", "extensions"}
SCORE_KEYS = {"scaled", "raw", "min", "max"}
CONTEXT_KEYS = {
    "registration",
    "instructor",
    "team",
    "contextActivities",
    "revision",
    "platform",
    "language",
    "statement",
    "extensions",
}
CONTEXT_ACTIVITY_KEYS = {"parent", "grouping", "category", "other"}

UUID_FORM = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
"""Standard string form, an RFC 4122 version, variant 2 (RFC 4122)."""
LANGUAGE_TAG = re.compile(
    r"^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?(-[A-Za-z0-9]{5,8}|-[0-9][A-Za-z0-9]{3})*$"
)
"""RFC 5646 language tags (language, script, region, variants): what a statement uses."""
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
"""ISO 8601 as RFC 3339 profiles it, with the time zone the specification asks for."""
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
NOT_IN_IRI = re.compile(r"[\s<>\"{}|\\^`]|%(?![0-9A-Fa-f]{2})")


def iri_problem(value: object) -> str | None:
    """Why `value` is not an absolute IRI (None when it is)."""
    if not isinstance(value, str) or not value:
        return f"{value!r} is not a non-empty string"
    parts = urlsplit(value)
    if not parts.scheme or not SCHEME.match(parts.scheme):
        return f"{value!r} has no scheme"
    if NOT_IN_IRI.search(value):
        return f"{value!r} holds a character an IRI cannot"
    if parts.scheme in ("http", "https") and not parts.hostname:
        return f"{value!r} has no host"
    return None


def irl_problem(value: object) -> str | None:
    """Why `value` is not a locator (an http(s) IRI) (None when it is)."""
    problem = iri_problem(value)
    if problem is None and urlsplit(str(value)).scheme not in ("http", "https"):
        return f"{value!r} is not an http(s) IRL"
    return problem


def statement_problems(statement: Mapping[str, Any], *, now: datetime | None = None) -> list[str]:
    """Everything an LRS would refuse in `statement` (empty: it is acceptable)."""
    problems: list[str] = []

    def check(condition: bool, message: str) -> None:
        if not condition:
            problems.append(message)

    def keys(where: str, value: object, allowed: set[str], required: Iterable[str] = ()) -> bool:
        if not isinstance(value, dict):
            problems.append(f"{where}: not an object")
            return False
        check(set(value) <= allowed, f"{where}: properties not allowed: {sorted(set(value) - allowed)}")
        for name in required:
            check(name in value, f"{where}: {name} missing")
        return True

    def language_map(where: str, value: object) -> None:
        if not isinstance(value, dict) or not value:
            problems.append(f"{where}: not a non-empty language map")
            return
        for tag, text in value.items():
            check(bool(LANGUAGE_TAG.match(tag)), f"{where}: {tag!r} is not an RFC 5646 language tag")
            check(isinstance(text, str), f"{where}[{tag}]: not a string")

    def number(value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    def timestamp(where: str, value: object) -> datetime | None:
        if not isinstance(value, str) or not TIMESTAMP.match(value):
            problems.append(f"{where}: {value!r} is not an ISO 8601 timestamp with a time zone")
            return None
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    def activity(where: str, value: object) -> None:
        if not keys(where, value, ACTIVITY_KEYS, required=("id",)):
            return
        assert isinstance(value, dict)
        check(value.get("objectType", "Activity") == "Activity", f"{where}.objectType: must be Activity")
        if (problem := iri_problem(value.get("id"))) is not None:
            problems.append(f"{where}.id: {problem}")
        definition = value.get("definition")
        if definition is not None and keys(f"{where}.definition", definition, DEFINITION_KEYS):
            for name in ("name", "description"):
                if name in definition:
                    language_map(f"{where}.definition.{name}", definition[name])
            if "type" in definition and (problem := iri_problem(definition["type"])) is not None:
                problems.append(f"{where}.definition.type: {problem}")
            if "moreInfo" in definition and (problem := irl_problem(definition["moreInfo"])) is not None:
                problems.append(f"{where}.definition.moreInfo: {problem}")

    _no_nulls_or_empty_objects("statement", statement, problems)
    try:
        json.dumps(statement, allow_nan=False)
    except (TypeError, ValueError) as error:
        problems.append(f"not plain JSON: {error}")
    if not keys("statement", statement, STATEMENT_KEYS, required=("actor", "verb", "object")):
        return problems

    if "id" in statement:
        check(
            isinstance(statement["id"], str) and bool(UUID_FORM.match(statement["id"])),
            f"id: {statement['id']!r} is not a UUID in standard string form",
        )

    actor = statement.get("actor")
    if keys("actor", actor, AGENT_KEYS):
        assert isinstance(actor, dict)
        check(actor.get("objectType", "Agent") == "Agent", "actor.objectType: must be Agent")
        identifiers = [name for name in IFI_KEYS if name in actor]
        check(len(identifiers) == 1, f"actor: needs exactly one inverse functional identifier, has {identifiers}")
        account = actor.get("account")
        if account is not None and keys("actor.account", account, {"homePage", "name"}, required=("homePage", "name")):
            if (problem := irl_problem(account.get("homePage"))) is not None:
                problems.append(f"actor.account.homePage: {problem}")
            check(isinstance(account.get("name"), str) and bool(account.get("name")), "actor.account.name: empty")

    verb = statement.get("verb")
    if keys("verb", verb, {"id", "display"}, required=("id",)):
        assert isinstance(verb, dict)
        if (problem := iri_problem(verb.get("id"))) is not None:
            problems.append(f"verb.id: {problem}")
        if "display" in verb:
            language_map("verb.display", verb["display"])

    activity("object", statement.get("object"))

    result = statement.get("result")
    if result is not None and keys("result", result, RESULT_KEYS):
        for name in ("success", "completion"):
            if name in result:
                check(isinstance(result[name], bool), f"result.{name}: not a boolean")
        score = result.get("score")
        if score is not None and keys("result.score", score, SCORE_KEYS):
            for name, value in score.items():
                check(number(value), f"result.score.{name}: {value!r} is not a number")
            if all(number(value) for value in score.values()):
                if "scaled" in score:
                    check(-1 <= score["scaled"] <= 1, f"result.score.scaled: {score['scaled']} outside [-1, 1]")
                if "min" in score and "max" in score:
                    check(score["min"] < score["max"], "result.score: min is not less than max")
                if "raw" in score and "min" in score:
                    check(score["min"] <= score["raw"], "result.score: raw below min")
                if "raw" in score and "max" in score:
                    check(score["raw"] <= score["max"], "result.score: raw above max")

    context = statement.get("context")
    if context is not None and keys("context", context, CONTEXT_KEYS):
        object_is_activity = (
            isinstance(statement.get("object"), dict)
            and statement["object"].get("objectType", "Activity") == "Activity"
        )
        for name in ("platform", "revision"):
            if name in context:
                check(isinstance(context[name], str), f"context.{name}: not a string")
                check(object_is_activity, f"context.{name}: only when the object is an Activity")
        if "language" in context:
            check(bool(LANGUAGE_TAG.match(str(context["language"]))), "context.language: not an RFC 5646 tag")
        activities = context.get("contextActivities")
        if activities is not None and keys("context.contextActivities", activities, CONTEXT_ACTIVITY_KEYS):
            for kind, value in activities.items():
                for index, item in enumerate(value if isinstance(value, list) else [value]):
                    activity(f"context.contextActivities.{kind}[{index}]", item)

    moment = None
    if "timestamp" in statement:
        moment = timestamp("timestamp", statement["timestamp"])
        if moment is not None:
            check(moment <= (now or datetime.now(UTC)), "timestamp: in the future")
    if "stored" in statement:
        timestamp("stored", statement["stored"])
    if "version" in statement:
        check(bool(re.match(r"^1\.0(\.\d+)?$", str(statement["version"]))), "version: not 1.0.x")
    return problems


def batch_problems(statements: object, *, now: datetime | None = None) -> list[str]:
    """What an LRS would refuse in a POST of `statements` (one JSON array): each statement's
    problems, and ids used twice (an LRS refuses the whole batch then)."""
    if not isinstance(statements, list):
        return ["not a JSON array of statements"]
    problems = [
        f"statement {index}: {problem}"
        for index, statement in enumerate(statements)
        for problem in (statement_problems(statement, now=now) if isinstance(statement, dict) else ["not an object"])
    ]
    ids = [statement.get("id") for statement in statements if isinstance(statement, dict) and "id" in statement]
    if len(ids) != len(set(ids)):
        problems.append("two statements share an id")
    return problems


def _no_nulls_or_empty_objects(where: str, value: object, problems: list[str]) -> None:
    if value is None:
        problems.append(f"{where}: null")
    elif isinstance(value, dict):
        if not value:
            problems.append(f"{where}: empty object")
        for key, item in value.items():
            if key != "extensions":
                _no_nulls_or_empty_objects(f"{where}.{key}", item, problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_nulls_or_empty_objects(f"{where}[{index}]", item, problems)
