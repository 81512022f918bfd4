"""Checksummed JSON Lines files: what the log's and the keys' backups are written as.

A file is a header line, any number of lines, and a trailer `{"end": true, ..., "sha256": H}`
where H is the SHA-256 of every byte before the trailer. `ChecksummedWriter` writes one beside
its destination (readable by its owner only: it holds children's data or their keys), fsyncs
it and renames it into place, so a reader never sees half a file. `read_lines` yields each
line's value and checks the trailer, so a truncated or altered file is refused (`BackupError`)
before whoever reads it commits anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from dala_events.errors import DalaError


class BackupError(DalaError):
    """A backup file that cannot be restored (truncated, altered, of another format or version);
    nothing was written."""


def text_time(moment: datetime) -> str:
    """A time as written in backups: RFC 3339 in UTC with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_line(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class ChecksummedWriter:
    """Writes a checksummed file to `destination` atomically (see the module docstring)."""

    def __init__(self, destination: str | Path) -> None:
        self.target = Path(destination)
        if self.target.is_dir():
            raise BackupError(f"{self.target} is a directory; give a file name")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._digest = hashlib.sha256()
        handle, self._temporary = tempfile.mkstemp(
            prefix=f".{self.target.name}.", suffix=".partial", dir=self.target.parent
        )
        self._file: IO[bytes] = os.fdopen(handle, "wb")  # mkstemp makes it 0600
        self.checksum: str | None = None

    def write(self, value: Any) -> None:
        """Add one line holding `value` (JSON)."""
        line = encode_line(value)
        self._digest.update(line)
        self._file.write(line)

    def finish(self, **trailer: Any) -> str:
        """Write the trailer (`trailer`'s fields, the end mark and the checksum), make the file
        durable and move it into place; returns the checksum."""
        self.checksum = self._digest.hexdigest()
        self._file.write(encode_line({"end": True, **trailer, "sha256": self.checksum}))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temporary, self.target)
        return self.checksum

    def __enter__(self) -> ChecksummedWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.checksum is None:  # not finished: leave nothing behind
            self._file.close()
            Path(self._temporary).unlink(missing_ok=True)


def read_lines(file: IO[bytes], path: Path, what: str = "nothing was restored") -> Iterator[Any]:
    """Each line's JSON value up to the trailer, then the trailer itself once its checksum is
    checked against every line before it; BackupError (ending with `what`) for a truncated,
    damaged or altered file."""
    digest = hashlib.sha256()
    for number, raw in enumerate(file, start=1):
        if not raw.endswith(b"\n"):
            raise BackupError(f"{path} is truncated in line {number}; {what}")
        try:
            value = json.loads(raw)
        except ValueError:
            raise BackupError(f"{path}: line {number} is not JSON; the file is damaged; {what}") from None
        if isinstance(value, dict) and value.get("end") is True:
            if value.get("sha256") != digest.hexdigest():
                raise BackupError(f"{path} was altered: its checksum does not match its contents; {what}")
            yield value
            return
        digest.update(raw)
        yield value
    raise BackupError(f"{path} is truncated: it ends before its trailer; {what}")
