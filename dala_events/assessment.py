"""The HLP (how I learn) assessment, simulated: what a first session with a new learner finds out.

`simulate_assessment` plays a learner through the assessment deterministically for a seed:
it picks interests and struggle areas from the predefined lists, sets learning preferences,
runs the named diagnostic tasks and records their metrics. Everything is recorded through
`LearnerProfile`, attributed to `system:assessment`, so it shows in the audit trail like any
other change.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dala_events.attribution import recorded_as
from dala_events.hlp_module import PREDEFINED_INTERESTS, PREDEFINED_STRUGGLE_AREAS, LearnerProfile

ASSESSMENT_ACTOR = "system:assessment"

PREFERENCE_TASKS: dict[str, tuple[str, ...]] = {
    "visual_preference_task_1": ("visual", "auditory", "kinaesthetic"),
    "visual_preference_task_2": ("pictures", "diagrams", "words"),
    "reading_pace": ("slow", "steady", "quick"),
    "feedback_style": ("spoken", "written", "emoji"),
}
"""Preference tasks of the assessment and the answers each can give."""

DIAGNOSTIC_TASKS: dict[str, tuple[str, ...]] = {
    "story_weaver": ("Reading comprehension", "Organising written work"),
    "pattern_detective": ("Working memory", "Following multi-step instructions"),
    "memory_maze": ("Working memory", "Staying focused"),
    "number_sense_sprint": ("Number facts", "Processing speed"),
    "word_builder": ("Phonics and decoding", "Spelling"),
}
"""The diagnostic tasks, each with the struggle areas a weak result on it points to."""

WEAK_ACCURACY = 0.7
"""Below this accuracy a task's struggle areas are recorded."""

PREFERENCE_LABELS: dict[str, str] = {
    "visual_preference_task_1": "Learning style",
    "visual_preference_task_2": "Prefers to learn from",
    "reading_pace": "Reading pace",
    "feedback_style": "Feedback style",
}
"""What the page calls each preference task (the stored keys stay as they are)."""

TASK_LABELS: dict[str, str] = {
    "story_weaver": "Story Weaver",
    "pattern_detective": "Pattern Detective",
    "memory_maze": "Memory Maze",
    "number_sense_sprint": "Number Sense Sprint",
    "word_builder": "Word Builder",
}
"""What the page calls each diagnostic task (the stored keys stay as they are)."""


def humanise(key: str) -> str:
    """A raw key as words: underscores become spaces, the first letter a capital
    (`visual_preference_task_1` -> "Visual preference task 1"); the rest is kept as it is."""
    words = " ".join(key.replace("_", " ").split())
    return words[:1].upper() + words[1:]


def readable_label(key: str, labels: Mapping[str, str]) -> str:
    """The label of a known `key` in `labels`, else the key humanised (see `humanise`)."""
    return labels.get(key) or humanise(key)


def preference_label(category: str) -> str:
    """A preference category as the page shows it."""
    return readable_label(category, PREFERENCE_LABELS)


def task_label(task_name: str) -> str:
    """A diagnostic task's name as the page shows it."""
    return readable_label(task_name, TASK_LABELS)


@dataclass(frozen=True, slots=True)
class AssessmentResult:
    """What one simulated assessment found (and recorded)."""

    learner_id: str
    seed: int
    preferences: dict[str, str]
    interests: tuple[str, ...]
    struggles: tuple[str, ...]
    metrics: dict[str, dict[str, Any]]
    events_recorded: int


def simulate_assessment(profile: LearnerProfile, seed: int, *, reason: str | None = None) -> AssessmentResult:
    """Run the assessment for `profile` with a deterministic `seed` and record what it finds.

    The same seed always gives the same answers. Changes are recorded on the profile (saved
    at once when its persistence is on, else at its `save()`), each attributed to
    `system:assessment` with `reason` (default: "HLP assessment (seed N)").
    """
    rng = random.Random(seed)
    preferences = {task: rng.choice(answers) for task, answers in PREFERENCE_TASKS.items()}
    interests = tuple(sorted(rng.sample(PREDEFINED_INTERESTS, rng.randint(3, 5))))
    metrics: dict[str, dict[str, Any]] = {}
    for task in DIAGNOSTIC_TASKS:
        items = 10
        accuracy = round(rng.uniform(0.4, 0.98), 2)
        metrics[task] = {
            "accuracy": accuracy,
            "correct": round(accuracy * items),
            "items": items,
            "attempts": rng.randint(1, 3),
            "response_time_ms": rng.randint(900, 6500),
        }
    weakest = sorted(metrics, key=lambda task: metrics[task]["accuracy"])[:2]
    struggles = {DIAGNOSTIC_TASKS[task][0] for task in weakest if metrics[task]["accuracy"] < WEAK_ACCURACY}
    # Teachers' observations add one area the tasks do not measure.
    struggles.add(rng.choice([area for area in PREDEFINED_STRUGGLE_AREAS if area not in struggles]))

    recorded = 0
    with recorded_as(ASSESSMENT_ACTOR, reason=reason or f"HLP assessment (seed {seed})"):
        for category, value in preferences.items():
            recorded += profile.update_preference(category, value)
        for interest in interests:
            recorded += profile.add_interest(interest)
        for area in sorted(struggles):
            recorded += profile.add_struggle_area(area)
        for task, details in metrics.items():
            recorded += profile.add_cognitive_metric(task, details)
    return AssessmentResult(
        learner_id=profile.learner_id,
        seed=seed,
        preferences=preferences,
        interests=interests,
        struggles=tuple(sorted(struggles)),
        metrics=metrics,
        events_recorded=recorded,
    )
