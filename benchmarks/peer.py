"""Anchors of `make bench`: the same learner workload on the `eventsourcing` library (SQLite).

Imported only when the `bench` extra is installed. The aggregate mirrors LearnerProfile's
method names so the same Mutation lists drive both; it keeps state in memory. (a) saves each
learner once after all its changes, (b) after its creation and after every change.

Three variants (`PEER_VARIANTS`): the library as it comes (no read models, no encryption);
with its AES-GCM cipher on (`eventsourcing.cryptography:AESCipher`, one key for every event);
and that plus what the store also does, keeping the document's eight tables: a projection a
user of the library would write, SQLAlchemy Core statements on the CRUD layer's tables
(`benchmarks.crud_layer`), run after each save in one transaction per save.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.cryptography import AESCipher
from eventsourcing.domain import Aggregate
from eventsourcing.domain import event as es_event
from sqlalchemy import Engine, bindparam, delete, insert, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from benchmarks import crud_layer
from benchmarks.workload import Mutation

PEER_VARIANTS = ("plain", "aes", "aes_read_models")
"""The library as it comes; with its AES cipher; with the cipher and the eight tables."""


class PeerLearner(Aggregate):
    """A learner profile as an eventsourcing aggregate."""

    @es_event("Created")
    def __init__(self, learner_id: str) -> None:
        self.learner_id = learner_id
        self.preferences: dict[str, str] = {}
        self.interests: list[str] = []
        self.struggles: list[str] = []
        self.metrics: dict[str, Any] = {}
        self.lo_progress: dict[str, str] = {}
        self.badges: dict[str, str] = {}
        self.attempts: list[Any] = []

    @es_event("PreferenceSet")
    def update_preference(self, category: str, value: str) -> None:
        self.preferences[category] = value

    @es_event("InterestAdded")
    def add_interest(self, name: str) -> None:
        self.interests.append(name)

    @es_event("InterestRemoved")
    def remove_interest(self, name: str) -> None:
        self.interests.remove(name)

    @es_event("StruggleAreaAdded")
    def add_struggle_area(self, description: str) -> None:
        self.struggles.append(description)

    @es_event("StruggleAreaRemoved")
    def remove_struggle_area(self, description: str) -> None:
        self.struggles.remove(description)

    @es_event("CognitiveMetricRecorded")
    def add_cognitive_metric(self, task_name: str, metric_details: dict[str, Any]) -> None:
        self.metrics[task_name] = metric_details

    @es_event("LearningObjectiveStarted")
    def start_lo(self, lo_id: str) -> None:
        self.lo_progress[lo_id] = "in_progress"

    @es_event("LearningObjectiveProgressUpdated")
    def update_lo_progress(
        self, lo_id: str, status: str, score: float | None = None, details: dict[str, Any] | None = None
    ) -> None:
        self.lo_progress[lo_id] = status

    @es_event("LearningObjectiveCompleted")
    def mark_lo_completed(self, lo_id: str, score: float | None = None) -> None:
        self.lo_progress[lo_id] = "completed"

    @es_event("BadgeAwarded")
    def add_badge(self, badge_id: str, badge_name: str, details: str | None = None) -> None:
        self.badges[badge_id] = badge_name

    @es_event("BadgeRevoked")
    def revoke_badge(self, badge_id: str) -> None:
        self.badges.pop(badge_id, None)

    @es_event("ActivityAttemptRecorded")
    def record_activity_attempt(
        self,
        lo_id: str,
        activity_id: str,
        activity_type: str,
        score: float | None = None,
        completed: bool = False,
        attempt_details: dict[str, Any] | None = None,
    ) -> None:
        self.attempts.append((lo_id, activity_id, score, completed))


def peer_application(db_path: Path, *, cipher: bool = False) -> Application[Any]:
    """A fresh eventsourcing application storing its events in the SQLite file `db_path`,
    with its AES-GCM cipher (a new 256-bit key) when `cipher`."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db_path)}
    if cipher:
        env |= {"CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher", "CIPHER_KEY": AESCipher.create_key(32)}
    return Application(env=env)


class PeerReadModels:
    """The document's eight tables (the CRUD layer's definitions) kept from the library's
    events: each save's new events applied in one transaction, with statements built once
    (SQLAlchemy then reuses their compiled form), as a careful user of the library would."""

    def __init__(self, db_path: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        self.engine: Engine = crud_layer.create_crud_engine(f"sqlite:///{db_path}")
        crud_layer.Base.metadata.create_all(self.engine)
        t = crud_layer.Base.metadata.tables
        learner: Any = bindparam("learner")

        def upsert(name: str, keys: Sequence[str], columns: Sequence[str]) -> Any:
            statement = sqlite_insert(t[name])
            changed = {column: statement.excluded[column] for column in columns}
            return statement.on_conflict_do_update(index_elements=list(keys), set_=changed)

        def removal(name: str, column: str) -> Any:
            return delete(t[name]).where(t[name].c.learner_id == learner, t[name].c[column] == bindparam("value"))

        lo = t["learning_objective_progress"]
        self.statements: dict[str, Any] = {
            "Created": insert(t["learner_profiles"]),
            "PreferenceSet": upsert("preferences", ("learner_id", "category"), ("value", "timestamp")),
            "InterestAdded": insert(t["interests"]),
            "InterestRemoved": removal("interests", "interest_name"),
            "StruggleAreaAdded": insert(t["struggles"]),
            "StruggleAreaRemoved": removal("struggles", "struggle_description"),
            "CognitiveMetricRecorded": upsert(
                "cognitive_metrics", ("learner_id", "task_name"), ("metric_details", "timestamp")
            ),
            "LearningObjectiveStarted": upsert(
                "learning_objective_progress", ("learner_id", "lo_id"), ("status", "started_at")
            ),
            "LearningObjectiveProgressUpdated": update(lo)
            .where(lo.c.learner_id == learner, lo.c.lo_id == bindparam("lo"))
            .values(status=bindparam("status"), score=bindparam("score"), details=bindparam("details")),
            "LearningObjectiveCompleted": update(lo)
            .where(lo.c.learner_id == learner, lo.c.lo_id == bindparam("lo"))
            .values(status="completed", score=bindparam("score"), completed_at=bindparam("at")),
            "BadgeAwarded": upsert("badges", ("learner_id", "badge_id"), ("badge_name", "earned_date", "details")),
            "BadgeRevoked": removal("badges", "badge_id"),
            "ActivityAttemptRecorded": insert(t["activity_attempts"]),
            "touch": update(t["learner_profiles"])
            .where(t["learner_profiles"].c.id == learner)
            .values(last_updated_at=bindparam("at")),
        }

    def project(self, learner_id: str, events: Sequence[Any]) -> None:
        """Apply `events` of one learner in one transaction, touching its last_updated_at."""
        if not events:
            return
        with self.engine.begin() as connection:
            for domain_event in events:
                name = type(domain_event).__name__
                connection.execute(self.statements[name], _values(name, learner_id, domain_event))
            connection.execute(self.statements["touch"], {"learner": learner_id, "at": events[-1].timestamp})


def _values(name: str, learner_id: str, e: Any) -> dict[str, Any]:
    """The parameters of the statement that projects event `e` (of type `name`)."""
    at: datetime = e.timestamp
    if name == "Created":
        return {"id": learner_id, "created_at": at, "last_updated_at": at}
    if name == "PreferenceSet":
        return {"learner_id": learner_id, "category": e.category, "value": e.value, "timestamp": at}
    if name == "InterestAdded":
        return {"learner_id": learner_id, "interest_name": e.name, "timestamp": at}
    if name == "InterestRemoved":
        return {"learner": learner_id, "value": e.name}
    if name == "StruggleAreaAdded":
        return {"learner_id": learner_id, "struggle_description": e.description, "timestamp": at}
    if name == "StruggleAreaRemoved":
        return {"learner": learner_id, "value": e.description}
    if name == "CognitiveMetricRecorded":
        return {"learner_id": learner_id, "task_name": e.task_name, "metric_details": e.metric_details, "timestamp": at}
    if name == "LearningObjectiveStarted":
        return {"learner_id": learner_id, "lo_id": e.lo_id, "status": "in_progress", "started_at": at}
    if name == "LearningObjectiveProgressUpdated":
        return {"learner": learner_id, "lo": e.lo_id, "status": e.status, "score": e.score, "details": e.details}
    if name == "LearningObjectiveCompleted":
        return {"learner": learner_id, "lo": e.lo_id, "score": e.score, "at": at}
    if name == "BadgeAwarded":
        badge = {"badge_id": e.badge_id, "badge_name": e.badge_name, "earned_date": at.date(), "details": e.details}
        return {"learner_id": learner_id, **badge}
    if name == "BadgeRevoked":
        return {"learner": learner_id, "value": e.badge_id}
    if name == "ActivityAttemptRecorded":
        attempt = {"lo_id": e.lo_id, "activity_id": e.activity_id, "activity_type": e.activity_type}
        attempt |= {"score": e.score, "completed": e.completed, "attempt_details": e.attempt_details}
        return {"learner_id": learner_id, "attempt_timestamp": at, **attempt}
    raise ValueError(f"no projection for {name}")


def run_peer(
    db_path: Path, workloads: Mapping[str, Sequence[Mutation]], *, per_mutation: bool, variant: str = "plain"
) -> None:
    """Every learner's workload on a fresh application in `db_path`: (a) or, per_mutation, (b);
    `variant` is one of PEER_VARIANTS."""
    if variant not in PEER_VARIANTS:
        raise ValueError(f"unknown peer variant {variant!r}")
    app = peer_application(db_path, cipher=variant != "plain")
    read_models = (
        PeerReadModels(db_path.with_name(f"{db_path.stem}-read-models.db")) if variant == "aes_read_models" else None
    )

    def save(learner: PeerLearner) -> None:
        recordings = app.save(learner)
        if read_models is not None:
            read_models.project(learner.learner_id, [recording.domain_event for recording in recordings])

    try:
        for learner_id, mutations in workloads.items():
            learner = PeerLearner(learner_id)
            if per_mutation:
                save(learner)
            for mutation in mutations:
                getattr(learner, mutation.method)(*mutation.args, **mutation.kwargs)
                if per_mutation:
                    save(learner)
            if not per_mutation:
                save(learner)
    finally:
        app.close()
        if read_models is not None:
            read_models.engine.dispose()
