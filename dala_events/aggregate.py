"""The learner aggregate: decides what a change means, records it as an event, applies it.

Pure domain code: it imports no database and no store. A `LearnerAggregate` is rebuilt by
replaying its learner's events through `LearnerState.apply`, and every new event goes
through the same `apply` before it waits in `pending` for a store, so the state in memory is
always what a replay of the stream would give.

    aggregate = LearnerAggregate.replayed("student123", recorded_events)
    aggregate.add_interest("Robotics")     # decides, records InterestAdded, applies it
    store.append(aggregate.learner_id, aggregate.pending, aggregate.saved_version)

`hlp_module.LearnerProfile` is the document's facade over it: it loads and saves through a
repository and a store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, TypeVar

import pydantic

from dala_events.attribution import occurrence_time
from dala_events.envelopes import NewEvent
from dala_events.errors import InvalidInput, LearnerErasedError, LearnerNotFound
from dala_events.events import (
    ActivityAttemptRecorded,
    BadgeAwarded,
    BadgeRevoked,
    CognitiveMetricRecorded,
    DomainEvent,
    ErasedContent,
    InterestAdded,
    InterestRemoved,
    LearnerErased,
    LearnerProfileCreated,
    LearnerProfileDeleted,
    LearningObjectiveCompleted,
    LearningObjectiveEvent,
    LearningObjectiveProgressUpdated,
    LearningObjectiveStarted,
    PreferenceRemoved,
    PreferenceSet,
    StruggleAreaAdded,
    StruggleAreaRemoved,
    check_learner_id,
    check_text,
)

PREDEFINED_INTERESTS: tuple[str, ...] = (
    "Space Exploration",
    "Dinosaurs",
    "Robotics",
    "Animals and Nature",
    "Music",
    "Art and Drawing",
    "Sports",
    "Cooking",
    "Video Games",
    "Oceans and Sea Life",
    "Superheroes",
    "History and Castles",
    "Building and Construction",
    "Weather and Volcanoes",
)
"""Interests offered in the HLP assessment."""

PREDEFINED_STRUGGLE_AREAS: tuple[str, ...] = (
    "Reading comprehension",
    "Phonics and decoding",
    "Spelling",
    "Handwriting",
    "Number facts",
    "Fractions",
    "Word problems",
    "Staying focused",
    "Following multi-step instructions",
    "Working memory",
    "Organising written work",
    "Processing speed",
)
"""Struggle areas offered in the HLP assessment."""


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preference:
    """A preference's current value and when it was set."""

    category: str
    value: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class CognitiveMetric:
    """The latest metrics of one diagnostic task."""

    task_name: str
    metric_details: Mapping[str, Any]
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class LOProgress:
    """Where the learner stands on one learning objective."""

    lo_id: str
    status: str
    started_at: datetime
    completed_at: datetime | None = None
    score: float | None = None
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Badge:
    """A badge the learner holds."""

    badge_id: str
    badge_name: str
    earned_date: date
    details: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityAttempt:
    """One attempt at an activity."""

    lo_id: str
    activity_id: str
    activity_type: str
    attempt_timestamp: datetime
    score: float | None
    completed: bool
    attempt_details: Mapping[str, Any] | None


@dataclass(slots=True)
class LearnerState:
    """Everything the aggregate knows about a learner, as of its latest applied event.

    Interests and struggles map to the time they were added; the dictionaries keep insertion
    order, which is the order things happened. `erased` is for good: an erased learner's
    content is gone and their id takes no new profile.
    """

    exists: bool = False
    erased: bool = False
    erased_at: datetime | None = None
    """When the erasure was recorded (None when only erased content told of it)."""
    created_at: datetime | None = None
    last_updated_at: datetime | None = None
    preferences: dict[str, Preference] = field(default_factory=dict)
    interests: dict[str, datetime] = field(default_factory=dict)
    struggles: dict[str, datetime] = field(default_factory=dict)
    cognitive_metrics: dict[str, CognitiveMetric] = field(default_factory=dict)
    lo_progress: dict[str, LOProgress] = field(default_factory=dict)
    badges: dict[str, Badge] = field(default_factory=dict)
    activity_attempts: list[ActivityAttempt] = field(default_factory=list)

    def copy(self) -> LearnerState:
        """A copy that later events applied to this state do not change (the records it holds
        are immutable, so copying the containers is enough)."""
        return LearnerState(
            self.exists,
            self.erased,
            self.erased_at,
            self.created_at,
            self.last_updated_at,
            dict(self.preferences),
            dict(self.interests),
            dict(self.struggles),
            dict(self.cognitive_metrics),
            dict(self.lo_progress),
            dict(self.badges),
            list(self.activity_attempts),
        )

    def apply(self, event: DomainEvent, occurred_at: datetime) -> None:
        """Fold one event into the state: the only code that changes it, for replay and live alike."""
        _APPLIERS[type(event)](self, event, occurred_at)
        if self.exists:
            self.last_updated_at = occurred_at


E = TypeVar("E", bound=DomainEvent)
_Applier = Callable[[LearnerState, Any, datetime], None]
_APPLIERS: dict[type[DomainEvent], _Applier] = {}


def _applies(*event_types: type[E]) -> Callable[[Callable[[LearnerState, E, datetime], None]], _Applier]:
    def register(function: Callable[[LearnerState, E, datetime], None]) -> _Applier:
        for event_type in event_types:
            _APPLIERS[event_type] = function
        return function

    return register


@_applies(LearnerProfileCreated)
def _apply_created(state: LearnerState, _event: LearnerProfileCreated, at: datetime) -> None:
    state.exists = True
    state.created_at = at


@_applies(LearnerProfileDeleted)
def _apply_deleted(state: LearnerState, _event: LearnerProfileDeleted, _at: datetime) -> None:
    _forget_everything(state)


def _forget_everything(state: LearnerState) -> None:
    fresh = LearnerState()
    for name in LearnerState.__slots__:
        setattr(state, name, getattr(fresh, name))


@_applies(LearnerErased)
def _apply_erased(state: LearnerState, _event: LearnerErased, at: datetime) -> None:
    _forget_everything(state)
    state.erased = True
    state.erased_at = at


@_applies(ErasedContent)
def _apply_erased_content(state: LearnerState, _event: ErasedContent, _at: datetime) -> None:
    # Content is erased only with its learner (a restored backup may hold it without the
    # LearnerErased that followed): nothing of it can be applied, and the id stays taken.
    state.erased = True


@_applies(PreferenceSet)
def _apply_preference_set(state: LearnerState, event: PreferenceSet, at: datetime) -> None:
    state.preferences[event.category] = Preference(event.category, event.value, at)


@_applies(PreferenceRemoved)
def _apply_preference_removed(state: LearnerState, event: PreferenceRemoved, _at: datetime) -> None:
    state.preferences.pop(event.category, None)


@_applies(InterestAdded)
def _apply_interest_added(state: LearnerState, event: InterestAdded, at: datetime) -> None:
    state.interests[event.interest_name] = at


@_applies(InterestRemoved)
def _apply_interest_removed(state: LearnerState, event: InterestRemoved, _at: datetime) -> None:
    state.interests.pop(event.interest_name, None)


@_applies(StruggleAreaAdded)
def _apply_struggle_added(state: LearnerState, event: StruggleAreaAdded, at: datetime) -> None:
    state.struggles[event.struggle_description] = at


@_applies(StruggleAreaRemoved)
def _apply_struggle_removed(state: LearnerState, event: StruggleAreaRemoved, _at: datetime) -> None:
    state.struggles.pop(event.struggle_description, None)


@_applies(CognitiveMetricRecorded)
def _apply_metric(state: LearnerState, event: CognitiveMetricRecorded, at: datetime) -> None:
    state.cognitive_metrics[event.task_name] = CognitiveMetric(event.task_name, event.metric_details, at)


@_applies(LearningObjectiveStarted, LearningObjectiveProgressUpdated, LearningObjectiveCompleted)
def _apply_lo(
    state: LearnerState,
    event: LearningObjectiveEvent,
    _at: datetime,
) -> None:
    state.lo_progress[event.lo_id] = LOProgress(
        event.lo_id, event.status, event.started_at, event.completed_at, event.score, event.details
    )


@_applies(BadgeAwarded)
def _apply_badge_awarded(state: LearnerState, event: BadgeAwarded, at: datetime) -> None:
    state.badges[event.badge_id] = Badge(event.badge_id, event.badge_name, at.date(), event.details)


@_applies(BadgeRevoked)
def _apply_badge_revoked(state: LearnerState, event: BadgeRevoked, _at: datetime) -> None:
    state.badges.pop(event.badge_id, None)


@_applies(ActivityAttemptRecorded)
def _apply_attempt(state: LearnerState, event: ActivityAttemptRecorded, at: datetime) -> None:
    state.activity_attempts.append(
        ActivityAttempt(
            event.lo_id,
            event.activity_id,
            event.activity_type,
            at,
            event.score,
            event.completed,
            event.attempt_details,
        )
    )


# ---------------------------------------------------------------------------------------------
# The aggregate
# ---------------------------------------------------------------------------------------------


class SavedPoint(NamedTuple):
    """A learner's state at a stored version, with nothing pending (`saved_point`)."""

    state: LearnerState
    version: int


class HistoricEvent(Protocol):
    """What replay needs of a stored event: its version, the fact, and when it happened."""

    @property
    def version(self) -> int: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def event(self) -> DomainEvent: ...


def _checked_history(history: Iterable[HistoricEvent], learner_id: str) -> list[HistoricEvent]:
    """The stored events of `history` as a list, every one checked before any is applied (so a
    bad item leaves the state as it was), else InvalidInput naming `history`."""
    try:
        items = list(history)
    except TypeError:
        raise InvalidInput(
            "history", f"must be an iterable of stored events, not {type(history).__name__}", learner_id=learner_id
        ) from None
    for item in items:
        try:
            good = (
                type(item.event) in _APPLIERS
                and isinstance(item.occurred_at, datetime)
                and type(item.version) is int
            )
        except AttributeError:
            good = False
        if not good:
            raise InvalidInput(
                "history",
                f"must hold stored events (with event, occurred_at and version), not {type(item).__name__}",
                learner_id=learner_id,
            )
    return items


class LearnerAggregate:
    """One learner: validated changes in, typed events out, state kept by replay.

    Every mutation validates its input (raising InvalidInput naming the field), records at
    most one event (none when nothing would change: the method returns False) and applies it
    in memory; the event then waits in `pending` until a store has appended it
    (`mark_saved`). Changing a learner with no live profile raises LearnerNotFound; `create`
    records the `LearnerProfileCreated` that starts (or restarts) one.
    """

    def __init__(self, learner_id: str) -> None:
        try:
            self.learner_id = check_learner_id(learner_id)
        except ValueError as error:
            raise InvalidInput("learner_id", str(error)) from None
        self._state = LearnerState()
        self._pending: list[NewEvent] = []
        self._version = 0
        self._saved_version = 0

    @classmethod
    def replayed(cls, learner_id: str, history: Iterable[HistoricEvent]) -> LearnerAggregate:
        """The aggregate of `learner_id` after its stored `history` (in version order)."""
        aggregate = cls(learner_id)
        aggregate.replay(history)
        return aggregate

    def replay(self, history: Iterable[HistoricEvent]) -> None:
        """Fold stored events (in version order, following this state) into the state."""
        if self._pending:
            raise RuntimeError(f"learner {self.learner_id!r}: cannot replay stored events over pending ones")
        for recorded in _checked_history(history, self.learner_id):
            self._state.apply(recorded.event, recorded.occurred_at)
            self._version = recorded.version
        self._saved_version = self._version

    def saved_point(self) -> SavedPoint:
        """What `back_to` returns to: this state and version, with nothing pending (taken
        before a command makes its change)."""
        if self._pending:
            raise RuntimeError(f"learner {self.learner_id!r}: save or drop the pending events first")
        return SavedPoint(self._state.copy(), self._version)

    def back_to(self, point: SavedPoint) -> None:
        """Drop what is pending and return to `point`: how a command whose save met another
        writer's events starts again, before `replay` folds those events in."""
        self._state = point.state.copy()
        self._version = self._saved_version = point.version
        self._pending = []

    def create(self) -> bool:
        """Record the profile's creation; no event if it exists already. An erased learner's id
        takes no new profile: LearnerErasedError."""
        self._refuse_if_erased()
        return not self._state.exists and self._record(LearnerProfileCreated())

    # -- what is pending -------------------------------------------------------------------

    @property
    def pending(self) -> tuple[NewEvent, ...]:
        """The recorded events no store has appended yet, with their envelopes, oldest first."""
        return tuple(self._pending)

    @property
    def pending_events(self) -> tuple[DomainEvent, ...]:
        """The facts of `pending`, oldest first."""
        return tuple(new.event for new in self._pending)

    @property
    def version(self) -> int:
        """The stream version this state is at, pending events included."""
        return self._version

    @property
    def saved_version(self) -> int:
        """The stream version known to be stored."""
        return self._saved_version

    def mark_saved(self, version: int) -> None:
        """A store appended every pending event and the stream is now at `version`."""
        if type(version) is not int or version != self._version:
            shown = version if type(version) is int else type(version).__name__
            raise InvalidInput(
                "version",
                f"saved at version {shown}, but the state is at {self._version}",
                learner_id=self.learner_id,
            )
        self._pending = []
        self._saved_version = version

    # -- state -----------------------------------------------------------------------------

    @property
    def state(self) -> LearnerState:
        """The full state with timestamps. Read it; change it only through the methods."""
        return self._state

    @property
    def exists(self) -> bool:
        """False once the profile has been deleted (or the learner erased)."""
        return self._state.exists

    @property
    def erased(self) -> bool:
        """True once the learner was erased: for good."""
        return self._state.erased

    @property
    def created_at(self) -> datetime | None:
        """When the current profile was created."""
        return self._state.created_at

    @property
    def last_updated_at(self) -> datetime | None:
        """When the profile last changed."""
        return self._state.last_updated_at

    @property
    def preferences(self) -> Mapping[str, str]:
        """Preference category -> value."""
        return MappingProxyType({category: p.value for category, p in self._state.preferences.items()})

    @property
    def interests(self) -> list[str]:
        """Interests, in the order they were added."""
        return list(self._state.interests)

    @property
    def struggles(self) -> list[str]:
        """Struggle areas, in the order they were added."""
        return list(self._state.struggles)

    @property
    def cognitive_metrics(self) -> Mapping[str, Mapping[str, Any]]:
        """Diagnostic task -> its latest metric details."""
        return MappingProxyType({task: m.metric_details for task, m in self._state.cognitive_metrics.items()})

    @property
    def lo_progress(self) -> Mapping[str, LOProgress]:
        """LO id -> progress."""
        return MappingProxyType(self._state.lo_progress)

    @property
    def badges(self) -> Mapping[str, Badge]:
        """Badge id -> badge held."""
        return MappingProxyType(self._state.badges)

    @property
    def activity_attempts(self) -> tuple[ActivityAttempt, ...]:
        """Every activity attempt, oldest first."""
        return tuple(self._state.activity_attempts)

    # -- mutations -------------------------------------------------------------------------

    def update_preference(self, category: str, value: str) -> bool:
        """Set a preference; no event if it already has this value. Returns whether it changed."""
        event = self._build(PreferenceSet, category=category, value=value)
        current = self._state.preferences.get(event.category)
        if current is not None:
            if current.value == event.value:
                return False
            event = event.model_copy(update={"previous_value": current.value})
        return self._record(event)

    def remove_preference(self, category: str) -> bool:
        """Remove a preference; no event if there is none of that category."""
        event = self._build(PreferenceRemoved, category=category)
        return event.category in self._state.preferences and self._record(event)

    def add_interest(self, name: str) -> bool:
        """Add an interest; no event if it is already there."""
        event = self._build(InterestAdded, interest_name=name)
        return event.interest_name not in self._state.interests and self._record(event)

    def remove_interest(self, name: str) -> bool:
        """Remove an interest; no event if it is not there."""
        event = self._build(InterestRemoved, interest_name=name)
        return event.interest_name in self._state.interests and self._record(event)

    def add_struggle_area(self, description: str) -> bool:
        """Add a struggle area; no event if it is already there."""
        event = self._build(StruggleAreaAdded, struggle_description=description)
        return event.struggle_description not in self._state.struggles and self._record(event)

    def remove_struggle_area(self, description: str) -> bool:
        """Remove a struggle area; no event if it is not there."""
        event = self._build(StruggleAreaRemoved, struggle_description=description)
        return event.struggle_description in self._state.struggles and self._record(event)

    def add_cognitive_metric(self, task_name: str, metric_details: dict[str, Any]) -> bool:
        """Record a diagnostic task's metrics, replacing earlier ones; no event if identical."""
        event = self._build(CognitiveMetricRecorded, task_name=task_name, metric_details=metric_details)
        current = self._state.cognitive_metrics.get(event.task_name)
        if current is not None and current.metric_details == event.metric_details:
            return False
        return self._record(event)

    def start_lo(self, lo_id: str) -> bool:
        """Start an LO; no event if it is already in progress or completed."""
        key = self._text("lo_id", lo_id)
        current = self._state.lo_progress.get(key)
        if current is not None and current.status != "not_started":
            return False
        now = occurrence_time()
        event = self._build(
            LearningObjectiveStarted,
            lo_id=key,
            status="in_progress",
            started_at=now,
            score=current.score if current else None,
            details=current.details if current else None,
        )
        return self._record(event, at=now)

    def update_lo_progress(
        self,
        lo_id: str,
        status: str,
        score: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> bool:
        """Set an LO's status (any of not_started, in_progress, completed), score and details.

        A score or details left as None keep their current value. An LO seen for the first time
        is started now; becoming completed sets completed_at to now, leaving completed clears
        it. No event when nothing changes.
        """
        return self._change_lo(lo_id, status, score, details)

    def mark_lo_completed(self, lo_id: str, score: float | None = None, details: dict[str, Any] | None = None) -> bool:
        """Complete an LO (an LO never started is started and completed at the same moment)."""
        return self._change_lo(lo_id, "completed", score, details)

    def add_badge(self, badge_id: str, badge_name: str, details: str | None = None) -> bool:
        """Award a badge; no event if the learner already holds it."""
        event = self._build(BadgeAwarded, badge_id=badge_id, badge_name=badge_name, details=details)
        return event.badge_id not in self._state.badges and self._record(event)

    def revoke_badge(self, badge_id: str) -> bool:
        """Take a badge back; no event if the learner does not hold it."""
        event = self._build(BadgeRevoked, badge_id=badge_id)
        return event.badge_id in self._state.badges and self._record(event)

    def record_activity_attempt(
        self,
        lo_id: str,
        activity_id: str,
        activity_type: str,
        score: float | None = None,
        completed: bool = False,
        attempt_details: dict[str, Any] | None = None,
    ) -> bool:
        """Record an attempt at an activity (always an event: every attempt counts)."""
        event = self._build(
            ActivityAttemptRecorded,
            lo_id=lo_id,
            activity_id=activity_id,
            activity_type=activity_type,
            score=score,
            completed=completed,
            attempt_details=attempt_details,
        )
        return self._record(event)

    def delete(self) -> bool:
        """Delete the profile: its read-model rows go; its history stays in the log for audit."""
        return self._record(self._build(LearnerProfileDeleted))

    def erase(self) -> bool:
        """Record the learner's erasure (`LearnerErased`): every read-model row goes, and once
        the caller destroys the learner's data key (see `dala_events.erasure`) the content of
        every earlier event is unreadable. No event if the erasure is already recorded;
        LearnerNotFound for a learner with no history at all."""
        if self._state.erased_at is not None:
            return False
        if self._version == 0:
            raise LearnerNotFound(self.learner_id, f"learner {self.learner_id!r} has no recorded changes to erase")
        return self._record(LearnerErased(erased_up_to_version=self._version))

    # -- internals -------------------------------------------------------------------------

    def _refuse_if_erased(self) -> None:
        if self._state.erased:
            raise LearnerErasedError(self.learner_id, erased_at=self._state.erased_at)

    def _change_lo(self, lo_id: str, status: str, score: float | None, details: dict[str, Any] | None) -> bool:
        key = self._text("lo_id", lo_id)
        now = occurrence_time()
        current = self._state.lo_progress.get(key)
        before = current or LOProgress(lo_id=key, status="not_started", started_at=now)
        if status != "completed":
            completed_at = None
        elif before.status == "completed":
            completed_at = before.completed_at
        else:
            completed_at = now
        event_type: type[LearningObjectiveCompleted | LearningObjectiveProgressUpdated] = (
            LearningObjectiveCompleted
            if status == "completed" and before.status != "completed"
            else LearningObjectiveProgressUpdated
        )
        event = self._build(
            event_type,
            lo_id=key,
            status=status,
            started_at=before.started_at,
            completed_at=completed_at,
            score=before.score if score is None else score,
            details=before.details if details is None else details,
        )
        after = LOProgress(key, event.status, event.started_at, event.completed_at, event.score, event.details)
        if after == current:
            return False
        return self._record(event, at=now)

    def _text(self, field_name: str, value: object) -> str:
        try:
            return check_text(value)
        except pydantic.ValidationError as error:
            raise InvalidInput.from_pydantic(error, learner_id=self.learner_id, prefix=field_name) from None

    def _build(self, event_type: type[E], **fields: Any) -> E:
        self._refuse_if_erased()
        if not self._state.exists and event_type is not LearnerProfileCreated:
            raise LearnerNotFound(self.learner_id)
        try:
            return event_type(**fields)
        except pydantic.ValidationError as error:
            raise InvalidInput.from_pydantic(error, learner_id=self.learner_id) from None

    def _record(self, event: DomainEvent, *, at: datetime | None = None) -> bool:
        new = NewEvent.now(event, occurred_at=at)
        self._state.apply(event, new.occurred_at)
        self._version += 1
        self._pending.append(new)
        self._recorded(new)
        return True

    def _recorded(self, new: NewEvent) -> None:
        """Called after each event is recorded and applied; a subclass may persist it."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.learner_id!r}, version={self._version}, pending={len(self._pending)})"
