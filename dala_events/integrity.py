"""Tamper evidence: check every learner's hash chain, and compare the log with a checkpoint.

Each row of the log carries a hash over its stored values and the previous row's hash in its
learner's stream (`store.codec`), keyed with the log key when there is one. `verify_log`
walks the whole log in position order, in batches inside one read snapshot (memory bounded
by the number of streams, not events), with the one chain walk rebuilds use too
(`store.chain.ChainWalker`, whose docstring says how changed, inserted, deleted, reordered
and moved events are told apart), and reports every event that does not fit.

With `--against` a checkpoint (`write_checkpoint`: every stream's last version, last hash
and event count, signed with the log key) also shows events cut from the end of a stream
and whole streams removed since it was written, which no chain can show by itself. The
database's own check runs too: SQLite's `PRAGMA integrity_check`; on PostgreSQL amcheck's
`bt_index_check` on event_log's indexes when the extension is installed (there is no built-in
check otherwise, and the report says so).

Migration 0005 re-chained the streams of a log written before encryption at rest (their stored
texts changed, so every later link did): a checkpoint written before it names the old heads.
The mismatch is still reported (it is a rewrite), with the time of the re-chain and the advice
to write a new checkpoint after it (`log_encryption`'s record, see `EncryptionRecord`).

Without a log key the chain is plain SHA-256: it catches accidents and edits by hand, not
someone who can write to the database and recompute it; the report says which mode it used.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, inspect, select, text

from dala_events.errors import DalaError, in_words
from dala_events.events import utc_now
from dala_events.key_audit import KeyReport
from dala_events.store import SqlEventStore, log_chain
from dala_events.store.chain import KINDS, MAX_LISTED_PROBLEMS, ChainWalker, Problem, Stream
from dala_events.store.codec import ChainRow, LogKey, chain_mode
from dala_events.store.contract import check_kind, valid_learner_id
from dala_events.store.sql import check_log_key_to_verify, log_encryption, rebuild_skips, unfinished_restore

VERIFY_BATCH_SIZE = 5_000
MAX_CHECKPOINT_BYTES = 512 * 1024 * 1024
"""The largest checkpoint read: about three million streams' heads."""

CHECKPOINT_FORMAT = "dala-events checkpoint/1"
_SIGNED_PREFIX = b"dala-events checkpoint signature\n"


class IntegrityError(DalaError):
    """The log cannot be checked (no hash chain yet), or a checkpoint cannot be used."""


@dataclass(frozen=True)
class StreamHead:
    """Where a stream ended when it was checked: what a checkpoint records."""

    learner_id: str
    last_version: int
    last_hash: str
    events: int


@dataclass(frozen=True)
class EngineCheck:
    """The database's own integrity check: which ran, and what it said (ok None: none ran)."""

    name: str
    ok: bool | None
    detail: str


@dataclass(frozen=True)
class Checkpoint:
    """A loaded, signature-checked checkpoint."""

    path: str
    created_at: str
    key_mode: str
    key_id: str | None
    heads: dict[str, StreamHead]

    def summary(self) -> dict[str, Any]:
        """Which checkpoint, from when, of how many streams."""
        return {"path": self.path, "created_at": self.created_at, "streams": len(self.heads)}


@dataclass(frozen=True)
class EncryptionRecord:
    """What migration 0005 recorded (`log_encryption`): when it encrypted the events written
    before encryption at rest, how many, and how many streams it re-chained."""

    encrypted_at: datetime
    events_encrypted: int
    streams_rechained: int

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record."""
        return {
            "encrypted_at": self.encrypted_at.isoformat(),
            "events_encrypted": self.events_encrypted,
            "streams_rechained": self.streams_rechained,
        }

    def explains(self, checkpoint: Checkpoint) -> str | None:
        """Why `checkpoint`'s heads no longer match, when this re-chain came after it; else None."""
        try:
            written = datetime.fromisoformat(checkpoint.created_at)
        except ValueError:
            return None
        if self.streams_rechained <= 0 or written.tzinfo is None or self.encrypted_at <= written:
            return None
        return (
            f"the log was re-chained by the encryption migration (0005) at {self.encrypted_at.isoformat()}, "
            f"after this checkpoint ({checkpoint.created_at}): {self.streams_rechained:,} streams now end in new "
            "hashes; write a new checkpoint after it (dala verify --checkpoint FILE)"
        )


_REWRITTEN = "its hash is not the one the checkpoint recorded: the stream was rewritten since"


class SkippedLearner(NamedTuple):
    """A learner the read models lack on the operator's word (`rebuild_skips`)."""

    learner_id: str
    skipped_at: datetime
    why: str


@dataclass
class VerifyReport:
    """What `verify_log` (or `check_chains`) found."""

    mode: str
    key_id: str | None
    events: int = 0
    streams: int = 0
    verified: int = 0
    problems: list[Problem] = field(default_factory=list)
    unlisted: dict[str, int] = field(default_factory=dict)
    heads: list[StreamHead] = field(default_factory=list)
    engine_check: EngineCheck | None = None
    checkpoint: Checkpoint | None = None
    log_mode: str | None = None
    log_key_id: str | None = None
    hint: str | None = None
    encryption: EncryptionRecord | None = None
    keys: KeyReport | None = None
    """The check of the data keys beside the log (`key_audit.check_keys`), when it ran."""
    skipped: list[SkippedLearner] = field(default_factory=list)
    """The learners the last rebuild left out on the operator's word (`rebuild --skip`,
    `restore --skip-missing-keys`), when and why."""
    restore_unfinished: str | None = None
    """Why the database is not in use yet: a restore stopped before it finished (`app.Dala.restore`)."""

    @property
    def intact(self) -> bool:
        """No problem with any chain (nor with the checkpoint), the engine check did not fail,
        every learner's key fits the log (when the keys were checked), and no restore is
        unfinished."""
        engine_failed = self.engine_check is not None and self.engine_check.ok is False
        keys_failed = self.keys is not None and not self.keys.ok
        return (
            not self.problems
            and not self.unlisted
            and not engine_failed
            and not keys_failed
            and self.restore_unfinished is None
        )

    def counts(self) -> dict[str, int]:
        """Problems by kind, listed and unlisted."""
        found = {kind: 0 for kind in KINDS}
        for problem in self.problems:
            found[problem.kind] += 1
        for kind, number in self.unlisted.items():
            found[kind] += number
        return {kind: number for kind, number in found.items() if number}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what `dala verify --json` prints)."""
        return {
            "intact": self.intact,
            "mode": self.mode,
            "key_id": self.key_id,
            "log_chain": None if self.log_mode is None else {"mode": self.log_mode, "key_id": self.log_key_id},
            "events": self.events,
            "streams": self.streams,
            "verified": self.verified,
            "problem_counts": self.counts(),
            "problems": [problem.as_dict() for problem in self.problems],
            "hint": self.hint,
            "engine_check": None
            if self.engine_check is None
            else {"name": self.engine_check.name, "ok": self.engine_check.ok, "detail": self.engine_check.detail},
            "checkpoint": None if self.checkpoint is None else self.checkpoint.summary(),
            "log_encryption": None if self.encryption is None else self.encryption.as_dict(),
            "keys": None if self.keys is None else self.keys.as_dict(),
            "skipped_by_rebuild": [
                {"learner_id": skipped.learner_id, "skipped_at": skipped.skipped_at, "why": skipped.why}
                for skipped in self.skipped
            ],
            "restore_unfinished": self.restore_unfinished,
        }


# ---------------------------------------------------------------------------------------------
# Checking the chains
# ---------------------------------------------------------------------------------------------


class ChainWalk(ChainWalker):
    """The chain walk (`store.chain.ChainWalker`, the one rebuilds use too) with what only a
    verification adds: the comparison with a checkpoint, and the report."""

    def __init__(self, log_key: LogKey | None, *, checkpoint: Checkpoint | None = None) -> None:
        super().__init__(log_key)
        self.report = VerifyReport(chain_mode(log_key), None if log_key is None else log_key.key_id)
        self.report.checkpoint = checkpoint
        self.checkpoint = checkpoint

    def seen(self, stream: Stream, row: ChainRow) -> None:
        if self.checkpoint is None:
            return
        head = self.checkpoint.heads.get(row.learner_id)
        if head is not None and row.version == head.last_version and row.hash != head.last_hash:
            self.add(stream, "changed", row, _REWRITTEN)

    def finish_report(self) -> VerifyReport:
        """Finish the walk, compare with the checkpoint, and give the report."""
        self.finish()
        if self.checkpoint is not None:
            self._missing_since_checkpoint()
        report = self.report
        report.problems = self.problems
        report.unlisted = self.unlisted
        report.events, report.verified, report.streams = self.events, self.verified, len(self.streams)
        report.heads = [
            StreamHead(s.learner_id, s.version, s.prev, s.events)
            for s in sorted(self.streams.values(), key=lambda s: s.learner_id)
        ]
        return report

    def _missing_since_checkpoint(self) -> None:
        assert self.checkpoint is not None
        for learner_id, head in sorted(self.checkpoint.heads.items()):
            stream = self.streams.get(learner_id)
            if stream is None:
                detail = f"the whole stream is gone: the checkpoint had {head.events} events"
                first = 1
            elif stream.max_version < head.last_version:
                detail = "cut from the end of the stream since the checkpoint"
                first = stream.max_version + 1
            else:
                continue
            self.problems.append(Problem("deleted", learner_id, first, None, detail, last_version=head.last_version))


def check_chains(
    batches: Iterable[Sequence[ChainRow]], log_key: LogKey | None, *, checkpoint: Checkpoint | None = None
) -> VerifyReport:
    """Check chain rows (in position order, in batches) of any store: see `store.chain`."""
    walk = ChainWalk(log_key, checkpoint=checkpoint)
    for rows in batches:
        walk.feed(rows)
    return walk.finish_report()


def verify_log(
    engine: Engine,
    log_key: LogKey | None,
    *,
    learner_ids: Collection[str] | None = None,
    checkpoint: Checkpoint | None = None,
    batch_size: int = VERIFY_BATCH_SIZE,
) -> VerifyReport:
    """Check every chain of the log on `engine` (or those of `learner_ids`) with `log_key`
    (None: plain SHA-256), against `checkpoint` if given, and run the database's own check.

    A log recorded as chained with a key is not checked without that key: LogKeyError says
    which key it needs, before anything is read (every link would fail and read as forgery).

    Reads one consistent snapshot (PostgreSQL: REPEATABLE READ), so appends running meanwhile
    are either wholly seen or not at all. Writes nothing.
    """
    check_kind("engine", engine, Engine, "a SQLAlchemy Engine")
    check_kind("log_key", log_key, (LogKey, type(None)), "a LogKey or None")
    wanted = None if learner_ids is None else sorted({valid_learner_id(learner) for learner in learner_ids})
    if checkpoint is not None and wanted is not None:
        heads = {learner: head for learner, head in checkpoint.heads.items() if learner in wanted}
        checkpoint = Checkpoint(checkpoint.path, checkpoint.created_at, checkpoint.key_mode, checkpoint.key_id, heads)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            _require_chain(connection)
            check_log_key_to_verify(connection, log_key)  # without the log's key every link would fail
            record = connection.execute(select(log_chain.c.mode, log_chain.c.key_id).where(log_chain.c.id == 1)).first()
            store = SqlEventStore(engine).bound_to(connection)
            rows = store.stored_rows(batch_size=batch_size, learner_ids=wanted)
            report = check_chains(rows, log_key, checkpoint=checkpoint)
            _add_problems(report, commit_order_problems(connection, wanted))
            report.engine_check = engine_check(connection)
            report.encryption = _encryption_record(connection)
            if inspect(connection).has_table("rebuild_skips"):
                report.skipped = [
                    SkippedLearner(row.learner_id, row.skipped_at, row.why)
                    for row in connection.execute(select(rebuild_skips).order_by(rebuild_skips.c.learner_id))
                ]
            unfinished = unfinished_restore(connection)
            report.restore_unfinished = None if unfinished is None else str(unfinished)
    if record is not None:
        report.log_mode, report.log_key_id = record.mode, record.key_id
    report.hint = _hint(report, log_key)
    if checkpoint is not None and report.encryption is not None:
        explanation = report.encryption.explains(checkpoint)
        if explanation is not None:
            for problem in report.problems:
                if problem.detail == _REWRITTEN:
                    problem.detail = f"{_REWRITTEN}: by the encryption migration (0005)"
            report.hint = explanation if report.hint is None else f"{report.hint}; {explanation}"
    return report


_COMMIT_ORDER = text(
    """
SELECT learner_id, version, position, transaction_id, previous_version, previous_id, next_id FROM (
    SELECT e.learner_id, e.version, e.position, e.transaction_id, now.next_id,
           lag(e.version) OVER stream AS previous_version,
           lag(CASE WHEN e.transaction_id >= 0 AND e.transaction_id < now.next_id THEN e.transaction_id END)
               OVER stream AS previous_id
    FROM event_log AS e, (SELECT (pg_snapshot_xmax(pg_current_snapshot())::text)::bigint AS next_id) AS now
    WHERE :every OR e.learner_id = ANY(:learner_ids)
    WINDOW stream AS (PARTITION BY e.learner_id ORDER BY e.version)
) AS ordered
WHERE transaction_id < 0 OR transaction_id >= next_id OR transaction_id < previous_id
ORDER BY position LIMIT :most
"""
)
"""Each event whose transaction id is out of bounds, or below its predecessor's (one itself out
of bounds is not compared with: it is reported alone)."""


def commit_order_problems(connection: Connection, learner_ids: Collection[str] | None = None) -> list[Problem]:
    """PostgreSQL: the events whose `transaction_id` breaks the commit order subscriptions
    deliver in (`store.sql.in_commit_order`), as "reordered" problems (on `connection`, inside
    its transaction; none on SQLite, where the position is the order, nor before migration 0009).

    The database fills the column, outside the chain (a backup does not carry it), so no link
    covers it; what can be checked is checked: within a stream it never goes down from one
    version to the next (a later version is appended by a later transaction, or the same one),
    it is not negative, and it is below every transaction that has not ended (the snapshot's
    xmax: a committed row's writer ended before it). An id moved within those bounds shows
    nowhere."""
    if connection.dialect.name != "postgresql":
        return []
    if "transaction_id" not in {column["name"] for column in inspect(connection).get_columns("event_log")}:
        return []  # a log before migration 0009
    parameters = {
        "every": learner_ids is None,
        "learner_ids": sorted(learner_ids or ()),
        "most": MAX_LISTED_PROBLEMS,
    }
    problems = []
    for learner_id, version, position, transaction_id, previous_version, previous_id, next_id in connection.execute(
        _COMMIT_ORDER, parameters
    ):
        if transaction_id < 0:
            why = f"its transaction id {transaction_id} is negative"
        elif transaction_id >= next_id:
            why = f"its transaction id {transaction_id} is beyond every committed transaction (the next is {next_id})"
        else:
            why = f"its transaction id {transaction_id} is below version {previous_version}'s ({previous_id})"
        detail = f"{why}: its place in commit order was changed; subscriptions would deliver it out of order, or never"
        problems.append(Problem("reordered", learner_id, version, position, detail))
    return problems


def _add_problems(report: VerifyReport, problems: list[Problem]) -> None:
    """Add problems found beside the chain walk to its report, in log order, as many as are
    listed; not those of events the walk reported already (an event moved to another stream
    breaks that stream's commit order too: it is one problem, the walk's)."""
    walked = {problem.position for problem in report.problems}
    problems = [problem for problem in problems if problem.position not in walked]
    if not problems:
        return
    room = max(0, MAX_LISTED_PROBLEMS - len(report.problems))
    for problem in problems[room:]:
        report.unlisted[problem.kind] = report.unlisted.get(problem.kind, 0) + 1
    report.problems = sorted(
        [*report.problems, *problems[:room]],
        key=lambda p: (p.position is None, p.position or 0, p.learner_id, p.version),
    )


def _encryption_record(connection: Connection) -> EncryptionRecord | None:
    """`log_encryption`'s record, or None before migration 0005."""
    if not inspect(connection).has_table("log_encryption"):
        return None
    found = connection.execute(
        select(log_encryption.c.encrypted_at, log_encryption.c.events_encrypted, log_encryption.c.streams_rechained)
    ).first()
    return None if found is None else EncryptionRecord(found[0], int(found[1]), int(found[2]))


def _require_chain(connection: Connection) -> None:
    tables = set(inspect(connection).get_table_names())
    if "event_log" not in tables:
        raise IntegrityError("there is no event log in this database")
    columns = {column["name"] for column in inspect(connection).get_columns("event_log")}
    if "hash" not in columns or "log_chain" not in tables:
        raise IntegrityError("the event log has no hash chain yet: run `dala migrate`")


def _hint(report: VerifyReport, log_key: LogKey | None) -> str | None:
    """Why nothing verifies, when nothing does: usually the key, not the log."""
    recorded = report.log_mode, report.log_key_id
    ours = report.mode, report.key_id
    # A keyed log's key was checked before the walk (`check_log_key_to_verify`).
    if report.log_mode == chain_mode(None) and log_key is not None:
        return (
            "the log is recorded as chained without a key (plain SHA-256), but a log key was given: "
            "a log written without one, or one rewritten without the key"
        )
    if report.log_mode is not None and recorded != ours:
        return f"the log's chain record (table log_chain) reads {report.log_mode!r}: not a way this code chains"
    if report.events and not report.verified:
        return "no event verifies: the log key is not the one the log was written with, or the whole log was rewritten"
    return None


def engine_check(connection: Connection) -> EngineCheck:
    """The database engine's own integrity check, on `connection` (inside its transaction)."""
    if connection.dialect.name == "sqlite":
        found = [str(row[0]) for row in connection.exec_driver_sql("PRAGMA integrity_check")]
        ok = found == ["ok"]
        return EngineCheck("sqlite PRAGMA integrity_check", ok, "ok" if ok else "; ".join(found))
    if connection.dialect.name == "postgresql":
        checksums = connection.execute(text("SHOW data_checksums")).scalar()
        pages = (
            "data checksums are on: the server verified every page the check read"
            if checksums == "on"
            else "data checksums are off"
        )
        installed = connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'")).first()
        if installed is None:
            return EngineCheck(
                "none",
                None,
                "PostgreSQL has none built in; `CREATE EXTENSION amcheck` adds one "
                f"(bt_index_check of event_log's indexes); {pages}",
            )
        indexes = connection.execute(
            text(
                "SELECT c.relname, c.oid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE i.indrelid = 'event_log'::regclass ORDER BY c.relname"
            )
        ).all()
        problems = []
        for name, oid in indexes:
            try:
                with connection.begin_nested():
                    connection.execute(text("SELECT bt_index_check(:oid, true)"), {"oid": oid})
            except Exception as error:  # amcheck reports corruption as an error
                problems.append(f"{name}: {error}")
        names = ", ".join(name for name, _ in indexes)
        if problems:
            return EngineCheck("amcheck bt_index_check", False, "; ".join(problems))
        return EngineCheck("amcheck bt_index_check", True, f"ok ({names}, with heapallindexed); {pages}")
    return EngineCheck("none", None, f"no integrity check known for {connection.dialect.name}")


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def _signed_body(body: dict[str, Any]) -> bytes:
    return _SIGNED_PREFIX + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _signature(body: dict[str, Any], log_key: LogKey | None) -> str:
    message = _signed_body(body)
    return hashlib.sha256(message).hexdigest() if log_key is None else log_key.sign(message)


def write_checkpoint(path: Path, heads: Sequence[StreamHead], log_key: LogKey | None) -> dict[str, Any]:
    """Write every stream's head to `path` as signed JSON, atomically; returns what was written.

    The signature is an HMAC with the log key over the canonical JSON of the rest (sorted
    keys, no spaces); without a key it is a SHA-256 checksum, which anyone could recompute.
    """
    body: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "created_at": utc_now().isoformat(),
        "key_mode": chain_mode(log_key),
        "key_id": None if log_key is None else log_key.key_id,
        "heads": [
            {"learner_id": h.learner_id, "last_version": h.last_version, "last_hash": h.last_hash, "events": h.events}
            for h in heads
        ],
    }
    document = {**body, "signature": _signature(body, log_key)}
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=1, ensure_ascii=False)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return document


def load_checkpoint(path: Path, log_key: LogKey | None) -> Checkpoint:
    """A checkpoint file whose signature verifies with `log_key`, else IntegrityError saying why.
    Only a regular file of at most MAX_CHECKPOINT_BYTES is read (`/dev/zero` is refused, not
    read without end)."""
    try:
        if not Path(path).is_file():
            raise IntegrityError(f"cannot read the checkpoint {str(path)!r}: not a file")
        with Path(path).open("rb") as file:
            data = file.read(MAX_CHECKPOINT_BYTES + 1)
        if len(data) > MAX_CHECKPOINT_BYTES:
            raise IntegrityError(f"{str(path)!r} is larger than a checkpoint can be ({MAX_CHECKPOINT_BYTES:,} bytes)")
        document = json.loads(data.decode("utf-8"))
    except OSError as error:
        raise IntegrityError(f"cannot read the checkpoint {str(path)!r}: {in_words(error)}") from None
    except ValueError:  # not UTF-8, or not JSON
        raise IntegrityError(f"{str(path)!r} is not a checkpoint (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise IntegrityError(f"{str(path)!r} is not a checkpoint ({CHECKPOINT_FORMAT})")
    body = {name: value for name, value in document.items() if name != "signature"}
    mode = chain_mode(log_key)
    if body.get("key_mode") != mode:
        if body.get("key_mode") == "hmac-sha256":
            raise IntegrityError("the checkpoint is signed with a log key: set DALA_LOG_KEY or DALA_LOG_KEY_FILE")
        raise IntegrityError(
            "the checkpoint was written without a key (a checksum, not a signature); "
            "it cannot be trusted where a log key is set"
        )
    signature = document.get("signature")
    if not isinstance(signature, str) or not hmac.compare_digest(signature, _signature(body, log_key)):
        if log_key is not None and body.get("key_id") != log_key.key_id:
            raise IntegrityError(f"the checkpoint is signed with another log key (id {body.get('key_id')})")
        raise IntegrityError("the checkpoint's signature does not verify: the file was changed after it was written")
    heads: dict[str, StreamHead] = {}
    try:
        for item in body["heads"]:
            head = StreamHead(
                str(item["learner_id"]), int(item["last_version"]), str(item["last_hash"]), int(item["events"])
            )
            heads[head.learner_id] = head
    except (KeyError, TypeError, ValueError) as error:
        raise IntegrityError(f"the checkpoint's heads are malformed: {error}") from None
    return Checkpoint(str(path), str(body.get("created_at")), mode, body.get("key_id"), heads)
