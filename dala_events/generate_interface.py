"""The learner's page: one self-contained HTML file rendered from the read models.

Everything shown of the profile comes from `persistence_manager` getters (the read models);
the audit timeline comes from `audit.history`. Nothing here queries a table itself.

The page needs no network and no JavaScript: inline CSS, an inline SVG chart of activity
scores (drawn twice, for wide and for narrow screens, the CSS showing one), native
`<progress>` bars. Templates are Jinja2 with autoescaping on, so learner-supplied text (an
interest called `<script>...`) is shown as text and never runs.

What a reader means by "when" is when something happened: the page shows the events'
`occurred_at` (an attempt's `attempt_timestamp`), and the audit timeline adds when a change
was recorded where that differs (a record entered later, a simulation).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

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
from dala_events.store import RecordedEvent, SqlEventStore
from dala_events.summaries import STATUS_LABELS, describe_change

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
    """Where a learner's page goes by default: database/interface/<learner>.html, with any
    character that is not safe in a file name replaced."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in learner_id).lstrip(".") or "learner"
    return DEFAULT_INTERFACE_DIR / f"{safe}.html"


def generate_interface(
    learner_id: str,
    output_path: str | Path | None = None,
    *,
    store: SqlEventStore | None = None,
) -> Path:
    """Render the learner's page and write it to `output_path` (default: the process default
    store's page location with no `store`, else `default_interface_path`; `app.Dala.render_page`
    uses its own); returns the path written. LearnerNotFound for a learner with
    no profile (LearnerErasedError, saying when and by whom, for an erased one).

    Rendering a page discloses the learner's data: it is recorded (`page`, under the current
    `recorded_as` attribution) before the page is written, once the destination was checked
    to take it (`private_files.check_destination`, which makes a missing folder; InvalidInput
    naming `output_path` otherwise).
    """
    data = get_full_learner_profile_data(learner_id, store=store)
    if data is None:
        raise audit.missing_profile_error(learner_id, store=store)
    html = render_interface(data, audit.history(learner_id, store=store))
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
) -> str:
    """The page's HTML for read-model data and the learner's history (LO titles and expected
    activity counts from `curriculum`, default the shipped one)."""
    los = curriculum_by_id(curriculum)
    titles = {lo_id: lo.title for lo_id, lo in los.items()}
    pathway = generate_pathway(data, curriculum=curriculum)
    attempts = sorted(data.activity_attempts, key=lambda attempt: attempt.attempt_timestamp or utc_now())
    template = _environment.get_template("learner.html")
    return template.render(
        profile=data,
        generated_at=utc_now(),
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
        chart=score_chart(attempts, titles=titles),
        narrow_chart=score_chart(attempts, titles=titles, width=340, height=300, font_size=13),
        timeline=[_timeline_entry(event, titles) for event in reversed(history[-TIMELINE_LENGTH:])],
        event_count=len(history),
        day=day_text,
        moment=moment_text,
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
        """The progress in words, e.g. "2 of 5 activities done"."""
        if self.expected_activities is not None:
            done = f"{self.activities_done} of {self.expected_activities} activities done"
        elif self.activities_done:
            done = "1 activity done" if self.activities_done == 1 else f"{self.activities_done} activities done"
        else:
            done = "no activities done yet"
        return f"Objective completed; {done}" if self.completed else done[:1].upper() + done[1:]


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
_TICK_ANCHOR = datetime(2001, 1, 1, tzinfo=UTC)
"""A Monday at midnight: ticks fall on multiples of their step from here (weekly ticks on Mondays)."""


@dataclass(frozen=True, slots=True)
class ChartPoint:
    """One scored attempt in the chart's coordinates."""

    x: float
    y: float
    when: datetime
    score: float
    activity: str
    """The activity's id and type in words."""
    label: str
    """What the point's tooltip says."""


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
        if len(self.points) == 1:
            return f"1 attempt: {first.score:g} on {day_text(first.when)}"
        return (
            f"{len(self.points)} attempts: from {first.score:g} on {day_text(first.when)}"
            f" to {last.score:g} on {day_text(last.when)}"
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

    @property
    def points(self) -> tuple[ChartPoint, ...]:
        """Every point of every series, in time order."""
        return tuple(sorted((point for series in self.series for point in series.points), key=lambda p: p.when))

    @property
    def description(self) -> str:
        """The chart in words, for screen readers."""
        count = len(self.points)
        objectives = "1 objective" if len(self.series) == 1 else f"{len(self.series)} objectives"
        parts = [
            f"{count} scored attempts at {objectives} between {day_text(self.start)} and {day_text(self.end)},"
            f" scores out of 100."
        ]
        parts += [f"{series.title}: {series.summary}." for series in self.series]
        return " ".join(parts)


def score_chart(
    attempts: Sequence[ActivityAttemptData],
    *,
    titles: Mapping[str, str] | None = None,
    width: int = 640,
    height: int = 280,
    font_size: int = 12,
) -> ScoreChart | None:
    """The chart of scored attempts, or None when fewer than two have a score and a time.

    Points are placed by their attempt's time (x proportional to time) and by score on the
    0-100 scale (ticks 0, 25, 50, 75, 100; a score outside it is drawn at its edge). Each
    learning objective is its own series, titled from `titles` (LO id to title) or its id.
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
    tick_labels, ticks, domain_start, domain_end = _time_axis(start, end, (right - left) / font_size)
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
            activity = f"{row.activity_id} ({humanise(row.activity_type)})"
            label = f"{title}: {activity}, score {score:g}, {moment_text(moment)}"
            points.append(ChartPoint(x_of(moment), y_of(score), moment, score, activity, label))
        series.append(ChartSeries(lo_id, title, colour, marker, dash, tuple(points), font_size * 0.38))

    x_ticks = tuple((x_of(moment), label) for moment, label in zip(ticks, tick_labels, strict=True))
    if end - start > timedelta(days=2) or not any(":" in label for label in tick_labels):
        years = " to ".join(str(year) for year in sorted({start.year, end.year}))
        x_title = f"Date of attempt, {years} (UTC)"
    elif start.date() == end.date():
        x_title = f"Time of attempt on {day_text(start)} (UTC)"
    else:
        x_title = f"Time of attempt, {day_text(start)} to {day_text(end)} (UTC)"
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


def _time_axis(start: datetime, end: datetime, room: float) -> tuple[list[str], list[datetime], datetime, datetime]:
    """Round ticks for times `start` to `end` on an axis `room` font sizes long: the tick
    labels, the ticks, and the axis's start and end (the data's, widened to whole days, or
    hours for ticks less than a day apart). Ticks are days (weekly ones on Mondays) or, within
    two days, hours; at most one per 6 font sizes when a step allows it."""
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


def day_text(moment: date | None) -> str:
    """A date (or a time's date, in UTC) as the page writes it: "3 Nov 2026"."""
    if moment is None:
        return ""
    if isinstance(moment, datetime) and moment.tzinfo:
        moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%b %Y}"


def moment_text(moment: datetime | None) -> str:
    """A time as the page writes it: "3 Nov 2026, 09:30" (UTC; the page says so once)."""
    if moment is None:
        return ""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    return f"{day_text(moment)}, {moment:%H:%M}"


# ---------------------------------------------------------------------------------------------
# The audit timeline
# ---------------------------------------------------------------------------------------------


def _timeline_entry(event: RecordedEvent, titles: Mapping[str, str]) -> dict[str, Any]:
    return {
        "version": event.version,
        "occurred_at": event.occurred_at,
        "recorded_at": event.recorded_at,
        "recorded_later": abs(event.recorded_at - event.occurred_at) >= RECORDED_LATER,
        "actor": str(event.metadata.get("actor", "system")),
        "reason": event.metadata.get("reason"),
        "event_type": event.event_type,
        "summary": describe_change(event.event, titles),
    }
