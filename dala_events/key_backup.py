"""Backups of the key store: the wrapped data keys and the erasures' tombstones, never a master key.

Without a learner's data key their history is unreadable, so the key store is backed up as
carefully as the log, and apart from it. A key backup is a checksummed JSON Lines file
(`checksummed`):

    {"format": "dala-events-key-backup", "format_version": 1, "created_at": ...,
     "key_store": {"location": ..., "id": ..., "master_key_id": ...}}   the header
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
from dala_events.store.keys import KeySnapshot, KeyStore, SqlKeyStore

FORMAT = "dala-events-key-backup"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class KeyBackupResult:
    """What a key backup or restore did."""

    path: Path
    keys: int
    tombstones: int
    store_id: str
    master_key_id: str
    sha256: str | None = None
    learners: frozenset[str] = frozenset()
    """The learners it holds a key or a tombstone of."""


def backup_keys(
    key_store: KeyStore, destination: str | Path, *, location: str, replace: bool = False
) -> KeyBackupResult:
    """Write a consistent copy of `key_store` (at `location`, named in the header) to
    `destination` (see the module docstring). An existing `destination` is refused
    (BackupError) unless `replace`."""
    snapshot = key_store.snapshot()
    with ChecksummedWriter(destination, replace=replace) as writer:
        writer.write(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": text_time(utc_now()),
                "key_store": {"location": location, "id": snapshot.store_id, "master_key_id": snapshot.master_key_id},
            }
        )
        for learner_id, wrapped, created_at in snapshot.keys:
            writer.write(
                {"key": learner_id, "wrapped": base64.b64encode(wrapped).decode(), "created_at": text_time(created_at)}
            )
        for learner_id, erased_at in snapshot.tombstones:
            writer.write({"tombstone": learner_id, "erased_at": text_time(erased_at)})
        checksum = writer.finish(keys=len(snapshot.keys), tombstones=len(snapshot.tombstones))
    return KeyBackupResult(
        writer.target,
        len(snapshot.keys),
        len(snapshot.tombstones),
        snapshot.store_id,
        snapshot.master_key_id,
        checksum,
        frozenset(name for name, _, _ in snapshot.keys) | frozenset(name for name, _ in snapshot.tombstones),
    )


def read_key_backup(source: str | Path) -> KeySnapshot:
    """The keys and tombstones of a key backup file, checked whole (BackupError otherwise)."""
    path = Path(source)
    keys: list[tuple[str, bytes, datetime]] = []
    tombstones: list[tuple[str, datetime]] = []
    with path.open("rb") as file:
        lines = read_lines(file, path, "nothing was restored")
        header = next(lines, None)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise BackupError(f"{path} is not a DALA events key backup")
        if header.get("format_version") != FORMAT_VERSION:
            raise BackupError(f"{path} is key backup format {header.get('format_version')}; this code reads 1")
        named = header.get("key_store")
        if not isinstance(named, dict) or not isinstance(named.get("master_key_id"), str):
            raise BackupError(f"{path}: the header names no key store")
        for value in lines:
            if not isinstance(value, dict):
                raise BackupError(f"{path}: a line is not a key or a tombstone; nothing was restored")
            if value.get("end") is True:
                if value.get("keys") != len(keys) or value.get("tombstones") != len(tombstones):
                    raise BackupError(f"{path}: its counts do not match its lines; nothing was restored")
                return KeySnapshot(str(named.get("id")), named["master_key_id"], keys, tombstones)
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
    return KeyBackupResult(Path(source), keys, tombstones, snapshot.store_id, snapshot.master_key_id)


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


def _time(value: dict[str, Any], name: str, path: Path) -> datetime:
    try:
        return datetime.fromisoformat(_text(value, name, path).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise BackupError(f"{path}: {name} of a line is not a time; nothing was restored") from None
