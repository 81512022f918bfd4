"""The persistence-layer document's functions and DTOs, on top of the event store.

Writers load the learner's aggregate, make the change through it (so the same rules decide
and the same events are recorded) and append; getters read the eight read-model tables.
Each function takes an optional `store`; without one it uses the process default set up by
`database_setup.init_db`.

Timestamps (created_at, timestamp, started_at, completed_at, earned_date, attempt_timestamp)
are filled by the store from the event's time: they are optional on input and must be left
empty there; getters always fill them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, ClassVar

import pydantic
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Dialect, Table, bindparam, select

from dala_events.database_setup import store_or_default
from dala_events.dialects import DriverQuery, once_per_dialect, read_transaction
from dala_events.errors import InvalidInput
from dala_events.events import JsonObject, LOStatus, Score, Text, UtcDateTime
from dala_events.hlp_module import LearnerProfile
from dala_events.store import EventStore
from projections.projectors import (
    activity_attempts,
    badges,
    cognitive_metrics,
    interests,
    learner_profiles,
    learning_objective_progress,
    preferences,
    struggles,
)

# ---------------------------------------------------------------------------------------------
# DTOs: the read models' columns, minus the surrogate id
# ---------------------------------------------------------------------------------------------


class _Data(BaseModel):
    """Base DTO: unknown fields are refused; store-filled fields must be None on input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learner_id: str | None = None
    store_filled_fields: ClassVar[tuple[str, ...]] = ()

    def _check_input(self, learner_id: str) -> None:
        if self.learner_id is not None and self.learner_id != learner_id:
            raise InvalidInput(
                "learner_id",
                f"the data is for learner {self.learner_id!r}, not {learner_id!r}",
                learner_id=learner_id,
            )
        for name in self.store_filled_fields:
            if getattr(self, name) is not None:
                raise InvalidInput(
                    name, "is set by the store from the event's time; leave it empty", learner_id=learner_id
                )


class PreferenceData(_Data):
    """A row of preferences."""

    store_filled_fields = ("timestamp",)
    category: Text
    value: Text
    timestamp: datetime | None = None


class InterestData(_Data):
    """A row of interests."""

    store_filled_fields = ("timestamp",)
    interest_name: Text
    timestamp: datetime | None = None


class StruggleData(_Data):
    """A row of struggles."""

    store_filled_fields = ("timestamp",)
    struggle_description: Text
    timestamp: datetime | None = None


class CognitiveMetricData(_Data):
    """A row of cognitive_metrics."""

    store_filled_fields = ("timestamp",)
    task_name: Text
    metric_details: JsonObject
    timestamp: datetime | None = None


class LOProgressData(_Data):
    """A row of learning_objective_progress."""

    store_filled_fields = ("started_at", "completed_at")
    lo_id: Text
    status: LOStatus
    started_at: datetime | None = None
    completed_at: datetime | None = None
    score: Score | None = None
    details: JsonObject | None = None


class BadgeData(_Data):
    """A row of badges."""

    store_filled_fields = ("earned_date",)
    badge_id: Text
    badge_name: Text
    earned_date: date | None = None
    details: str | None = None


class ActivityAttemptData(_Data):
    """A row of activity_attempts."""

    store_filled_fields = ("attempt_timestamp",)
    lo_id: Text
    activity_id: Text
    activity_type: Text
    attempt_timestamp: datetime | None = None
    score: Score | None = None
    completed: bool = False
    attempt_details: JsonObject | None = None


class FullLearnerProfileData(BaseModel):
    """A learner's whole profile as the read models hold it."""

    model_config = ConfigDict(frozen=True)

    learner_id: str
    created_at: UtcDateTime
    last_updated_at: UtcDateTime
    preferences: list[PreferenceData]
    interests: list[InterestData]
    struggles: list[StruggleData]
    cognitive_metrics: list[CognitiveMetricData]
    lo_progress: list[LOProgressData]
    badges: list[BadgeData]
    activity_attempts: list[ActivityAttemptData]


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


def create_learner_profile(learner_id: str, *, store: EventStore | None = None) -> FullLearnerProfileData:
    """Create the learner's profile (no event if it already exists) and return it."""
    LearnerProfile(learner_id, store=store)
    profile = get_full_learner_profile_data(learner_id, store=store)
    assert profile is not None, "the profile was just created"
    return profile


def delete_learner_profile(learner_id: str, *, store: EventStore | None = None) -> None:
    """Delete the learner's profile from every read model; its history stays in the log."""
    LearnerProfile.load(learner_id, store=store).delete()


def add_or_update_preference(learner_id: str, data: PreferenceData, *, store: EventStore | None = None) -> bool:
    """Set a preference. Returns whether anything changed."""
    data._check_input(learner_id)
    return _existing(learner_id, store).update_preference(data.category, data.value)


def remove_preference(learner_id: str, category: str, *, store: EventStore | None = None) -> bool:
    """Remove the preference of `category`. Returns whether there was one."""
    return _existing(learner_id, store).remove_preference(category)


def add_interest(learner_id: str, data: InterestData, *, store: EventStore | None = None) -> bool:
    """Add an interest. Returns whether it was new."""
    data._check_input(learner_id)
    return _existing(learner_id, store).add_interest(data.interest_name)


def remove_interest(learner_id: str, interest_name: str, *, store: EventStore | None = None) -> bool:
    """Remove an interest. Returns whether it was there."""
    return _existing(learner_id, store).remove_interest(interest_name)


def add_struggle(learner_id: str, data: StruggleData, *, store: EventStore | None = None) -> bool:
    """Add a struggle area. Returns whether it was new."""
    data._check_input(learner_id)
    return _existing(learner_id, store).add_struggle_area(data.struggle_description)


def remove_struggle(learner_id: str, struggle_description: str, *, store: EventStore | None = None) -> bool:
    """Remove a struggle area. Returns whether it was there."""
    return _existing(learner_id, store).remove_struggle_area(struggle_description)


def add_or_update_cognitive_metric(
    learner_id: str, data: CognitiveMetricData, *, store: EventStore | None = None
) -> bool:
    """Record a diagnostic task's metrics. Returns whether they differ from the stored ones."""
    data._check_input(learner_id)
    return _existing(learner_id, store).add_cognitive_metric(data.task_name, data.metric_details)


def add_or_update_lo_progress(learner_id: str, data: LOProgressData, *, store: EventStore | None = None) -> bool:
    """Set an LO's status, score and details (see `LearnerProfile.update_lo_progress`)."""
    data._check_input(learner_id)
    return _existing(learner_id, store).update_lo_progress(data.lo_id, data.status, data.score, data.details)


def add_badge_record(learner_id: str, data: BadgeData, *, store: EventStore | None = None) -> bool:
    """Award a badge. Returns whether the learner did not already hold it."""
    data._check_input(learner_id)
    return _existing(learner_id, store).add_badge(data.badge_id, data.badge_name, data.details)


def revoke_badge(learner_id: str, badge_id: str, *, store: EventStore | None = None) -> bool:
    """Take a badge back. Returns whether the learner held it."""
    return _existing(learner_id, store).revoke_badge(badge_id)


def add_activity_attempt(learner_id: str, data: ActivityAttemptData, *, store: EventStore | None = None) -> bool:
    """Record an activity attempt (always recorded)."""
    data._check_input(learner_id)
    return _existing(learner_id, store).record_activity_attempt(
        data.lo_id, data.activity_id, data.activity_type, data.score, data.completed, data.attempt_details
    )


def _existing(learner_id: str, store: EventStore | None) -> LearnerProfile:
    return LearnerProfile.load(learner_id, store=store)


# ---------------------------------------------------------------------------------------------
# Getters: read models only
# ---------------------------------------------------------------------------------------------


SECTIONS: dict[str, tuple[Table, type[_Data], tuple[str, ...]]] = {
    "preferences": (preferences, PreferenceData, ("category",)),
    "interests": (interests, InterestData, ("timestamp", "id")),
    "struggles": (struggles, StruggleData, ("timestamp", "id")),
    "cognitive_metrics": (cognitive_metrics, CognitiveMetricData, ("task_name",)),
    "lo_progress": (learning_objective_progress, LOProgressData, ("started_at", "lo_id")),
    "badges": (badges, BadgeData, ("earned_date", "badge_id")),
    "activity_attempts": (activity_attempts, ActivityAttemptData, ("attempt_timestamp", "id")),
}
"""The profile's sections: each one's read-model table, DTO and row order."""


class _SectionQuery:
    """One section's rows of a learner, in the section's order: compiled once per dialect."""

    def __init__(self, section: str, dialect: Dialect) -> None:
        table, dto, order = SECTIONS[section]
        columns = [column for column in table.columns if column.name != "id"]
        self.build = trusted_builder(dto, tuple(column.name for column in columns))
        self.query = DriverQuery(
            select(*columns)
            .where(table.c.learner_id == bindparam("learner_id"))
            .order_by(*(table.c[name] for name in order)),
            dialect,
        )


def trusted_builder(dto: type[_Data], names: tuple[str, ...]) -> Callable[[Sequence[Any]], Any]:
    """A function making a `dto` from a row holding the values of `names`, without validation.

    Rows of the read models come from the projectors, which only write valid values, so they
    are constructed, not validated. This does what `model_construct` does for such a row (set
    the instance's fields and the set of fields given) in a third of its time, which matters
    for a profile of thousands of rows; it needs the row to give every field and the DTO to
    have no post-init hook, private attributes or extra fields, and refuses one that does.
    """
    fields = frozenset(dto.model_fields)
    if set(names) != fields or len(names) != len(fields):
        raise TypeError(f"{dto.__name__}: rows give {sorted(names)}, the fields are {sorted(fields)}")
    if dto.__pydantic_post_init__ or dto.__private_attributes__ or dto.model_config.get("extra") == "allow":
        raise TypeError(f"{dto.__name__} cannot be built from trusted rows: it has a post-init, private or extra state")
    new, set_attribute = dto.__new__, object.__setattr__

    def build(row: Sequence[Any]) -> Any:
        model = new(dto)
        set_attribute(model, "__dict__", dict(zip(names, row, strict=True)))
        set_attribute(model, "__pydantic_fields_set__", set(fields))
        set_attribute(model, "__pydantic_extra__", None)
        set_attribute(model, "__pydantic_private__", None)
        return model

    return build


_section_queries = once_per_dialect(lambda dialect: {section: _SectionQuery(section, dialect) for section in SECTIONS})


def _read(connection: Connection, section: str, learner_id: str) -> list[Any]:
    query = _section_queries(connection.dialect)[section]
    return list(map(query.build, query.query.rows(connection, {"learner_id": learner_id})))


def _get(section: str, learner_id: str, store: EventStore | None) -> list[Any]:
    with read_transaction(store_or_default(store).engine) as connection:
        return _read(connection, section, learner_id)


def get_full_learner_profile_data(
    learner_id: str, *, store: EventStore | None = None, connection: Connection | None = None
) -> FullLearnerProfileData | None:
    """The learner's whole profile from the read models, or None if there is none.

    Read in one transaction, so the sections agree with each other.
    """
    if connection is None:
        with read_transaction(store_or_default(store).engine) as own:
            return get_full_learner_profile_data(learner_id, connection=own)
    header = connection.execute(select(learner_profiles).where(learner_profiles.c.id == learner_id)).first()
    if header is None:
        return None
    sections = {section: _read(connection, section, learner_id) for section in SECTIONS}
    try:
        return FullLearnerProfileData(
            learner_id=learner_id,
            created_at=header.created_at,
            last_updated_at=header.last_updated_at,
            **sections,
        )
    except pydantic.ValidationError as error:  # pragma: no cover - read models are written by projectors only
        raise InvalidInput.from_pydantic(error, learner_id=learner_id) from None


def get_preferences(learner_id: str, *, store: EventStore | None = None) -> list[PreferenceData]:
    """The learner's preferences, by category."""
    return _get("preferences", learner_id, store)


def get_interests(learner_id: str, *, store: EventStore | None = None) -> list[InterestData]:
    """The learner's interests, oldest first."""
    return _get("interests", learner_id, store)


def get_struggles(learner_id: str, *, store: EventStore | None = None) -> list[StruggleData]:
    """The learner's struggle areas, oldest first."""
    return _get("struggles", learner_id, store)


def get_cognitive_metrics(learner_id: str, *, store: EventStore | None = None) -> list[CognitiveMetricData]:
    """The learner's latest metrics per diagnostic task, by task name."""
    return _get("cognitive_metrics", learner_id, store)


def get_lo_progress(learner_id: str, *, store: EventStore | None = None) -> list[LOProgressData]:
    """The learner's LO progress, by start time."""
    return _get("lo_progress", learner_id, store)


def get_badges(learner_id: str, *, store: EventStore | None = None) -> list[BadgeData]:
    """The learner's badges, by date earned."""
    return _get("badges", learner_id, store)


def get_activity_attempts(learner_id: str, *, store: EventStore | None = None) -> list[ActivityAttemptData]:
    """The learner's activity attempts, oldest first."""
    return _get("activity_attempts", learner_id, store)
