"""The learner's page: one self-contained HTML file rendered from the read models.

Everything shown of the profile comes from `persistence_manager` getters (the read models);
the audit timeline comes from `audit.history`. Nothing here queries a table itself.

The page needs no network and no JavaScript: inline CSS, an inline SVG chart of activity
scores, native `<progress>` bars. Templates are Jinja2 with autoescaping on, so learner-supplied
text (an interest called `<script>...`) is shown as text and never runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from dala_events import audit
from dala_events.errors import InvalidInput, LearnerNotFound
from dala_events.events import utc_now
from dala_events.pathway import generate_pathway
from dala_events.persistence_manager import ActivityAttemptData, FullLearnerProfileData, get_full_learner_profile_data
from dala_events.store import RecordedEvent, SqlEventStore

DEFAULT_INTERFACE_DIR = Path("database") / "interface"
TIMELINE_LENGTH = 40
RECENT_ATTEMPTS = 10

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
    """Render the learner's page and write it to `output_path` (default: see
    `default_interface_path`); returns the path written. LearnerNotFound for a learner with
    no profile."""
    data = get_full_learner_profile_data(learner_id, store=store)
    if data is None:
        raise LearnerNotFound(learner_id)
    html = render_interface(data, audit.history(learner_id, store=store))
    path = Path(output_path) if output_path is not None else default_interface_path(learner_id)
    if path.is_dir():
        raise InvalidInput("output_path", f"{path} is a directory; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def render_interface(data: FullLearnerProfileData, history: Sequence[RecordedEvent]) -> str:
    """The page's HTML for read-model data and the learner's history."""
    pathway = generate_pathway(data)
    attempts = sorted(data.activity_attempts, key=lambda attempt: attempt.attempt_timestamp or utc_now())
    template = _environment.get_template("learner.html")
    return template.render(
        profile=data,
        generated_at=utc_now(),
        preferences=sorted(data.preferences, key=lambda row: row.category),
        metrics=sorted(data.cognitive_metrics, key=lambda row: row.task_name),
        objectives=[_objective(row) for row in sorted(data.lo_progress, key=lambda row: row.started_at or utc_now())],
        pathway=pathway,
        badges=sorted(data.badges, key=lambda row: (row.earned_date or utc_now().date(), row.badge_id)),
        recent_attempts=list(reversed(attempts[-RECENT_ATTEMPTS:])),
        attempt_count=len(attempts),
        chart=score_chart(attempts),
        timeline=[_timeline_entry(event) for event in reversed(history[-TIMELINE_LENGTH:])],
        event_count=len(history),
    )


@dataclass(frozen=True, slots=True)
class ScoreChart:
    """An SVG line chart of attempt scores over time, in the page's coordinates."""

    width: int
    height: int
    points: tuple[tuple[float, float, str], ...]
    """(x, y, label) for each scored attempt, oldest first."""
    y_ticks: tuple[tuple[float, str], ...]
    first: str
    last: str

    @property
    def polyline(self) -> str:
        """The `points` attribute of the chart's polyline."""
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in self.points)


def score_chart(attempts: Sequence[ActivityAttemptData], *, width: int = 640, height: int = 220) -> ScoreChart | None:
    """The chart of scored attempts, or None when fewer than two have a score."""
    scored = [attempt for attempt in attempts if attempt.score is not None]
    if len(scored) < 2:
        return None
    left, right, top, bottom = 44, 12, 12, 28
    top_score = max(100.0, max(float(attempt.score or 0) for attempt in scored))
    low_score = min(0.0, min(float(attempt.score or 0) for attempt in scored))
    span = (top_score - low_score) or 1.0
    step = (width - left - right) / (len(scored) - 1)

    def y_of(score: float) -> float:
        return top + (height - top - bottom) * (1 - (score - low_score) / span)

    points = tuple(
        (
            left + index * step,
            y_of(float(attempt.score or 0)),
            f"{attempt.activity_id} ({attempt.activity_type}, {attempt.lo_id}): {attempt.score:g}"
            f" on {_when(attempt.attempt_timestamp)}",
        )
        for index, attempt in enumerate(scored)
    )
    ticks = tuple((y_of(value), f"{value:g}") for value in (low_score, (low_score + top_score) / 2, top_score))
    return ScoreChart(
        width=width,
        height=height,
        points=points,
        y_ticks=ticks,
        first=_when(scored[0].attempt_timestamp),
        last=_when(scored[-1].attempt_timestamp),
    )


# ---------------------------------------------------------------------------------------------


_PROGRESS = {"not_started": 0, "in_progress": 50, "completed": 100}
_STATUS_LABELS = {"not_started": "Not started", "in_progress": "In progress", "completed": "Completed"}


def _objective(row: Any) -> dict[str, Any]:
    return {
        "lo_id": row.lo_id,
        "status": _STATUS_LABELS.get(row.status, row.status),
        "progress": _PROGRESS.get(row.status, 0),
        "score": row.score,
        "started_at": row.started_at,
        "completed_at": row.completed_at,
    }


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


_DESCRIBERS: dict[str, Any] = {
    "LearnerProfileCreated": lambda e: "Profile created",
    "LearnerProfileDeleted": lambda e: "Profile deleted",
    "PreferenceSet": lambda e: (
        f"Preference {e.category}: {e.previous_value} → {e.value}"
        if e.previous_value
        else f"Preference {e.category} set to {e.value}"
    ),
    "PreferenceRemoved": lambda e: f"Preference {e.category} removed",
    "InterestAdded": lambda e: f"Interest added: {e.interest_name}",
    "InterestRemoved": lambda e: f"Interest removed: {e.interest_name}",
    "StruggleAreaAdded": lambda e: f"Struggle area added: {e.struggle_description}",
    "StruggleAreaRemoved": lambda e: f"Struggle area removed: {e.struggle_description}",
    "CognitiveMetricRecorded": lambda e: f"Diagnostic task {e.task_name} recorded",
    "LearningObjectiveStarted": lambda e: f"Started {e.lo_id}",
    "LearningObjectiveProgressUpdated": lambda e: f"{e.lo_id} now {_STATUS_LABELS.get(e.status, e.status).lower()}"
    + (f" (score {e.score:g})" if e.score is not None else ""),
    "LearningObjectiveCompleted": lambda e: f"Completed {e.lo_id}"
    + (f" (score {e.score:g})" if e.score is not None else ""),
    "BadgeAwarded": lambda e: f"Badge earned: {e.badge_name}",
    "BadgeRevoked": lambda e: f"Badge revoked: {e.badge_id}",
    "ActivityAttemptRecorded": lambda e: f"Attempted {e.activity_id} ({e.activity_type})"
    + (f": {e.score:g}" if e.score is not None else ""),
}


def _timeline_entry(event: RecordedEvent) -> dict[str, Any]:
    describe = _DESCRIBERS.get(event.event_type)
    return {
        "version": event.version,
        "when": event.recorded_at,
        "actor": str(event.metadata.get("actor", "system")),
        "reason": event.metadata.get("reason"),
        "event_type": event.event_type,
        "summary": describe(event.event) if describe else event.event_type,
    }
