"""What the learner's page says: curriculum titles instead of LO ids, readable labels instead
of raw keys, "change N", progress bars measured from completed activities, and the times
things happened (with the recording time where it differs)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from freezegun import freeze_time

from dala_events import audit
from dala_events.assessment import (
    DIAGNOSTIC_TASKS,
    PREFERENCE_LABELS,
    PREFERENCE_TASKS,
    TASK_LABELS,
    humanise,
    preference_label,
    readable_label,
    task_label,
)
from dala_events.attribution import occurring_at, recorded_as
from dala_events.demo import run_demo
from dala_events.generate_interface import generate_interface, objective_progress, render_interface
from dala_events.hlp_module import LearnerProfile
from dala_events.pathway import curriculum_by_id, curriculum_from, load_curriculum
from dala_events.persistence_manager import get_full_learner_profile_data
from dala_events.store import SqlEventStore

NOW = datetime(2026, 11, 25, 12, 52, tzinfo=UTC)
HAPPENED = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
PROGRESS = re.compile(r'<progress max="100" value="(\d+)" aria-label="([^"]*)"')


def test_readable_labels_for_known_keys_and_a_humanised_fallback() -> None:
    assert set(PREFERENCE_LABELS) == set(PREFERENCE_TASKS) and set(TASK_LABELS) == set(DIAGNOSTIC_TASKS)
    assert preference_label("visual_preference_task_1") == "Learning style"
    assert task_label("memory_maze") == "Memory Maze"
    assert preference_label("favourite_colour") == "Favourite colour"  # unknown: humanised
    assert task_label("spot_the_difference_2") == "Spot the difference 2"
    assert humanise("visual_preference_task_1") == "Visual preference task 1"
    assert humanise("  reading__pace ") == "Reading pace" and humanise("note") == "Note"
    assert humanise("iPad_time") == "IPad time" and humanise("") == ""
    assert readable_label("x_y", {"x_y": "Ex why"}) == "Ex why"


def test_page_shows_titles_readable_labels_and_change_numbers(sqlite_store: SqlEventStore, tmp_path: Path) -> None:
    run_demo("ann", 3, tmp_path / "ann.html", store=sqlite_store)
    with recorded_as("teacher:7"):
        LearnerProfile("ann", store=sqlite_store).update_preference("favourite_colour", "green")
    html = generate_interface("ann", tmp_path / "ann.html", store=sqlite_store).read_text(encoding="utf-8")
    data = get_full_learner_profile_data("ann", store=sqlite_store)
    assert data is not None and len(data.lo_progress) == 2
    titles = curriculum_by_id()
    for row in data.lo_progress:
        # The title, with the id small after it (in the objectives table, the chart legend, the attempts).
        assert f'{titles[row.lo_id].title} <span class="id">{row.lo_id}</span>' in html
    raw_keys = [*PREFERENCE_TASKS, *DIAGNOSTIC_TASKS, "favourite_colour"]
    assert [key for key in raw_keys if key in html] == []
    for label in [*PREFERENCE_LABELS.values(), *TASK_LABELS.values(), "Favourite colour"]:
        assert label in html
    assert "Preference “Favourite colour” set to green" in html
    assert re.search(r"<td data-label=\"Type\">(Quiz|Game|Reading|Practice)</td>", html)
    assert f"· change {len(audit.history('ann', store=sqlite_store))} by teacher:7" in html
    assert "· change 1 by system:demo" in html and not re.search(r"· v\d", html)
    # The pathway's reasons name prerequisites by title too.
    assert not re.search(r"builds on [A-Z]+_LO_\d", html)


def test_progress_bars_show_completed_activities_against_the_curriculum(sqlite_store: SqlEventStore) -> None:
    with freeze_time(NOW):
        profile = LearnerProfile("p", store=sqlite_store)
        profile.start_lo("MATH_LO_001")  # the curriculum expects 4 activities
        profile.record_activity_attempt("MATH_LO_001", "a1", "quiz", score=70, completed=True)
        profile.record_activity_attempt("MATH_LO_001", "a1", "quiz", score=90, completed=True)  # same one again
        profile.record_activity_attempt("MATH_LO_001", "a2", "game", score=40, completed=False)
        profile.record_activity_attempt("MATH_LO_001", "a3", "game", score=75, completed=True)
        profile.record_activity_attempt("LIT_LO_001", "b1", "quiz", score=90, completed=True)  # not started: counts
        profile.start_lo("SCI_LO_001")  # started, nothing done
        profile.start_lo("CLUB_LO_9")  # not in the curriculum: nothing to measure against
        profile.record_activity_attempt("CLUB_LO_9", "c1", "game", score=50, completed=True)
        profile.mark_lo_completed("SCI_LO_002")
        data = get_full_learner_profile_data("p", store=sqlite_store)
        assert data is not None
        html = render_interface(data, audit.history("p", store=sqlite_store))
    bars = {label.split(":")[0]: int(value) for value, label in PROGRESS.findall(html)}
    assert bars == {
        "Know number bonds to 20": 50,  # 2 different activities of 4
        "Sort living things into groups": 0,
        "Describe how weather changes with the seasons": 100,  # completed
    }
    assert "2 of 4 activities done" in html and "0 of 4 activities done" in html
    assert "CLUB_LO_9" in html and "1 activity done" in html  # no bar, the count in words
    assert 'aria-label="Know number bonds to 20: 50% (2 of 4 activities done)"' in html

    assert objective_progress("completed", 0, None) == 100
    assert objective_progress("in_progress", 3, 4) == 75
    assert objective_progress("in_progress", 9, 4) == 100
    assert objective_progress("in_progress", 3, None) is None
    assert objective_progress("not_started", 0, 5) == 0


def test_curriculum_expected_activities() -> None:
    assert all(lo.expected_activities and lo.expected_activities > 0 for lo in load_curriculum())
    assert curriculum_from([{"lo_id": "A", "title": "t", "subject": "s"}])[0].expected_activities is None
    for bad in (0, -1, "3", 2.5, True):
        try:
            curriculum_from([{"lo_id": "A", "title": "t", "subject": "s", "expected_activities": bad}])
        except ValueError as error:
            assert "expected_activities" in str(error)
        else:
            raise AssertionError(f"accepted expected_activities={bad!r}")


def test_times_shown_are_when_things_happened(sqlite_store: SqlEventStore) -> None:
    with freeze_time(NOW):
        with occurring_at(HAPPENED):
            profile = LearnerProfile("t", store=sqlite_store)
            profile.start_lo("MATH_LO_001")
            profile.record_activity_attempt("MATH_LO_001", "a1", "quiz", score=40, completed=False)
        with occurring_at(HAPPENED + timedelta(days=6, hours=7)):
            profile.record_activity_attempt("MATH_LO_001", "a2", "quiz", score=70, completed=True)
        profile.add_interest("Music")  # happens now
        data = get_full_learner_profile_data("t", store=sqlite_store)
        assert data is not None
        html = render_interface(data, audit.history("t", store=sqlite_store))
    # The attempts table and the chart's data use the attempts' times (their occurred_at).
    assert '<time datetime="2026-11-03T09:30:00+00:00">3 Nov 2026, 09:30</time>' in html
    assert "9 Nov 2026, 16:30" in html
    assert "from 40 on 3 Nov 2026 to 70 on 9 Nov 2026" in html
    # The audit timeline: both times for what was recorded later, one time for what happened now.
    assert (
        'happened <time datetime="2026-11-03T09:30:00+00:00">3 Nov 2026, 09:30</time> '
        '<span class="recorded">recorded <time datetime="2026-11-25T12:52:00+00:00">'
        "25 Nov 2026, 12:52</time></span>"
    ) in re.sub(r"\s+", " ", html)
    assert html.count("happened ") == 4  # created, started, two attempts; not the interest added now
    entry = re.search(r"<li><div class=\"when\">(.*?)</div>\s*<div>Interest added: Music", html, re.S)
    assert entry and "recorded" not in entry.group(1) and "25 Nov 2026, 12:52" in entry.group(1)
    assert 'Profile created <time datetime="2026-11-03T09:30:00+00:00">3 Nov 2026</time>' in html
