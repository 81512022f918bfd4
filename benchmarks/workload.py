"""The workload of `make bench`: a realistic, deterministic spread of changes to one learner.

A workload is a list of `Mutation`s (a LearnerProfile method and its arguments), made up
front from a seed so that timing it measures what stores it, not the generator. The same
lists drive the store, the CRUD layer of the document (`benchmarks.crud_layer`) and the
`eventsourcing` peer (`benchmarks.peer`): each offers the LearnerProfile method names.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dala_events.assessment import DIAGNOSTIC_TASKS as ASSESSMENT_TASKS
from dala_events.hlp_module import PREDEFINED_INTERESTS, PREDEFINED_STRUGGLE_AREAS, LearnerProfile

DIAGNOSTIC_TASKS: tuple[str, ...] = tuple(ASSESSMENT_TASKS)
ACTIVITY_TYPES: tuple[str, ...] = ("quiz", "game", "reading", "video", "practice")
BADGES: tuple[tuple[str, str], ...] = (
    ("trailblazer", "Trailblazer"),
    ("curious_mind", "Curious Mind"),
    ("persistence_pro", "Persistence Pro"),
    ("story_star", "Story Star"),
)


@dataclass(frozen=True, slots=True)
class Mutation:
    """One call of a LearnerProfile method."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def apply_to(self, profile: LearnerProfile) -> bool:
        """Make the call; returns whether it recorded an event."""
        result: bool = getattr(profile, self.method)(*self.args, **self.kwargs)
        return result


def learner_workload(seed: int, *, los: int = 8, attempts: int = 31) -> list[Mutation]:
    """About 75 changes a learner goes through in a term (with the defaults), in a plausible order.

    Preferences, interests and struggles (with a change of mind each), a metric per diagnostic
    task, LOs started, progressed and some completed, activity attempts, badges earned and one
    revoked. Every mutation changes state, so each records exactly one event.
    """
    rng = random.Random(seed)
    chosen_interests = rng.sample(PREDEFINED_INTERESTS, 5)
    chosen_struggles = rng.sample(PREDEFINED_STRUGGLE_AREAS, 3)
    style = rng.choice(("visual", "auditory", "kinaesthetic"))
    lo_ids = [f"{rng.choice(('MATH', 'LIT', 'SCI'))}_LO_{n:03d}" for n in range(1, los + 1)]
    plan: list[Mutation] = [
        Mutation("update_preference", ("visual_preference_task_1", style)),
        Mutation("update_preference", ("reading_pace", rng.choice(("slow", "steady", "quick")))),
        Mutation("update_preference", ("feedback_style", rng.choice(("spoken", "written", "emoji")))),
        Mutation("update_preference", ("session_length_minutes", str(rng.choice((10, 15, 20))))),
        Mutation("update_preference", ("visual_preference_task_1", "mixed" if style != "mixed" else "visual")),
    ]
    plan += [Mutation("add_interest", (name,)) for name in chosen_interests]
    plan.append(Mutation("remove_interest", (chosen_interests[-1],)))
    plan += [Mutation("add_struggle_area", (text,)) for text in chosen_struggles]
    plan.append(Mutation("remove_struggle_area", (chosen_struggles[0],)))
    for task in DIAGNOSTIC_TASKS:
        details = {
            "accuracy": round(rng.uniform(0.4, 0.98), 2),
            "attempts": rng.randint(1, 4),
            "response_time_ms": rng.randint(800, 9000),
        }
        plan.append(Mutation("add_cognitive_metric", (task, details)))
    attempts_per_lo = max(1, attempts // los)
    spare_attempts = attempts - attempts_per_lo * los
    for index, lo_id in enumerate(lo_ids):
        plan.append(Mutation("start_lo", (lo_id,)))
        for n in range(attempts_per_lo + (1 if index < spare_attempts else 0)):
            score = round(rng.uniform(20, 100), 1)
            plan.append(
                Mutation(
                    "record_activity_attempt",
                    (lo_id, f"{lo_id}_ACT_{n + 1}", rng.choice(ACTIVITY_TYPES)),
                    {
                        "score": score,
                        "completed": score >= 50,
                        "attempt_details": {
                            "time_taken_s": rng.randint(20, 600),
                            "hints_used": rng.randint(0, 3),
                        },
                    },
                )
            )
        plan.append(
            Mutation(
                "update_lo_progress",
                (lo_id, "in_progress"),
                {"score": round(rng.uniform(30, 90), 1), "details": {"activities_done": attempts_per_lo}},
            )
        )
        if index % 2 == 0:
            plan.append(Mutation("mark_lo_completed", (lo_id,), {"score": round(rng.uniform(60, 100), 1)}))
    for badge_id, badge_name in BADGES[:3]:
        plan.append(Mutation("add_badge", (badge_id, badge_name), {"details": f"Earned in term {rng.randint(1, 3)}"}))
    plan.append(Mutation("revoke_badge", (BADGES[2][0],)))
    return plan


def apply_workload(profile: LearnerProfile, mutations: Sequence[Mutation]) -> int:
    """Apply every mutation to `profile`; returns how many recorded an event."""
    return sum(1 for mutation in mutations if mutation.apply_to(profile))
