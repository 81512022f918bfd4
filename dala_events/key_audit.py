"""Checking the keys beside the log: does every learner's encrypted history still have its key?

The key store is as precious as the log: without a learner's data key their history is gone.
`check_keys` compares one with the other and reports, per learner:

- **missing**: the log holds encrypted events of theirs and the key store has neither their
  key nor a tombstone (the wrong key store, or a lost row);
- **damaged**: their wrapped key does not unwrap under the configured master key (altered, or
  wrapped by another master key);
- **erased in the key store only**: a tombstone without `LearnerErased` in the log (a key
  deleted by hand and made to look erased);
- **not destroyed**: `LearnerErased` is in the log but their key is still there (an erasure
  interrupted between the log and the key store: erase again to finish it);
- **stored in the clear**: an event of a learner whose content is encrypted, holding its
  payload or reason unencrypted (written around the store, e.g. forged by hand);
- **unreadable row**: a row of the key store that does not read back (text that is not UTF-8,
  a time that does not parse, a wrapped key of the wrong length), named by its row and learner:
  whether its key can still be copied is said (`dala keys backup` copies every key that reads).

`dala verify` runs it beside the chain check; `dala rebuild` runs it before changing anything,
so that one bad key is named with every other, never found one learner at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import or_, select

from dala_events.dialects import read_transaction
from dala_events.events import decode_json
from dala_events.store import event_log
from dala_events.store.codec import in_the_clear
from dala_events.store.contract import ERASED_EVENT_TYPE
from dala_events.store.keys import ENCRYPTED_PREFIX, KeyStoreError, MasterKeyError
from dala_events.wiring import Storage

MAX_LISTED = 1_000
"""Problems listed one by one; beyond these only their number is kept."""

KINDS = (
    "missing",
    "damaged",
    "erased in the key store only",
    "not destroyed",
    "stored in the clear",
    "unreadable row",
)


@dataclass(frozen=True)
class KeyProblem:
    """One learner whose key (or one event of theirs) does not fit the log."""

    kind: str
    learner_id: str
    detail: str
    version: int | None = None
    """For `stored in the clear`: the event's version."""


@dataclass
class KeyReport:
    """What `check_keys` found: the key store it read, the learners checked, the problems."""

    key_store: str
    store_id: str | None = None
    master_key_id: str | None = None
    learners: int = 0
    problems: list[KeyProblem] = field(default_factory=list)
    unlisted: int = 0
    failure: str | None = None
    """Why the key store could not be read at all (missing, damaged, wrong master key)."""

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.problems and not self.unlisted

    def add(self, problem: KeyProblem) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(problem)
        else:
            self.unlisted += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "key_store": self.key_store,
            "store_id": self.store_id,
            "master_key_id": self.master_key_id,
            "learners_checked": self.learners,
            "ok": self.ok,
            "failure": self.failure,
            "problems": [
                {"kind": p.kind, "learner_id": p.learner_id, "version": p.version, "detail": p.detail}
                for p in self.problems
            ],
            "unlisted": self.unlisted,
        }


def check_keys(storage: Storage, learner_ids: list[str] | None = None) -> KeyReport:
    """Check that the key store holds a usable key for every learner whose events are encrypted
    (all learners, or `learner_ids`), and no tombstone the log does not explain (see the module
    docstring). Reads the log and the key store; writes nothing."""
    report = KeyReport(key_store=storage.key_store_location())
    try:
        key_store = storage.key_store
        snapshot = key_store.snapshot()
    except KeyStoreError as error:
        report.failure = str(error)
        return report
    report.store_id, report.master_key_id = snapshot.store_id, key_store.master_key.key_id
    wanted = None if learner_ids is None else set(learner_ids)
    keys = {name: wrapped for name, wrapped, _ in snapshot.keys if wanted is None or name in wanted}
    tombstones = {name for name, _ in snapshot.tombstones if wanted is None or name in wanted}
    encrypted, erased, clear_rows = _read_log(storage, wanted)
    report.learners = len(encrypted | set(keys) | tombstones)
    unreadable = set()
    for row in snapshot.damaged:
        if wanted is None or row.learner_id in wanted:
            report.add(KeyProblem("unreadable row", row.learner_id, row.describe()))
            unreadable.add(row.learner_id)
    for name in sorted(encrypted - set(keys) - tombstones - unreadable):
        report.add(KeyProblem("missing", name, "encrypted events and no data key in the key store"))
    for name, wrapped in sorted(keys.items()):
        try:
            key_store.master_key.unwrap(name, wrapped)
        except MasterKeyError:
            report.add(
                KeyProblem(
                    "damaged",
                    name,
                    f"the data key does not unwrap under master key {key_store.master_key.key_id} "
                    "(altered, or wrapped by another master key)",
                )
            )
        if name in erased:
            report.add(KeyProblem("not destroyed", name, "erased in the log, but the data key is still there"))
    for name in sorted(tombstones - erased):
        report.add(
            KeyProblem(
                "erased in the key store only",
                name,
                "the key store says the key was destroyed, but the log holds no LearnerErased",
            )
        )
    sealed_learners = encrypted | set(keys) | tombstones
    for name, version in clear_rows:
        if name in sealed_learners:
            report.add(KeyProblem("stored in the clear", name, "payload or reason not encrypted", version=version))
    return report


def _read_log(storage: Storage, wanted: set[str] | None) -> tuple[set[str], set[str], list[tuple[str, int]]]:
    """Learners with encrypted events, learners erased, and the (learner, version) of events
    holding personal text in the clear, from one snapshot of the log."""
    c = event_log.c
    encrypted_payload = c.payload.startswith(ENCRYPTED_PREFIX, autoescape=True)
    encrypted: set[str] = set()
    erased: set[str] = set()
    clear: list[tuple[str, int]] = []
    query = select(c.learner_id, c.version, c.event_type, c.payload, c.metadata).where(
        or_(~encrypted_payload, c.metadata.contains('"reason"'), c.event_type == ERASED_EVENT_TYPE)
    )
    with read_transaction(storage.engine) as connection:
        encrypted_query = select(c.learner_id).where(encrypted_payload).distinct()
        encrypted.update(connection.execute(encrypted_query).scalars())
        for name, version, event_type, payload, metadata in connection.execute(query.order_by(c.position)):
            if wanted is not None and name not in wanted:
                continue
            if event_type == ERASED_EVENT_TYPE:
                erased.add(name)
                continue
            try:
                values = decode_json(metadata)
            except ValueError:
                values = {}
            if in_the_clear(event_type, payload, values if isinstance(values, dict) else {}):
                clear.append((name, version))
    if wanted is not None:
        encrypted &= wanted
    return encrypted, erased, clear
