"""Checksummed JSON Lines files: what the log's and the keys' backups are written as.

A file is a header line, any number of lines, and a trailer `{"end": true, ..., "sha256": H}`
where H is the SHA-256 of every byte before the trailer. `ChecksummedWriter` writes one beside
its destination (readable by its owner only: it holds children's data or their keys), fsyncs
it and renames it into place, so a reader never sees half a file. It refuses a destination
that exists unless told to replace it, and when writing fails (a full disk, a file too large)
it removes what it wrote and says which file and which folder. `read_lines` yields each line's
value and checks the trailer, so a truncated or altered file is refused (`BackupError`) before
whoever reads it commits anything.
"""

from __future__ import annotations

import errno
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
    """Writes a checksummed file to `destination` atomically (see the module docstring).

    An existing `destination` is refused (BackupError, nothing written) unless `replace`: a
    backup never overwrites another without being told to. Any failure to write (a full disk, a
    file too large, a folder that cannot be written) is a BackupError naming the file and its
    folder, and the partial file is removed."""

    def __init__(self, destination: str | Path, *, replace: bool = False) -> None:
        self.target = Path(destination)
        self.replace = replace
        check_destination(self.target, replace=replace)
        self._digest = hashlib.sha256()
        self._temporary: str | None = None
        self.checksum: str | None = None
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            handle, self._temporary = tempfile.mkstemp(
                prefix=f".{self.target.name}.", suffix=".partial", dir=self.target.parent
            )
            self._file: IO[bytes] = os.fdopen(handle, "wb")  # mkstemp makes it 0600
        except OSError as error:
            raise self._failed(error) from error

    def write(self, value: Any) -> None:
        """Add one line holding `value` (JSON)."""
        line = encode_line(value)
        self._digest.update(line)
        try:
            self._file.write(line)
        except OSError as error:
            raise self._failed(error) from error

    def finish(self, **trailer: Any) -> str:
        """Write the trailer (`trailer`'s fields, the end mark and the checksum), make the file
        durable and move it into place; returns the checksum."""
        checksum = self._digest.hexdigest()
        try:
            self._file.write(encode_line({"end": True, **trailer, "sha256": checksum}))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            check_destination(self.target, replace=self.replace)  # made meanwhile by someone else
            assert self._temporary is not None
            os.replace(self._temporary, self.target)
        except OSError as error:
            raise self._failed(error) from error
        self.checksum = checksum
        return checksum

    def _failed(self, error: OSError) -> BackupError:
        """`error` as a BackupError naming the file and its folder (the disk, when it is full),
        once the partial file is removed."""
        self._discard()
        folder = self.target.parent.resolve()
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            why = f"no space left on the disk holding {folder}"
        elif error.errno == errno.EFBIG:
            why = f"the file grew larger than this process may write in {folder}"
        else:
            why = f"{error.strerror or error} (in {folder})"
        return BackupError(f"cannot write {self.target}: {why}; nothing was left behind")

    def _discard(self) -> None:
        """Close and remove the partial file, whatever closing says (a full disk fails the
        flush that closing makes)."""
        try:
            if hasattr(self, "_file"):
                self._file.close()
        except OSError:
            pass
        finally:
            if self._temporary is not None:
                Path(self._temporary).unlink(missing_ok=True)

    def __enter__(self) -> ChecksummedWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.checksum is None:  # not finished: leave nothing behind
            self._discard()


def check_destination(target: Path, *, replace: bool) -> None:
    """BackupError when `target` cannot be written to: a folder, or a file that exists while
    `replace` is off (a backup never overwrites another without being told to)."""
    if target.is_dir():
        raise BackupError(f"{target} is a directory; give a file name")
    if not replace and (target.exists() or target.is_symlink()):
        raise BackupError(
            f"{target} exists already: give another file name, or replace it (--force); nothing was written"
        )


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
