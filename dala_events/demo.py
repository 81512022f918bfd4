"""The main job of `dala demo`: assess a learner, plan their pathway, make a start, render the page.

For a learner with no profile yet: the simulated HLP assessment (actor `system:assessment`),
the pathway generated from it, the first objective started (`system:pathway`), a few activity
attempts by the learner (`learner:<id>`), the first objective completed and a badge awarded
(`system:badges`), all saved in one transaction. A learner who already has a profile is left
as it is and only their page is rendered again, so running the demo twice is safe.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from dala_events.assessment import AssessmentResult, simulate_assessment
from dala_events.attribution import recorded_as
from dala_events.generate_interface import generate_interface
from dala_events.hlp_module import LearnerProfile
from dala_events.pathway import PathwayStep, generate_pathway
from dala_events.store import SqlEventStore

ACTIVITY_TYPES = ("quiz", "game", "reading", "practice")


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What `run_demo` did and where the page is."""

    learner_id: str
    created: bool
    events_recorded: int
    assessment: AssessmentResult | None
    pathway: tuple[PathwayStep, ...]
    page: Path


def run_demo(
    learner_id: str,
    seed: int,
    output_path: str | Path | None = None,
    *,
    store: SqlEventStore | None = None,
) -> DemoResult:
    """Run the demo for `learner_id` with `seed` and write their page; see the module docstring."""
    with recorded_as("system:demo", reason="demo learner created"):
        profile = LearnerProfile(learner_id, persistence_enabled=False, store=store)
    created = profile.saved_version == 0
    assessment = None
    if created:
        assessment = simulate_assessment(profile, seed)
        _first_steps(profile, seed)
        profile.save()
    page = generate_interface(learner_id, output_path, store=store)
    return DemoResult(
        learner_id=learner_id,
        created=created,
        events_recorded=profile.version if created else 0,
        assessment=assessment,
        pathway=tuple(generate_pathway(profile)),
        page=page,
    )


def _first_steps(profile: LearnerProfile, seed: int) -> None:
    """Start the pathway's first objective, practise, complete it, start the next, earn a badge."""
    rng = random.Random(seed * 7919 + 1)
    pathway = generate_pathway(profile)
    if not pathway:
        return
    first, rest = pathway[0], pathway[1:]
    learner_actor = f"learner:{profile.learner_id}"
    with recorded_as("system:pathway", reason=f"pathway: {first.reason}"):
        profile.start_lo(first.lo_id)
    scores: list[float] = []
    with recorded_as(learner_actor, reason="activity session"):
        for n in range(1, 7):
            score = round(min(100.0, rng.uniform(35, 70) + n * 6), 1)
            scores.append(score)
            profile.record_activity_attempt(
                first.lo_id,
                f"{first.lo_id.lower()}_act_{n}",
                ACTIVITY_TYPES[n % len(ACTIVITY_TYPES)],
                score=score,
                completed=score >= 60,
                attempt_details={"time_on_task_s": rng.randint(60, 420), "hints_used": rng.randint(0, 3)},
            )
    with recorded_as("system:pathway", reason="mastery reached in the activity session"):
        profile.mark_lo_completed(first.lo_id, score=max(scores), details={"attempts": len(scores)})
        if rest:
            profile.start_lo(rest[0].lo_id)
    with recorded_as("system:badges", reason=f"first objective completed: {first.lo_id}"):
        profile.add_badge("trailblazer", "Trailblazer", details=f"Completed {first.title}")
