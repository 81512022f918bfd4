"""The eight read-model tables of the persistence-layer document, as SQLAlchemy 2 models.

Table names, column names, types, nullability, UNIQUE pairs and foreign keys are those of the
document. The rows are written only by projectors (`projections.projectors`); every timestamp
in them is the occurred_at of the event that put it there.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Integer,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dala_events.dialects import UTCDateTime


class ReadModelBase(DeclarativeBase):
    """Base of the read-model tables; its metadata holds exactly the eight tables."""


def _learner_fk() -> Mapped[str]:
    return mapped_column(Text, ForeignKey("learner_profiles.id"), nullable=False, index=True)


class DBLearnerProfile(ReadModelBase):
    """learner_profiles: one row per learner with a live profile."""

    __tablename__ = "learner_profiles"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DBPreference(ReadModelBase):
    """preferences: the learner's current value per preference category."""

    __tablename__ = "preferences"
    __table_args__ = (UniqueConstraint("learner_id", "category"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    category: Mapped[str] = mapped_column(Text, nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DBInterest(ReadModelBase):
    """interests: what the learner is interested in."""

    __tablename__ = "interests"
    __table_args__ = (UniqueConstraint("learner_id", "interest_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    interest_name: Mapped[str] = mapped_column(Text, nullable=False)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DBStruggle(ReadModelBase):
    """struggles: areas the learner struggles with."""

    __tablename__ = "struggles"
    __table_args__ = (UniqueConstraint("learner_id", "struggle_description"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    struggle_description: Mapped[str] = mapped_column(Text, nullable=False)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DBCognitiveMetric(ReadModelBase):
    """cognitive_metrics: the latest metrics of each diagnostic task."""

    __tablename__ = "cognitive_metrics"
    __table_args__ = (UniqueConstraint("learner_id", "task_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    task_name: Mapped[str] = mapped_column(Text, nullable=False)
    metric_details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DBLearningObjectiveProgress(ReadModelBase):
    """learning_objective_progress: where the learner stands on each learning objective."""

    __tablename__ = "learning_objective_progress"
    __table_args__ = (UniqueConstraint("learner_id", "lo_id"),)

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
    __table_args__ = (UniqueConstraint("learner_id", "badge_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    badge_id: Mapped[str] = mapped_column(Text, nullable=False)
    badge_name: Mapped[str] = mapped_column(Text, nullable=False)
    earned_date: Mapped[date] = mapped_column(Date, nullable=False)
    details: Mapped[str | None] = mapped_column(Text, nullable=True)


class DBActivityAttempt(ReadModelBase):
    """activity_attempts: every attempt at an activity, never updated."""

    __tablename__ = "activity_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    lo_id: Mapped[str] = mapped_column(Text, nullable=False)
    activity_id: Mapped[str] = mapped_column(Text, nullable=False)
    activity_type: Mapped[str] = mapped_column(Text, nullable=False)
    attempt_timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    attempt_details: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


READ_MODELS: tuple[type[ReadModelBase], ...] = (
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

READ_MODEL_METADATA = ReadModelBase.metadata
