"""The learner's page: one self-contained HTML file rendered from the read models.

Everything shown of the profile comes from `persistence_manager` getters (the read models);
the audit timeline comes from `audit.history`. Nothing here queries a table itself.

The page needs no network and no JavaScript: inline CSS, an inline SVG chart of activity
scores (drawn twice, for wide and for narrow screens, the CSS showing one), native
`<progress>` bars. Templates are Jinja2 with autoescaping on, so learner-supplied text (an
interest called `<script>...`) is shown as text and never runs.

What a reader means by "when" is when something happened: the page shows the events'
`occurred_at` (an attempt's `attempt_timestamp`), and the audit timeline adds when a change
was recorded where that differs (a record entered later, a simulation). Times are shown in
the school's time zone (`Settings.time_zone`, DALA_TIME_ZONE; UTC by default), named on the
page; the chart's days and hours are that zone's.

The page is written for a parent: activities by the name their attempt carries (the id small
beside it), who made a change in words ("the assessment", "teacher 7"), changes counted as a
reader counts ("17th change"), and what "done" and "completed" mean said where they appear.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from dala_events import audit
from dala_events.assessment import humanise, preference_label, task_label
from dala_events.database_setup import default_storage
from dala_events.disclosures import record_disclosure
from dala_events.events import utc_now
from dala_events.pathway import CurriculumLO, curriculum_by_id, generate_pathway
from dala_events.persistence_manager import (
    ActivityAttemptData,
    FullLearnerProfileData,
    LOProgressData,
    get_full_learner_profile_data,
)
from dala_events.private_files import check_destination
from dala_events.settings import Settings
from dala_events.store import RecordedEvent, SqlEventStore
from dala_events.summaries import (
    STATUS_LABELS,
    STRUGGLES_HEADING,
    activity_name,
    describe_actor,
    describe_change,
    ordinal,
)
from dala_events.wiring import page_file_name

DEFAULT_INTERFACE_DIR = Path("database") / "interface"
TIMELINE_LENGTH = 40
RECENT_ATTEMPTS = 10
SCORE_TICKS = (0, 25, 50, 75, 100)
"""Scores are percentages: the chart's y axis always runs 0 to 100 with these ticks."""
RECORDED_LATER = timedelta(minutes=1)
"""The audit timeline shows a change's recording time too when it is this much after it happened."""

_environment = Environment(
    loader=PackageLoader("dala_events", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def default_interface_path(learner_id: str) -> Path:
    """Where a learner's page goes when neither a path nor a configured store says:
    `database/interface/<page_file_name(learner_id)>` (`student123.html` for `student123`)."""
    return DEFAULT_INTERFACE_DIR / page_file_name(learner_id)


def generate_interface(
    learner_id: str,
    output_path: str | Path | None = None,
    *,
    store: SqlEventStore | None = None,
    time_zone: tzinfo | None = None,
) -> Path:
    """Render the learner's page and write it to `output_path` (default: the process default
    store's page location with no `store`, else `default_interface_path`; `app.Dala.render_page`
    uses its own); returns the path written. Times are shown in `time_zone` (default: the
    process default store's setting with no `store`, else DALA_TIME_ZONE; `app.Dala` passes its
    own). LearnerNotFound for a learner with no profile (LearnerErasedError, saying when and by
    whom, for an erased one).

    Rendering a page discloses the learner's data: it is recorded (`page`, under the current
    `recorded_as` attribution) before the page is written, once the destination was checked
    to take it (`private_files.check_destination`, which makes a missing folder; InvalidInput
    naming `output_path` otherwise).
    """
    if time_zone is None:
        time_zone = (default_storage().settings if store is None else Settings.from_env()).time_zone
    data = get_full_learner_profile_data(learner_id, store=store)
    if data is None:
        raise audit.missing_profile_error(learner_id, store=store)
    html = render_interface(data, audit.history(learner_id, store=store), time_zone=time_zone)
    path = page_destination(learner_id, output_path, store=store)
    check_destination(path, name="output_path", create_folder=True)
    record_disclosure(learner_id, "page", store=store)
    # The page holds a child's data in the clear: readable by its owner only.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as page:
        page.write(html)
    return path


def page_destination(learner_id: str, output_path: str | Path | None, *, store: SqlEventStore | None) -> Path:
    """Where `generate_interface` writes the learner's page: `output_path`, else the process
    default store's page location with no `store`, else `default_interface_path`."""
    if output_path is not None:
        return Path(output_path)
    if store is None:
        return default_storage().page_path(learner_id)
    return default_interface_path(learner_id)


def render_interface(
    data: FullLearnerProfileData,
    history: Sequence[RecordedEvent],
    *,
    curriculum: Sequence[CurriculumLO] | None = None,
    time_zone: tzinfo = UTC,
) -> str:
    """The page's HTML for read-model data and the learner's history (LO titles and expected
    activity counts from `curriculum`, default the shipped one), its times in `time_zone`."""
    los = curriculum_by_id(curriculum)
    titles = {lo_id: lo.title for lo_id, lo in los.items()}
    pathway = generate_pathway(data, curriculum=curriculum)
    attempts = sorted(data.activity_attempts, key=lambda attempt: attempt.attempt_timestamp or utc_now())
    template = _environment.get_template("learner.html")
    return template.render(
        profile=data,
        generated_at=utc_now(),
        zone=zone_name(time_zone),
        zone_label=zone_label(time_zone),
        struggles_heading=STRUGGLES_HEADING,
        preferences=[
            {"label": preference_label(row.category), "value": row.value}
            for row in sorted(data.preferences, key=lambda row: row.category)
        ],
        metrics=[
            {"label": task_label(row.task_name), "details": row.metric_details}
            for row in sorted(data.cognitive_metrics, key=lambda row: row.task_name)
        ],
        objectives=[
            objective_row(row, attempts, los.get(row.lo_id))
            for row in sorted(data.lo_progress, key=lambda row: row.started_at or utc_now())
        ],
        pathway=pathway,
        badges=sorted(data.badges, key=lambda row: (row.earned_date or utc_now().date(), row.badge_id)),
        recent_attempts=[_attempt_row(attempt, titles) for attempt in reversed(attempts[-RECENT_ATTEMPTS:])],
        attempt_count=len(attempts),
        chart=score_chart(attempts, titles=titles, time_zone=time_zone),
        narrow_chart=score_chart(attempts, titles=titles, width=340, height=300, font_size=13, time_zone=time_zone),
        timeline=[_timeline_entry(event, titles, data.learner_id) for event in reversed(history[-TIMELINE_LENGTH:])],
        event_count=len(history),
        day=partial(day_text, time_zone=time_zone),
        moment=partial(moment_text, time_zone=time_zone),
        local=partial(_in_zone, time_zone=time_zone),
    )


# ---------------------------------------------------------------------------------------------
# Learning objectives: titles and real progress
# ---------------------------------------------------------------------------------------------

_STATUS_LABELS = STATUS_LABELS


@dataclass(frozen=True, slots=True)
class ObjectiveRow:
    """One learning objective as the page shows it."""

    lo_id: str
    title: str
    """The curriculum's title, or the id for an LO the curriculum does not know."""
    status: str
    """The status in words ("In progress")."""
    completed: bool
    activities_done: int
    """Different activities of this LO the learner has completed."""
    expected_activities: int | None
    progress: int | None
    """Percent done for the progress bar, or None when there is nothing to measure it against."""
    score: float | None

    @property
    def progress_text(self) -> str:
        """The progress in words: "2 of 5 activities done"; for a completed objective
        "Completed, with 2 of 5 activities done" (completed before every activity was done),
        "Completed: all 5 activities done"."""
        expected = self.expected_activities
        if self.completed and expected is not None and self.activities_done >= expected:
            return f"Completed: all {expected} activities done"
        if expected is not None:
            done = f"{self.activities_done} of {expected} activities done"
        elif self.activities_done:
            done = "1 activity done" if self.activities_done == 1 else f"{self.activities_done} activities done"
        else:
            done = "no activities done yet"
        return f"Completed, with {done}" if self.completed else done[:1].upper() + done[1:]


def objective_progress(status: str, activities_done: int, expected_activities: int | None) -> int | None:
    """Percent of an LO done: 100 once completed; else the share of the curriculum's expected
    activities completed (at most 100); None when the curriculum expects no count."""
    if status == "completed":
        return 100
    if expected_activities is None or expected_activities <= 0:
        return None
    return min(100, round(100 * activities_done / expected_activities))


def objective_row(
    row: LOProgressData, attempts: Sequence[ActivityAttemptData], curriculum_lo: CurriculumLO | None
) -> ObjectiveRow:
    """The page's view of one LO: its title, status in words, and progress measured by the
    different activities of the LO completed (`attempts` with `completed` set) against the
    curriculum's expected activity count."""
    done = len({attempt.activity_id for attempt in attempts if attempt.lo_id == row.lo_id and attempt.completed})
    expected = curriculum_lo.expected_activities if curriculum_lo is not None else None
    return ObjectiveRow(
        lo_id=row.lo_id,
        title=curriculum_lo.title if curriculum_lo is not None else row.lo_id,
        status=_STATUS_LABELS.get(row.status, humanise(row.status)),
        completed=row.status == "completed",
        activities_done=done,
        expected_activities=expected,
        progress=objective_progress(row.status, done, expected),
        score=row.score,
    )


def _attempt_row(attempt: ActivityAttemptData, titles: Mapping[str, str]) -> dict[str, Any]:
    return {
        "when": attempt.attempt_timestamp,
        "lo_id": attempt.lo_id,
        "title": titles.get(attempt.lo_id),
        "activity_id": attempt.activity_id,
        "activity_name": activity_name(attempt.attempt_details),
        "activity_type": humanise(attempt.activity_type),
        "score": attempt.score,
        "completed": attempt.completed,
    }


# ---------------------------------------------------------------------------------------------
# The chart of scores over time
# ---------------------------------------------------------------------------------------------

SERIES_STYLES: tuple[tuple[str, str, str], ...] = (
    ("#0b5cad", "circle", ""),
    ("#b3401a", "square", "7 4"),
    ("#1d6b35", "triangle", "2 3"),
    ("#7d3c98", "diamond", "9 3 2 3"),
    ("#7a5a00", "circle", "4 4"),
    ("#00707a", "square", "1 2"),
)
"""(colour, marker shape, stroke-dasharray) of the chart's series in turn: each objective's
line differs from the others in colour and in marker or dash, so it is told apart without
colour too."""

_TICK_STEPS = (
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(days=1),
    timedelta(days=2),
    timedelta(days=7),
    timedelta(days=14),
    timedelta(days=28),
    timedelta(days=91),
    timedelta(days=182),
    timedelta(days=364),
)
_BOLD_EM = 0.62
"""How wide a character of the chart's bold titles is at most on average, in font sizes (0.59
measured in headless Chromium): a title this estimate finds too long for the chart is shortened."""
_TICK_ANCHOR = datetime(2001, 1, 1)
"""A Monday at midnight (wall-clock time): ticks fall on multiples of their step from here in the
page's time zone (weekly ticks on Mondays, daily ones at midnight)."""


@dataclass(frozen=True, slots=True)
class ChartPoint:
    """One scored attempt in the chart's coordinates."""

    x: float
    y: float
    when: datetime
    score: float
    activity: str
    """The activity's name (its id when the attempt names none) and type in words."""
    label: str
    """What the point's tooltip says."""
    activity_id: str
    named: bool
    """Whether `activity` names the activity by its name (the id is then shown beside it)."""


@dataclass(frozen=True, slots=True)
class ChartSeries:
    """The scored attempts of one learning objective, oldest first, with how they are drawn."""

    lo_id: str
    title: str
    colour: str
    marker: str
    """circle, square, triangle or diamond."""
    dash: str
    """The line's stroke-dasharray ("" for a solid line)."""
    points: tuple[ChartPoint, ...]
    marker_size: float
    time_zone: tzinfo = UTC
    """The zone the summary's days are in."""

    @property
    def polyline(self) -> str:
        """The `points` attribute of the series' polyline."""
        return " ".join(f"{point.x:.1f},{point.y:.1f}" for point in self.points)

    def marker_path(self, x: float, y: float, size: float | None = None) -> str:
        """The SVG path data of this series' marker centred on (x, y)."""
        return marker_path(self.marker, x, y, self.marker_size if size is None else size)

    @property
    def summary(self) -> str:
        """The series in words: how many attempts, first and last score."""
        first, last = self.points[0], self.points[-1]
        zone = self.time_zone
        if len(self.points) == 1:
            return f"1 attempt: {first.score:g} on {day_text(first.when, zone)}"
        return (
            f"{len(self.points)} attempts: from {first.score:g} on {day_text(first.when, zone)}"
            f" to {last.score:g} on {day_text(last.when, zone)}"
        )


@dataclass(frozen=True, slots=True)
class ScoreChart:
    """An SVG chart of attempt scores over time, one series per learning objective, in the
    chart's own coordinates (its viewBox is 0 0 width height)."""

    width: int
    height: int
    font_size: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    series: tuple[ChartSeries, ...]
    x_ticks: tuple[tuple[float, str], ...]
    """(x, label) of each tick on the time axis."""
    y_ticks: tuple[tuple[float, str], ...]
    x_title: str
    y_title: str
    start: datetime
    end: datetime
    time_zone: tzinfo = UTC
    """The zone the time axis and the description are in."""

    @property
    def points(self) -> tuple[ChartPoint, ...]:
        """Every point of every series, in time order."""
        return tuple(sorted((point for series in self.series for point in series.points), key=lambda p: p.when))

    @property
    def description(self) -> str:
        """The chart in words, for screen readers."""
        count = len(self.points)
        objectives = "1 objective" if len(self.series) == 1 else f"{len(self.series)} objectives"
        start, end = day_text(self.start, self.time_zone), day_text(self.end, self.time_zone)
        parts = [f"{count} scored attempts at {objectives} between {start} and {end}, scores out of 100."]
        parts += [f"{series.title}: {series.summary}." for series in self.series]
        return " ".join(parts)


def score_chart(
    attempts: Sequence[ActivityAttemptData],
    *,
    titles: Mapping[str, str] | None = None,
    width: int = 640,
    height: int = 280,
    font_size: int = 12,
    time_zone: tzinfo = UTC,
) -> ScoreChart | None:
    """The chart of scored attempts, or None when fewer than two have a score and a time.

    Points are placed by their attempt's time (x proportional to time) and by score on the
    0-100 scale (ticks 0, 25, 50, 75, 100; a score outside it is drawn at its edge). Each
    learning objective is its own series, titled from `titles` (LO id to title) or its id.
    The time axis's days and hours, and every time in words, are `time_zone`'s.
    """
    scored = sorted(
        (a for a in attempts if a.score is not None and a.attempt_timestamp is not None),
        key=lambda a: a.attempt_timestamp or utc_now(),
    )
    if len(scored) < 2:
        return None
    titles = titles or {}
    left = round(font_size * 4.4)
    right = width - round(font_size * 2)
    top = round(font_size * 0.9)
    bottom = height - round(font_size * 3.9)
    start, end = scored[0].attempt_timestamp or utc_now(), scored[-1].attempt_timestamp or utc_now()
    tick_labels, ticks, domain_start, domain_end = _time_axis(start, end, (right - left) / font_size, time_zone)
    domain_seconds = (domain_end - domain_start).total_seconds()

    def x_of(moment: datetime) -> float:
        return left + (right - left) * (moment - domain_start).total_seconds() / domain_seconds

    def y_of(score: float) -> float:
        return bottom - (bottom - top) * min(max(score, 0.0), 100.0) / 100.0

    by_lo: dict[str, list[ActivityAttemptData]] = {}
    for attempt in scored:
        by_lo.setdefault(attempt.lo_id, []).append(attempt)
    series = []
    for index, (lo_id, rows) in enumerate(by_lo.items()):
        colour, marker, dash = SERIES_STYLES[index % len(SERIES_STYLES)]
        title = titles.get(lo_id, lo_id)
        points = []
        for row in rows:
            moment, score = row.attempt_timestamp or utc_now(), float(row.score or 0)
            name = activity_name(row.attempt_details)
            activity = f"{name or row.activity_id} ({humanise(row.activity_type)})"
            label = f"{title}: {activity}, score {score:g}, {moment_text(moment, time_zone)}"
            points.append(
                ChartPoint(
                    x=x_of(moment),
                    y=y_of(score),
                    when=moment,
                    score=score,
                    activity=activity,
                    label=label,
                    activity_id=row.activity_id,
                    named=name is not None,
                )
            )
        series.append(ChartSeries(lo_id, title, colour, marker, dash, tuple(points), font_size * 0.38, time_zone))

    x_ticks = tuple((x_of(moment), label) for moment, label in zip(ticks, tick_labels, strict=True))
    local_start, local_end = start.astimezone(time_zone), end.astimezone(time_zone)
    if end - start > timedelta(days=2) or not any(":" in label for label in tick_labels):
        years = " to ".join(str(year) for year in sorted({local_start.year, local_end.year}))
        x_title = f"Date of attempt, {years}"
    elif local_start.date() == local_end.date():
        x_title = f"Time of attempt on {day_text(start, time_zone)}"
    else:
        x_title = f"Time of attempt, {day_text(start, time_zone)} to {day_text(end, time_zone)}"
    with_zone = f"{x_title} ({zone_name(time_zone)})"
    room = 2 * (width - (left + right) / 2)  # the title is centred under the plot
    if len(with_zone) * font_size * _BOLD_EM <= room:  # else the page's header names the zone alone
        x_title = with_zone
    return ScoreChart(
        width=width,
        height=height,
        font_size=font_size,
        plot_left=left,
        plot_right=right,
        plot_top=top,
        plot_bottom=bottom,
        series=tuple(series),
        x_ticks=x_ticks,
        y_ticks=tuple((y_of(value), str(value)) for value in SCORE_TICKS),
        x_title=x_title,
        y_title="Score (%)",
        start=start,
        end=end,
        time_zone=time_zone,
    )


def marker_path(shape: str, x: float, y: float, size: float) -> str:
    """SVG path data of a marker of `shape` (circle, square, triangle, diamond) around (x, y)."""
    if shape == "square":
        r = size * 0.9
        return f"M{x - r:.1f},{y - r:.1f}h{2 * r:.1f}v{2 * r:.1f}h{-2 * r:.1f}Z"
    if shape == "triangle":
        r = size * 1.25
        return f"M{x:.1f},{y - r:.1f}L{x + r:.1f},{y + r * 0.8:.1f}L{x - r:.1f},{y + r * 0.8:.1f}Z"
    if shape == "diamond":
        r = size * 1.3
        return f"M{x:.1f},{y - r:.1f}L{x + r:.1f},{y:.1f}L{x:.1f},{y + r:.1f}L{x - r:.1f},{y:.1f}Z"
    r = size
    return f"M{x - r:.1f},{y:.1f}a{r:.1f},{r:.1f} 0 1,0 {2 * r:.1f},0a{r:.1f},{r:.1f} 0 1,0 {-2 * r:.1f},0Z"


def _tick_label(moment: datetime, daily: bool, with_year: bool = False) -> str:
    if daily or (moment.hour, moment.minute) == (0, 0):
        return f"{moment.day} {moment:%b %Y}" if with_year else f"{moment.day} {moment:%b}"
    return f"{moment:%H:%M}"


def _time_axis(
    start: datetime, end: datetime, room: float, time_zone: tzinfo = UTC
) -> tuple[list[str], list[datetime], datetime, datetime]:
    """Round ticks for times `start` to `end` on an axis `room` font sizes long: the tick
    labels, the ticks, and the axis's start and end (the data's, widened to whole days, or
    hours for ticks less than a day apart), as UTC times. Ticks are days (weekly ones on
    Mondays) or, within two days, hours, of `time_zone`'s clock; at most one per 6 font sizes
    when a step allows it."""
    labels, ticks, domain_start, domain_end = _wall_clock_axis(_wall(start, time_zone), _wall(end, time_zone), room)
    # A clock time skipped when the clocks go forward has no moment: no tick there.
    kept = [(label, tick) for label, tick in zip(labels, ticks, strict=True) if _exists(tick, time_zone)]
    return (
        [label for label, _ in kept],
        [_instant(tick, time_zone) for _, tick in kept],
        _instant(domain_start, time_zone),
        _instant(domain_end, time_zone),
    )


def _wall(moment: datetime, time_zone: tzinfo) -> datetime:
    """`moment` as `time_zone`'s clock reads it (a naive datetime)."""
    return moment.astimezone(time_zone).replace(tzinfo=None)


def _instant(wall: datetime, time_zone: tzinfo) -> datetime:
    """The moment (UTC) `time_zone`'s clock reads `wall` (the earlier one when it reads it twice)."""
    return wall.replace(tzinfo=time_zone).astimezone(UTC)


def _exists(wall: datetime, time_zone: tzinfo) -> bool:
    """Whether `time_zone`'s clock ever reads `wall`."""
    return _wall(_instant(wall, time_zone), time_zone) == wall


def _wall_clock_axis(
    start: datetime, end: datetime, room: float
) -> tuple[list[str], list[datetime], datetime, datetime]:
    """`_time_axis` on a clock's (naive) times."""
    if end - start < timedelta(minutes=30):
        start, end = start - timedelta(minutes=15), end + timedelta(minutes=15)
    with_year = start.year != end.year
    fallback: tuple[list[str], list[datetime], datetime, datetime] | None = None
    for step in _TICK_STEPS:
        daily = step >= timedelta(days=1)
        if not daily and end - start > timedelta(days=2):
            continue  # hours over several days: their labels would need the date
        unit = timedelta(days=1) if daily else min(step, timedelta(hours=1))
        domain_start = _TICK_ANCHOR + unit * math.floor((start - _TICK_ANCHOR) / unit)
        domain_end = _TICK_ANCHOR + unit * math.ceil((end - _TICK_ANCHOR) / unit)
        ticks = []
        moment = _TICK_ANCHOR + step * math.ceil((domain_start - _TICK_ANCHOR) / step)
        while moment <= domain_end:
            ticks.append(moment)
            moment += step
        labels = [_tick_label(tick, daily, with_year) for tick in ticks]
        fallback = labels, ticks, domain_start, domain_end
        if len(set(labels)) == len(labels) and len(ticks) * 6 <= room:  # never two alike (18:00 twice)
            break
    assert fallback is not None  # the daily steps are always tried
    return fallback


# ---------------------------------------------------------------------------------------------
# Times in words
# ---------------------------------------------------------------------------------------------


def day_text(moment: date | None, time_zone: tzinfo = UTC) -> str:
    """A date (or a time's date in `time_zone`) as the page writes it: "3 Nov 2026"."""
    if moment is None:
        return ""
    if isinstance(moment, datetime) and moment.tzinfo:
        moment = moment.astimezone(time_zone)
    return f"{moment.day} {moment:%b %Y}"


def moment_text(moment: datetime | None, time_zone: tzinfo = UTC) -> str:
    """A time as the page writes it: "3 Nov 2026, 09:30" (in `time_zone`; the page names it once)."""
    if moment is None:
        return ""
    moment = moment.astimezone(time_zone) if moment.tzinfo else moment
    return f"{day_text(moment, time_zone)}, {moment:%H:%M}"


_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/Universal", "Etc/Zulu", "Universal", "Zulu"})


def zone_name(time_zone: tzinfo) -> str:
    """The time zone as a reader says it: "UTC", "London time" (Europe/London), "Buenos Aires
    time" (America/Argentina/Buenos_Aires); a fixed offset by its own name ("UTC+02:00")."""
    if not isinstance(time_zone, ZoneInfo):
        return time_zone.tzname(None) or "UTC"
    if time_zone.key in _UTC_NAMES:
        return "UTC"
    return f"{time_zone.key.rsplit('/', 1)[-1].replace('_', ' ')} time"


def zone_label(time_zone: tzinfo) -> str:
    """The time zone as the page names it once: "UTC", "London time (Europe/London)"."""
    name = zone_name(time_zone)
    if not isinstance(time_zone, ZoneInfo) or name in ("UTC", f"{time_zone.key} time"):
        return name
    return f"{name} ({time_zone.key})"


def _in_zone(moment: datetime, time_zone: tzinfo = UTC) -> datetime:
    """`moment` in `time_zone` (for a <time datetime="..."> attribute, with its offset)."""
    return moment.astimezone(time_zone) if moment.tzinfo else moment


# ---------------------------------------------------------------------------------------------
# The audit timeline
# ---------------------------------------------------------------------------------------------


def _timeline_entry(event: RecordedEvent, titles: Mapping[str, str], learner_id: str) -> dict[str, Any]:
    return {
        "version": event.version,
        "change": f"{ordinal(event.version)} change",
        "occurred_at": event.occurred_at,
        "recorded_at": event.recorded_at,
        "recorded_later": abs(event.recorded_at - event.occurred_at) >= RECORDED_LATER,
        "actor": describe_actor(str(event.metadata.get("actor", "system")), learner_id),
        "reason": event.metadata.get("reason"),
        "event_type": event.event_type,
        "summary": describe_change(event.event, titles),
    }
