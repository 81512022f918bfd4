"""The read models' DTOs: pydantic models whose fields are a read-model table's columns (minus its
surrogate id), the data contracts of the document's `persistence_manager`.

Getters return them filled from the read models; writers take them with the store-filled
fields (timestamps, which the store takes from each event's time) left empty. Fields follow
the events' limits (`dala_events.events`: Text, FreeText, Score, JsonObject): a DTO refuses
with pydantic's ValidationError what an event would refuse.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from dala_events.errors import InvalidInput
from dala_events.events import FreeText, JsonObject, LOStatus, Score, Text, UtcDateTime


class RowData(BaseModel):
    """Base DTO: unknown fields are refused; store-filled fields must be None on input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learner_id: StrictStr | None = None
    store_filled_fields: ClassVar[tuple[str, ...]] = ()

    def check_input(self, learner_id: str) -> None:
        """Refuse data given for another learner or with a store-filled field set (InvalidInput)."""
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


class PreferenceData(RowData):
    """A row of preferences."""

    store_filled_fields = ("timestamp",)
    category: Text
    value: Text
    timestamp: datetime | None = None


class InterestData(RowData):
    """A row of interests."""

    store_filled_fields = ("timestamp",)
    interest_name: Text
    timestamp: datetime | None = None


class StruggleData(RowData):
    """A row of struggles."""

    store_filled_fields = ("timestamp",)
    struggle_description: Text
    timestamp: datetime | None = None


class CognitiveMetricData(RowData):
    """A row of cognitive_metrics."""

    store_filled_fields = ("timestamp",)
    task_name: Text
    metric_details: JsonObject
    timestamp: datetime | None = None


class LOProgressData(RowData):
    """A row of learning_objective_progress."""

    store_filled_fields = ("started_at", "completed_at")
    lo_id: Text
    status: LOStatus
    started_at: datetime | None = None
    completed_at: datetime | None = None
    score: Score | None = None
    details: JsonObject | None = None


class BadgeData(RowData):
    """A row of badges."""

    store_filled_fields = ("earned_date",)
    badge_id: Text
    badge_name: Text
    earned_date: date | None = None
    details: FreeText | None = None


class ActivityAttemptData(RowData):
    """A row of activity_attempts."""

    store_filled_fields = ("attempt_timestamp",)
    lo_id: Text
    activity_id: Text
    activity_type: Text
    attempt_timestamp: datetime | None = None
    score: Score | None = None
    completed: StrictBool = False
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
