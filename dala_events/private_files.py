"""Files that hold a child's data in the clear (a page, an export): where one may be written is
checked before anything is recorded or written, and it is created readable by its owner only.

A destination that cannot take the file (a device such as /dev/full, a folder, a missing
folder, a full or read-only file system) is refused first, with InvalidInput naming the option
or argument, the path and, in words, what is wrong: an export or a page must not be recorded
as disclosed, nor a demo's events written, when its file would never be.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from dala_events.errors import InvalidInput, in_words

PROBE_BYTES = 64 * 1024
"""What a destination's file system is asked to take, and to make durable, before the real
file is written: enough that a full disk says so here (a file system keeps a little room)."""


def check_destination(path: Path, *, name: str, create_folder: bool) -> None:
    """Refuse, before anything is recorded or written, a `path` no file can be written to:
    something that is not a regular file there (a folder, a device), its folder missing
    (made, parents too, when `create_folder`), or a file system that will not take and keep
    PROBE_BYTES in that folder (full, read-only, not ours). InvalidInput names `name` (e.g.
    `--out`), the path and why. What is there stays as it was."""
    if path.exists() and not path.is_file():
        raise InvalidInput(name, f"{path} is not a file (a folder or a device); give a file's path")
    folder = path.parent
    if create_folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InvalidInput(name, f"cannot make the folder {folder} for {path}: {in_words(error)}") from None
    elif folder.exists() and not folder.is_dir():
        raise InvalidInput(name, f"cannot write {path}: {folder} is not a folder")
    elif not folder.exists():
        raise InvalidInput(name, f"cannot write {path}: the folder {folder} does not exist (make it first)")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as error:
        raise InvalidInput(name, f"cannot write {path}: {in_words(error)} in {folder}") from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(b"\0" * PROBE_BYTES)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        raise InvalidInput(name, f"cannot write {path}: {in_words(error)} in {folder}") from None
    finally:
        Path(probe).unlink(missing_ok=True)
    if path.exists() and not os.access(path, os.W_OK):
        raise InvalidInput(name, f"cannot write {path}: permission denied")


def open_private(path: Path, *, name: str) -> BinaryIO:
    """`path` opened to write, after `check_destination` (its folder must exist), emptied; a new
    file is made readable and writable by its owner only (0600)."""
    check_destination(path, name=name, create_folder=False)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as error:
        raise InvalidInput(name, f"cannot write {path}: {in_words(error)}") from None
    return os.fdopen(descriptor, "wb")


__all__ = ["PROBE_BYTES", "check_destination", "open_private"]
