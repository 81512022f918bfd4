"""Backups of the event log that restore anywhere: SQLite to PostgreSQL and back.

A backup is one portable text file (JSON Lines):

    {"format": "dala-events-backup", "format_version": 1, "created_at": ..., "log_schema": "0002",
     "source": "sqlite", "columns": ["position", "event_id", ...]}      the header
    [1, "0192...", "ann", 1, "LearnerProfileCreated", 1, "2026-...Z", "2026-...Z", "{}", "{...}"]
    ...                                                                  one row per event
    {"end": true, "events": 26, "sha256": "..."}                          the trailer

Every row holds the stored columns exactly as the database holds them (payload and metadata as
their stored text, times as RFC 3339 UTC), in log order. The trailer's `sha256` is the hash of
every byte before it, so a truncated or altered file is refused before anything is committed.

`backup_log` reads the log in one read transaction (a snapshot: writers keep writing and the
backup is still consistent) and writes the file beside its destination, renaming it into place
at the end. `restore_log` streams a file into an empty database inside one transaction: the
log's schema is brought to the backup's revision, the rows are inserted, the schema is migrated
to this code's head, and only then is anything committed; then the read models are rebuilt
from the restored log. An interrupted restore leaves the database without a single event.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, func, insert, inspect, select, text

from dala_events.dialects import read_transaction, write_transaction
from dala_events.errors import DalaError, RefusedToDestroy
from dala_events.events import utc_now
from dala_events.schema import LOG_SCHEMA_HEAD, CipherChoice, clear_old_row_versions, log_schema_revision, migrate_in
from dala_events.store import LogKey, event_log
from dala_events.store.sql import check_log_key

FORMAT = "dala-events-backup"
FORMAT_VERSION = 1
BATCH_SIZE = 5_000
_TIME_COLUMNS = frozenset({"occurred_at", "recorded_at"})

_log = logging.getLogger("dala_events.backup")


class BackupError(DalaError):
    """A backup file that cannot be restored (truncated, altered, of another format or version);
    nothing was written."""


@dataclass(frozen=True)
class BackupResult:
    """What a backup or a restore did."""

    path: Path
    events: int
    log_schema: str
    sha256: str


def backup_log(engine: Engine, destination: str | Path) -> BackupResult:
    """Write a consistent backup of the whole event log to `destination` (see the module docstring)."""
    target = Path(destination)
    if target.is_dir():
        raise BackupError(f"{target} is a directory; give a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as file, _snapshot(engine) as connection:
            # A log older than the migrations is revision 0001's table (see database_setup).
            revision = log_schema_revision(connection) or "0001"
            columns = [column.name for column in event_log.columns if column.name in _stored_columns(connection)]
            header = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": _text_time(utc_now()),
                "log_schema": revision,
                "source": connection.dialect.name,
                "columns": columns,
            }
            _write_line(file, digest, header)
            events = 0
            for rows in _batches(connection, columns):
                for row in rows:
                    _write_line(file, digest, [_text_time(v) if isinstance(v, datetime) else v for v in row])
                events += len(rows)
            checksum = digest.hexdigest()
            file.write(_encode({"end": True, "events": events, "sha256": checksum}))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _log.info("backed up %d events to %s", events, target)
    return BackupResult(target, events, revision, checksum)


def restore_log(
    engine: Engine, source: str | Path, *, log_key: LogKey | None = None, cipher: CipherChoice = None
) -> BackupResult:
    """Restore the event log of a backup file into the empty database of `engine`.

    Refuses (RefusedToDestroy) a database whose log holds events, and (BackupError) a file that
    is not a whole, unaltered backup; in either case nothing is written. Read models are not
    rebuilt here: see `dala restore`, or call `projections.rebuild.rebuild(engine)`. A backup
    older than the hash chain is chained with `log_key` as the migration brings it to this
    code's schema; the restored log is then recorded as chained with `log_key`. A backup older
    than encryption at rest is encrypted on the way in with `cipher` (migration 0005).
    """
    path = Path(source)
    with path.open("rb") as file, write_transaction(engine) as connection:
        lines = _lines(file, path)
        header = _header(next(lines, None), path)
        existing = set(inspect(connection).get_table_names())
        if "event_log" in existing:
            held = connection.execute(select(func.count()).select_from(event_log)).scalar_one()
            if held:
                raise RefusedToDestroy(
                    f"refusing to restore into a database whose event log holds {held} events; "
                    "restore into a new, empty database"
                )
        revision = header["log_schema"]
        migrate_in(connection, revision, log_key=log_key, cipher=cipher)
        columns: list[str] = header["columns"]
        events, trailer = _insert_rows(connection, insert(event_log), columns, lines, path)
        migrate_in(connection, "head", log_key=log_key, cipher=cipher)
        check_log_key(connection, log_key)
        _advance_position_sequence(connection)
    if revision != LOG_SCHEMA_HEAD:
        clear_old_row_versions(engine)  # an older backup's events were encrypted on the way in
    _log.info("restored %d events from %s", events, path)
    return BackupResult(path, events, str(revision), trailer)


def _insert_rows(
    connection: Connection, statement: Any, columns: list[str], lines: Iterator[tuple[bytes, Any]], path: Path
) -> tuple[int, str]:
    batch: list[dict[str, Any]] = []
    events = 0
    for raw, value in lines:
        if isinstance(value, dict):
            return events + _flush(connection, statement, batch), _trailer(value, raw, events + len(batch), path)
        if not isinstance(value, list) or len(value) != len(columns):
            raise BackupError(
                f"{path}: row {events + len(batch) + 1} does not have the header's {len(columns)} columns"
            )
        batch.append({name: _from_text(name, item) for name, item in zip(columns, value, strict=True)})
        if len(batch) >= BATCH_SIZE:
            events += _flush(connection, statement, batch)
            batch = []
    raise BackupError(f"{path} is truncated: it ends before its trailer; nothing was restored")


def _flush(connection: Connection, statement: Any, batch: list[dict[str, Any]]) -> int:
    if batch:
        connection.execute(statement, batch)
    return len(batch)


# ---------------------------------------------------------------------------------------------
# Reading and checking the file
# ---------------------------------------------------------------------------------------------


def _lines(file: IO[bytes], path: Path) -> Iterator[tuple[bytes, Any]]:
    """Each line and its JSON value; for the trailer, the hash of every line before it instead
    of the line itself (what the trailer's checksum must equal)."""
    digest = hashlib.sha256()
    for number, raw in enumerate(file, start=1):
        if not raw.endswith(b"\n"):
            raise BackupError(f"{path} is truncated in line {number}; nothing was restored")
        try:
            value = json.loads(raw)
        except ValueError:
            raise BackupError(f"{path}: line {number} is not JSON; the file is damaged; nothing was restored") from None
        if isinstance(value, dict) and value.get("end") is True:
            yield digest.hexdigest().encode(), value
            return
        digest.update(raw)
        yield raw, value


def _header(first: tuple[bytes, Any] | None, path: Path) -> dict[str, Any]:
    if first is None:
        raise BackupError(f"{path} is empty")
    header = first[1]
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError(f"{path} is not a DALA events backup")
    if header.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"{path} is backup format {header.get('format_version')}; this code reads {FORMAT_VERSION}")
    columns = header.get("columns")
    known = {column.name for column in event_log.columns}
    if not isinstance(columns, list) or not columns or not set(columns) <= known or "position" not in columns:
        raise BackupError(f"{path}: the header's columns {columns!r} are not event_log's")
    if not isinstance(header.get("log_schema"), str):
        raise BackupError(f"{path}: the header names no log schema revision")
    return header


def _trailer(trailer: dict[str, Any], computed: bytes, events: int, path: Path) -> str:
    checksum = computed.decode()
    if trailer.get("sha256") != checksum:
        raise BackupError(f"{path} was altered: its checksum does not match its contents; nothing was restored")
    if trailer.get("events") != events:
        raise BackupError(f"{path} holds {events} events but says {trailer.get('events')}; nothing was restored")
    return checksum


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


def _stored_columns(connection: Connection) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns("event_log")}


def _batches(connection: Connection, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
    selected = [event_log.c[name] for name in columns]
    after = 0
    while True:
        query = select(*selected).where(event_log.c.position > after).order_by(event_log.c.position).limit(BATCH_SIZE)
        rows = [tuple(row) for row in connection.execute(query)]
        if not rows:
            return
        yield rows
        after = rows[-1][columns.index("position")]


def _advance_position_sequence(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(
            text(
                "SELECT setval(pg_get_serial_sequence('event_log', 'position'), "
                "COALESCE((SELECT MAX(position) FROM event_log), 1), "
                "(SELECT COUNT(*) > 0 FROM event_log))"
            )
        )


def _text_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _from_text(column: str, value: Any) -> Any:
    if column in _TIME_COLUMNS and isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def _encode(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _write_line(file: IO[bytes], digest: Any, value: Any) -> None:
    line = _encode(value)
    digest.update(line)
    file.write(line)


__all__ = ["BackupError", "BackupResult", "backup_log", "restore_log"]
