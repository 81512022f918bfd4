"""What the learner's page says, read as a parent would: curriculum titles and activity names
instead of codes, readable labels instead of raw keys, who changed what in words and which
change it was ("17th change"), progress bars measured from completed activities and what
"done" and "completed" mean, "Finds hard", and the times things happened (with the recording
time where it differs) in the school's time zone, named."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from dala_events import aio, audit
from dala_events.app import Dala
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
from dala_events.errors import InvalidInput
from dala_events.generate_interface import (
    generate_interface,
    objective_progress,
    render_interface,
    zone_label,
    zone_name,
)
from dala_events.hlp_module import LearnerProfile
from dala_events.pathway import curriculum_by_id, curriculum_from, load_curriculum
from dala_events.persistence_manager import get_full_learner_profile_data
from dala_events.settings import Settings
from dala_events.store import SqlEventStore
from dala_events.summaries import ordinal

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
    assert f"· by teacher 7 · {ordinal(len(audit.history('ann', store=sqlite_store)))} change" in html
    assert "· by the demo · why: simulated: demo learner created, week 1 · 1st change" in html
    assert not re.search(r"· v\d", html)
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


# ---------------------------------------------------------------------------------------------
# The page read as a parent would
# ---------------------------------------------------------------------------------------------


def _text(html: str) -> str:
    """What a reader sees: the page's text without its tags, spaces collapsed."""
    body = re.sub(r"<(style|title|desc)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).replace(" ,", ",")


def test_the_page_says_what_done_and_completed_mean(sqlite_store: SqlEventStore) -> None:
    with freeze_time(NOW):
        profile = LearnerProfile("p", store=sqlite_store)
        profile.start_lo("MATH_LO_001")  # the curriculum expects 4 activities
        profile.record_activity_attempt("MATH_LO_001", "a1", "quiz", score=70, completed=True)
        profile.record_activity_attempt("MATH_LO_001", "a2", "game", score=55, completed=False)
        profile.record_activity_attempt("MATH_LO_001", "a3", "game", score=75, completed=True)
        profile.mark_lo_completed("MATH_LO_001", score=75)
        data = get_full_learner_profile_data("p", store=sqlite_store)
        assert data is not None
        html = render_interface(data, audit.history("p", store=sqlite_store))
    text = _text(html)
    # The objective: completed with half its activities done, and why its bar is full.
    assert "Completed, with 2 of 4 activities done" in text and "Objective completed;" not in text
    assert "which can be before every activity is done" in text
    assert "The bar shows how many of an objective's activities are done" in text
    # The attempts: a score beside "not done", explained.
    assert "An attempt can have a score and still not complete the activity" in text
    assert '<th scope="col">Activity done?</th>' in html
    assert '<td data-label="Activity done?">Not yet</td>' in html and '<td data-label="Activity done?">Yes</td>' in html
    assert ">no<" not in html and ">yes<" not in html


def test_activities_are_named_where_their_events_carry_a_name(sqlite_store: SqlEventStore, tmp_path: Path) -> None:
    with freeze_time(NOW):
        profile = LearnerProfile("n", store=sqlite_store)
        profile.record_activity_attempt(
            "MATH_LO_001", "math_lo_001_act_3", "game", score=64, attempt_details={"activity_name": "Number bond snap"}
        )
        profile.record_activity_attempt("MATH_LO_001", "math_lo_001_act_4", "quiz", score=80)  # no name
        profile.record_activity_attempt(
            "MATH_LO_001", "a5", "quiz", score=81, attempt_details={"activity_name": 5, "hints": 2}
        )  # not a name
        data = get_full_learner_profile_data("n", store=sqlite_store)
        assert data is not None
        html = render_interface(data, audit.history("n", store=sqlite_store))
    # The name, with the code small beside it; the code alone where no name was recorded.
    assert '<td data-label="Activity"><div>Number bond snap <span class="id">math_lo_001_act_3</span></div>' in html
    assert '<td data-label="Activity"><div>math_lo_001_act_4</div></td>' in html
    assert '<td data-label="Activity"><div>a5</div></td>' in html
    assert "Attempted “Number bond snap” (Game) for “Know number bonds to 20”: score 64" in html
    # The chart's tooltip and data table name it too.
    assert "Know number bonds to 20: Number bond snap (Game), score 64" in html
    # The demo's activities carry names.
    demo = run_demo("d", 3, tmp_path / "d.html", store=sqlite_store).page.read_text(encoding="utf-8")
    attempts = demo.split('id="activity-attempts"')[1].split("</section>")[0]
    assert len(re.findall(r'"Activity"><div>[^<]+ <span class="id">[a-z_0-9]+_act_\d</span></div>', attempts)) == 6
    assert re.findall(r'"Activity"><div>[a-z_0-9]+_act_\d</div>', attempts) == []


def test_times_are_shown_in_the_schools_time_zone_named(tmp_path: Path) -> None:
    assert Settings().time_zone == UTC and Settings.from_env({}).time_zone == UTC
    assert Settings.from_env({"DALA_TIME_ZONE": "Asia/Tokyo"}).time_zone == ZoneInfo("Asia/Tokyo")
    for unknown in ("Mars/Olympus", "Europe/Londres", "../etc/passwd", "/etc/localtime"):
        with pytest.raises(InvalidInput, match="DALA_TIME_ZONE") as refused:
            Settings.from_env({"DALA_TIME_ZONE": unknown})
        assert "IANA" in str(refused.value) and refused.value.field == "DALA_TIME_ZONE"

    tokyo = Settings(database_url=f"sqlite:///{tmp_path}/school.db", time_zone=ZoneInfo("Asia/Tokyo"))
    with Dala.open(tokyo) as dala, freeze_time(NOW):
        with occurring_at(HAPPENED):
            profile = dala.profile("t")
            profile.record_activity_attempt("MATH_LO_001", "a1", "quiz", score=40)
        with occurring_at(datetime(2026, 11, 9, 20, 0, tzinfo=UTC)):  # 10 Nov in Tokyo
            profile.record_activity_attempt("MATH_LO_001", "a2", "quiz", score=70)
        html = dala.render_page("t").read_text(encoding="utf-8")
        demo = dala.demo("kim", 4).page.read_text(encoding="utf-8")
    text = _text(html)
    assert '<time datetime="2026-11-03T18:30:00+09:00">3 Nov 2026, 18:30</time>' in html
    assert "10 Nov 2026, 05:00" in text and "9 Nov 2026" not in text
    assert "from 40 on 3 Nov 2026 to 70 on 10 Nov 2026" in text
    assert "times are Tokyo time (Asia/Tokyo)" in text and "UTC" not in text
    assert "Generated 25 Nov 2026, 21:52 Tokyo time" in text
    assert "Date of attempt, 2026 (Tokyo time)" in html
    assert "times are Tokyo time (Asia/Tokyo)" in _text(demo)

    async def async_page() -> str:
        async with await aio.AsyncDala.open(tokyo) as opened:
            return Path(await aio.generate_interface("t", store=opened.store)).read_text(encoding="utf-8")

    assert "times are Tokyo time (Asia/Tokyo)" in _text(asyncio.run(async_page()))

    named = {zone_label(zone) for zone in (UTC, ZoneInfo("UTC"), ZoneInfo("Etc/UTC"))}
    buenos_aires = ZoneInfo("America/Argentina/Buenos_Aires")
    assert named == {"UTC"} and zone_name(buenos_aires) == "Buenos Aires time"
    assert zone_label(buenos_aires) == "Buenos Aires time (America/Argentina/Buenos_Aires)"
    assert zone_label(timezone(timedelta(hours=2))) == "UTC+02:00"


def test_the_timeline_names_who_in_words_and_numbers_changes_as_a_reader_counts(
    sqlite_store: SqlEventStore, tmp_path: Path
) -> None:
    run_demo("ann", 3, tmp_path / "ann.html", store=sqlite_store)
    with recorded_as("teacher:7", reason="parent meeting"):
        LearnerProfile("ann", store=sqlite_store).add_interest("Chess")
    with recorded_as("dpo:jane"):
        LearnerProfile("ann", store=sqlite_store).add_interest("Kites")
    LearnerProfile("ann", store=sqlite_store).add_interest("Drums")  # no actor named: the system
    html = generate_interface("ann", tmp_path / "ann.html", store=sqlite_store).read_text(encoding="utf-8")
    timeline = _text(html.split('id="timeline"')[1])
    count = len(audit.history("ann", store=sqlite_store))
    for actor in ("system:", "learner:", "teacher:", "dpo:", "change 1 ", "change 17 "):
        assert actor not in timeline, actor
    assert "Profile created · by the demo · why: simulated: demo learner created, week 1 · 1st change" in timeline
    assert "by the assessment" in timeline and "by the learning pathway" in timeline
    assert "by the learner" in timeline and "by the badge system" in timeline
    assert f"Interest added: Chess · by teacher 7 · why: parent meeting · {ordinal(count - 2)} change" in timeline
    assert f"Interest added: Kites · by data protection officer jane · {ordinal(count - 1)} change" in timeline
    assert f"Interest added: Drums · by the platform · {ordinal(count)} change" in timeline
    assert "2nd change" in timeline and "3rd change" in timeline and "11th change" in timeline
    assert "21st change" in timeline and "22nd change" in timeline
    assert "Changes are numbered in the order they were recorded" in timeline


def test_struggle_areas_read_as_what_the_learner_finds_hard(sqlite_store: SqlEventStore) -> None:
    with freeze_time(NOW):
        profile = LearnerProfile("f", store=sqlite_store)
        profile.add_struggle_area("Handwriting")
        profile.add_struggle_area("Spelling")
        profile.remove_struggle_area("Spelling")
        data = get_full_learner_profile_data("f", store=sqlite_store)
        assert data is not None
        html = render_interface(data, audit.history("f", store=sqlite_store))
    assert [row.struggle_description for row in data.struggles] == ["Handwriting"]  # the data unchanged
    text = _text(html)
    assert '<h2 id="h-struggles">Finds hard</h2>' in html and "Struggle" not in text
    assert "Added to “Finds hard”: Handwriting" in text and "Removed from “Finds hard”: Spelling" in text
    empty = get_full_learner_profile_data("f", store=sqlite_store)
    assert empty is not None
    assert "Nothing noted yet." in render_interface(empty.model_copy(update={"struggles": []}), [])
