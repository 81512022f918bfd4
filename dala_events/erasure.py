"""Erasure (the right to be forgotten) in an append-only log: crypto-shredding.

Every payload and reason a learner's events hold is encrypted with that learner's own data
key (`dala_events.store.keys`). Erasing the learner:

1. appends `LearnerErased` to their stream (who, when and why, readable: no personal data);
   in the same transaction its projector deletes every read-model row of the learner;
2. destroys their data key in the key store, which records when (no key material), so the
   content of every earlier event is unreadable for good: reading the log gives an
   `ErasedContent` in its place, with the envelope (type, times, actor) kept for audits;
3. clears the database's freed space (`dialects.release_freed_space`): SQLite overwrites
   deleted rows and its WAL is checkpointed and truncated; PostgreSQL runs VACUUM.

The hash chain covers the stored ciphertext, so `dala verify` still passes, and a rebuild
projects the same (nothing) as the live read models. The learner id is taken for good: a new
profile under it is refused with LearnerErasedError, by the aggregate (the stream says it was
erased) and by the key store (it makes no new key for an erased id), so a log restored from
an older backup cannot bring the learner back either.

Steps 1 and 2 use two databases (the log and the key store) and cannot commit together; an
erasure stopped between them is completed by erasing again (`erase_learner` is idempotent),
and until then the learner already reads as erased.

What no erasure reaches: a copy of the key store taken before it (`dala keys backup`) still
holds the learner's key, and with it any log backup brings their data back. The result says
since when the key existed (`Erasure.key_created_at`): the key backups taken from then until
the erasure are the ones to delete, or to let expire within the erasure deadline.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from markupsafe import escape
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine

from dala_events.attribution import check_reason, current_attribution, recorded_as, require_explicit_actor
from dala_events.audit import ErasureRecord, erasure_record
from dala_events.database_setup import default_storage
from dala_events.dialects import release_freed_space
from dala_events.errors import ConcurrencyError, ErasureFailed, InvalidInput
from dala_events.repository import LearnerRepository
from dala_events.store import EventStore, SqlEventStore
from dala_events.store.contract import valid_learner_id
from dala_events.store.keys import SqlKeyStore
from projections.database_models import READ_MODELS

_log = logging.getLogger("dala_events.erasure")

_ATTEMPTS = 20
"""How often an erasure is tried again when another writer moved the stream meanwhile."""


class Erasure(BaseModel):
    """What `erase_learner` did."""

    model_config = ConfigDict(frozen=True)

    record: ErasureRecord
    """When, by whom and why (from the log)."""
    already_erased: bool
    """The erasure was recorded before this call (which then only completed what was left)."""
    key_destroyed: bool
    """This call destroyed the learner's data key (False when an earlier erasure had)."""
    freed_space: str
    """What was done so that no readable copy stays in the database's freed space."""
    freed_space_complete: bool
    """False when clearing it could not finish (a reader kept SQLite's WAL from being
    truncated): erase again once readers are gone to finish it."""
    page_removed: Path | None = None
    """The learner's rendered page, removed (None when there was none)."""
    key_created_at: datetime | None = None
    """When the data key this call destroyed was made (None: not known, or none destroyed):
    every key backup taken since then and before the erasure still holds it."""


def erasure_reason(reason: str | None) -> str:
    """The reason an erasure is recorded with: `reason`, else the current `recorded_as` block's;
    InvalidInput naming `reason` when neither gives one, or it is not a valid reason. An erasure
    is never made without saying why."""
    if reason is None:
        reason = current_attribution().reason
        if reason is None:
            raise InvalidInput("reason", "an erasure needs a reason (e.g. the erasure request's reference)")
    return check_reason(reason)


def erase_learner(
    learner_id: str,
    *,
    reason: str | None = None,
    store: EventStore | None = None,
    vacuum_full: bool = False,
    page: Path | None = None,
) -> Erasure:
    """Erase the learner: record `LearnerErased` (their read-model rows go with it), destroy
    their data key, clear the database's freed space, remove their rendered page. See the
    module docstring.

    `reason` (why, e.g. "parent's erasure request, ref 2026-114"; by default the reason of the
    current `recorded_as` block, and InvalidInput naming `reason` when neither gives one) is
    recorded with the event in the clear; the actor is the current `recorded_as` attribution
    (DALA_REQUIRE_ACTOR=1 refuses an erasure without one). `page` is the learner's page file,
    removed once the erasure is recorded; with no `store` the process default's store and its
    page location are used (`app.Dala.erase` passes its own). Idempotent: erasing an erased
    learner completes what an interrupted erasure left and returns its record. LearnerNotFound
    for a learner with no recorded changes; InvalidInput for a store that does not encrypt
    (there would be no key to destroy).
    """
    learner_id = valid_learner_id(learner_id)
    reason = erasure_reason(reason)
    require_explicit_actor("erasure")
    if store is None:
        storage = default_storage()
        chosen: EventStore = storage.store
        page = storage.page_path(learner_id) if page is None else page
    elif isinstance(store, EventStore):
        chosen = store
    else:
        raise InvalidInput("store", f"must be an EventStore or None, not {type(store).__name__}")
    if chosen.cipher is None:
        raise InvalidInput(
            "store",
            "erasure destroys the learner's data key, and this store does not encrypt (it has no key store)",
            learner_id=learner_id,
        )
    in_the_clear = chosen.unencrypted_versions(learner_id)
    if in_the_clear:
        shown = ", ".join(map(str, in_the_clear[:10])) + (", ..." if len(in_the_clear) > 10 else "")
        raise ErasureFailed(
            learner_id,
            f"{len(in_the_clear)} of their events are stored unencrypted (versions {shown}: written by a store "
            "without a key store), so destroying their key would not make them unreadable",
        )
    repository = LearnerRepository(chosen)
    for attempt in range(1, _ATTEMPTS + 1):
        aggregate = repository.load(learner_id)
        with recorded_as(reason=reason):
            recorded_now = aggregate.erase()
        try:
            repository.save(aggregate)
            break
        except ConcurrencyError:
            if attempt == _ATTEMPTS:
                raise ErasureFailed(
                    learner_id,
                    f"their stream changed under each of {_ATTEMPTS} attempts (other writers are recording "
                    "changes of theirs); stop those writers and erase again",
                ) from None
            _log.info("learner %r: the stream moved during the erasure; trying again", learner_id)
    record = erasure_record(learner_id, store=chosen)
    assert record is not None, "the erasure was just recorded"
    key_created_at = chosen.cipher.key_store.key_created_at(learner_id)
    key_destroyed = chosen.cipher.destroy(learner_id, record.erased_at)
    done, complete = _release_freed_space(chosen, full=vacuum_full)
    page_removed = _remove_page(page, learner_id)
    _log.info(
        "learner %r erased (%s); data key %s; %s",
        learner_id,
        "recorded now" if recorded_now else "recorded before",
        "destroyed" if key_destroyed else "already gone",
        done,
    )
    return Erasure(
        record=record,
        already_erased=not recorded_now,
        key_destroyed=key_destroyed,
        freed_space=done,
        freed_space_complete=complete,
        page_removed=page_removed,
        key_created_at=key_created_at if key_destroyed else None,
    )


def _remove_page(page: Path | None, learner_id: str) -> Path | None:
    """Remove the learner's page, and the page an earlier version wrote for them under another
    name in the same folder (see `_earlier_page_name`); returns the first removed."""
    if page is None:
        return None
    removed = []
    if page.is_file():
        page.unlink()
        removed.append(page)
    earlier = page.with_name(_earlier_page_name(learner_id))
    if earlier != page and _is_page_of(earlier, learner_id):
        earlier.unlink()
        removed.append(earlier)
    return removed[0] if removed else None


def _earlier_page_name(learner_id: str) -> str:
    """The name earlier versions gave the learner's page (characters unsafe in a file name
    replaced by `_`): other learners' ids could map to it too ("a/b" and "a_b", "Ann" and "ann"
    on a file system that ignores case), so a file of that name is the learner's only when it
    says so (`_is_page_of`)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in learner_id).lstrip(".") or "learner"
    return f"{safe}.html"


_PAGE_HEAD_BYTES = 8192
"""A page's <title> is in its first lines: at most this much is read to find it."""


def _is_page_of(path: Path, learner_id: str) -> bool:
    """Whether `path` is a page rendered for `learner_id`: its title names them (escaped as the
    template escapes it)."""
    try:
        with path.open("rb") as page:
            head = page.read(_PAGE_HEAD_BYTES).decode("utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    return f"<title>Learner {escape(learner_id)} · DALA</title>" in head


def _release_freed_space(store: EventStore, *, full: bool) -> tuple[str, bool]:
    done, complete = [], True
    places: list[tuple[str, Engine, list[str]]] = []
    if isinstance(store, SqlEventStore):
        places.append(("database", store.engine, [model.table.name for model in READ_MODELS]))
    key_store = store.cipher.key_store if store.cipher is not None else None
    if isinstance(key_store, SqlKeyStore):
        places.append(("key store", key_store.engine, ["data_keys"]))
    for name, engine, tables in places:
        freed = release_freed_space(engine, tables, full=full)
        done.append(f"{name}: {freed.done}")
        complete = complete and freed.complete
    return "; ".join(done) or "in memory: nothing stored on disk", complete
