"""The checked floor of `make bench`: the store's per-event work done with sqlite3 and the stdlib.

A floor that skips the checks says nothing about what the checks must cost; this one keeps and
checks the log as the store does (encrypted under a key per learner, hash-chained, read back only
once each link and version verifies), as simply as Python allows, so that "ours / floor" is what
the store costs beyond the work itself. For each event of the bench's workload it does what the
store does:

- writing: decide the event (a dict, from a `Mutation`, with the little state a payload needs),
  encode its payload as JSON (`json`), encrypt it with AES-256-GCM under the learner's own data
  key (`cryptography`'s AESGCM, a random 96-bit nonce, the event's envelope as associated data,
  base64 text after a prefix), chain it with SHA-256 over the same fields in the same format as
  the store (`dala_events.store.codec.chain_message`), insert the event row and run the
  read-model statements its event needs (upserts, deletes, inserts into the eight tables, and
  `last_updated_at` once per transaction);
- reading back: fetch the stream, check each row's SHA-256 link and version, decrypt, decode the
  JSON (`history`), and fold the events into a profile held in dicts (`profile_as_of`);
- rebuilding: read the whole log in batches, check, decrypt and decode every event, and write
  the read-model rows into fresh tables.

The rows are the store's rows: the same tables and indexes (`SCHEMA`, the store's SQLite DDL),
the same ciphertext format and the same chain, so the store reads back and verifies what the
floor writes (tests/test_benchmarks.py checks it, and that the eight tables end the same).
Connections are plain `sqlite3` with the store's pragmas (WAL, synchronous=NORMAL, foreign keys,
secure delete); no SQLAlchemy, no pydantic. `PgFloorWriter` writes the same way through psycopg
to a PostgreSQL database the store made (the PostgreSQL group's checked floor).

What the floor leaves out, on purpose: validating the input (the aggregate's rules, pydantic's
models), the event objects and envelopes, the stream's tip read before an append (the UNIQUE
(learner_id, version) constraint guards a concurrent writer here), the net-change buffering of
read-model rows, shadow tables and their swap, and the key store's durable write of a new
learner's wrapped key: that last one is measured apart (`store_keys`, one transaction a learner
with synchronous=FULL, as the store's key store commits it), since every new learner pays it.

Nothing here imports the tree under test but the workload (`benchmarks.workload`), so a floor
is the same in both trees of a `--compare` run.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchmarks.workload import Mutation

ENCRYPTED_PREFIX = "dala-aes256gcm/1:"
CHAIN_FORMAT = "dala-event-chain/1\n"
AAD_FORMAT = "dala-event-field/1\n"
WRAP_FORMAT = b"dala-data-key/1\n"
NONCE_BYTES = 12
REBUILD_BATCH = 10_000
METADATA_ACTOR = "system"

READ_MODEL_TABLES = (
    "learner_profiles",
    "preferences",
    "interests",
    "struggles",
    "cognitive_metrics",
    "learning_objective_progress",
    "badges",
    "activity_attempts",
)
"""The eight tables, parent first."""

EVENT_LOG_DDL = """
CREATE TABLE IF NOT EXISTS event_log (
    position INTEGER NOT NULL,
    event_id CHAR(32) NOT NULL,
    learner_id VARCHAR(128) NOT NULL,
    version INTEGER NOT NULL,
    event_type VARCHAR(100) NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    payload TEXT NOT NULL,
    metadata TEXT NOT NULL,
    hash VARCHAR(64) NOT NULL,
    transaction_id BIGINT DEFAULT '0' NOT NULL,
    PRIMARY KEY (position),
    CONSTRAINT uq_event_log_learner_version UNIQUE (learner_id, version),
    UNIQUE (event_id)
);
CREATE INDEX IF NOT EXISTS ix_event_log_erasures ON event_log (learner_id) WHERE event_type = 'LearnerErased';
"""

READ_MODELS_DDL = """
CREATE TABLE IF NOT EXISTS learner_profiles (
    id TEXT NOT NULL, created_at TIMESTAMP NOT NULL, last_updated_at TIMESTAMP NOT NULL, PRIMARY KEY (id)
);
CREATE TABLE IF NOT EXISTS preferences (
    id INTEGER NOT NULL, learner_id TEXT NOT NULL, category TEXT NOT NULL, value TEXT NOT NULL,
    timestamp TIMESTAMP NOT NULL, PRIMARY KEY (id), UNIQUE (learner_id, category),
    FOREIGN KEY(learner_id) REFERENCES learner_profiles (id)
);
CREATE INDEX IF NOT EXISTS ix_preferences_learner_id ON preferences (learner_id);
CREATE TABLE IF NOT EXISTS interests (
    id INTEGER NOT NULL, learner_id TEXT NOT NULL, interest_name TEXT NOT NULL, timestamp TIMESTAMP NOT NULL,
    PRIMARY KEY (id), UNIQUE (learner_id, interest_name), FOREIGN KEY(learner_id) REFERENCES learner_profiles (id)
);
CREATE INDEX IF NOT EXISTS ix_interests_learner_id ON interests (learner_id);
CREATE TABLE IF NOT EXISTS struggles (
    id INTEGER NOT NULL, learner_id TEXT NOT NULL, struggle_description TEXT NOT NULL, timestamp TIMESTAMP NOT NULL,
    PRIMARY KEY (id), UNIQUE (learner_id, struggle_description),
    FOREIGN KEY(learner_id) REFERENCES learner_profiles (id)
);
CREATE INDEX IF NOT EXISTS ix_struggles_learner_id ON struggles (learner_id);
CREATE TABLE IF NOT EXISTS cognitive_metrics (
    id INTEGER NOT NULL, learner_id TEXT NOT NULL, task_name TEXT NOT NULL, metric_details JSON NOT NULL,
    timestamp TIMESTAMP NOT NULL, PRIMARY KEY (id), UNIQUE (learner_id, task_name),
    FOREIGN KEY(learner_id) REFERENCES learner_profiles (id)
);
CREATE INDEX IF NOT EXISTS ix_cognitive_metrics_learner_id ON cognitive_metrics (learner_id);
CREATE TABLE IF NOT EXISTS learning_objective_progress (
    id INTEGER NOT NULL, learner_id TEXT NOT NULL, lo_id TEXT NOT NULL, status TEXT NOT NULL,
    started_at TIMESTAMP NOT NULL, completed_at TIMESTAMP, score FLOAT, details JSON, PRIMARY KEY (id),
    UNIQUE (learner_id, lo_id), FOREIGN KEY(learner_id) REFERENCES learner_profiles (id)
);
CREATE INDEX IF NOT EXISTS ix_learning_objective_progress_learner_id ON learning_objective_progress (learner_id);
CREATE TABLE IF NOT EXISTS badges (
    id INTEGER NOT NULL, learner_id TEXT NOT NULL, badge_id TEXT NOT NULL, badge_name TEXT NOT NULL,
    earned_date DATE NOT NULL, details TEXT, PRIMARY KEY (id), UNIQUE (learner_id, badge_id),
    FOREIGN KEY(learner_id) REFERENCES learner_profiles (id)
);
CREATE INDEX IF NOT EXISTS ix_badges_learner_id ON badges (learner_id);
CREATE TABLE IF NOT EXISTS activity_attempts (
    id INTEGER NOT NULL, learner_id TEXT NOT NULL, lo_id TEXT NOT NULL, activity_id TEXT NOT NULL,
    activity_type TEXT NOT NULL, attempt_timestamp TIMESTAMP NOT NULL, score FLOAT, completed BOOLEAN NOT NULL,
    attempt_details JSON, PRIMARY KEY (id), FOREIGN KEY(learner_id) REFERENCES learner_profiles (id)
);
CREATE INDEX IF NOT EXISTS ix_activity_attempts_learner_id ON activity_attempts (learner_id);
"""

SCHEMA = EVENT_LOG_DDL + READ_MODELS_DDL
"""The store's SQLite tables the floor writes: the event log and the eight read models, with
the same columns, constraints and indexes (a test compares them with the store's)."""

KEYS_DDL = """
CREATE TABLE IF NOT EXISTS data_keys (learner_id VARCHAR(200) NOT NULL PRIMARY KEY, wrapped BLOB NOT NULL,
    created_at TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS erased_keys (learner_id VARCHAR(200) NOT NULL PRIMARY KEY, erased_at TIMESTAMP NOT NULL);
"""

FLOOR_MASTER_KEY = bytes(range(32))
"""Wraps the floor's data keys in its key file (a bench's key, not a secret)."""


class FloorError(Exception):
    """A row the floor's checks refuse: a broken link, a gap, a payload in the clear."""


def connect(path: Path | str, *, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A sqlite3 connection with the store's pragmas; transactions begun explicitly."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    connection.execute("PRAGMA busy_timeout = 30000")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA secure_delete = ON")
    return connection


def create_schema(connection: sqlite3.Connection) -> None:
    """The event log and the eight tables, where missing."""
    connection.executescript(SCHEMA)


# -- deciding: a Mutation -> an event ----------------------------------------------------------


def _stamp() -> str:
    """Now as ISO text to the microsecond, without a zone ("YYYY-MM-DDTHH:MM:SS.ffffff", UTC)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")[:26]


class FloorLearner:
    """A learner as the floor decides its events: each LearnerProfile method of the workload
    records one event (type, schema version, payload, occurred_at as ISO text), keeping only
    the state a payload needs (a preference's previous value, a learning objective's progress)."""

    def __init__(self, learner_id: str) -> None:
        self.learner_id = learner_id
        self.preferences: dict[str, str] = {}
        self.objectives: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, int, dict[str, Any], str]] = []
        self._record("LearnerProfileCreated", 1, {})

    def _record(self, event_type: str, schema_version: int, payload: dict[str, Any]) -> bool:
        self.events.append((event_type, schema_version, payload, _stamp()))
        return True

    def update_preference(self, category: str, value: str) -> bool:
        previous = self.preferences.get(category)
        self.preferences[category] = value
        return self._record("PreferenceSet", 2, {"category": category, "value": value, "previous_value": previous})

    def add_interest(self, name: str) -> bool:
        return self._record("InterestAdded", 1, {"interest_name": name})

    def remove_interest(self, name: str) -> bool:
        return self._record("InterestRemoved", 1, {"interest_name": name})

    def add_struggle_area(self, description: str) -> bool:
        return self._record("StruggleAreaAdded", 1, {"struggle_description": description})

    def remove_struggle_area(self, description: str) -> bool:
        return self._record("StruggleAreaRemoved", 1, {"struggle_description": description})

    def add_cognitive_metric(self, task_name: str, metric_details: dict[str, Any]) -> bool:
        return self._record("CognitiveMetricRecorded", 1, {"task_name": task_name, "metric_details": metric_details})

    def _objective(self, event_type: str, lo_id: str, **changes: Any) -> bool:
        state = self.objectives.setdefault(
            lo_id, {"status": "in_progress", "started_at": None, "completed_at": None, "score": None, "details": None}
        )
        state.update(changes)
        return self._record(event_type, 1, {"lo_id": lo_id, **state})

    def start_lo(self, lo_id: str) -> bool:
        return self._objective("LearningObjectiveStarted", lo_id, started_at=_stamp() + "Z")

    def update_lo_progress(
        self, lo_id: str, status: str, score: float | None = None, details: dict[str, Any] | None = None
    ) -> bool:
        return self._objective("LearningObjectiveProgressUpdated", lo_id, status=status, score=score, details=details)

    def mark_lo_completed(self, lo_id: str, score: float | None = None) -> bool:
        return self._objective(
            "LearningObjectiveCompleted", lo_id, status="completed", completed_at=_stamp() + "Z", score=score
        )

    def add_badge(self, badge_id: str, badge_name: str, details: str | None = None) -> bool:
        return self._record("BadgeAwarded", 1, {"badge_id": badge_id, "badge_name": badge_name, "details": details})

    def revoke_badge(self, badge_id: str) -> bool:
        return self._record("BadgeRevoked", 1, {"badge_id": badge_id})

    def record_activity_attempt(
        self,
        lo_id: str,
        activity_id: str,
        activity_type: str,
        score: float | None = None,
        completed: bool = False,
        attempt_details: dict[str, Any] | None = None,
    ) -> bool:
        payload = {
            "lo_id": lo_id,
            "activity_id": activity_id,
            "activity_type": activity_type,
            "score": score,
            "completed": completed,
            "attempt_details": attempt_details,
        }
        return self._record("ActivityAttemptRecorded", 1, payload)

    def apply(self, mutation: Mutation) -> bool:
        """Make the call `mutation` names."""
        result: bool = getattr(self, mutation.method)(*mutation.args, **mutation.kwargs)
        return result


# -- the per-event work ---------------------------------------------------------------------------


_compact = json.JSONEncoder(separators=(",", ":")).encode
"""Compact JSON text, as the store writes it (one encoder: `json.dumps` with separators makes
a new one a call)."""


def _aad(learner_id: str, version: int, event_type: str, schema_version: int, field: str) -> bytes:
    return f"{AAD_FORMAT}{len(learner_id)}:{learner_id}{version}\n{event_type}\n{schema_version}\n{field}".encode()


def encrypt(aead: AESGCM, text: str, learner_id: str, version: int, event_type: str, schema_version: int) -> str:
    """A payload as the log stores it: AES-256-GCM, a random nonce, the envelope as associated data."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = aead.encrypt(nonce, text.encode(), _aad(learner_id, version, event_type, schema_version, "payload"))
    return ENCRYPTED_PREFIX + binascii.b2a_base64(nonce + sealed, newline=False).decode()


def decrypt(aead: AESGCM, text: str, learner_id: str, version: int, event_type: str, schema_version: int) -> str:
    """The plain payload of `text` (FloorError when it is stored in the clear)."""
    if not text.startswith(ENCRYPTED_PREFIX):
        raise FloorError(f"learner {learner_id!r} version {version}: payload stored in the clear")
    raw = binascii.a2b_base64(text[len(ENCRYPTED_PREFIX) :], strict_mode=True)
    aad = _aad(learner_id, version, event_type, schema_version, "payload")
    return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad).decode()


def link(
    previous: str,
    event_id: str,
    learner_id: str,
    version: int,
    event_type: str,
    schema_version: int,
    occurred_at: str,
    recorded_at: str,
    payload: str,
    metadata: str,
) -> str:
    """The SHA-256 chain link of a row (the store's chain message, times as stored)."""
    v, s = str(version), str(schema_version)
    return hashlib.sha256(
        (
            f"{CHAIN_FORMAT}{len(previous)}:{previous}{len(event_id)}:{event_id}{len(learner_id)}:{learner_id}"
            f"{len(v)}:{v}{len(event_type)}:{event_type}{len(s)}:{s}{len(occurred_at)}:{occurred_at}"
            f"{len(recorded_at)}:{recorded_at}{len(payload)}:{payload}{len(metadata)}:{metadata}"
        ).encode()
    ).hexdigest()


def _new_event_id() -> str:
    """32 hex digits, time first (the store's ids are time-ordered too: the unique index stays
    append-mostly)."""
    return f"{time.time_ns():016x}{os.urandom(8).hex()}"


def dashed(digits: str) -> str:
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _stored_time(iso: str) -> str:
    """ISO text ("...T...", maybe "Z") as the tables store a time ("YYYY-MM-DD HH:MM:SS.ffffff")."""
    return iso[:26].replace("T", " ")


_UPSERT = "INSERT INTO {table} ({columns}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {updates}"


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in key)
    return _UPSERT.format(
        table=table,
        columns=", ".join(columns),
        marks=", ".join("?" * len(columns)),
        key=", ".join(key),
        updates=updates,
    )


UPSERT_PROFILE = _upsert("learner_profiles", ("id", "created_at", "last_updated_at"), ("id",))
UPSERT_PREFERENCE = _upsert("preferences", ("learner_id", "category", "value", "timestamp"), ("learner_id", "category"))
UPSERT_INTEREST = _upsert("interests", ("learner_id", "interest_name", "timestamp"), ("learner_id", "interest_name"))
UPSERT_STRUGGLE = _upsert(
    "struggles", ("learner_id", "struggle_description", "timestamp"), ("learner_id", "struggle_description")
)
UPSERT_METRIC = _upsert(
    "cognitive_metrics", ("learner_id", "task_name", "metric_details", "timestamp"), ("learner_id", "task_name")
)
UPSERT_OBJECTIVE = _upsert(
    "learning_objective_progress",
    ("learner_id", "lo_id", "status", "started_at", "completed_at", "score", "details"),
    ("learner_id", "lo_id"),
)
UPSERT_BADGE = _upsert(
    "badges", ("learner_id", "badge_id", "badge_name", "earned_date", "details"), ("learner_id", "badge_id")
)
INSERT_ATTEMPT = (
    "INSERT INTO activity_attempts (learner_id, lo_id, activity_id, activity_type, attempt_timestamp, score,"
    " completed, attempt_details) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
DELETE_INTEREST = "DELETE FROM interests WHERE learner_id = ? AND interest_name = ?"
DELETE_STRUGGLE = "DELETE FROM struggles WHERE learner_id = ? AND struggle_description = ?"
DELETE_BADGE = "DELETE FROM badges WHERE learner_id = ? AND badge_id = ?"
TOUCH = "UPDATE learner_profiles SET last_updated_at = ? WHERE id = ?"
INSERT_EVENT = (
    "INSERT INTO event_log (event_id, learner_id, version, event_type, schema_version, occurred_at, recorded_at,"
    " payload, metadata, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _optional_json(value: Any) -> str | None:
    return None if value is None else _compact(value)


def read_model_statement(
    learner_id: str, event_type: str, p: Mapping[str, Any], at: str
) -> tuple[str, tuple[Any, ...]]:
    """The statement that projects one event into the eight tables (`at`: its occurred_at as stored)."""
    if event_type == "ActivityAttemptRecorded":
        completed, details = p["completed"], _optional_json(p["attempt_details"])
        return INSERT_ATTEMPT, (
            learner_id,
            p["lo_id"],
            p["activity_id"],
            p["activity_type"],
            at,
            p["score"],
            completed,
            details,
        )
    if event_type.startswith("LearningObjective"):
        started, completed_at = p["started_at"], p["completed_at"]
        return UPSERT_OBJECTIVE, (
            learner_id,
            p["lo_id"],
            p["status"],
            _stored_time(started),
            None if completed_at is None else _stored_time(completed_at),
            p["score"],
            _optional_json(p["details"]),
        )
    if event_type == "PreferenceSet":
        return UPSERT_PREFERENCE, (learner_id, p["category"], p["value"], at)
    if event_type == "CognitiveMetricRecorded":
        return UPSERT_METRIC, (learner_id, p["task_name"], _compact(p["metric_details"]), at)
    if event_type == "InterestAdded":
        return UPSERT_INTEREST, (learner_id, p["interest_name"], at)
    if event_type == "InterestRemoved":
        return DELETE_INTEREST, (learner_id, p["interest_name"])
    if event_type == "StruggleAreaAdded":
        return UPSERT_STRUGGLE, (learner_id, p["struggle_description"], at)
    if event_type == "StruggleAreaRemoved":
        return DELETE_STRUGGLE, (learner_id, p["struggle_description"])
    if event_type == "BadgeAwarded":
        return UPSERT_BADGE, (learner_id, p["badge_id"], p["badge_name"], at[:10], p["details"])
    if event_type == "BadgeRevoked":
        return DELETE_BADGE, (learner_id, p["badge_id"])
    if event_type == "LearnerProfileCreated":
        return UPSERT_PROFILE, (learner_id, at, at)
    raise FloorError(f"no projection for {event_type}")


# -- writing --------------------------------------------------------------------------------------

KeyMaker = Callable[[str], bytes]


def random_key(_learner_id: str) -> bytes:
    """A new 256-bit data key."""
    return os.urandom(32)


Statement = tuple[str, tuple[Any, ...]]


class _Writer(ABC):
    """What the floor's writers share: deciding, encrypting and chaining a learner's events and
    the statements that project them; `_write` runs one transaction on the writer's database.

    A learner's data key is made on its first event (`key_for`, by default random) and held in
    `keys`; `store_keys` saves them wrapped, as the store's key store holds them."""

    def __init__(self, key_for: KeyMaker) -> None:
        self.key_for = key_for
        self.keys: dict[str, bytes] = {}
        self._aeads: dict[str, AESGCM] = {}
        self._tips: dict[str, tuple[int, str]] = {}

    @abstractmethod
    def close(self) -> None:
        """Close the writer's connection."""

    @abstractmethod
    def _write(self, rows: list[tuple[Any, ...]], statements: list[Statement]) -> None:
        """Insert the event rows and run the statements, in one transaction."""

    def _rows(self, learner_id: str, events: Sequence[tuple[str, int, dict[str, Any], str]]) -> list[tuple[Any, ...]]:
        """The event rows of `events`, the next versions of the learner's stream, encrypted and chained."""
        aead = self._aeads.get(learner_id)
        if aead is None:
            key = self.keys[learner_id] = self.key_for(learner_id)
            aead = self._aeads[learner_id] = AESGCM(key)
        version, previous = self._tips.get(learner_id, (0, ""))
        recorded = _stored_time(_stamp())
        rows = []
        for event_type, schema_version, payload, occurred in events:
            version += 1
            digits = _new_event_id()
            event_id = dashed(digits)
            stored = encrypt(aead, _compact(payload), learner_id, version, event_type, schema_version)
            metadata = _compact({"actor": METADATA_ACTOR, "reason": None, "correlation_id": event_id})
            at = _stored_time(occurred)
            previous = link(
                previous, event_id, learner_id, version, event_type, schema_version, at, recorded, stored, metadata
            )
            rows.append(
                (digits, learner_id, version, event_type, schema_version, at, recorded, stored, metadata, previous)
            )
        self._tips[learner_id] = (version, previous)
        return rows

    def append(self, learner_id: str, events: Sequence[tuple[str, int, dict[str, Any], str]]) -> None:
        """One transaction: the event rows, each event's read-model statement, last_updated_at."""
        rows = self._rows(learner_id, events)
        statements = [
            read_model_statement(learner_id, event_type, payload, row[5])
            for (event_type, _schema, payload, _occurred), row in zip(events, rows, strict=True)
        ]
        statements.append((TOUCH, (rows[-1][5], learner_id)))
        self._write(rows, statements)

    def write(self, workloads: Mapping[str, Sequence[Mutation]], *, per_mutation: bool) -> int:
        """Each learner's workload: (a) one transaction for all of it, or (b) one per mutation
        (the creation included). Returns the events written."""
        written = 0
        for learner_id, mutations in workloads.items():
            learner = FloorLearner(learner_id)
            if per_mutation:
                self.append(learner_id, learner.events)
            for mutation in mutations:
                learner.apply(mutation)
                if per_mutation:
                    self.append(learner_id, learner.events[-1:])
            if not per_mutation:
                self.append(learner_id, learner.events)
            written += len(learner.events)
        return written

    def write_stream(self, learner_id: str, workloads: Sequence[Sequence[Mutation]], events: int) -> int:
        """One learner with exactly `events` events from the workloads in turn, one transaction
        per workload: the audit's long stream. Returns `events`."""
        learner = FloorLearner(learner_id)
        written = 0
        for mutations in workloads:
            for mutation in mutations:
                if written + len(learner.events) >= events:
                    break
                learner.apply(mutation)
            self.append(learner_id, learner.events)
            written += len(learner.events)
            learner.events = []
            if written >= events:
                return written
        raise ValueError(f"the workloads hold fewer than {events} events")

    def store_keys(self, path: Path | str, *, durable_each: bool) -> float:
        """Save the data keys wrapped (AES-GCM under the floor's master key, the learner id as
        associated data) in a key file of their own with synchronous=FULL; `durable_each`: one
        transaction a learner, as the store's key store commits a new learner's key (checking
        first that it was never erased). Returns the seconds it took."""
        master = AESGCM(FLOOR_MASTER_KEY)
        connection = connect(path, synchronous="FULL")
        try:
            connection.executescript(KEYS_DDL)
            started = time.perf_counter()
            if not durable_each:
                connection.execute("BEGIN IMMEDIATE")
            for learner_id, key in self.keys.items():
                nonce = os.urandom(NONCE_BYTES)
                wrapped = nonce + master.encrypt(nonce, key, WRAP_FORMAT + learner_id.encode())
                if durable_each:
                    connection.execute("BEGIN IMMEDIATE")
                erased = connection.execute("SELECT erased_at FROM erased_keys WHERE learner_id = ?", (learner_id,))
                if erased.fetchone() is not None:
                    raise FloorError(f"learner {learner_id!r} was erased")
                connection.execute(
                    "INSERT INTO data_keys (learner_id, wrapped, created_at) VALUES (?, ?, ?)",
                    (learner_id, wrapped, _stored_time(_stamp())),
                )
                if durable_each:
                    connection.execute("COMMIT")
            if not durable_each:
                connection.execute("COMMIT")
            return time.perf_counter() - started
        finally:
            connection.close()


class FloorWriter(_Writer):
    """The floor's writer on a SQLite file (its tables made where missing), one sqlite3
    connection, each append one `BEGIN IMMEDIATE` transaction as the store's."""

    def __init__(self, path: Path | str, *, key_for: KeyMaker = random_key) -> None:
        super().__init__(key_for)
        self.connection = connect(path)
        create_schema(self.connection)

    def close(self) -> None:
        self.connection.close()

    def _write(self, rows: list[tuple[Any, ...]], statements: list[Statement]) -> None:
        execute = self.connection.execute
        execute("BEGIN IMMEDIATE")
        try:
            self.connection.executemany(INSERT_EVENT, rows)
            for statement in statements:
                execute(*statement)
            execute("COMMIT")
        except BaseException:
            execute("ROLLBACK")
            raise


class PgFloorWriter(_Writer):
    """The floor's writer on PostgreSQL: one psycopg connection to a database whose tables the
    store made, the same statements with psycopg's placeholders, a transaction per append, the
    session in UTC (the stored times are the chain's UTC text)."""

    def __init__(self, conninfo: str, *, key_for: KeyMaker = random_key) -> None:
        import psycopg

        super().__init__(key_for)
        self.connection = psycopg.connect(conninfo, autocommit=True)
        self.connection.execute("SET TIME ZONE 'UTC'")
        self._spelled: dict[str, str] = {}

    def close(self) -> None:
        self.connection.close()

    def _spelling(self, sql: str) -> str:
        spelled = self._spelled.get(sql)
        if spelled is None:
            spelled = self._spelled[sql] = sql.replace("?", "%s")
        return spelled

    def _write(self, rows: list[tuple[Any, ...]], statements: list[Statement]) -> None:
        with self.connection.transaction(), self.connection.cursor() as cursor:
            cursor.executemany(self._spelling(INSERT_EVENT), rows)
            for sql, parameters in statements:
                cursor.execute(self._spelling(sql), parameters)


def load_key(keys_connection: sqlite3.Connection, learner_id: str) -> AESGCM:
    """The learner's data key from a key file of `FloorWriter.store_keys`, unwrapped."""
    found = keys_connection.execute("SELECT wrapped FROM data_keys WHERE learner_id = ?", (learner_id,)).fetchone()
    if found is None:
        raise FloorError(f"learner {learner_id!r}: no data key")
    wrapped: bytes = found[0]
    master = AESGCM(FLOOR_MASTER_KEY)
    return AESGCM(master.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], WRAP_FORMAT + learner_id.encode()))


# -- reading back ---------------------------------------------------------------------------------

READ_STREAM = (
    "SELECT event_id, version, event_type, schema_version, occurred_at, recorded_at, payload, metadata, hash"
    " FROM event_log WHERE learner_id = ? ORDER BY version"
)


def checked_stream(
    connection: sqlite3.Connection, learner_id: str, aead: AESGCM, *, with_metadata: bool
) -> Iterator[tuple[int, str, str, str, dict[str, Any], dict[str, Any] | None]]:
    """The learner's events, each checked (its version follows, its SHA-256 link verifies),
    decrypted and decoded: (version, event_type, occurred_at, recorded_at, payload, metadata),
    times as stored; the metadata decoded only `with_metadata`."""
    previous, expected = "", 1
    for digits, version, event_type, schema_version, occurred, recorded, stored, metadata, hashed in connection.execute(
        READ_STREAM, (learner_id,)
    ):
        if version != expected:
            raise FloorError(f"learner {learner_id!r}: version {version} where {expected} was due")
        previous = link(
            previous,
            dashed(digits),
            learner_id,
            version,
            event_type,
            schema_version,
            occurred,
            recorded,
            stored,
            metadata,
        )
        if previous != hashed:
            raise FloorError(f"learner {learner_id!r} version {version}: the link does not verify")
        payload = json.loads(decrypt(aead, stored, learner_id, version, event_type, schema_version))
        yield version, event_type, occurred, recorded, payload, json.loads(metadata) if with_metadata else None
        expected += 1


def history(connection: sqlite3.Connection, learner_id: str, aead: AESGCM) -> list[tuple[Any, ...]]:
    """The learner's events checked, decrypted and decoded, with their metadata and both times
    as datetimes: what `audit.history` gives, as tuples."""
    parse = datetime.fromisoformat
    return [
        (version, event_type, parse(occurred), parse(recorded), payload, metadata)
        for version, event_type, occurred, recorded, payload, metadata in checked_stream(
            connection, learner_id, aead, with_metadata=True
        )
    ]


def profile_as_of(connection: sqlite3.Connection, learner_id: str, aead: AESGCM, version: int) -> dict[str, Any]:
    """The learner's profile after `version`: the checked, decoded events folded into dicts."""
    profile: dict[str, Any] = {
        "learner_id": learner_id,
        "preferences": {},
        "interests": {},
        "struggles": {},
        "cognitive_metrics": {},
        "lo_progress": {},
        "badges": {},
        "activity_attempts": [],
    }
    for number, event_type, at, _recorded, p, _metadata in checked_stream(
        connection, learner_id, aead, with_metadata=False
    ):
        if number > version:
            break
        if event_type == "ActivityAttemptRecorded":
            profile["activity_attempts"].append({**p, "attempt_timestamp": at})
        elif event_type.startswith("LearningObjective"):
            profile["lo_progress"][p["lo_id"]] = p
        elif event_type == "PreferenceSet":
            profile["preferences"][p["category"]] = (p["value"], at)
        elif event_type == "CognitiveMetricRecorded":
            profile["cognitive_metrics"][p["task_name"]] = (p["metric_details"], at)
        elif event_type == "InterestAdded":
            profile["interests"][p["interest_name"]] = at
        elif event_type == "InterestRemoved":
            profile["interests"].pop(p["interest_name"], None)
        elif event_type == "StruggleAreaAdded":
            profile["struggles"][p["struggle_description"]] = at
        elif event_type == "StruggleAreaRemoved":
            profile["struggles"].pop(p["struggle_description"], None)
        elif event_type == "BadgeAwarded":
            profile["badges"][p["badge_id"]] = (p["badge_name"], at[:10], p["details"])
        elif event_type == "BadgeRevoked":
            profile["badges"].pop(p["badge_id"], None)
        elif event_type == "LearnerProfileCreated":
            profile["created_at"] = at
        else:
            raise FloorError(f"no fold for {event_type}")
        profile["last_updated_at"] = at
    return profile


# -- rebuilding -----------------------------------------------------------------------------------

READ_LOG = (
    "SELECT position, event_id, learner_id, version, event_type, schema_version, occurred_at, recorded_at, payload,"
    " metadata, hash FROM event_log WHERE position > ? ORDER BY position LIMIT ?"
)


def rebuild(path: Path | str, keys_path: Path | str) -> int:
    """Replace the eight tables with fresh ones filled from the whole log: read in batches by
    position, every event checked against its stream's chain, decrypted with its learner's data
    key (unwrapped from the key file on the learner's first event), decoded and projected, one
    transaction a batch. Returns the events replayed."""
    connection = connect(path)
    keys = connect(keys_path, synchronous="FULL")
    try:
        for table in reversed(READ_MODEL_TABLES):
            connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.executescript(READ_MODELS_DDL)
        tips: dict[str, tuple[int, str]] = {}
        aeads: dict[str, AESGCM] = {}
        replayed, after = 0, 0
        execute = connection.execute
        while True:
            rows = execute(READ_LOG, (after, REBUILD_BATCH)).fetchall()
            if not rows:
                return replayed
            touched: dict[str, str] = {}
            execute("BEGIN IMMEDIATE")
            for (
                _position,
                digits,
                learner_id,
                version,
                event_type,
                schema,
                occurred,
                recorded,
                stored,
                metadata,
                hashed,
            ) in rows:
                number, previous = tips.get(learner_id, (0, ""))
                if version != number + 1:
                    raise FloorError(f"learner {learner_id!r}: version {version} where {number + 1} was due")
                previous = link(
                    previous,
                    dashed(digits),
                    learner_id,
                    version,
                    event_type,
                    schema,
                    occurred,
                    recorded,
                    stored,
                    metadata,
                )
                if previous != hashed:
                    raise FloorError(f"learner {learner_id!r} version {version}: the link does not verify")
                tips[learner_id] = (version, previous)
                aead = aeads.get(learner_id)
                if aead is None:
                    aead = aeads[learner_id] = load_key(keys, learner_id)
                payload = json.loads(decrypt(aead, stored, learner_id, version, event_type, schema))
                execute(*read_model_statement(learner_id, event_type, payload, occurred))
                touched[learner_id] = occurred
            connection.executemany(TOUCH, [(at, learner_id) for learner_id, at in touched.items()])
            execute("COMMIT")
            replayed += len(rows)
            after = rows[-1][0]
    finally:
        connection.close()
        keys.close()


def keys_path_of(path: Path | str) -> Path:
    """Where the floor keeps the data keys of the log at `path`."""
    return Path(f"{path}.floor-keys")
