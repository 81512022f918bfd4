"""One line saying what a change did, in words a teacher or parent reads: for the page and the CLI.

`describe_change(event)` names learning objectives by their curriculum title, preferences and
diagnostic tasks by their readable labels, activities by the name their attempt carries
(`activity_name`), and everything else by its own value; `describe_actor` says who made it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from dala_events.assessment import humanise, preference_label, task_label
from dala_events.events import (
    ActivityAttemptRecorded,
    BadgeAwarded,
    BadgeRevoked,
    CognitiveMetricRecorded,
    DomainEvent,
    ErasedContent,
    InterestAdded,
    InterestRemoved,
    LearnerErased,
    LearnerProfileCreated,
    LearnerProfileDeleted,
    LearningObjectiveCompleted,
    LearningObjectiveProgressUpdated,
    LearningObjectiveStarted,
    PreferenceRemoved,
    PreferenceSet,
    StruggleAreaAdded,
    StruggleAreaRemoved,
)
from dala_events.pathway import curriculum_by_id

STATUS_LABELS = {"not_started": "Not started", "in_progress": "In progress", "completed": "Completed"}
"""Learning-objective statuses as people say them."""

STRUGGLES_HEADING = "Finds hard"
"""What the learner's struggle areas are called where people read them (the data keeps its name)."""

ACTIVITY_NAME_KEY = "activity_name"
"""The key of an activity attempt's `attempt_details` that names the activity ("Number bond
snap"): shown in place of its id where people read it."""
MAX_ACTIVITY_NAME_SHOWN = 120
"""A longer activity name is cut to this many characters where it is shown."""

_SYSTEM_PARTS = {
    "assessment": "the assessment",
    "pathway": "the learning pathway",
    "badges": "the badge system",
    "demo": "the demo",
    "restore": "a restore from a backup",
}
_ACTOR_KINDS = {"dpo": "data protection officer"}


def curriculum_titles() -> dict[str, str]:
    """Each curriculum objective's title by its id."""
    return {lo_id: lo.title for lo_id, lo in curriculum_by_id().items()}


def describe_change(event: DomainEvent, titles: Mapping[str, str] | None = None) -> str:
    """One line saying what `event` changed; `titles` maps LO ids to titles (default: the curriculum)."""
    known = curriculum_titles() if titles is None else titles
    describe = _DESCRIBERS.get(type(event))
    return describe(event, known) if describe is not None else humanise(event.event_type)


def activity_name(attempt_details: Mapping[str, Any] | None) -> str | None:
    """The activity's name an attempt's details carry (`attempt_details["activity_name"]`, a
    non-blank string; spaces collapsed, cut at MAX_ACTIVITY_NAME_SHOWN), or None: the activity
    is then named by its id."""
    name = (attempt_details or {}).get(ACTIVITY_NAME_KEY)
    if not isinstance(name, str) or not name.strip():
        return None
    name = " ".join(name.split())
    return name if len(name) <= MAX_ACTIVITY_NAME_SHOWN else name[: MAX_ACTIVITY_NAME_SHOWN - 1] + "…"


def describe_actor(actor: str, learner_id: str | None = None) -> str:
    """Who made a change, in words: `system` is "the platform", `system:assessment` "the
    assessment" (the platform's known parts by name), `learner:<learner_id>` "the learner",
    `teacher:7` "teacher 7", `dpo:jane` "data protection officer jane"."""
    kind, _, who = actor.partition(":")
    if kind == "system":
        return _SYSTEM_PARTS.get(who, f"the platform ({humanise(who).lower()})") if who else "the platform"
    if kind == "learner" and who == learner_id:
        return "the learner"
    words = _ACTOR_KINDS.get(kind.lower(), kind.replace("_", " "))
    return f"{words} {who}" if who else words


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, ... 21st, 22nd ..."""
    suffix = "th" if number % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _activity(event: ActivityAttemptRecorded) -> str:
    name = activity_name(event.attempt_details)
    return f"“{name}”" if name is not None else event.activity_id


def _type_words(event_type: str) -> str:
    """An event type as words: "InterestAdded" -> "Interest added"."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", event_type).capitalize()


def _lo(titles: Mapping[str, str], lo_id: str) -> str:
    return f"“{titles[lo_id]}”" if lo_id in titles else lo_id


def _score(score: float | None, lead: str = " (score {})") -> str:
    return "" if score is None else lead.format(f"{score:g}")


_DESCRIBERS: dict[type[DomainEvent], Callable[[Any, Mapping[str, str]], str]] = {
    LearnerProfileCreated: lambda e, t: "Profile created",
    LearnerProfileDeleted: lambda e, t: "Profile deleted",
    LearnerErased: lambda e, t: f"Learner erased ({e.erased_up_to_version} changes' content destroyed)",
    ErasedContent: lambda e, t: f"[erased] {_type_words(e.erased_event_type)}",
    PreferenceSet: lambda e, t: (
        f"Preference “{preference_label(e.category)}”: {e.previous_value} → {e.value}"
        if e.previous_value
        else f"Preference “{preference_label(e.category)}” set to {e.value}"
    ),
    PreferenceRemoved: lambda e, t: f"Preference “{preference_label(e.category)}” removed",
    InterestAdded: lambda e, t: f"Interest added: {e.interest_name}",
    InterestRemoved: lambda e, t: f"Interest removed: {e.interest_name}",
    StruggleAreaAdded: lambda e, t: f"Added to “{STRUGGLES_HEADING}”: {e.struggle_description}",
    StruggleAreaRemoved: lambda e, t: f"Removed from “{STRUGGLES_HEADING}”: {e.struggle_description}",
    CognitiveMetricRecorded: lambda e, t: f"Diagnostic task {task_label(e.task_name)} recorded",
    LearningObjectiveStarted: lambda e, t: f"Started {_lo(t, e.lo_id)}",
    LearningObjectiveProgressUpdated: lambda e, t: (
        f"{_lo(t, e.lo_id)} now {STATUS_LABELS.get(e.status, humanise(e.status)).lower()}{_score(e.score)}"
    ),
    LearningObjectiveCompleted: lambda e, t: f"Completed {_lo(t, e.lo_id)}{_score(e.score)}",
    BadgeAwarded: lambda e, t: f"Badge earned: {e.badge_name}",
    BadgeRevoked: lambda e, t: f"Badge revoked: {e.badge_id}",
    ActivityAttemptRecorded: lambda e, t: (
        f"Attempted {_activity(e)} ({humanise(e.activity_type)})"
        + (f" for {_lo(t, e.lo_id)}" if e.lo_id in t else "")
        + _score(e.score, ": score {}")
    ),
}
