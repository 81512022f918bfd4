"""The record of disclosures: who was shown which learner's data, when and why.

Exports, rendered pages and the command line's profile and history reads each add one row to
`disclosure_log` before the data leaves the library: the learner's id, when (UTC), what was
disclosed (a short code), and the actor, reason and correlation id of the current
`recorded_as` block, exactly as a change would be attributed. `dala disclosures LEARNER`
lists them.

The record holds nothing about the learner but the id, and nothing ties it to the learner's
events or read-model rows: deleting a profile, rebuilding the read models or erasing a
learner's data leaves it as it is. Like the event log it is only ever inserted into.

The library's own reads (getters, history, as-of views, diffs, rebuilds) record nothing:
what is a disclosure is decided where data is shown to someone. An application showing a
learner's data itself records it with `record_disclosure`.
"""

from __future__ import annotations

import re
import uuid

import pydantic
from pydantic import BaseModel, ConfigDict
from sqlalchemy import insert, select

from dala_events.attribution import require_explicit_actor
from dala_events.database_setup import sql_store_or_default
from dala_events.dialects import read_transaction, write_transaction
from dala_events.errors import InvalidInput
from dala_events.events import LearnerId, UtcDateTime, utc_now
from dala_events.store import SqlEventStore
from dala_events.store.contract import valid_learner_id
from dala_events.store.keys import ENCRYPTED_PREFIX, DataKeyErased, DataKeyMissing, KeyStoreMissing, LogCipher
from dala_events.store.sql import disclosure_log

DISCLOSURE_KINDS: dict[str, str] = {
    "export_json": "the learner's export as one JSON document (`export_learner`, `dala export`)",
    "export_xapi": "the learner's xAPI statements (`export_learner_xapi`, `dala export --format xapi`)",
    "page": "the learner's page (`generate_interface`, `dala interface`, `dala demo`)",
    "cli_profile": "the profile shown by `dala profile` (now, or as of a time or version)",
    "cli_history": "the history shown by `dala history`",
    "cli_diff": "the rows that changed between two points, shown by `dala diff`",
}
"""The codes of `what` the package records; an application may record codes of its own."""

_WHAT = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class Disclosure(BaseModel):
    """One disclosure: a learner's data shown to someone."""

    model_config = ConfigDict(frozen=True)

    id: int
    """Its place in the record (increasing)."""
    learner_id: str
    disclosed_at: UtcDateTime
    what: str
    """What was disclosed: a short code (see DISCLOSURE_KINDS)."""
    actor: str
    """Who it was shown to, or who asked for it (the `recorded_as` actor)."""
    reason: str | None
    correlation_id: str
    """Ties it to the rest of the same piece of work (the `recorded_as` block's id)."""


_LEARNER_ID: pydantic.TypeAdapter[str] = pydantic.TypeAdapter(LearnerId)


def record_disclosure(learner_id: str, what: str, *, store: SqlEventStore | None = None) -> Disclosure:
    """Record that `learner_id`'s data is being disclosed as `what`, under the current
    `recorded_as` attribution; returns the record.

    Call it before the data leaves (so a refused record discloses nothing). With
    DALA_REQUIRE_ACTOR on, a disclosure whose actor no `recorded_as` block named is refused
    with ActorRequired. InvalidInput for a bad learner id or a `what` that is not a short
    lower-case code.
    """
    try:
        learner = _LEARNER_ID.validate_python(learner_id)
    except pydantic.ValidationError as error:
        raise InvalidInput.from_pydantic(error, prefix="learner_id") from None
    if not isinstance(what, str) or not _WHAT.match(what):
        raise InvalidInput("what", f"must be a short code of a-z, 0-9 and _ (e.g. 'export_json'), got {what!r}")
    attribution = require_explicit_actor("disclosure")
    chosen = sql_store_or_default(store)
    row = {
        "learner_id": learner,
        "disclosed_at": utc_now(),
        "what": what,
        "actor": attribution.actor,
        "reason": _sealed_reason(chosen.cipher, learner, what, attribution.reason),
        "correlation_id": attribution.correlation_id or str(uuid.uuid4()),
    }
    with write_transaction(chosen.engine) as connection:
        inserted = connection.execute(insert(disclosure_log), row).inserted_primary_key
    assert inserted is not None, "an INSERT of one row has its primary key"
    new_id = inserted[0]
    return Disclosure(id=new_id, **{**row, "reason": attribution.reason})


def _sealed_reason(cipher: LogCipher | None, learner_id: str, what: str, reason: str | None) -> str | None:
    """The free-text reason of a disclosure as stored: encrypted under the learner's data key
    (as the reasons of their changes are), so that it goes with their erasure; a learner
    without a key yet has it stored as it is."""
    if reason is None or cipher is None:
        return reason
    try:
        return cipher.encrypt(reason, learner_id, 0, "disclosure", 1, what, create=False)
    except (DataKeyMissing, KeyStoreMissing):
        return reason


def _open_reason(cipher: LogCipher | None, learner_id: str, what: str, reason: str | None) -> str | None:
    """A stored disclosure reason as text (None once the learner's key was destroyed)."""
    if reason is None or cipher is None or not reason.startswith(ENCRYPTED_PREFIX):
        return reason
    try:
        return cipher.decrypt(reason, learner_id, 0, "disclosure", 1, what)
    except DataKeyErased:
        return None


def list_disclosures(learner_id: str, *, store: SqlEventStore | None = None) -> list[Disclosure]:
    """Every disclosure of `learner_id`'s data, oldest first (none for an unknown learner)."""
    learner_id = valid_learner_id(learner_id)
    query = select(disclosure_log).where(disclosure_log.c.learner_id == learner_id).order_by(disclosure_log.c.id)
    chosen = sql_store_or_default(store)
    with read_transaction(chosen.engine) as connection:
        rows = list(connection.execute(query).mappings())
    return [
        Disclosure(**{**row, "reason": _open_reason(chosen.cipher, learner_id, row["what"], row["reason"])})
        for row in rows
    ]


__all__ = [
    "DISCLOSURE_KINDS",
    "Disclosure",
    "disclosure_log",
    "list_disclosures",
    "record_disclosure",
]
