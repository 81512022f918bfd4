"""The eight read models of the persistence-layer document, each declared once.

A read model is one table with the document's columns (table names, column names, types,
nullability, UNIQUE pairs and foreign keys are the document's), plus what every user of it
needs to know, declared on the same class:

- `natural_key`: the columns that identify a row (its UNIQUE pair; the id for profiles);
  projectors upsert and delete by it, diffs match rows by it;
- `insert_only`: rows are only ever added (activity attempts), never upserted;
- `section`, `dto`, `order`: the profile section it fills, its DTO and the section's row
  order, for the getters and as-of views.

`READ_MODELS` lists them, parent first; projectors, getters, as-of, diff and rebuild all read
these declarations. The rows are written only by projectors (`projections.projectors`);
every timestamp in them is the occurred_at of the event that put it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Integer,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dala_events.dialects import UTCDateTime
from projections.dtos import (
    ActivityAttemptData,
    BadgeData,
    CognitiveMetricData,
    InterestData,
    LOProgressData,
    PreferenceData,
    StruggleData,
)


class ReadModelBase(DeclarativeBase):
    """Base of the read-model tables; its metadata holds exactly the eight tables."""

    natural_key: ClassVar[tuple[str, ...]]
    insert_only: ClassVar[bool] = False
    section: ClassVar[str | None] = None
    dto: ClassVar[type[BaseModel] | None] = None
    order: ClassVar[tuple[str, ...]] = ()


def _learner_fk() -> Mapped[str]:
    return mapped_column(Text, ForeignKey("learner_profiles.id"), nullable=False, index=True)


class DBLearnerProfile(ReadModelBase):
    """learner_profiles: one row per learner with a live profile."""

    __tablename__ = "learner_profiles"
    natural_key = ("id",)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DBPreference(ReadModelBase):
    """preferences: the learner's current value per preference category."""

    __tablename__ = "preferences"
    natural_key = ("learner_id", "category")
    __table_args__ = (UniqueConstraint(*natural_key),)
    section, dto, order = "preferences", PreferenceData, ("category",)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    category: Mapped[str] = mapped_column(Text, nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DBInterest(ReadModelBase):
    """interests: what the learner is interested in."""

    __tablename__ = "interests"
    natural_key = ("learner_id", "interest_name")
    __table_args__ = (UniqueConstraint(*natural_key),)
    section, dto, order = "interests", InterestData, ("timestamp", "id")

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    interest_name: Mapped[str] = mapped_column(Text, nullable=False)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DBStruggle(ReadModelBase):
    """struggles: areas the learner struggles with."""

    __tablename__ = "struggles"
    natural_key = ("learner_id", "struggle_description")
    __table_args__ = (UniqueConstraint(*natural_key),)
    section, dto, order = "struggles", StruggleData, ("timestamp", "id")

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    struggle_description: Mapped[str] = mapped_column(Text, nullable=False)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DBCognitiveMetric(ReadModelBase):
    """cognitive_metrics: the latest metrics of each diagnostic task."""

    __tablename__ = "cognitive_metrics"
    natural_key = ("learner_id", "task_name")
    __table_args__ = (UniqueConstraint(*natural_key),)
    section, dto, order = "cognitive_metrics", CognitiveMetricData, ("task_name",)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    task_name: Mapped[str] = mapped_column(Text, nullable=False)
    metric_details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DBLearningObjectiveProgress(ReadModelBase):
    """learning_objective_progress: where the learner stands on each learning objective."""

    __tablename__ = "learning_objective_progress"
    natural_key = ("learner_id", "lo_id")
    __table_args__ = (UniqueConstraint(*natural_key),)
    section, dto, order = "lo_progress", LOProgressData, ("started_at", "lo_id")

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    lo_id: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


class DBBadge(ReadModelBase):
    """badges: badges the learner holds."""

    __tablename__ = "badges"
    natural_key = ("learner_id", "badge_id")
    __table_args__ = (UniqueConstraint(*natural_key),)
    section, dto, order = "badges", BadgeData, ("earned_date", "badge_id")

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    badge_id: Mapped[str] = mapped_column(Text, nullable=False)
    badge_name: Mapped[str] = mapped_column(Text, nullable=False)
    earned_date: Mapped[date] = mapped_column(Date, nullable=False)
    details: Mapped[str | None] = mapped_column(Text, nullable=True)


class DBActivityAttempt(ReadModelBase):
    """activity_attempts: every attempt at an activity, never updated.

    No UNIQUE pair: two attempts may share everything. The natural key names an attempt for
    diffs (the activity and its time); rows are only ever inserted.
    """

    __tablename__ = "activity_attempts"
    natural_key = ("learner_id", "activity_id", "attempt_timestamp")
    insert_only = True
    section, dto, order = "activity_attempts", ActivityAttemptData, ("attempt_timestamp", "id")

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    lo_id: Mapped[str] = mapped_column(Text, nullable=False)
    activity_id: Mapped[str] = mapped_column(Text, nullable=False)
    activity_type: Mapped[str] = mapped_column(Text, nullable=False)
    attempt_timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    attempt_details: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


@dataclass(frozen=True, slots=True)
class ReadModel:
    """One read model's declaration, as the rest of the package reads it."""

    name: str
    table: Table
    natural_key: tuple[str, ...]
    insert_only: bool
    section: str | None
    dto: type[BaseModel] | None
    order: tuple[str, ...]

    @classmethod
    def of(cls, model: type[ReadModelBase]) -> ReadModel:
        """The declaration made on `model`'s class."""
        table: Table = model.__table__  # type: ignore[assignment]
        return cls(table.name, table, model.natural_key, model.insert_only, model.section, model.dto, model.order)


READ_MODEL_CLASSES: tuple[type[ReadModelBase], ...] = (
    DBLearnerProfile,
    DBPreference,
    DBInterest,
    DBStruggle,
    DBCognitiveMetric,
    DBLearningObjectiveProgress,
    DBBadge,
    DBActivityAttempt,
)
"""The eight models, parent first."""

READ_MODELS: tuple[ReadModel, ...] = tuple(ReadModel.of(model) for model in READ_MODEL_CLASSES)
"""The eight declarations, parent first."""

PARENT = "learner_profiles"
"""The table every other read model hangs off."""

SECTIONS: dict[str, ReadModel] = {model.section: model for model in READ_MODELS if model.section is not None}
"""The profile's sections (preferences, interests, ..., activity_attempts) and their read models."""

READ_MODEL_METADATA = ReadModelBase.metadata
