"""The persistence layer the document describes, written the usual way: the CRUD anchor of `make bench`.

This is what a user would have built from the persistence-layer document instead of the
event store: the eight tables as SQLAlchemy 2 ORM models with the document's columns
(`DBLearnerProfile`, `DBPreference`, ...), pydantic DTOs (`PreferenceData`, ...) passed to
and returned from `persistence_manager`-style functions (`create_learner_profile`,
`add_or_update_preference`, `add_interest`, ...). Each function opens a Session and commits
(one commit per call) unless the caller hands it a session, in which case the caller commits.
Every change also moves the profile's `last_updated_at`, as the document's table promises.

SQLite connections get the store's pragmas (WAL, synchronous=NORMAL, foreign_keys=ON and a
30 s busy timeout); transactions are the driver's default (deferred) ones.

`CrudLearner` plays the document's `LearnerProfile`: it offers the LearnerProfile method
names and calls the matching function for each, so the bench's Mutation lists drive it.
It keeps no state in memory: every rule (update or insert, keep a score given as None,
completed_at) is applied to the rows themselves. `run_crud` runs a workload either with one
session and commit per learner (the bench's (a)) or one commit per mutation ((b)).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from benchmarks.workload import Mutation

BUSY_TIMEOUT_MS = 30_000
"""How long a connection waits for another writer's lock, as the store's connections do."""


# ---------------------------------------------------------------------------------------------
# database_models.py: the eight tables
# ---------------------------------------------------------------------------------------------


class Base(DeclarativeBase):
    """Base of the eight tables."""


def _learner_fk() -> Mapped[str]:
    return mapped_column(Text, ForeignKey("learner_profiles.id"), nullable=False)


class DBLearnerProfile(Base):
    """learner_profiles: core information about each learner."""

    __tablename__ = "learner_profiles"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    last_updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)

    preferences: Mapped[list[DBPreference]] = relationship(cascade="all, delete-orphan")
    interests: Mapped[list[DBInterest]] = relationship(cascade="all, delete-orphan")
    struggles: Mapped[list[DBStruggle]] = relationship(cascade="all, delete-orphan")
    cognitive_metrics: Mapped[list[DBCognitiveMetric]] = relationship(cascade="all, delete-orphan")
    lo_progress: Mapped[list[DBLearningObjectiveProgress]] = relationship(cascade="all, delete-orphan")
    badges: Mapped[list[DBBadge]] = relationship(cascade="all, delete-orphan")
    activity_attempts: Mapped[list[DBActivityAttempt]] = relationship(cascade="all, delete-orphan")


class DBPreference(Base):
    """preferences: learner preferences (e.g. learning style)."""

    __tablename__ = "preferences"
    __table_args__ = (UniqueConstraint("learner_id", "category"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    category: Mapped[str] = mapped_column(Text)
    value: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(DateTime)


class DBInterest(Base):
    """interests: learner interests."""

    __tablename__ = "interests"
    __table_args__ = (UniqueConstraint("learner_id", "interest_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    interest_name: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(DateTime)


class DBStruggle(Base):
    """struggles: learner-reported struggle areas."""

    __tablename__ = "struggles"
    __table_args__ = (UniqueConstraint("learner_id", "struggle_description"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    struggle_description: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(DateTime)


class DBCognitiveMetric(Base):
    """cognitive_metrics: metrics from diagnostic tasks."""

    __tablename__ = "cognitive_metrics"
    __table_args__ = (UniqueConstraint("learner_id", "task_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    task_name: Mapped[str] = mapped_column(Text)
    metric_details: Mapped[dict[str, Any]] = mapped_column(JSON)
    timestamp: Mapped[datetime] = mapped_column(DateTime)


class DBLearningObjectiveProgress(Base):
    """learning_objective_progress: progress on learning objectives."""

    __tablename__ = "learning_objective_progress"
    __table_args__ = (UniqueConstraint("learner_id", "lo_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    lo_id: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


class DBBadge(Base):
    """badges: badges earned by learners."""

    __tablename__ = "badges"
    __table_args__ = (UniqueConstraint("learner_id", "badge_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    badge_id: Mapped[str] = mapped_column(Text)
    badge_name: Mapped[str] = mapped_column(Text)
    earned_date: Mapped[date] = mapped_column(Date)
    details: Mapped[str | None] = mapped_column(Text, nullable=True)


class DBActivityAttempt(Base):
    """activity_attempts: attempts at learning activities."""

    __tablename__ = "activity_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = _learner_fk()
    lo_id: Mapped[str] = mapped_column(Text)
    activity_id: Mapped[str] = mapped_column(Text)
    activity_type: Mapped[str] = mapped_column(Text)
    attempt_timestamp: Mapped[datetime] = mapped_column(DateTime)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed: Mapped[bool] = mapped_column(Boolean)
    attempt_details: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


# ---------------------------------------------------------------------------------------------
# database_setup.py: the engine and the session factory
# ---------------------------------------------------------------------------------------------

SessionLocal = sessionmaker()
"""The session factory the functions use; `init_db` binds it to an engine."""


def create_crud_engine(database_url: str) -> Engine:
    """An engine on `database_url` whose SQLite connections get the store's pragmas."""
    engine = create_engine(database_url)

    @event.listens_for(engine, "connect")
    def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    return engine


def init_db(database_url: str) -> Engine:
    """Connect, create the tables if they do not exist, and bind `SessionLocal` to the engine."""
    engine = create_crud_engine(database_url)
    Base.metadata.create_all(engine)
    SessionLocal.configure(bind=engine)
    return engine


# ---------------------------------------------------------------------------------------------
# persistence_manager.py: DTOs and CRUD functions
# ---------------------------------------------------------------------------------------------


class _Data(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PreferenceData(_Data):
    """A preference of a learner."""

    category: str
    value: str
    timestamp: datetime | None = None


class InterestData(_Data):
    """An interest of a learner."""

    interest_name: str
    timestamp: datetime | None = None


class StruggleData(_Data):
    """A struggle area of a learner."""

    struggle_description: str
    timestamp: datetime | None = None


class CognitiveMetricData(_Data):
    """The metrics of one diagnostic task."""

    task_name: str
    metric_details: dict[str, Any]
    timestamp: datetime | None = None


class LOProgressData(_Data):
    """Progress on one learning objective."""

    lo_id: str
    status: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    score: float | None = None
    details: dict[str, Any] | None = None


class BadgeData(_Data):
    """A badge earned."""

    badge_id: str
    badge_name: str
    earned_date: date | None = None
    details: str | None = None


class ActivityAttemptData(_Data):
    """One attempt at an activity."""

    lo_id: str
    activity_id: str
    activity_type: str
    attempt_timestamp: datetime | None = None
    score: float | None = None
    completed: bool = False
    attempt_details: dict[str, Any] | None = None


class FullLearnerProfileData(_Data):
    """A learner's whole profile."""

    id: str
    created_at: datetime
    last_updated_at: datetime
    preferences: list[PreferenceData]
    interests: list[InterestData]
    struggles: list[StruggleData]
    cognitive_metrics: list[CognitiveMetricData]
    lo_progress: list[LOProgressData]
    badges: list[BadgeData]
    activity_attempts: list[ActivityAttemptData]


class LearnerNotFoundError(LookupError):
    """The learner has no profile."""


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _session_scope(session: Session | None) -> Iterator[Session]:
    """The caller's session (the caller commits), or a new one committed on success."""
    if session is not None:
        yield session
        return
    with SessionLocal() as own, own.begin():
        yield own


def _touch(session: Session, learner_id: str, now: datetime) -> None:
    profile = session.get(DBLearnerProfile, learner_id)
    if profile is None:
        raise LearnerNotFoundError(learner_id)
    profile.last_updated_at = now


def create_learner_profile(learner_id: str, *, session: Session | None = None) -> None:
    """Create the learner's profile row."""
    with _session_scope(session) as db:
        now = _now()
        db.add(DBLearnerProfile(id=learner_id, created_at=now, last_updated_at=now))


def get_full_learner_profile_data(learner_id: str, *, session: Session | None = None) -> FullLearnerProfileData | None:
    """The learner's whole profile, or None if there is no such learner."""
    with _session_scope(session) as db:
        profile = db.get(DBLearnerProfile, learner_id)
        return None if profile is None else FullLearnerProfileData.model_validate(profile)


def add_or_update_preference(
    learner_id: str, data: PreferenceData, *, session: Session | None = None
) -> PreferenceData:
    """Set the learner's preference of `data.category` to `data.value`."""
    with _session_scope(session) as db:
        now = _now()
        _touch(db, learner_id, now)
        row = db.scalars(
            select(DBPreference).where(DBPreference.learner_id == learner_id, DBPreference.category == data.category)
        ).first()
        if row is None:
            row = DBPreference(learner_id=learner_id, category=data.category, value=data.value, timestamp=now)
            db.add(row)
        else:
            row.value = data.value
            row.timestamp = now
        return PreferenceData.model_validate(row)


def add_interest(learner_id: str, data: InterestData, *, session: Session | None = None) -> InterestData:
    """Add an interest (kept as it is if the learner has it already)."""
    with _session_scope(session) as db:
        now = _now()
        _touch(db, learner_id, now)
        row = db.scalars(
            select(DBInterest).where(
                DBInterest.learner_id == learner_id, DBInterest.interest_name == data.interest_name
            )
        ).first()
        if row is None:
            row = DBInterest(learner_id=learner_id, interest_name=data.interest_name, timestamp=now)
            db.add(row)
        return InterestData.model_validate(row)


def remove_interest(learner_id: str, interest_name: str, *, session: Session | None = None) -> bool:
    """Remove an interest; returns whether the learner had it."""
    with _session_scope(session) as db:
        _touch(db, learner_id, _now())
        row = db.scalars(
            select(DBInterest).where(DBInterest.learner_id == learner_id, DBInterest.interest_name == interest_name)
        ).first()
        if row is not None:
            db.delete(row)
        return row is not None


def add_struggle(learner_id: str, data: StruggleData, *, session: Session | None = None) -> StruggleData:
    """Add a struggle area (kept as it is if the learner has it already)."""
    with _session_scope(session) as db:
        now = _now()
        _touch(db, learner_id, now)
        row = db.scalars(
            select(DBStruggle).where(
                DBStruggle.learner_id == learner_id, DBStruggle.struggle_description == data.struggle_description
            )
        ).first()
        if row is None:
            row = DBStruggle(learner_id=learner_id, struggle_description=data.struggle_description, timestamp=now)
            db.add(row)
        return StruggleData.model_validate(row)


def remove_struggle(learner_id: str, struggle_description: str, *, session: Session | None = None) -> bool:
    """Remove a struggle area; returns whether the learner had it."""
    with _session_scope(session) as db:
        _touch(db, learner_id, _now())
        row = db.scalars(
            select(DBStruggle).where(
                DBStruggle.learner_id == learner_id, DBStruggle.struggle_description == struggle_description
            )
        ).first()
        if row is not None:
            db.delete(row)
        return row is not None


def add_or_update_cognitive_metric(
    learner_id: str, data: CognitiveMetricData, *, session: Session | None = None
) -> CognitiveMetricData:
    """Record a diagnostic task's metrics, replacing earlier ones."""
    with _session_scope(session) as db:
        now = _now()
        _touch(db, learner_id, now)
        row = db.scalars(
            select(DBCognitiveMetric).where(
                DBCognitiveMetric.learner_id == learner_id, DBCognitiveMetric.task_name == data.task_name
            )
        ).first()
        if row is None:
            row = DBCognitiveMetric(
                learner_id=learner_id, task_name=data.task_name, metric_details=data.metric_details, timestamp=now
            )
            db.add(row)
        else:
            row.metric_details = data.metric_details
            row.timestamp = now
        return CognitiveMetricData.model_validate(row)


def add_or_update_lo_progress(
    learner_id: str, data: LOProgressData, *, session: Session | None = None
) -> LOProgressData:
    """Start or move on an LO: status as given; a score or details of None keep the current
    ones; becoming completed sets completed_at, any other status clears it."""
    with _session_scope(session) as db:
        now = _now()
        _touch(db, learner_id, now)
        row = db.scalars(
            select(DBLearningObjectiveProgress).where(
                DBLearningObjectiveProgress.learner_id == learner_id, DBLearningObjectiveProgress.lo_id == data.lo_id
            )
        ).first()
        if row is None:
            row = DBLearningObjectiveProgress(
                learner_id=learner_id,
                lo_id=data.lo_id,
                status=data.status,
                started_at=now,
                completed_at=now if data.status == "completed" else None,
                score=data.score,
                details=data.details,
            )
            db.add(row)
        else:
            if data.status != "completed":
                row.completed_at = None
            elif row.status != "completed":
                row.completed_at = now
            row.status = data.status
            if data.score is not None:
                row.score = data.score
            if data.details is not None:
                row.details = data.details
        return LOProgressData.model_validate(row)


def add_badge_record(learner_id: str, data: BadgeData, *, session: Session | None = None) -> BadgeData:
    """Award a badge, earned today (kept as it is if the learner holds it already)."""
    with _session_scope(session) as db:
        now = _now()
        _touch(db, learner_id, now)
        row = db.scalars(
            select(DBBadge).where(DBBadge.learner_id == learner_id, DBBadge.badge_id == data.badge_id)
        ).first()
        if row is None:
            row = DBBadge(
                learner_id=learner_id,
                badge_id=data.badge_id,
                badge_name=data.badge_name,
                earned_date=now.date(),
                details=data.details,
            )
            db.add(row)
        return BadgeData.model_validate(row)


def remove_badge_record(learner_id: str, badge_id: str, *, session: Session | None = None) -> bool:
    """Take a badge back; returns whether the learner held it."""
    with _session_scope(session) as db:
        _touch(db, learner_id, _now())
        row = db.scalars(select(DBBadge).where(DBBadge.learner_id == learner_id, DBBadge.badge_id == badge_id)).first()
        if row is not None:
            db.delete(row)
        return row is not None


def add_activity_attempt(
    learner_id: str, data: ActivityAttemptData, *, session: Session | None = None
) -> ActivityAttemptData:
    """Record an attempt at an activity."""
    with _session_scope(session) as db:
        now = _now()
        _touch(db, learner_id, now)
        row = DBActivityAttempt(
            learner_id=learner_id,
            lo_id=data.lo_id,
            activity_id=data.activity_id,
            activity_type=data.activity_type,
            attempt_timestamp=now,
            score=data.score,
            completed=data.completed,
            attempt_details=data.attempt_details,
        )
        db.add(row)
        return ActivityAttemptData.model_validate(row)


# ---------------------------------------------------------------------------------------------
# hlp_module.py's side: LearnerProfile's mutations as calls of the functions
# ---------------------------------------------------------------------------------------------


class CrudLearner:
    """LearnerProfile's mutation methods, each one call of a persistence function.

    With a session every call joins it (the caller commits); without, each call commits.
    """

    def __init__(self, learner_id: str, session: Session | None = None) -> None:
        self.learner_id = learner_id
        self.session = session

    def update_preference(self, category: str, value: str) -> None:
        add_or_update_preference(self.learner_id, PreferenceData(category=category, value=value), session=self.session)

    def add_interest(self, name: str) -> None:
        add_interest(self.learner_id, InterestData(interest_name=name), session=self.session)

    def remove_interest(self, name: str) -> None:
        remove_interest(self.learner_id, name, session=self.session)

    def add_struggle_area(self, description: str) -> None:
        add_struggle(self.learner_id, StruggleData(struggle_description=description), session=self.session)

    def remove_struggle_area(self, description: str) -> None:
        remove_struggle(self.learner_id, description, session=self.session)

    def add_cognitive_metric(self, task_name: str, metric_details: dict[str, Any]) -> None:
        data = CognitiveMetricData(task_name=task_name, metric_details=metric_details)
        add_or_update_cognitive_metric(self.learner_id, data, session=self.session)

    def start_lo(self, lo_id: str) -> None:
        add_or_update_lo_progress(
            self.learner_id, LOProgressData(lo_id=lo_id, status="in_progress"), session=self.session
        )

    def update_lo_progress(
        self, lo_id: str, status: str, score: float | None = None, details: dict[str, Any] | None = None
    ) -> None:
        data = LOProgressData(lo_id=lo_id, status=status, score=score, details=details)
        add_or_update_lo_progress(self.learner_id, data, session=self.session)

    def mark_lo_completed(self, lo_id: str, score: float | None = None, details: dict[str, Any] | None = None) -> None:
        self.update_lo_progress(lo_id, "completed", score, details)

    def add_badge(self, badge_id: str, badge_name: str, details: str | None = None) -> None:
        data = BadgeData(badge_id=badge_id, badge_name=badge_name, details=details)
        add_badge_record(self.learner_id, data, session=self.session)

    def revoke_badge(self, badge_id: str) -> None:
        remove_badge_record(self.learner_id, badge_id, session=self.session)

    def record_activity_attempt(
        self,
        lo_id: str,
        activity_id: str,
        activity_type: str,
        score: float | None = None,
        completed: bool = False,
        attempt_details: dict[str, Any] | None = None,
    ) -> None:
        data = ActivityAttemptData(
            lo_id=lo_id,
            activity_id=activity_id,
            activity_type=activity_type,
            score=score,
            completed=completed,
            attempt_details=attempt_details,
        )
        add_activity_attempt(self.learner_id, data, session=self.session)


def run_crud(workloads: Mapping[str, Sequence[Mutation]], *, per_mutation: bool) -> None:
    """Every learner's workload through the functions on the engine `init_db` bound.

    (a): one session and one commit per learner, creation included; (b), per_mutation: the
    creation and every mutation each commit on their own.
    """
    for learner_id, mutations in workloads.items():
        if per_mutation:
            create_learner_profile(learner_id)
            learner = CrudLearner(learner_id)
            for mutation in mutations:
                getattr(learner, mutation.method)(*mutation.args, **mutation.kwargs)
            continue
        with SessionLocal() as session, session.begin():
            create_learner_profile(learner_id, session=session)
            learner = CrudLearner(learner_id, session)
            for mutation in mutations:
                getattr(learner, mutation.method)(*mutation.args, **mutation.kwargs)
