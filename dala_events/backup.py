"""Backups of the event log that restore anywhere: SQLite to PostgreSQL and back.

A backup is one portable text file (JSON Lines, written as `checksummed` files are):

    {"format": "dala-events-backup", "format_version": 2, "created_at": ..., "log_schema": "0006",
     "source": "sqlite", "columns": ["position", "event_id", ...],
     "key_store": {"location": ..., "id": ..., "master_key_id": ...}}    the header
    [1, "0192...", "ann", 1, "LearnerProfileCreated", 1, "2026-...Z", "2026-...Z", "{}", "{...}"]
    ...                                                                  one row per event
    {"table": "disclosure_log", "columns": ["id", "learner_id", ...]}    the disclosures
    [1, "ann", "2026-...Z", "page", "teacher:42", null, "..."]
    ...
    {"end": true, "events": 26, "disclosures": 3, "sha256": "..."}      the trailer

Every row holds the stored columns exactly as the database holds them (payload and metadata as
their stored text, times as RFC 3339 UTC), in log order. The backup carries every table that is
not rebuilt from the log: the event log and the record of disclosures. It names the key store
whose data keys decrypt it (its id and its master key's id, never a key): the key store is
backed up apart (`key_backup`), and a restore checks it holds every key first. The trailer's
`sha256` is the hash of every byte before it, so a truncated or altered file is refused before
anything is committed. Files of format 1 (the event log only) still restore.

`backup_log` reads the log in one read transaction (a snapshot: writers keep writing and the
backup is still consistent) and writes the file beside its destination, renaming it into place
at the end; it never replaces an existing file unless told to. A row the database cannot give
back (a damaged time or text) does not stop it: the row is left out, named in the trailer
(`"complete": false, "left_out": [...]`) and in the result, and every other row is written.
`inspect_backup` reads a file through once, checking it whole, and says what it holds (learners
whose events are encrypted, erased learners, the key store named, the rows left out).
`restore_log` streams a file into an empty database inside one transaction: the log's schema is
brought to the backup's revision, the rows are inserted, the schema is migrated to this code's
head, and only then is anything committed. An interrupted restore leaves the database without a
single event. `app.Dala.restore` then builds the read models from the restored log; asked to
(`unfinished=True`), `restore_log` also records in that transaction that the restore is not
finished (`store.sql.RESTORE_UNFINISHED`), which `finish_restore` clears at the end, so a
restore killed after its commit is found and finished by running it again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, func, insert, inspect, select, text
from sqlalchemy.exc import DBAPIError

from dala_events.checksummed import BackupError, ChecksummedWriter, check_destination, read_lines, text_time
from dala_events.dialects import read_transaction, write_transaction
from dala_events.disclosures import disclosure_log
from dala_events.errors import InvalidInput, RefusedToDestroy
from dala_events.events import utc_now
from dala_events.key_backup import KeyBackupResult, backup_keys
from dala_events.schema import LOG_SCHEMA_HEAD, CipherChoice, clear_old_row_versions, log_schema_revision, migrate_in
from dala_events.store import LogKey, event_log, projection_state
from dala_events.store.chain import ChainWalker
from dala_events.store.codec import LogKeyError, chain_mode
from dala_events.store.contract import ERASED_EVENT_TYPE, check_kind
from dala_events.store.keys import ENCRYPTED_PREFIX, KeyStore
from dala_events.store.sql import (
    DATABASE_COLUMNS,
    RESTORE_UNFINISHED,
    check_log_key,
    log_chain,
    rechain_log,
    rows_by_stream,
)

FORMAT = "dala-events-backup"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
BATCH_SIZE = 5_000
_TIME_COLUMNS = frozenset({"occurred_at", "recorded_at", "disclosed_at"})
_CARRIED = {"disclosure_log": disclosure_log}
"""The tables besides the log that no rebuild can make again, carried by every backup."""

_log = logging.getLogger("dala_events.backup")


@dataclass(frozen=True)
class KeyStoreName:
    """Which key store a backup's encrypted events need: where it was, its id and the id of the
    master key wrapping its keys (never a key)."""

    location: str
    id: str
    master_key_id: str

    def describe(self) -> str:
        return f"{self.location} (id {self.id}, master key {self.master_key_id})"


@dataclass(frozen=True)
class LeftOut:
    """A row a backup could not read from the database, left out of the file and named."""

    table: str
    key: int
    """Its `position` (event_log) or `id`."""
    learner_id: str | None
    version: int | None
    problem: str

    def describe(self) -> str:
        where = "event" if self.table == "event_log" else f"{self.table} row"
        whose = "" if self.learner_id is None else f" of learner {self.learner_id!r}"
        version = "" if self.version is None else f" version {self.version}"
        key = "position" if self.table == "event_log" else "id"
        return f"{where}{whose}{version} ({key} {self.key}): {self.problem}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key": self.key,
            "learner_id": self.learner_id,
            "version": self.version,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class BackupResult:
    """What a backup or a restore did. `left_out`: the rows a backup could not read (then the
    file is marked incomplete); `encrypted_learners`: the learners whose events it holds
    encrypted and who were not erased (whose keys a restore needs)."""

    path: Path
    events: int
    log_schema: str
    sha256: str
    disclosures: int = 0
    key_store: KeyStoreName | None = None
    left_out: tuple[LeftOut, ...] = ()
    encrypted_learners: frozenset[str] = frozenset()
    keys: KeyBackupResult | None = None
    """The key backup taken with it (`backup_with_keys`)."""
    keys_lacking: frozenset[str] = frozenset()
    """Learners of the log backup the key backup holds neither a key nor a tombstone of."""
    skipped: tuple[str, ...] = ()
    """A restore's: the learners left out of the read models on the operator's word."""

    @property
    def complete(self) -> bool:
        """Whether it holds every row of the log and, taken with keys, every key it needs from a
        key store whose every row read back."""
        return not self.left_out and not self.keys_lacking and (self.keys is None or self.keys.complete)


@dataclass
class BackupContents:
    """What a backup file holds, read through once and checked whole (`inspect_backup`)."""

    path: Path
    format_version: int
    log_schema: str
    events: int = 0
    disclosures: int = 0
    encrypted_learners: set[str] = field(default_factory=set)
    erased_learners: set[str] = field(default_factory=set)
    key_store: KeyStoreName | None = None
    sha256: str = ""
    left_out: list[dict[str, Any]] = field(default_factory=list)
    """The rows the backup could not read and left out (as its trailer names them)."""
    learners: set[str] = field(default_factory=set)
    """Every learner with an event in it."""


class _Learners:
    """Who the events written so far belong to: encrypted, erased (see `BackupResult`)."""

    def __init__(self, columns: list[str]) -> None:
        self.learner, self.kind, self.payload = (
            columns.index(name) if name in columns else None for name in ("learner_id", "event_type", "payload")
        )
        self.encrypted: set[str] = set()
        self.erased: set[str] = set()

    def note(self, row: tuple[Any, ...]) -> None:
        if self.learner is None or self.kind is None or self.payload is None:
            return
        if row[self.kind] == ERASED_EVENT_TYPE:
            self.erased.add(row[self.learner])
        elif isinstance(row[self.payload], str) and row[self.payload].startswith(ENCRYPTED_PREFIX):
            self.encrypted.add(row[self.learner])


def backup_log(
    engine: Engine, destination: str | Path, *, key_store: KeyStoreName | None = None, replace: bool = False
) -> BackupResult:
    """Write a consistent backup of the event log and the disclosure record to `destination`,
    naming `key_store` (see the module docstring). An existing `destination` is refused
    (BackupError) unless `replace`."""
    check_kind("engine", engine, Engine, "a SQLAlchemy Engine")
    check_kind("destination", destination, (str, os.PathLike), "a file path")
    left_out: list[LeftOut] = []
    with ChecksummedWriter(destination, replace=replace) as writer, _snapshot(engine) as connection:
        # A log older than the migrations is revision 0001's table.
        revision = log_schema_revision(connection) or "0001"
        present = _stored_columns(connection, "event_log")
        columns = [column.name for column in event_log.columns if column.name in present - set(DATABASE_COLUMNS)]
        header: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": text_time(utc_now()),
            "log_schema": revision,
            "source": connection.dialect.name,
            "columns": columns,
            "key_store": None if key_store is None else vars(key_store),
            "log_chain": _chain_record(connection),
        }
        writer.write(header)
        learners = _Learners(columns)
        events = _write_table(writer, connection, event_log, columns, "position", left_out, learners)
        counts: dict[str, int] = {}
        for name, table in _CARRIED.items():
            if not inspect(connection).has_table(name):
                continue
            carried = [column.name for column in table.columns if column.name in _stored_columns(connection, name)]
            writer.write({"table": name, "columns": carried})
            counts[name] = _write_table(writer, connection, table, carried, "id", left_out)
        incomplete = {"complete": False, "left_out": [row.as_dict() for row in left_out]} if left_out else {}
        checksum = writer.finish(events=events, disclosures=counts.get("disclosure_log", 0), **incomplete)
    _log.info("backed up %d events to %s", events, writer.target)
    for row in left_out:
        _log.error("the backup %s left out the %s", writer.target, row.describe())
    return BackupResult(
        writer.target,
        events,
        str(revision),
        checksum,
        counts.get("disclosure_log", 0),
        key_store,
        tuple(left_out),
        frozenset(learners.encrypted - learners.erased),
    )


def backup_with_keys(
    engine: Engine,
    key_store: KeyStore,
    destination: str | Path,
    keys: str | Path,
    *,
    location: str,
    replace: bool = False,
) -> BackupResult:
    """A backup of the log to `destination`, then of `key_store` (at `location`) to `keys`, in
    that order, so that the pair always restores: a learner's data key is committed before their
    first event and keys are only ever added (an erasure leaves a tombstone), so every learner of
    the log's snapshot has a key, or a tombstone, in the key store read after it. Both files are
    checked first (neither written if either exists, unless `replace`). `keys_lacking` in the
    result names any learner the key backup still lacks (a damaged key store)."""
    if Path(keys).resolve() == Path(destination).resolve():
        raise InvalidInput("keys", "the key backup must be another file than the log's backup")
    for target in (Path(destination), Path(keys)):
        check_destination(target, replace=replace)
    name = KeyStoreName(location, key_store.store_id, key_store.master_key.key_id)
    result = backup_log(engine, destination, key_store=name, replace=replace)
    key_result = backup_keys(key_store, keys, location=location, replace=replace)
    lacking = result.encrypted_learners - key_result.learners
    if lacking:
        _log.error("the key backup %s lacks the keys of %d learners of %s", key_result.path, len(lacking), result.path)
    return dataclasses.replace(result, keys=key_result, keys_lacking=frozenset(lacking))


def _write_table(
    writer: ChecksummedWriter,
    connection: Connection,
    table: Table,
    columns: list[str],
    key: str,
    left_out: list[LeftOut],
    learners: _Learners | None = None,
) -> int:
    written = 0
    for rows in _batches(connection, table, columns, key, left_out):
        for row in rows:
            writer.write([text_time(v) if isinstance(v, datetime) else v for v in row])
            if learners is not None:
                learners.note(row)
        written += len(rows)
    return written


def inspect_backup(source: str | Path) -> BackupContents:
    """Read a backup file through once, checking it whole (BackupError otherwise), and say what
    it holds: what a restore checks against the key store before it writes anything."""
    check_kind("source", source, (str, os.PathLike), "a file path")
    path = Path(source)
    with path.open("rb") as file:
        lines = read_lines(file, path)
        header = _header(next(lines, None), path)
        contents = BackupContents(path, header["format_version"], header["log_schema"])
        named = header.get("key_store")
        if isinstance(named, dict):
            contents.key_store = KeyStoreName(str(named["location"]), str(named["id"]), str(named["master_key_id"]))
        columns: list[str] = header["columns"]
        learner, kind, payload = (
            columns.index(name) if name in columns else None for name in ("learner_id", "event_type", "payload")
        )
        table = "event_log"
        for value in lines:
            if isinstance(value, dict):
                if value.get("end") is True:
                    _check_counts(value, contents, path)
                    contents.sha256 = str(value["sha256"])
                    named = value.get("left_out")
                    if isinstance(named, list):
                        contents.left_out = [row for row in named if isinstance(row, dict)]
                    return contents
                table = _section(value, path)
                continue
            if table != "event_log":
                contents.disclosures += 1
                continue
            contents.events += 1
            if (
                learner is None
                or kind is None
                or payload is None
                or not isinstance(value, list)
                or len(value) != len(columns)
            ):
                continue
            contents.learners.add(value[learner])
            if value[kind] == ERASED_EVENT_TYPE:
                contents.erased_learners.add(value[learner])
            elif isinstance(value[payload], str) and value[payload].startswith(ENCRYPTED_PREFIX):
                contents.encrypted_learners.add(value[learner])
    raise BackupError(f"{path} is truncated: it ends before its trailer; nothing was restored")  # pragma: no cover


def restore_log(
    engine: Engine,
    source: str | Path,
    *,
    log_key: LogKey | None = None,
    cipher: CipherChoice = None,
    unfinished: bool = False,
) -> BackupResult:
    """Restore the event log and the disclosure record of a backup file into the empty database
    of `engine`.

    Refuses (RefusedToDestroy) a database whose log holds events, and (BackupError) a file that
    is not a whole, unaltered backup; in either case nothing is written. Read models are not
    rebuilt here: see `dala restore`, or `app.Dala.restore`, which also checks the key store
    holds every learner's key before calling this. A backup older than the hash chain is chained
    with `log_key` as the migration brings it to this code's schema; the restored log is then
    recorded as chained with `log_key`. A backup older than encryption at rest is encrypted on
    the way in with `cipher` (migration 0005). A backup of a log chained with plain SHA-256,
    restored with a log key configured, has its chains checked and then re-chained under the key
    (how a log is put under a key); one chained with another key is refused. With `unfinished`
    the same transaction records that the restore is not finished until `finish_restore` says so
    (what `app.Dala.restore` does around building the read models).
    """
    check_kind("engine", engine, Engine, "a SQLAlchemy Engine")
    check_kind("source", source, (str, os.PathLike), "a file path")
    check_kind("log_key", log_key, (LogKey, type(None)), "a LogKey or None")
    path = Path(source)
    with path.open("rb") as file, write_transaction(engine) as connection:
        lines = read_lines(file, path)
        header = _header(next(lines, None), path)
        existing = set(inspect(connection).get_table_names())
        for table in (event_log, *_CARRIED.values()):
            held = table.name in existing and connection.execute(select(func.count()).select_from(table)).scalar_one()
            if held:
                unit = "events" if table is event_log else "records"
                raise RefusedToDestroy(
                    f"refusing to restore into a database whose {table.name} holds {held} {unit}; "
                    "restore into a new, empty database"
                )
        revision = header["log_schema"]
        migrate_in(connection, revision, log_key=log_key, cipher=cipher)
        events, carried, trailer = _insert_rows(connection, header["columns"], lines, path)
        migrate_in(connection, "head", log_key=log_key, cipher=cipher)
        for name, (columns, rows) in carried.items():
            table = _CARRIED[name]
            for start in range(0, len(rows), BATCH_SIZE):
                connection.execute(
                    insert(table),
                    [
                        {c: _from_text(c, v) for c, v in zip(columns, row, strict=True)}
                        for row in rows[start : start + BATCH_SIZE]
                    ],
                )
        _rechain_if_asked(connection, header.get("log_chain"), log_key, path)
        check_log_key(connection, log_key)
        _advance_sequences(connection)
        if unfinished:
            connection.execute(
                insert(projection_state).values(
                    name=RESTORE_UNFINISHED, fingerprint=trailer, position=events, rebuilt_at=None
                )
            )
    if revision != LOG_SCHEMA_HEAD:
        clear_old_row_versions(engine)  # an older backup's events were encrypted on the way in
    _log.info("restored %d events from %s", events, path)
    disclosures = len(carried.get("disclosure_log", ([], []))[1])
    return BackupResult(path, events, str(revision), trailer, disclosures)


def finish_restore(engine: Engine) -> None:
    """Record that the restore the database holds is finished (see `restore_log`'s `unfinished`)."""
    with write_transaction(engine) as connection:
        connection.execute(delete(projection_state).where(projection_state.c.name == RESTORE_UNFINISHED))


def _insert_rows(
    connection: Connection, columns: list[str], lines: Iterator[Any], path: Path
) -> tuple[int, dict[str, tuple[list[str], list[list[Any]]]], str]:
    """Insert the event rows as they are read; keep the carried tables' rows (a few: one per
    disclosure) for after the schema reached head. Returns the events, the carried rows by
    table, and the checksum."""
    statement = insert(event_log)
    batch: list[dict[str, Any]] = []
    events = 0
    carried: dict[str, tuple[list[str], list[list[Any]]]] = {}
    section: list[list[Any]] | None = None
    section_columns = columns
    for value in lines:
        if isinstance(value, dict) and value.get("end") is True:
            events += _flush(connection, statement, batch)
            _check_counts(value, _Counted(events, sum(len(rows) for _, rows in carried.values())), path)
            return events, carried, str(value["sha256"])
        if isinstance(value, dict):
            name = _section(value, path)
            section_columns = value["columns"]
            section = []
            carried[name] = (section_columns, section)
            continue
        if not isinstance(value, list) or len(value) != len(section_columns):
            raise BackupError(f"{path}: a row does not have its header's {len(section_columns)} columns")
        if section is not None:
            section.append(value)
            continue
        batch.append({name: _from_text(name, item) for name, item in zip(columns, value, strict=True)})
        if len(batch) >= BATCH_SIZE:
            events += _flush(connection, statement, batch)
            batch = []
    raise BackupError(f"{path} is truncated: it ends before its trailer; nothing was restored")  # pragma: no cover


def _flush(connection: Connection, statement: Any, batch: list[dict[str, Any]]) -> int:
    if batch:
        connection.execute(statement, batch)
    return len(batch)


# ---------------------------------------------------------------------------------------------
# Reading and checking the file
# ---------------------------------------------------------------------------------------------


def _header(first: Any, path: Path) -> dict[str, Any]:
    if first is None:
        raise BackupError(f"{path} is empty")
    header = first
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError(f"{path} is not a DALA events backup")
    if header.get("format_version") not in READABLE_VERSIONS:
        raise BackupError(
            f"{path} is backup format {header.get('format_version')}; this code reads {READABLE_VERSIONS}"
        )
    columns = header.get("columns")
    known = {column.name for column in event_log.columns}
    if not isinstance(columns, list) or not columns or not set(columns) <= known or "position" not in columns:
        raise BackupError(f"{path}: the header's columns {columns!r} are not event_log's")
    if not isinstance(header.get("log_schema"), str):
        raise BackupError(f"{path}: the header names no log schema revision")
    return header


def _chain_record(connection: Connection) -> dict[str, Any] | None:
    """How the backed-up log is chained (`log_chain`'s record), or None before the chain."""
    if not inspect(connection).has_table("log_chain"):
        return None
    found = connection.execute(select(log_chain.c.mode, log_chain.c.key_id).where(log_chain.c.id == 1)).first()
    return None if found is None else {"mode": found.mode, "key_id": found.key_id}


def _rechain_if_asked(connection: Connection, recorded: Any, log_key: LogKey | None, path: Path) -> None:
    """Re-chain the restored rows under `log_key` when the backup's log was chained otherwise:
    from plain SHA-256 only, after checking every chain as it was (so that re-chaining hides no
    change); from another key, LogKeyError: that key is needed to check it."""
    if not isinstance(recorded, dict) or (recorded.get("mode"), recorded.get("key_id")) == (
        chain_mode(log_key),
        None if log_key is None else log_key.key_id,
    ):
        return
    if recorded.get("mode") != "sha256":
        raise LogKeyError(
            f"{path} holds a log chained with the log key of id {recorded.get('key_id')}: restore it with that "
            "key configured; nothing was restored"
        )
    walker = ChainWalker(None)
    for rows in rows_by_stream(connection):
        walker.feed(rows)
    problems = walker.finish()
    if problems:
        raise BackupError(
            f"{path}: its chain does not verify ({problems[0].describe()}), so it is not re-chained under the "
            "log key; nothing was restored"
        )
    rechain_log(connection, log_key)


def _section(value: dict[str, Any], path: Path) -> str:
    """The name of the carried table a section line starts, checked."""
    name = value.get("table")
    table = _CARRIED.get(name) if isinstance(name, str) else None
    columns = value.get("columns")
    if table is None or not isinstance(columns, list) or not set(columns) <= {c.name for c in table.columns}:
        raise BackupError(f"{path}: a section of unknown table {name!r} or columns {columns!r}")
    return str(name)


@dataclass
class _Counted:
    events: int
    disclosures: int


def _check_counts(trailer: dict[str, Any], counted: BackupContents | _Counted, path: Path) -> None:
    if trailer.get("events") != counted.events:
        raise BackupError(
            f"{path} holds {counted.events} events but says {trailer.get('events')}; nothing was restored"
        )
    if trailer.get("disclosures", 0) != counted.disclosures:
        raise BackupError(
            f"{path} holds {counted.disclosures} disclosures but says {trailer.get('disclosures')}; "
            "nothing was restored"
        )


# ---------------------------------------------------------------------------------------------
# Database details
# ---------------------------------------------------------------------------------------------


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction that sees one snapshot of the database for its whole life.

    SQLite (WAL) gives a read transaction one snapshot; PostgreSQL needs REPEATABLE READ for
    several statements to see the same one.
    """
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with read_transaction(engine) as connection:
        yield connection


def _stored_columns(connection: Connection, table: str) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns(table)}


_ROW_ERRORS = (ValueError, DBAPIError)
"""How a damaged row fails to read: a time or a number that does not parse (ValueError), text
that is not UTF-8 (SQLite's driver), a value the driver cannot load."""


def _batches(
    connection: Connection, table: Table, columns: list[str], key: str, left_out: list[LeftOut]
) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows as `columns`, in keyset batches by its integer key `key`. A batch that
    fails to read is read again row by row: each row that cannot be read is added to `left_out`,
    named, and the others are given."""
    selected = [table.c[name] for name in columns]
    after = 0
    while True:
        query = select(*selected).where(table.c[key] > after).order_by(table.c[key]).limit(BATCH_SIZE)
        try:
            with connection.begin_nested():
                rows = [tuple(row) for row in connection.execute(query)]
            after = rows[-1][columns.index(key)] if rows else after
        except _ROW_ERRORS:
            keys = list(
                connection.execute(
                    select(table.c[key]).where(table.c[key] > after).order_by(table.c[key]).limit(BATCH_SIZE)
                ).scalars()
            )
            if not keys:
                raise
            rows = []
            for value in keys:
                row = _one_row(connection, table, selected, key, value, left_out)
                if row is not None:
                    rows.append(row)
            after = keys[-1]
            if not rows:
                continue
        if not rows:
            return
        yield rows


def _one_row(
    connection: Connection, table: Table, selected: list[Any], key: str, value: int, left_out: list[LeftOut]
) -> tuple[Any, ...] | None:
    """The row of `table` whose `key` is `value`, or None, naming it in `left_out`, when it
    cannot be read: each of its columns is then read alone to say which do not."""
    try:
        with connection.begin_nested():
            return tuple(connection.execute(select(*selected).where(table.c[key] == value)).one())
    except _ROW_ERRORS as error:
        failed: dict[str, str] = {}
        read: dict[str, Any] = {}
        for column in selected:
            try:
                with connection.begin_nested():
                    read[column.name] = connection.execute(select(column).where(table.c[key] == value)).scalar()
            except _ROW_ERRORS as column_error:
                failed[column.name] = _first_line(column_error)
        problem = "; ".join(f"{name} cannot be read: {why}" for name, why in failed.items()) or _first_line(error)
        learner_id, version = read.get("learner_id"), read.get("version")
        left_out.append(
            LeftOut(
                table.name,
                value,
                learner_id if isinstance(learner_id, str) else None,
                version if isinstance(version, int) else None,
                problem,
            )
        )
        return None


def _first_line(error: BaseException) -> str:
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]


def _advance_sequences(connection: Connection) -> None:
    """PostgreSQL: the serial sequences of the restored tables continue after the restored rows."""
    if connection.dialect.name != "postgresql":
        return
    for table, key in (("event_log", "position"), ("disclosure_log", "id")):
        connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{key}'), "
                f"COALESCE((SELECT MAX({key}) FROM {table}), 1), (SELECT COUNT(*) > 0 FROM {table}))"
            )
        )


def _from_text(column: str, value: Any) -> Any:
    if column in _TIME_COLUMNS and isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


__all__ = [
    "BackupContents",
    "BackupError",
    "BackupResult",
    "KeyStoreName",
    "LeftOut",
    "backup_log",
    "backup_with_keys",
    "finish_restore",
    "inspect_backup",
    "restore_log",
]
