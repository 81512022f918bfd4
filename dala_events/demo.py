"""The main job of `dala demo`: simulate a few weeks of a learner's learning, render the page.

For a learner with no profile yet, the demo plays out about four weeks before today (each
change recorded now but with the day and time it is simulated to have happened as its
`occurred_at`, and "simulated: ..." in its reason):

- week 1: the profile is created (actor `system:demo`), the simulated HLP assessment runs
  (`system:assessment`), and the pathway's first objective is started (`system:pathway`);
- then six activity sessions on separate days (`learner:<id>`), one scored attempt each (its
  activity named in `attempt_details["activity_name"]`), scores rising as the learner
  practises: four on the first objective, which is then completed (`system:pathway`) and
  earns a badge (`system:badges`), two on the next one.

Everything is saved in one transaction, after checking what would stop the page being written
(its disclosure's actor, its destination). The same seed gives the same learner, days and
scores (the days counted back from "now"). A learner who already has a profile is left as it
is and only their page is rendered again, so running the demo twice is safe.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from pathlib import Path

from dala_events.assessment import AssessmentResult, simulate_assessment
from dala_events.attribution import occurring_at, recorded_as, require_explicit_actor
from dala_events.events import utc_now
from dala_events.generate_interface import generate_interface, page_destination
from dala_events.hlp_module import LearnerProfile
from dala_events.pathway import PathwayStep, generate_pathway
from dala_events.private_files import check_destination
from dala_events.store import SqlEventStore

ACTIVITY_TYPES = ("quiz", "game", "reading", "practice")
ACTIVITY_NAMES = {
    "quiz": "Quick quiz",
    "game": "Challenge game",
    "reading": "Read-along story",
    "practice": "Practice round",
}
"""What the demo's activities of each type are called: each attempt carries its activity's name
(`attempt_details["activity_name"]`), which the page shows with the id beside it."""
FIRST_OBJECTIVE_SESSIONS = 4
NEXT_OBJECTIVE_SESSIONS = 2
COMPLETED_SCORE = 60.0
"""An attempt scoring at least this counts as a completed activity."""


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What `run_demo` did and where the page is."""

    learner_id: str
    created: bool
    events_recorded: int
    assessment: AssessmentResult | None
    pathway: tuple[PathwayStep, ...]
    page: Path


@dataclass(frozen=True, slots=True)
class DemoSchedule:
    """When the simulated weeks' work happened: the assessment, then the activity sessions."""

    assessment: datetime
    sessions: tuple[datetime, ...]

    def week(self, moment: datetime) -> int:
        """The week of the simulation `moment` falls in (the assessment's is week 1)."""
        return (moment.date() - self.assessment.date()).days // 7 + 1


def demo_schedule(seed: int, now: datetime | None = None) -> DemoSchedule:
    """The simulated days for `seed`, counted back from `now` (default: the clock).

    The assessment falls 24 to 28 days before today (UTC), in the morning; the sessions on
    separate later days up to yesterday, in the afternoon, spread evenly with some jitter.
    All times are whole minutes, strictly increasing, and before today began.
    """
    rng = random.Random(f"dala-demo-schedule:{seed}")
    today = datetime.combine((now or utc_now()).astimezone(UTC).date(), time(0, 0), tzinfo=UTC)
    first_day = 24 + rng.randint(0, 4)
    assessment = today - timedelta(days=first_day) + timedelta(hours=rng.randint(9, 11), minutes=rng.randint(0, 59))
    count = FIRST_OBJECTIVE_SESSIONS + NEXT_OBJECTIVE_SESSIONS
    # Days before today available for sessions: first_day - 2 (two days after the assessment) down to 1.
    span = first_day - 2
    sessions = []
    for index in range(count):
        newest, oldest = span - (index + 1) * span // count + 1, span - index * span // count
        day = today - timedelta(days=rng.randint(newest, oldest))
        sessions.append(day + timedelta(hours=rng.randint(15, 18), minutes=rng.randint(0, 59)))
    return DemoSchedule(assessment=assessment, sessions=tuple(sessions))


def run_demo(
    learner_id: str,
    seed: int,
    output_path: str | Path | None = None,
    *,
    store: SqlEventStore | None = None,
    now: datetime | None = None,
    time_zone: tzinfo | None = None,
) -> DemoResult:
    """Run the demo for `learner_id` with `seed` and write their page (its times in
    `time_zone`, as `generate_interface` chooses by default); see the module docstring.
    `now` (default: the clock; not in the future) is the moment the simulated weeks lead up to.

    What would stop it half way is checked before anything is written: the page's disclosure
    needs an actor when DALA_REQUIRE_ACTOR is on (ActorRequired), and the page's destination
    must take a file (InvalidInput naming `output_path`)."""
    require_explicit_actor("disclosure (the learner's page)")
    check_destination(page_destination(learner_id, output_path, store=store), name="output_path", create_folder=True)
    schedule = demo_schedule(seed, now)
    with (
        occurring_at(schedule.assessment),
        recorded_as("system:demo", reason="simulated: demo learner created, week 1"),
    ):
        profile = LearnerProfile(learner_id, persistence_enabled=False, store=store)
    created = profile.saved_version == 0
    assessment = None
    if created:
        with occurring_at(schedule.assessment):
            assessment = simulate_assessment(profile, seed, reason=f"simulated: HLP assessment (seed {seed}), week 1")
        _weeks_of_learning(profile, seed, schedule)
        profile.save()
    page = generate_interface(learner_id, output_path, store=store, time_zone=time_zone)
    return DemoResult(
        learner_id=learner_id,
        created=created,
        events_recorded=profile.version if created else 0,
        assessment=assessment,
        pathway=tuple(generate_pathway(profile)),
        page=page,
    )


def _weeks_of_learning(profile: LearnerProfile, seed: int, schedule: DemoSchedule) -> None:
    """Start the pathway's first objective, practise it over several sessions, complete it and
    earn a badge, start the next objective and practise that."""
    rng = random.Random(seed * 7919 + 1)
    pathway = generate_pathway(profile)
    if not pathway:
        return
    first = pathway[0]
    learner_actor = f"learner:{profile.learner_id}"
    minute = timedelta(minutes=1)
    with (
        occurring_at(schedule.assessment + 10 * minute),
        recorded_as("system:pathway", reason=f"simulated: pathway, week 1: {first.reason}"),
    ):
        profile.start_lo(first.lo_id)

    sessions = iter(schedule.sessions)
    scores = _practise(profile, first.lo_id, FIRST_OBJECTIVE_SESSIONS, 48.0, sessions, schedule, rng, learner_actor)
    last = schedule.sessions[FIRST_OBJECTIVE_SESSIONS - 1]
    week = schedule.week(last)
    with occurring_at(last + 5 * minute):
        with recorded_as("system:pathway", reason=f"simulated: mastery reached in the activity sessions, week {week}"):
            profile.mark_lo_completed(first.lo_id, score=max(scores), details={"attempts": len(scores)})
            following = generate_pathway(profile)
            if following:
                profile.start_lo(following[0].lo_id)
        with recorded_as("system:badges", reason=f"simulated: first objective completed ({first.title}), week {week}"):
            profile.add_badge("trailblazer", "Trailblazer", details=f"Completed {first.title}")
    if following:
        _practise(profile, following[0].lo_id, NEXT_OBJECTIVE_SESSIONS, 54.0, sessions, schedule, rng, learner_actor)


def _practise(
    profile: LearnerProfile,
    lo_id: str,
    count: int,
    base: float,
    sessions: Iterator[datetime],
    schedule: DemoSchedule,
    rng: random.Random,
    actor: str,
) -> list[float]:
    """`count` sessions of one scored attempt each at `lo_id`, scores rising from about `base`."""
    scores: list[float] = []
    start = base + rng.uniform(-4, 8)
    for n in range(1, count + 1):
        when = next(sessions)
        score = round(min(100.0, max(0.0, start + (n - 1) * rng.uniform(8, 14) + rng.uniform(-3, 3))), 1)
        scores.append(score)
        activity_type = ACTIVITY_TYPES[n % len(ACTIVITY_TYPES)]
        details = {
            "activity_name": f"{ACTIVITY_NAMES[activity_type]} {n}",
            "time_on_task_s": rng.randint(60, 420),
            "hints_used": rng.randint(0, 3),
        }
        with occurring_at(when), recorded_as(actor, reason=f"simulated: activity session, week {schedule.week(when)}"):
            profile.record_activity_attempt(
                lo_id,
                f"{lo_id.lower()}_act_{n}",
                activity_type,
                score=score,
                completed=score >= COMPLETED_SCORE,
                attempt_details=details,
            )
    return scores
