"""Encryption at rest: each learner's data key, wrapped by a master key, in a key store kept
apart from the event database, and the cipher the codec encrypts payloads and reasons with.

- `MasterKey`: 32 bytes (AES-256). It never encrypts data, only wraps data keys
  (AES-256-GCM, the learner id as associated data, so a wrapped key cannot be moved to another
  learner). Its `key_id` (an HMAC of a fixed text) names it without revealing it.
- `KeyStore`: a learner's data key by learner id, created on first write. `MemoryKeyStore`
  for the in-memory store and tests; `SqlKeyStore` in its own database (by default a small
  SQLite file beside the event database, see `database_setup`). A key store records the
  `key_id` of the master key that wraps its keys and refuses any other (`MasterKeyError`), so a
  wrong master key is noticed before anything is written or decrypted.
- `LogCipher`: AES-256-GCM under the learner's data key, with the event's envelope (learner
  id, version, event type, schema version and which field) as associated data, so ciphertext
  copied to another event, stream or field does not decrypt. Encrypted text is
  `ENCRYPTED_PREFIX` followed by base64 of the 12-byte nonce and the ciphertext.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import secrets
import string
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    cast,
    insert,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import BindParameter

from dala_events.dialects import DriverStatement, once_per_dialect, read_transaction, write_transaction
from dala_events.errors import DalaError, InvalidInput

MASTER_KEY_BYTES = 32
DATA_KEY_BYTES = 32
NONCE_BYTES = 12
ENCRYPTED_PREFIX = "dala-aes256gcm/1:"
"""The start of every encrypted text in the log (a payload, or the reason inside metadata)."""

_KEY_ID_MESSAGE = b"dala-events master key id"
_WRAP_FORMAT = b"dala-data-key/1\n"
_AAD_FORMAT = "dala-event-field/1\n"
_PREFIX_LENGTH = len(ENCRYPTED_PREFIX)


class KeyStoreError(DalaError):
    """The key store cannot be used: missing while the log holds encrypted events, unreadable,
    damaged, or refused by its database. The message names the key store and what to restore."""


class KeyStoreMissing(KeyStoreError):
    """No key store where one is needed: the log holds encrypted events it would decrypt."""


class MasterKeyError(KeyStoreError):
    """The master key is missing, malformed, or not the one the key store's keys are wrapped with."""


class DataKeyMissing(DalaError):
    """A learner's data key is not in the key store (the wrong key store, or a key not restored)."""

    def __init__(self, learner_id: str, message: str | None = None) -> None:
        self.learner_id = learner_id
        super().__init__(
            message
            or f"learner {learner_id!r}: no data key in the key store; their events cannot be decrypted: restore "
            "their key from a key backup (`dala keys restore FILE`)"
        )


class DataKeyErased(DalaError):
    """A learner's data key was destroyed by their erasure: their encrypted content is unreadable
    for good, and no new key is made for them."""

    def __init__(self, learner_id: str, erased_at: datetime) -> None:
        self.learner_id = learner_id
        self.erased_at = erased_at
        super().__init__(
            f"learner {learner_id!r}: the data key was destroyed at {erased_at:%Y-%m-%d %H:%M:%S} UTC "
            "(the learner was erased)"
        )


class MasterKey:
    """The key that wraps every data key: exactly 32 bytes."""

    __slots__ = ("_aead", "_secret", "key_id")

    def __init__(self, secret: bytes, *, source: str = "master key") -> None:
        if not isinstance(secret, bytes) or len(secret) != MASTER_KEY_BYTES:
            got = len(secret) if isinstance(secret, bytes) else type(secret).__name__
            raise MasterKeyError(f"{source}: must be exactly {MASTER_KEY_BYTES} bytes (64 hex digits), got {got}")
        self._secret = secret
        self._aead = AESGCM(secret)
        self.key_id = hmac.new(secret, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]

    @classmethod
    def from_hex(cls, text: str, *, source: str = "master key") -> MasterKey:
        """The key written as 64 hex digits (`openssl rand -hex 32` makes one)."""
        if not isinstance(text, str):
            raise MasterKeyError(f"{source}: must be hex digits (str), not {type(text).__name__}")
        digits = "".join(text.split())
        if not all(c in string.hexdigits for c in digits):
            raise MasterKeyError(f"{source}: must be hex digits (e.g. the output of `openssl rand -hex 32`)")
        if len(digits) != 2 * MASTER_KEY_BYTES:  # hex digits all, but too few or too many
            raise MasterKeyError(
                f"{source}: must be exactly {MASTER_KEY_BYTES} bytes ({2 * MASTER_KEY_BYTES} hex digits, e.g. the "
                f"output of `openssl rand -hex 32`), got {len(digits)} hex digits"
            )
        return cls(bytes.fromhex(digits), source=source)

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(MASTER_KEY_BYTES))

    def hex(self) -> str:
        return self._secret.hex()

    def wrap(self, learner_id: str, data_key: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, _WRAP_FORMAT + learner_id.encode())

    def unwrap(self, learner_id: str, wrapped: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _WRAP_FORMAT + learner_id.encode())
        except InvalidTag:
            raise MasterKeyError(
                f"learner {learner_id!r}: the data key does not unwrap under master key {self.key_id} "
                "(the wrong master key, or a damaged key store)"
            ) from None

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"


def write_secret_file(path: str, text: str, *, durable: bool = False) -> None:
    """Create `path` holding `text`, readable and writable by its owner only (0600); never
    overwrites an existing file. `durable`: on disk before this returns (fsync)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
        if durable:
            file.flush()
            os.fsync(file.fileno())


class KeyStore(ABC):
    """Learners' data keys, wrapped by one master key, and the record of the keys destroyed by
    an erasure (learner id and when: no key material), so an erased learner's content reads as
    erased, never as a missing key, and no new key is made for them."""

    store_id: str = "in memory"
    """The key store's own id (random, made when it was created): backups name it."""
    location: str = "in memory"
    """Where it is, for people: a file path or a URL without its password."""

    def __init__(self, master_key: MasterKey) -> None:
        self.master_key = master_key

    def data_key(self, learner_id: str, *, create: bool = False) -> bytes:
        """The learner's data key; a new one when they have none and `create`, else DataKeyMissing.
        DataKeyErased once their key was destroyed, `create` or not."""
        if not create:
            wrapped = self._load(learner_id)
            if wrapped is not None:
                return self.master_key.unwrap(learner_id, wrapped)
            erased_at = self.erased_at(learner_id)
            if erased_at is not None:
                raise DataKeyErased(learner_id, erased_at)
            raise DataKeyMissing(learner_id)
        # One step: the key already stored, or this new one (the erasures checked there).
        data_key = secrets.token_bytes(DATA_KEY_BYTES)
        wrapped = self.master_key.wrap(learner_id, data_key)
        stored = self._store_new(learner_id, wrapped)
        return data_key if stored is wrapped else self.master_key.unwrap(learner_id, stored)

    def destroy(self, learner_id: str, at: datetime | None = None) -> bool:
        """Crypto-shred the learner: delete their data key and record when (`at`, by default
        now), in one step. Idempotent; returns whether a key was there to delete."""
        return self._destroy(learner_id, at or datetime.now(UTC))

    @abstractmethod
    def erased_at(self, learner_id: str) -> datetime | None:
        """When the learner's data key was destroyed; None if it never was."""

    def rotate(self, new_master_key: MasterKey) -> int:
        """Re-wrap every data key under `new_master_key` (the log is not touched); returns how many."""
        count = self._rewrap(
            lambda learner_id, wrapped: new_master_key.wrap(learner_id, self.master_key.unwrap(learner_id, wrapped)),
            new_master_key.key_id,
        )
        self.master_key = new_master_key
        return count

    @abstractmethod
    def snapshot(self) -> KeySnapshot:
        """Every wrapped data key and tombstone, as one consistent copy (never the master key)."""

    def record_damage(self, found: str | None) -> None:
        """Record rows found not to read back (None: none); only a stored key store has rows."""
        return None

    def key_created_at(self, learner_id: str) -> datetime | None:
        """When the learner's data key was made: every key backup taken since holds it (None:
        they have no key, or its time is not kept)."""
        return None

    @abstractmethod
    def _load(self, learner_id: str) -> bytes | None: ...

    @abstractmethod
    def _store_new(self, learner_id: str, wrapped: bytes) -> bytes:
        """Store `wrapped` unless the learner has a key already; the stored one either way (the
        very object `wrapped` when it was stored). DataKeyErased, storing nothing, when the
        learner's key was destroyed: checked in the same step as the insert."""

    @abstractmethod
    def _rewrap(self, rewrap: object, new_key_id: str) -> int: ...

    @abstractmethod
    def _destroy(self, learner_id: str, at: datetime) -> bool:
        """Delete the key and record the erasure at `at` (keeping an earlier record); whether a
        key was there."""


class MemoryKeyStore(KeyStore):
    """Data keys in a dict: for the in-memory store and tests."""

    def __init__(self, master_key: MasterKey | None = None) -> None:
        super().__init__(master_key or MasterKey.generate())
        self._keys: dict[str, bytes] = {}
        self._erased: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def _load(self, learner_id: str) -> bytes | None:
        return self._keys.get(learner_id)

    def _store_new(self, learner_id: str, wrapped: bytes) -> bytes:
        with self._lock:
            if learner_id in self._keys:
                return self._keys[learner_id]
            if learner_id in self._erased:
                raise DataKeyErased(learner_id, self._erased[learner_id])
            self._keys[learner_id] = wrapped
            return wrapped

    def _rewrap(self, rewrap: object, new_key_id: str) -> int:
        with self._lock:
            self._keys = {name: rewrap(name, wrapped) for name, wrapped in self._keys.items()}  # type: ignore[operator]
            return len(self._keys)

    def erased_at(self, learner_id: str) -> datetime | None:
        return self._erased.get(learner_id)

    def _destroy(self, learner_id: str, at: datetime) -> bool:
        with self._lock:
            self._erased.setdefault(learner_id, at)
            return self._keys.pop(learner_id, None) is not None

    def snapshot(self) -> KeySnapshot:
        with self._lock:
            now = datetime.now(UTC)
            return KeySnapshot(
                store_id=self.store_id,
                master_key_id=self.master_key.key_id,
                keys=[(name, wrapped, now) for name, wrapped in sorted(self._keys.items())],
                tombstones=sorted(self._erased.items()),
            )


_metadata = MetaData()
data_keys = Table(
    "data_keys",
    _metadata,
    Column("learner_id", String(200), primary_key=True),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
erased_keys = Table(
    "erased_keys",
    _metadata,
    Column("learner_id", String(200), primary_key=True),
    Column("erased_at", DateTime(timezone=True), nullable=False),
)
"""The learners whose data key an erasure destroyed, and when: what tells erased content from a
missing key, and refuses the id a new key."""
key_store_info = Table(
    "key_store_info",
    _metadata,
    Column("name", String(50), primary_key=True),
    Column("value", String(200), nullable=False),
)


class SqlKeyStore(KeyStore):
    """Data keys in a database of their own (SQLite file or PostgreSQL), apart from the log.

    Opening it checks the master key: the store records the `key_id` of the key that wraps
    its keys, and any other key is refused with MasterKeyError before anything is read or written.
    It also records an id of its own (`store_id`, random, made when it is created), which
    backups of the log and of the keys name. Every failure of its database (missing, damaged,
    unreadable, refused) is a KeyStoreError naming `location`, never the driver's exception.
    """

    def __init__(self, engine: Engine, master_key: MasterKey, *, location: str | None = None) -> None:
        super().__init__(master_key)
        self.engine = engine
        self.location = location or engine.url.render_as_string(hide_password=True)
        with self._named():
            _metadata.create_all(engine)
            with write_transaction(engine) as connection:
                recorded = _info(connection, "master_key_id")
                if recorded is None:
                    _record_info(connection, "master_key_id", master_key.key_id)
                self.store_id = _info(connection, "store_id") or _record_info(
                    connection, "store_id", secrets.token_hex(8)
                )
        if recorded is not None and recorded != master_key.key_id:
            raise MasterKeyError(
                f"the key store {self.location} holds data keys wrapped with master key {recorded}, "
                f"not with the configured one ({master_key.key_id}); nothing was read or written"
            )

    @contextmanager
    def _named(self) -> Iterator[None]:
        """Database and file failures as KeyStoreError naming this key store."""
        try:
            yield
        except (SQLAlchemyError, OSError) as error:
            cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise KeyStoreError(
                f"the key store {self.location} cannot be used: {first}; restore it from its backup "
                "(`dala keys restore`) or check its permissions"
            ) from error

    def _load(self, learner_id: str) -> bytes | None:
        with self._named(), read_transaction(self.engine) as connection:
            return _wrapped_key(connection, learner_id)

    def _store_new(self, learner_id: str, wrapped: bytes) -> bytes:
        with self._named():
            try:
                with write_transaction(self.engine) as connection:
                    found = _wrapped_key(connection, learner_id)
                    if found is not None:
                        return found
                    erased_at = _erased_at(connection, learner_id)
                    if erased_at is not None:
                        raise DataKeyErased(learner_id, erased_at)
                    statements = _statements_for(connection.dialect)
                    damaged = statements.info.scalar(connection, {"name": _DAMAGED})
                    if damaged is not None:
                        raise KeyStoreError(
                            f"the key store {self.location} has damaged rows ({damaged}): no new data key is made "
                            f"in it, so learner {learner_id!r} was not written; repair it: `dala keys backup FILE` "
                            "copies every key that reads, restore that file into a new key store (see the "
                            "README's 'Keeping the keys')"
                        )
                    row = {"learner_id": learner_id, "wrapped": wrapped, "created_at": datetime.now(UTC)}
                    statements.insert.execute(connection, [row])
                return wrapped
            except IntegrityError:  # another writer made the learner's key first: use theirs
                found = self._load(learner_id)
                if found is None:  # pragma: no cover
                    raise
                return found

    def _rewrap(self, rewrap: object, new_key_id: str) -> int:
        with self._named(), write_transaction(self.engine) as connection:
            rows = connection.execute(select(data_keys.c.learner_id, data_keys.c.wrapped)).all()
            for learner_id, wrapped in rows:
                connection.execute(
                    update(data_keys)
                    .where(data_keys.c.learner_id == learner_id)
                    .values(wrapped=rewrap(learner_id, bytes(wrapped)))  # type: ignore[operator]
                )
            connection.execute(
                update(key_store_info).where(key_store_info.c.name == "master_key_id").values(value=new_key_id)
            )
        return len(rows)

    def erased_at(self, learner_id: str) -> datetime | None:
        with self._named(), self.engine.connect() as connection:
            return _erased_at(connection, learner_id)

    def _destroy(self, learner_id: str, at: datetime) -> bool:
        # One transaction: the key is never gone without the record saying why. On SQLite the
        # store deletes securely (freed bytes overwritten); the erasure then checkpoints and
        # truncates the WAL (`release_freed_space`), so no copy of the wrapped key survives in
        # the store's files.
        with self._named(), write_transaction(self.engine) as connection:
            deleted = connection.execute(data_keys.delete().where(data_keys.c.learner_id == learner_id)).rowcount
            if _erased_at(connection, learner_id) is None:
                connection.execute(insert(erased_keys).values(learner_id=learner_id, erased_at=at))
        return bool(deleted)

    def snapshot(self) -> KeySnapshot:
        """Every wrapped data key and tombstone, read in one transaction (a consistent copy
        while writers run; never the master key). A row that does not read back (text that is
        not UTF-8, a time that does not parse, a wrapped key of the wrong length) does not stop
        it: it is named in `damaged`, and its key is still given when only its time is damaged."""
        keys: list[tuple[str, bytes, datetime | None]] = []
        tombstones: list[tuple[str, datetime | None]] = []
        damaged: list[DamagedKeyRow] = []
        with self._named(), self.engine.begin() as connection:
            for row, learner, wrapped, created in connection.execute(_row_by_row(connection.dialect, data_keys)):
                read = _RowReader(data_keys.name, row, learner)
                wrapped_key, created_at = read.wrapped(wrapped), read.time("created_at", created)
                if read.learner_id is not None and wrapped_key is not None:
                    keys.append((read.learner_id, wrapped_key, created_at))
                damaged.extend(read.damage(copied=read.learner_id is not None and wrapped_key is not None))
            for row, learner, erased in connection.execute(_row_by_row(connection.dialect, erased_keys)):
                read = _RowReader(erased_keys.name, row, learner)
                erased_at = read.time("erased_at", erased)
                if read.learner_id is not None:
                    tombstones.append((read.learner_id, erased_at))
                damaged.extend(read.damage(copied=read.learner_id is not None))
            master_key_id = _info(connection, "master_key_id") or self.master_key.key_id
        return KeySnapshot(
            store_id=self.store_id,
            master_key_id=master_key_id,
            keys=sorted(keys, key=lambda key: key[0]),
            tombstones=sorted(tombstones, key=lambda tombstone: tombstone[0]),
            damaged=damaged,
        )

    def key_created_at(self, learner_id: str) -> datetime | None:
        with self._named(), read_transaction(self.engine) as connection:
            try:
                found = connection.execute(
                    select(data_keys.c.created_at).where(data_keys.c.learner_id == learner_id)
                ).scalar()
            except (ValueError, DBAPIError):  # a damaged time (see `snapshot`): not known
                return None
        return None if found is None else _utc(found)

    def record_damage(self, found: str | None) -> None:
        """Record that rows of this key store do not read back (`found` says which, and who
        found them), or, with None, that none does: while it is recorded no new data key is made
        in it (see `_store_new`)."""
        with self._named(), write_transaction(self.engine) as connection:
            connection.execute(key_store_info.delete().where(key_store_info.c.name == _DAMAGED))
            if found is not None:
                connection.execute(insert(key_store_info).values(name=_DAMAGED, value=found[:200]))

    def load_snapshot(self, snapshot: KeySnapshot) -> tuple[int, int]:
        """Add a snapshot's keys and tombstones, in one transaction; returns how many of each
        were added. Refused (KeyStoreError, nothing written) when the snapshot's keys are wrapped
        by another master key, or a learner's key or tombstone conflicts with what is here; the
        same key or tombstone already here is skipped, so loading twice adds nothing."""
        if snapshot.master_key_id != self.master_key.key_id:
            raise MasterKeyError(
                f"the key backup's keys are wrapped with master key {snapshot.master_key_id}, not with "
                f"the configured one ({self.master_key.key_id}); configure that master key first"
            )
        for learner_id, wrapped, _created in snapshot.keys:
            self.master_key.unwrap(learner_id, wrapped)  # a damaged backup is refused before writing
        with self._named(), write_transaction(self.engine) as connection:
            held = {
                name: bytes(wrapped)
                for name, wrapped in connection.execute(select(data_keys.c.learner_id, data_keys.c.wrapped))
            }
            erased = {name for (name,) in connection.execute(select(erased_keys.c.learner_id))}
            conflicts = sorted(
                {
                    name
                    for name, wrapped, _ in snapshot.keys
                    if (name in held and held[name] != wrapped) or name in erased
                }
                | {name for name, _ in snapshot.tombstones if name in held}
            )
            if conflicts:
                shown = ", ".join(repr(name) for name in conflicts[:20]) + (", ..." if len(conflicts) > 20 else "")
                raise KeyStoreError(
                    f"the key store {self.location} already holds other keys or erasures for "
                    f"{len(conflicts)} learners of the backup ({shown}); nothing was restored"
                )
            now = datetime.now(UTC)  # for a time the backup could not read
            new_keys = [
                {"learner_id": name, "wrapped": wrapped, "created_at": created or now}
                for name, wrapped, created in snapshot.keys
                if name not in held
            ]
            new_tombstones = [
                {"learner_id": name, "erased_at": at or now} for name, at in snapshot.tombstones if name not in erased
            ]
            if new_keys:
                connection.execute(insert(data_keys), new_keys)
            if new_tombstones:
                connection.execute(insert(erased_keys), new_tombstones)
        return len(new_keys), len(new_tombstones)

    def is_empty(self) -> bool:
        """Whether the store holds no data key and no tombstone."""
        with self._named(), self.engine.connect() as connection:
            return (
                connection.execute(select(data_keys.c.learner_id).limit(1)).first() is None
                and connection.execute(select(erased_keys.c.learner_id).limit(1)).first() is None
            )


@dataclass(frozen=True)
class DamagedKeyRow:
    """A row of a key store that does not read back, as `SqlKeyStore.snapshot` found it."""

    table: str
    row: int | None
    """Its rowid (SQLite), None where the database has none to give."""
    learner_id: str
    """As far as it reads (bytes that are not UTF-8 replaced)."""
    problem: str
    copied: bool
    """Whether its key (or tombstone) could still be read and copied (only a time was damaged)."""

    def describe(self) -> str:
        row = "" if self.row is None else f"row {self.row} of "
        fate = "its key still reads and is copied" if self.copied else "it cannot be copied"
        if self.table == "erased_keys":
            fate = "its tombstone still reads and is copied" if self.copied else "it cannot be copied"
        return f"{row}{self.table}, learner {self.learner_id!r}: {self.problem}; {fate}"

    def as_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "row": self.row,
            "learner_id": self.learner_id,
            "problem": self.problem,
            "copied": self.copied,
        }


@dataclass(frozen=True)
class KeySnapshot:
    """A key store's content for a backup: wrapped data keys (learner id, wrapped key, created
    at) and tombstones (learner id, erased at); never a master key. A time is None where the
    row's could not be read; `damaged` names the rows that did not read back."""

    store_id: str
    master_key_id: str
    keys: list[tuple[str, bytes, datetime | None]]
    tombstones: list[tuple[str, datetime | None]]
    damaged: list[DamagedKeyRow] = field(default_factory=list)


_DAMAGED = "damaged"
"""The `key_store_info` entry recording rows found not to read back (`SqlKeyStore.record_damage`)."""
WRAPPED_BYTES = NONCE_BYTES + DATA_KEY_BYTES + 16
"""A wrapped data key: the nonce, the key, AES-GCM's tag."""


def _row_by_row(dialect: Dialect, table: Table) -> Executable:
    """A table of the key store, each row with an id (SQLite's rowid) and its columns as stored:
    on SQLite as bytes, so that a text or time that does not decode fails that row alone, in
    `_RowReader`, not the whole read in the driver. PostgreSQL checks text on the way in."""
    columns = list(table.columns)
    if dialect.name == "sqlite":
        return select(literal_column("rowid"), *(cast(column, LargeBinary) for column in columns)).order_by(
            literal_column("rowid")
        )
    return select(literal(None), *columns)


class _RowReader:
    """One row of `_row_by_row`, read column by column; what does not read is noted."""

    def __init__(self, table: str, row: int | None, learner: object) -> None:
        self.table, self.row = table, row
        self.problems: list[str] = []
        self.learner_id = self.text("learner id", learner)
        if self.learner_id is not None:
            self.shown = self.learner_id
        elif isinstance(learner, bytes):
            self.shown = learner.decode("utf-8", "replace")
        else:
            self.shown = repr(learner)

    def text(self, what: str, value: object) -> str | None:
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                self.problems.append(f"its {what} is not UTF-8 text")
                return None
        if isinstance(value, str) and value:
            return value
        self.problems.append(f"its {what} is empty or not text")
        return None

    def wrapped(self, value: object) -> bytes | None:
        if isinstance(value, bytes | memoryview) and len(value) == WRAPPED_BYTES:
            return bytes(value)
        size = f"{len(value)} bytes" if isinstance(value, bytes | memoryview) else "missing"
        self.problems.append(f"its wrapped key is {size}, not {WRAPPED_BYTES}")
        return None

    def time(self, column: str, value: object) -> datetime | None:
        if isinstance(value, datetime):
            return _utc(value)
        if value is None:
            self.problems.append(f"its {column} is missing")
            return None
        stored = self.text(column, value)
        if stored is None:
            return None
        try:
            return _utc(datetime.fromisoformat(stored))
        except ValueError:
            self.problems.append(f"its {column} is not a time ({stored[:40]!r})")
            return None

    def damage(self, *, copied: bool) -> list[DamagedKeyRow]:
        if not self.problems:
            return []
        return [DamagedKeyRow(self.table, self.row, self.shown, "; ".join(self.problems), copied)]


def _info(connection: Connection, name: str) -> str | None:
    value: str | None = connection.execute(
        select(key_store_info.c.value).where(key_store_info.c.name == name)
    ).scalar_one_or_none()
    return value


def _record_info(connection: Connection, name: str, value: str) -> str:
    """Record `value` under `name` unless another process recorded one first; the one kept."""
    try:
        with connection.begin_nested():
            connection.execute(insert(key_store_info).values(name=name, value=value))
        return value
    except IntegrityError:  # pragma: no cover - another process recorded it first
        recorded = _info(connection, name)
        assert recorded is not None
        return recorded


class _Statements:
    """The statements of a data key's first use (a learner's first write in a process: its
    key read, or made), compiled once per dialect and run on the driver
    (`dialects.DriverStatement`): SQLAlchemy's per-execution work cost more than SQLite's."""

    def __init__(self, dialect: Dialect) -> None:
        learner: BindParameter[str] = bindparam("learner_id")
        self.wrapped = DriverStatement(select(data_keys.c.wrapped).where(data_keys.c.learner_id == learner), dialect)
        self.erased_at = DriverStatement(
            select(erased_keys.c.erased_at).where(erased_keys.c.learner_id == learner), dialect
        )
        self.insert = DriverStatement(insert(data_keys), dialect, columns=["learner_id", "wrapped", "created_at"])
        self.info = DriverStatement(
            select(key_store_info.c.value).where(key_store_info.c.name == bindparam("name")), dialect
        )
        # The driver returns a time as stored (SQLite: text); the column type reads it back.
        self.read_time = erased_keys.c.erased_at.type.dialect_impl(dialect).result_processor(dialect, None)


_statements_for = once_per_dialect(_Statements)


def _wrapped_key(connection: Connection, learner_id: str) -> bytes | None:
    found = _statements_for(connection.dialect).wrapped.scalar(connection, {"learner_id": learner_id})
    return None if found is None else bytes(found)


def _erased_at(connection: Connection, learner_id: str) -> datetime | None:
    """When the learner's data key was destroyed, as the key store recorded it (aware UTC)."""
    statements = _statements_for(connection.dialect)
    found = statements.erased_at.scalar(connection, {"learner_id": learner_id})
    if found is not None and statements.read_time is not None:
        found = statements.read_time(found)
    return None if found is None else _utc(found)


def _utc(moment: datetime) -> datetime:
    """A time read back from a key store as aware UTC (SQLite returns it naive)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class LogCipher:
    """Encrypts and decrypts the log's private texts (payloads and reasons) per learner."""

    def __init__(self, key_store: KeyStore) -> None:
        self.key_store = key_store
        self._aeads: dict[str, AESGCM] = {}
        self._erased: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def _aead(self, learner_id: str, *, create: bool) -> AESGCM:
        aead = self._aeads.get(learner_id)
        if aead is None:
            erased_at = self._erased.get(learner_id)
            if erased_at is not None:
                raise DataKeyErased(learner_id, erased_at)
            try:
                key = self.key_store.data_key(learner_id, create=create)
            except DataKeyErased as erased:
                with self._lock:
                    self._erased[learner_id] = erased.erased_at
                raise
            aead = AESGCM(key)
            with self._lock:
                if len(self._aeads) > 10_000:
                    self._aeads.clear()
                self._aeads[learner_id] = aead
        return aead

    def holds_key(self, learner_id: str) -> bool:
        """Whether the learner's data key is cached here (and could outlive its destruction)."""
        return learner_id in self._aeads

    def holds_keys(self) -> bool:
        """Whether any data key is cached here."""
        return bool(self._aeads)

    def forget(self, learner_id: str, *, erased_at: datetime | None = None) -> None:
        """Drop the learner's cached key; with `erased_at`, also treat their content as erased
        from now on (the key was destroyed, here or in another process whose erasure this one
        read in the log), whatever a key store says."""
        with self._lock:
            self._aeads.pop(learner_id, None)
            if erased_at is not None:
                self._erased.setdefault(learner_id, erased_at)

    def destroy(self, learner_id: str, at: datetime | None = None) -> bool:
        """Destroy the learner's data key in the key store (see `KeyStore.destroy`) and forget it."""
        at = at or datetime.now(UTC)
        destroyed = self.key_store.destroy(learner_id, at)
        self.forget(learner_id, erased_at=self.key_store.erased_at(learner_id) or at)
        return destroyed

    @staticmethod
    def _aad(learner_id: str, version: int, event_type: str, schema_version: int, field: str) -> bytes:
        return (
            f"{_AAD_FORMAT}{len(learner_id)}:{learner_id}{version}\n{event_type}\n{schema_version}\n{field}"
        ).encode()

    def encrypt(
        self,
        text: str,
        learner_id: str,
        version: int,
        event_type: str,
        schema_version: int,
        field: str,
        *,
        create: bool = True,
    ) -> str:
        """`text` encrypted under the learner's data key (made first when missing and `create`;
        else DataKeyMissing), with the envelope as associated data."""
        nonce = os.urandom(NONCE_BYTES)  # what secrets.token_bytes reads, one call fewer per event
        aead = self._aeads.get(learner_id) or self._aead(learner_id, create=create)
        sealed = aead.encrypt(nonce, text.encode(), self._aad(learner_id, version, event_type, schema_version, field))
        return ENCRYPTED_PREFIX + binascii.b2a_base64(nonce + sealed, newline=False).decode("ascii")

    def decrypt(
        self, text: str, learner_id: str, version: int, event_type: str, schema_version: int, field: str
    ) -> str:
        """The plain text of `text` (returned unchanged when it is not encrypted); DataKeyErased
        when the learner's key was destroyed by their erasure."""
        if not text.startswith(ENCRYPTED_PREFIX):
            return text
        try:
            raw = binascii.a2b_base64(text[_PREFIX_LENGTH:], strict_mode=True)
        except binascii.Error as error:
            raise InvalidInput(field, f"encrypted text is not base64: {error}", learner_id=learner_id) from None
        aead = self._aeads.get(learner_id) or self._aead(learner_id, create=False)
        try:
            plain = aead.decrypt(
                raw[:NONCE_BYTES],
                raw[NONCE_BYTES:],
                f"{_AAD_FORMAT}{len(learner_id)}:{learner_id}{version}\n{event_type}\n{schema_version}\n{field}".encode(),
            )
        except InvalidTag:
            raise InvalidInput(
                field, f"version {version}: ciphertext does not authenticate (altered or moved)", learner_id=learner_id
            ) from None
        return plain.decode()
