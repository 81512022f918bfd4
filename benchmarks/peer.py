"""An anchor of `make bench`: the same learner workload on the `eventsourcing` library (SQLite).

Imported only when the `bench` extra is installed. The aggregate mirrors LearnerProfile's
method names so the same Mutation lists drive both; it keeps state in memory but, like the
library itself, no read models. (a) saves each learner once after all its changes, (b) after
its creation and after every change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.domain import event as es_event

from benchmarks.workload import Mutation


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


def peer_application(db_path: Path) -> Application[Any]:
    """A fresh eventsourcing application storing its events in the SQLite file `db_path`."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    return Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db_path)})


def run_peer(db_path: Path, workloads: Mapping[str, Sequence[Mutation]], *, per_mutation: bool) -> None:
    """Every learner's workload on a fresh application in `db_path`: (a) or, per_mutation, (b)."""
    app = peer_application(db_path)
    try:
        for learner_id, mutations in workloads.items():
            learner = PeerLearner(learner_id)
            if per_mutation:
                app.save(learner)
            for mutation in mutations:
                getattr(learner, mutation.method)(*mutation.args, **mutation.kwargs)
                if per_mutation:
                    app.save(learner)
            if not per_mutation:
                app.save(learner)
    finally:
        app.close()
