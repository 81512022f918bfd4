"""Learning pathways: which learning objectives (LOs) a learner should take on next, and why.

The curriculum is package data (`dala_events/data/curriculum.json`): each LO with its id,
title, subject, how many activities it expects a learner to complete (optional),
prerequisites, and the struggle areas and interests it serves.
`generate_pathway` offers the LOs whose prerequisites the learner has completed, LOs already
in progress first, then those addressing most of the learner's struggle areas, then those
matching most interests, with a one-line reason for each.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from dala_events.hlp_module import LearnerProfile
from dala_events.persistence_manager import FullLearnerProfileData

CURRICULUM_RESOURCE = "data/curriculum.json"


@dataclass(frozen=True, slots=True)
class CurriculumLO:
    """A learning objective of the curriculum."""

    lo_id: str
    title: str
    subject: str
    prerequisites: tuple[str, ...]
    struggle_areas: tuple[str, ...]
    interests: tuple[str, ...]
    expected_activities: int | None = None
    """How many different activities a learner is expected to complete for this LO, if known."""


@dataclass(frozen=True, slots=True)
class PathwayStep:
    """One LO of a learner's pathway, with why it is there."""

    lo_id: str
    title: str
    subject: str
    status: Literal["in_progress", "not_started"]
    reason: str
    struggles_addressed: tuple[str, ...]
    interests_matched: tuple[str, ...]


@lru_cache(maxsize=1)
def load_curriculum() -> tuple[CurriculumLO, ...]:
    """The curriculum shipped with the package, checked: unique ids, known prerequisites."""
    raw = json.loads(resources.files("dala_events").joinpath(CURRICULUM_RESOURCE).read_text(encoding="utf-8"))
    return curriculum_from(raw["learning_objectives"])


def curriculum_by_id(curriculum: Sequence[CurriculumLO] | None = None) -> dict[str, CurriculumLO]:
    """The LOs of `curriculum` (default: the shipped one) by their id."""
    return {lo.lo_id: lo for lo in (load_curriculum() if curriculum is None else curriculum)}


def curriculum_from(entries: Sequence[Mapping[str, Any]]) -> tuple[CurriculumLO, ...]:
    """Build and check a curriculum from plain entries (the JSON file's shape)."""
    los = tuple(
        CurriculumLO(
            lo_id=entry["lo_id"],
            title=entry["title"],
            subject=entry["subject"],
            prerequisites=tuple(entry.get("prerequisites", ())),
            struggle_areas=tuple(entry.get("struggle_areas", ())),
            interests=tuple(entry.get("interests", ())),
            expected_activities=entry.get("expected_activities"),
        )
        for entry in entries
    )
    ids = [lo.lo_id for lo in los]
    if len(set(ids)) != len(ids):
        raise ValueError("curriculum: duplicate lo_id")
    for lo in los:
        expected = lo.expected_activities
        if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool) or expected < 1):
            raise ValueError(f"curriculum: {lo.lo_id} has expected_activities {expected!r}; give a positive integer")
    for lo in los:
        unknown = set(lo.prerequisites) - set(ids)
        if unknown:
            raise ValueError(f"curriculum: {lo.lo_id} has unknown prerequisites {sorted(unknown)}")
    return los


def generate_pathway(
    profile: LearnerProfile | FullLearnerProfileData,
    *,
    curriculum: Sequence[CurriculumLO] | None = None,
    limit: int = 5,
) -> list[PathwayStep]:
    """The next LOs for the learner, best first, at most `limit` of them.

    Offered: LOs not completed whose prerequisites are all completed. Order: in progress
    first; then most of the learner's struggle areas addressed; then most interests matched;
    then curriculum order. Works on a live `LearnerProfile` or on read-model data.
    """
    los = load_curriculum() if curriculum is None else tuple(curriculum)
    titles = {lo.lo_id: lo.title for lo in los}
    interests, struggles, statuses = _learner_facts(profile)
    completed = {lo_id for lo_id, status in statuses.items() if status == "completed"}
    candidates = []
    for order, lo in enumerate(los):
        if lo.lo_id in completed or not set(lo.prerequisites) <= completed:
            continue
        addressed = tuple(area for area in lo.struggle_areas if area in struggles)
        matched = tuple(interest for interest in lo.interests if interest in interests)
        in_progress = statuses.get(lo.lo_id) == "in_progress"
        candidates.append((not in_progress, -len(addressed), -len(matched), order, lo, addressed, matched))
    candidates.sort(key=lambda candidate: candidate[:4])
    return [
        PathwayStep(
            lo_id=lo.lo_id,
            title=lo.title,
            subject=lo.subject,
            status="not_started" if not_started else "in_progress",
            reason=_reason(lo, not not_started, addressed, matched, titles),
            struggles_addressed=addressed,
            interests_matched=matched,
        )
        for not_started, _, _, _, lo, addressed, matched in candidates[: max(limit, 0)]
    ]


def _learner_facts(profile: LearnerProfile | FullLearnerProfileData) -> tuple[set[str], set[str], dict[str, str]]:
    if isinstance(profile, LearnerProfile):
        return (
            set(profile.interests),
            set(profile.struggles),
            {lo_id: progress.status for lo_id, progress in profile.lo_progress.items()},
        )
    return (
        {row.interest_name for row in profile.interests},
        {row.struggle_description for row in profile.struggles},
        {row.lo_id: row.status for row in profile.lo_progress},
    )


def _reason(
    lo: CurriculumLO,
    in_progress: bool,
    addressed: Sequence[str],
    matched: Sequence[str],
    titles: Mapping[str, str],
) -> str:
    if in_progress:
        parts = ["Already under way"]
    elif lo.prerequisites:
        built_on = [f"“{titles.get(lo_id, lo_id)}”" for lo_id in lo.prerequisites]
        parts = [f"Ready now: builds on {_listed(built_on)}"]
    else:
        parts = ["A starting point with no prerequisites"]
    if addressed:
        parts.append(f"works on {_listed(addressed)}")
    if matched:
        parts.append(f"draws on the interest in {_listed(matched)}")
    return "; ".join(parts) + "."


def _listed(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
