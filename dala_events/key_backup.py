"""Backups of the key store: the wrapped data keys and the erasures' tombstones, never a master key.

Without a learner's data key their history is unreadable, so the key store is backed up as
carefully as the log, and apart from it. A key backup is a checksummed JSON Lines file
(`checksummed`):

    {"format": "dala-events-key-backup", "format_version": 2, "created_at": ...,
     "key_store": {"location": ..., "id": ..., "master_key_id": ...},
     "complete": true, "damaged": []}                                   the header
    {"key": "ann", "wrapped": "<base64>", "created_at": "...Z"}          one line per data key
    {"tombstone": "bea", "erased_at": "...Z"}                           one line per erasure
    {"end": true, "keys": 2, "tombstones": 1, "sha256": "..."}          the trailer

The keys in it are wrapped by the master key it names: the file alone decrypts nothing, and the
master key is kept elsewhere (see the README's procedure). `backup_keys` reads the key store in
one transaction, so the copy is consistent while writers create learners (a learner's key is
durable before any of their events is committed, so every learner a writer acknowledged before
the backup started is in it). `restore_keys` checks the whole file, then adds its keys and
tombstones to the key store in one transaction: into an empty key store, or merging where no
learner's key or erasure conflicts; nothing is written otherwise.

A damaged key store does not stop the backup: every key that reads back and unwraps under the
master key is copied, and each row that does not is named in the header (`"complete": false`,
`"damaged": [...]`) and in the result. A row whose only damage is its time is copied with the
time left out (`null`; a restore gives it the time of the restore). The key store records what
was found (`SqlKeyStore.record_damage`), and makes no new key while it is recorded; a backup that
finds every row whole clears it. Files of format 1 still restore.

Keep key backups no longer than the erasure deadline allows: a backup made before an erasure
still holds that learner's key (see the README's "Erasure").
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dala_events.checksummed import BackupError, ChecksummedWriter, read_lines, text_time
from dala_events.events import utc_now
from dala_events.store.keys import DamagedKeyRow, KeySnapshot, KeyStore, MasterKeyError, SqlKeyStore

FORMAT = "dala-events-key-backup"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class KeyBackupResult:
    """What a key backup or restore did. `damaged`: the rows of the key store that did not read
    back (a backup's, or the ones a restored file names)."""

    path: Path
    keys: int
    tombstones: int
    store_id: str
    master_key_id: str
    sha256: str | None = None
    learners: frozenset[str] = frozenset()
    """The learners it holds a key or a tombstone of."""
    damaged: tuple[DamagedKeyRow, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.damaged


def backup_keys(
    key_store: KeyStore, destination: str | Path, *, location: str, replace: bool = False
) -> KeyBackupResult:
    """Write a consistent copy of `key_store` (at `location`, named in the header) to
    `destination` (see the module docstring). An existing `destination` is refused
    (BackupError) unless `replace`."""
    snapshot = key_store.snapshot()
    keys, damaged = _unwrapping(key_store, snapshot)
    with ChecksummedWriter(destination, replace=replace) as writer:
        writer.write(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": text_time(utc_now()),
                "key_store": {"location": location, "id": snapshot.store_id, "master_key_id": snapshot.master_key_id},
                "complete": not damaged,
                "damaged": [row.as_dict() for row in damaged],
            }
        )
        for learner_id, wrapped, created_at in keys:
            writer.write(
                {
                    "key": learner_id,
                    "wrapped": base64.b64encode(wrapped).decode(),
                    "created_at": None if created_at is None else text_time(created_at),
                }
            )
        for learner_id, erased_at in snapshot.tombstones:
            writer.write({"tombstone": learner_id, "erased_at": None if erased_at is None else text_time(erased_at)})
        checksum = writer.finish(keys=len(keys), tombstones=len(snapshot.tombstones))
    found = None
    if damaged:
        shown = "; ".join(f"{row.table} row {row.row}, learner {row.learner_id!r}" for row in damaged[:3])
        more = f" and {len(damaged) - 3} more" if len(damaged) > 3 else ""
        found = f"{len(damaged)} rows do not read back ({shown}{more}), found by the key backup {writer.target}"
    key_store.record_damage(found)
    return KeyBackupResult(
        writer.target,
        len(keys),
        len(snapshot.tombstones),
        snapshot.store_id,
        snapshot.master_key_id,
        checksum,
        frozenset(name for name, _, _ in keys) | frozenset(name for name, _ in snapshot.tombstones),
        tuple(damaged),
    )


def _unwrapping(
    key_store: KeyStore, snapshot: KeySnapshot
) -> tuple[list[tuple[str, bytes, datetime | None]], list[DamagedKeyRow]]:
    """The snapshot's keys that unwrap under the master key, and every damaged row (those the
    snapshot found, then those whose key does not unwrap: a restore would refuse the file)."""
    keys = []
    damaged = list(snapshot.damaged)
    for learner_id, wrapped, created_at in snapshot.keys:
        try:
            key_store.master_key.unwrap(learner_id, wrapped)
        except MasterKeyError:
            problem = f"its key does not unwrap under master key {key_store.master_key.key_id}"
            damaged.append(DamagedKeyRow("data_keys", None, learner_id, problem, copied=False))
            continue
        keys.append((learner_id, wrapped, created_at))
    return keys, damaged


def read_key_backup(source: str | Path) -> KeySnapshot:
    """The keys and tombstones of a key backup file, checked whole (BackupError otherwise); its
    `damaged` are the rows the file says were not copied whole."""
    path = Path(source)
    keys: list[tuple[str, bytes, datetime | None]] = []
    tombstones: list[tuple[str, datetime | None]] = []
    with path.open("rb") as file:
        lines = read_lines(file, path, "nothing was restored")
        header = next(lines, None)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise BackupError(f"{path} is not a DALA events key backup")
        if header.get("format_version") not in READABLE_VERSIONS:
            raise BackupError(
                f"{path} is key backup format {header.get('format_version')}; this code reads {READABLE_VERSIONS}"
            )
        named = header.get("key_store")
        if not isinstance(named, dict) or not isinstance(named.get("master_key_id"), str):
            raise BackupError(f"{path}: the header names no key store")
        damaged = [_damaged_row(row, path) for row in header.get("damaged") or []]
        for value in lines:
            if not isinstance(value, dict):
                raise BackupError(f"{path}: a line is not a key or a tombstone; nothing was restored")
            if value.get("end") is True:
                if value.get("keys") != len(keys) or value.get("tombstones") != len(tombstones):
                    raise BackupError(f"{path}: its counts do not match its lines; nothing was restored")
                return KeySnapshot(str(named.get("id")), named["master_key_id"], keys, tombstones, damaged)
            if "key" in value:
                keys.append((_text(value, "key", path), _wrapped(value, path), _time(value, "created_at", path)))
            elif "tombstone" in value:
                tombstones.append((_text(value, "tombstone", path), _time(value, "erased_at", path)))
            else:
                raise BackupError(f"{path}: a line is not a key or a tombstone; nothing was restored")
    raise BackupError(f"{path} is truncated: it ends before its trailer; nothing was restored")  # pragma: no cover


def restore_keys(key_store: SqlKeyStore, source: str | Path) -> KeyBackupResult:
    """Add a key backup's keys and tombstones to `key_store` (see the module docstring)."""
    snapshot = read_key_backup(source)
    keys, tombstones = key_store.load_snapshot(snapshot)
    return KeyBackupResult(
        Path(source), keys, tombstones, snapshot.store_id, snapshot.master_key_id, damaged=tuple(snapshot.damaged)
    )


def _text(value: dict[str, Any], name: str, path: Path) -> str:
    found = value.get(name)
    if not isinstance(found, str) or not found:
        raise BackupError(f"{path}: a line has no {name}; nothing was restored")
    return found


def _wrapped(value: dict[str, Any], path: Path) -> bytes:
    try:
        return base64.b64decode(_text(value, "wrapped", path), validate=True)
    except binascii.Error:
        raise BackupError(f"{path}: the key of {value.get('key')!r} is not base64; nothing was restored") from None


def _time(value: dict[str, Any], name: str, path: Path) -> datetime | None:
    if value.get(name) is None:
        return None  # the key store's row had a time that did not read back
    try:
        return datetime.fromisoformat(_text(value, name, path).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise BackupError(f"{path}: {name} of a line is not a time; nothing was restored") from None


def _damaged_row(row: Any, path: Path) -> DamagedKeyRow:
    if not isinstance(row, dict):
        raise BackupError(f"{path}: the header's damaged rows are not rows; nothing was restored")
    number = row.get("row")
    return DamagedKeyRow(
        str(row.get("table")),
        number if isinstance(number, int) else None,
        str(row.get("learner_id")),
        str(row.get("problem")),
        bool(row.get("copied")),
    )
