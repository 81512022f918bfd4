"""`dala demo` simulates a few weeks of learning: events that happened on earlier days, recorded
now, labelled as simulated; deterministic for a seed; safe to run again."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dala_events.demo import FIRST_OBJECTIVE_SESSIONS, NEXT_OBJECTIVE_SESSIONS, demo_schedule, run_demo
from dala_events.events import utc_now
from dala_events.generate_interface import score_chart
from dala_events.persistence_manager import get_full_learner_profile_data
from dala_events.store import RecordedEvent, SqlEventStore

NOW = datetime(2026, 11, 25, 12, 52, tzinfo=UTC)


def _comparable(events: list[RecordedEvent], learner_id: str) -> list[tuple[object, ...]]:
    return [
        (
            event.event_type,
            event.event.model_dump(),
            event.occurred_at,
            "learner:*" if event.metadata["actor"] == f"learner:{learner_id}" else event.metadata["actor"],
            event.metadata["reason"],
        )
        for event in events
    ]


def test_the_demo_spans_weeks_of_simulated_learning(sqlite_store: SqlEventStore, tmp_path: Path) -> None:
    before = utc_now()
    result = run_demo("kim", 4, tmp_path / "kim.html", store=sqlite_store)
    events = sqlite_store.read_stream("kim")
    assert result.created and len(events) == result.events_recorded

    occurred = [event.occurred_at for event in events]
    assert occurred == sorted(occurred)  # in order of the stream
    today = datetime.combine(before.date(), datetime.min.time(), tzinfo=UTC)
    assert all(moment < today for moment in occurred)  # all on earlier days
    assert timedelta(days=21) <= occurred[-1] - occurred[0] <= timedelta(days=29)
    assert all(event.recorded_at >= before for event in events)  # recorded now

    attempts = [event for event in events if event.event_type == "ActivityAttemptRecorded"]
    assert len(attempts) == FIRST_OBJECTIVE_SESSIONS + NEXT_OBJECTIVE_SESSIONS == 6
    session_days = [event.occurred_at.date() for event in attempts]
    assert len(set(session_days)) == len(session_days) and session_days == sorted(session_days)
    assert len({event.occurred_at.isocalendar().week for event in attempts}) >= 3
    assert all(0 <= event.event.score <= 100 for event in attempts)  # type: ignore[attr-defined]

    reasons = [event.metadata["reason"] for event in events]
    assert all(reason.startswith("simulated: ") for reason in reasons)
    assert "simulated: activity session, week 1" in reasons or "simulated: activity session, week 2" in reasons
    assert any(reason.startswith("simulated: HLP assessment (seed 4)") for reason in reasons)
    weeks = {reason.rsplit("week ", 1)[1] for reason in reasons if "activity session" in reason}
    assert len(weeks) >= 3

    # The first objective's scores rise over its sessions; it ends completed; the next one is under way.
    data = get_full_learner_profile_data("kim", store=sqlite_store)
    assert data is not None
    assert sorted(row.status for row in data.lo_progress) == ["completed", "in_progress"]
    first_lo = next(row.lo_id for row in data.lo_progress if row.status == "completed")
    first_scores = [
        a.score
        for a in sorted(data.activity_attempts, key=lambda a: a.attempt_timestamp or before)
        if a.lo_id == first_lo
    ]
    assert len(first_scores) == FIRST_OBJECTIVE_SESSIONS and first_scores[-1] > first_scores[0]  # type: ignore[operator]

    # The page's chart spreads the attempts over the weeks, one line per objective.
    chart = score_chart(data.activity_attempts)
    assert chart is not None and len(chart.series) == 2 and len(chart.x_ticks) >= 2
    assert len({label for _, label in chart.x_ticks}) == len(chart.x_ticks)
    html = result.page.read_text(encoding="utf-8")
    assert "happened " in html and "simulated: activity session, week" in html


def test_the_demo_is_deterministic_for_a_seed(sqlite_store: SqlEventStore, tmp_path: Path) -> None:
    for learner, seed in (("ada", 11), ("bo", 11), ("cy", 12)):
        run_demo(learner, seed, tmp_path / f"{learner}.html", store=sqlite_store, now=NOW)
    one = _comparable(sqlite_store.read_stream("ada"), "ada")
    assert any(actor == "learner:*" for *_, actor, _ in one)
    assert one == _comparable(sqlite_store.read_stream("bo"), "bo")
    assert one != _comparable(sqlite_store.read_stream("cy"), "cy")
    assert demo_schedule(11, NOW) == demo_schedule(11, NOW + timedelta(hours=3))  # the same day
    later = demo_schedule(11, NOW + timedelta(days=2))
    assert later.sessions == tuple(moment + timedelta(days=2) for moment in demo_schedule(11, NOW).sessions)


@pytest.mark.parametrize("seed", range(40))
def test_every_schedule_is_weeks_long_increasing_and_in_the_past(seed: int) -> None:
    schedule = demo_schedule(seed, NOW)
    moments = [schedule.assessment, *schedule.sessions]
    assert all(earlier < later for earlier, later in itertools.pairwise(moments))
    assert len({moment.date() for moment in moments}) == len(moments)
    assert moments[-1] < datetime(2026, 11, 25, tzinfo=UTC)
    assert timedelta(days=20) <= moments[-1] - moments[0] <= timedelta(days=28)
    assert schedule.week(schedule.assessment) == 1 and schedule.week(moments[-1]) in (3, 4)


def test_the_demo_again_only_renders_the_page(sqlite_store: SqlEventStore, tmp_path: Path) -> None:
    first = run_demo("kim", 4, tmp_path / "kim.html", store=sqlite_store, now=NOW)
    again = run_demo("kim", 5, tmp_path / "again.html", store=sqlite_store)
    assert not again.created and again.events_recorded == 0 and again.assessment is None
    assert sqlite_store.stream_version("kim") == first.events_recorded
    assert again.page.exists() and "Learner profile: kim" in again.page.read_text(encoding="utf-8")
