"""`Dala`: one configured store and every use case on it, for applications and the command line.

    from dala_events.app import Dala
    from dala_events.settings import Settings

    with Dala.open(Settings.from_env()) as dala:
        profile = dala.profile("student123")
        profile.add_interest("Robotics")
        print(dala.history("student123"))

`Dala` holds a `wiring.Storage` (the engine, the key store and cipher, the log key, the event
store with its inline projections, the pages' folder) and hands its parts to the use cases
(`persistence_manager`, `audit`, `erasure`, `integrity`, `backup`, ...): every method is a
use case called with this store, never with the process default. Open as many as needed (one
per school's database, say); `close()`, or leaving the `with` block, frees each one's engines.
The document's module-level functions keep working through the process default of
`database_setup`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from dala_events import audit, persistence_manager
from dala_events.attribution import recorded_as
from dala_events.dialects import read_transaction
from dala_events.disclosures import Disclosure, list_disclosures, record_disclosure
from dala_events.erasure import Erasure, erase_learner
from dala_events.errors import InvalidInput, LearnerNotFound, RefusedToDestroy
from dala_events.hlp_module import LearnerProfile
from dala_events.schema import migrate
from dala_events.settings import Settings
from dala_events.store import RecordedEvent, SqlEventStore
from dala_events.store.keys import KeyStoreError, KeyStoreMissing, LogCipher, MasterKey, MasterKeyError
from dala_events.store.sql import RestoreUnfinished, unfinished_restore
from dala_events.wiring import Mode, Storage, key_store_exists
from projections.dtos import FullLearnerProfileData
from projections.rebuild import LOCK_WAIT_SECONDS, Progress, RebuildError, RebuildResult, rebuild

if TYPE_CHECKING:
    # Imported where used (below): `dala profile` and the other reads start without them.
    from dala_events.backup import BackupContents, BackupResult
    from dala_events.demo import DemoResult
    from dala_events.integrity import Checkpoint, VerifyReport
    from dala_events.key_backup import KeyBackupResult
    from dala_events.status import StoreStatus
    from dala_events.subscriptions import Subscription, SubscriptionStatus

__all__ = ["Dala", "Mode", "Settings"]

_log = logging.getLogger("dala_events.app")


class Dala:
    """A configured DALA store and its use cases (see the module docstring)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @classmethod
    def open(cls, settings: Settings | None = None, *, mode: Mode = Mode.CREATE) -> Dala:
        """Open the store `settings` describe (default: `Settings.from_env()`); see `Storage.open`
        for what each `mode` creates, migrates and checks."""
        return cls(Storage.open(settings, mode))

    # -- its parts ----------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.storage.settings

    @property
    def engine(self) -> Engine:
        return self.storage.engine

    @property
    def store(self) -> SqlEventStore:
        return self.storage.store

    @property
    def cipher(self) -> LogCipher:
        return self.storage.cipher

    def page_path(self, learner_id: str) -> Path:
        """Where the learner's page is written by `render_page` and removed by `erase`."""
        return self.storage.page_path(learner_id)

    # -- the document's facade ------------------------------------------------------------------

    def profile(self, learner_id: str, *, create: bool = True, persistence_enabled: bool = True) -> LearnerProfile:
        """The learner's profile to read and change (created if missing unless `create=False`,
        then LearnerNotFound); see `hlp_module.LearnerProfile`."""
        if create:
            return LearnerProfile(learner_id, persistence_enabled=persistence_enabled, store=self.store)
        return LearnerProfile.load(learner_id, persistence_enabled=persistence_enabled, store=self.store)

    def full_profile(self, learner_id: str) -> FullLearnerProfileData | None:
        """The learner's profile as the read models hold it (None: no live profile)."""
        return persistence_manager.get_full_learner_profile_data(learner_id, store=self.store)

    def learners(self, *, after: str | None = None, limit: int = 100) -> list[persistence_manager.LearnerSummary]:
        """A page of the learners the store knows (see `persistence_manager.list_learners`)."""
        return persistence_manager.list_learners(after=after, limit=limit, store=self.store)

    # -- audits ---------------------------------------------------------------------------------

    def history(
        self,
        learner_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        event_types: Collection[str] | None = None,
        happened_since: datetime | None = None,
        happened_until: datetime | None = None,
    ) -> list[RecordedEvent]:
        """The learner's changes: who changed what, when and why, bounded by when they were
        recorded (`since`, `until`) or when they happened (see `audit.history`)."""
        return audit.history(
            learner_id,
            since=since,
            until=until,
            event_types=event_types,
            happened_since=happened_since,
            happened_until=happened_until,
            store=self.store,
        )

    def history_point(
        self, learner_id: str, *, at: datetime | None = None, version: int | None = None
    ) -> audit.HistoryPoint:
        """Where a time or version falls in the learner's stream (see `audit.history_point`)."""
        return audit.history_point(learner_id, at=at, version=version, store=self.store)

    def as_of(
        self,
        learner_id: str,
        *,
        at: datetime | None = None,
        version: int | None = None,
        happened_by: datetime | None = None,
    ) -> FullLearnerProfileData | None:
        """The learner's profile as it was recorded at `at`, after `version`, or as the changes
        that had happened by `happened_by` make it (see `audit.profile_as_of`)."""
        return audit.profile_as_of(learner_id, at=at, version=version, happened_by=happened_by, store=self.store)

    def diff(
        self,
        learner_id: str,
        start: audit.Point | None = None,
        end: audit.Point | None = None,
        *,
        happened_since: datetime | None = None,
        happened_until: datetime | None = None,
    ) -> audit.ProfileDiff:
        """What changed in the learner's profile between two points, or through the changes
        that happened between two times (see `audit.diff`)."""
        return audit.diff(
            learner_id, start, end, happened_since=happened_since, happened_until=happened_until, store=self.store
        )

    # -- a child's data -------------------------------------------------------------------------

    def export(self, learner_id: str) -> persistence_manager.LearnerExport:
        """Everything held about the learner, recorded as a disclosure first."""
        return persistence_manager.export_learner(learner_id, store=self.store)

    def export_xapi(self, learner_id: str, *, homepage: str | None = None) -> list[dict[str, Any]]:
        """The learner's learning as xAPI statements, recorded as a disclosure first; `homepage`
        defaults to `settings.xapi_homepage` (InvalidInput naming DALA_XAPI_HOMEPAGE when unset)."""
        from dala_events.xapi import check_homepage, export_learner_xapi

        if homepage is None:
            homepage = check_homepage(self.settings.xapi_homepage or "", "DALA_XAPI_HOMEPAGE")
        return export_learner_xapi(learner_id, homepage=homepage, store=self.store)

    def disclosures(self, learner_id: str) -> list[Disclosure]:
        """Who was shown the learner's data, when, what and why."""
        return list_disclosures(learner_id, store=self.store)

    def record_disclosure(self, learner_id: str, what: str) -> Disclosure:
        """Record that the learner's data is about to be shown (`what`: a short code)."""
        return record_disclosure(learner_id, what, store=self.store)

    def render_page(self, learner_id: str, out: str | Path | None = None) -> Path:
        """Write the learner's page to `out` (default: `page_path`), its times in
        `settings.time_zone`, and return where."""
        from dala_events.generate_interface import generate_interface

        path = out if out is not None else self.page_path(learner_id)
        return generate_interface(learner_id, path, store=self.store, time_zone=self.settings.time_zone)

    def demo(self, learner_id: str, seed: int, out: str | Path | None = None) -> DemoResult:
        """The main job for one learner (see `demo.run_demo`), its page at `out` or `page_path`."""
        from dala_events.demo import run_demo

        path = out if out is not None else self.page_path(learner_id)
        return run_demo(learner_id, seed, path, store=self.store, time_zone=self.settings.time_zone)

    def erase(self, learner_id: str, *, reason: str | None = None, vacuum_full: bool = False) -> Erasure:
        """Erase the learner for good and remove their page (see `erasure.erase_learner`)."""
        return erase_learner(
            learner_id, reason=reason, store=self.store, vacuum_full=vacuum_full, page=self.page_path(learner_id)
        )

    # -- maintenance ----------------------------------------------------------------------------

    def verify(
        self,
        learner_ids: Collection[str] | None = None,
        *,
        against: Path | None = None,
        checkpoint_out: Path | None = None,
    ) -> VerifyReport:
        """Check the log's chains (all, or those of `learner_ids`), against the checkpoint file
        `against` if given, and every learner's data key against the log (`key_audit`); write a
        new checkpoint to `checkpoint_out` when intact."""
        from dala_events.integrity import load_checkpoint, verify_log, write_checkpoint
        from dala_events.key_audit import check_keys

        if learner_ids is not None:
            unknown = sorted(name for name in set(learner_ids) if self.store.stream_version(name) == 0)
            if unknown:
                names = ", ".join(repr(name) for name in unknown)
                raise LearnerNotFound(
                    unknown[0], f"no recorded changes of {names}: nothing to verify (see `dala learners`)"
                )
        checkpoint: Checkpoint | None = None if against is None else load_checkpoint(against, self.storage.log_key)
        report = verify_log(self.engine, self.storage.log_key, learner_ids=learner_ids, checkpoint=checkpoint)
        report.keys = check_keys(self.storage, None if learner_ids is None else list(learner_ids))
        if checkpoint_out is not None and report.intact:
            write_checkpoint(checkpoint_out, report.heads, self.storage.log_key)
        return report

    def backup(
        self, destination: str | Path, *, keys: str | Path | None = None, replace: bool = False
    ) -> BackupResult:
        """A consistent, portable backup of the log and the disclosure record, naming the key
        store its encrypted events need (see `backup.backup_log`); with `keys`, then a backup of
        the key store to that file, so that the pair always restores (`backup.backup_with_keys`).
        An existing file is refused unless `replace`."""
        from dala_events.backup import KeyStoreName, backup_log, backup_with_keys

        key_store = self.storage.key_store
        location = self.storage.key_store_location()
        if keys is not None:
            return backup_with_keys(self.engine, key_store, destination, keys, location=location, replace=replace)
        name = KeyStoreName(location, key_store.store_id, key_store.master_key.key_id)
        return backup_log(self.engine, destination, key_store=name, replace=replace)

    def restore(
        self,
        source: str | Path,
        *,
        progress: Progress | None = None,
        skip: Collection[str] = (),
        skip_missing_keys: bool = False,
    ) -> tuple[BackupResult, RebuildResult]:
        """Restore a backup into this (empty) database (see `backup.restore_log`) and rebuild the
        read models from it, after checking the whole file and that the configured key store
        holds a usable key for every learner whose events it holds encrypted: otherwise
        KeyStoreError lists them and nothing is written.

        Every event of the backup is restored. Leaving learners out of the read models is the
        operator's explicit choice: `skip_missing_keys` leaves out those whose key the key store
        lacks, `skip` names learners; a backup that lacks some of a learner's events (rows it
        could not read, listed in it) needs them named. They are recorded (`rebuild_skips`, why)
        and shown by `verify` until their keys are restored and a rebuild runs.

        The restore is one recoverable unit: the log is committed together with a mark that the
        restore is unfinished, removed only once the read models are built and the later erasures
        recorded; while it is there every open but a raw one refuses (RestoreUnfinished), and the
        same call with the same file finishes it.

        A learner the key store says was erased after the backup was made (a tombstone, and no
        `LearnerErased` in the backup) is erased again in the restored log, so that the log says
        what the keys say: their content stays unreadable and `verify` finds nothing amiss."""
        from dala_events.backup import BackupResult, finish_restore, inspect_backup, restore_log

        contents = inspect_backup(source)
        lacking = self._keys_lacking(contents)
        skipped = self._restore_skips(contents, lacking, skip, skip_missing_keys)
        pending = self._unfinished_restore()
        if pending is not None and pending.sha256 != contents.sha256:
            raise RefusedToDestroy(
                f"{pending} (not {source}, whose sha256 starts {contents.sha256[:16]}); nothing was restored"
            )
        if pending is None:
            restored = restore_log(
                self.engine, source, log_key=self.storage.log_key, cipher=self.storage.open_cipher, unfinished=True
            )
        else:
            _log.warning("finishing the restore of %s that stopped after its log was committed", source)
            restored = BackupResult(
                Path(source), contents.events, contents.log_schema, contents.sha256, contents.disclosures
            )
        try:
            rebuilt = self.rebuild(progress=progress, skip=skipped)
        except RebuildError as error:
            raise RebuildError(
                f"the log of {source} is restored but its read models could not be built: {error}; the restore is "
                "unfinished: run it again once that is fixed"
            ) from error
        self._record_later_erasures(contents)
        finish_restore(self.engine)
        return dataclasses.replace(restored, skipped=tuple(sorted(skipped))), rebuilt

    def _unfinished_restore(self) -> RestoreUnfinished | None:
        with read_transaction(self.engine) as connection:
            return unfinished_restore(connection)

    def _restore_skips(
        self, contents: BackupContents, lacking: set[str], skip: Collection[str], skip_missing_keys: bool
    ) -> dict[str, str]:
        """The learners to leave out of the read models, each with why (`rebuild_skips`):
        those named, and with `skip_missing_keys` those whose key the key store lacks. Refused
        (nothing written) while a learner without a key, or with events the backup lacks, is
        not among them; InvalidInput for a name the backup does not hold."""
        from dala_events.checksummed import BackupError

        unknown = sorted(set(skip) - contents.learners)
        if unknown:
            raise InvalidInput("skip", f"no events of {_learners(set(unknown))} in {contents.path}")
        damaged = {str(row["learner_id"]) for row in contents.left_out if isinstance(row.get("learner_id"), str)}
        chosen = set(skip) | (lacking if skip_missing_keys else set())
        if lacking - chosen:
            made_with = (
                "" if contents.key_store is None else f"; it was made with key store {contents.key_store.describe()}"
            )
            raise KeyStoreError(
                f"the key store {self.storage.key_store_location()} has no usable data key for "
                f"{_learners(lacking - chosen)} of the backup{made_with}: restore a key backup taken after it "
                "(`dala keys restore FILE`), or restore without those learners' read models: "
                "`dala restore FILE --skip-missing-keys`; nothing was restored"
            )
        if damaged - chosen:
            raise BackupError(
                f"{contents.path} is incomplete: it lacks {len(contents.left_out)} rows the database could not give "
                f"when it was made, events of {_learners(damaged - chosen)}; restore without their read models "
                f"(--skip {' --skip '.join(sorted(damaged - chosen)[:5])}), or use a complete backup; nothing was "
                "restored"
            )
        return {
            name: _RESTORE_SKIP_WHY["missing key" if name in lacking else "damaged" if name in damaged else "asked"]
            for name in chosen
        }

    def _record_later_erasures(self, contents: BackupContents) -> None:
        learners = contents.encrypted_learners - contents.erased_learners
        if not learners:
            return
        for learner_id, erased_at in self.storage.key_store.snapshot().tombstones:
            if learner_id in learners:
                when = "at an unreadable time" if erased_at is None else f"at {erased_at:%Y-%m-%d %H:%M} UTC"
                reason = f"erased {when}, after the restored backup was made"
                with recorded_as("system:restore", reason=reason):
                    erase_learner(learner_id, store=self.store, page=self.page_path(learner_id))

    def _keys_lacking(self, contents: BackupContents) -> set[str]:
        """The learners whose events the backup holds encrypted (and who were not erased) for
        whom the configured key store has no usable data key. KeyStoreError when the key store is
        missing or cannot be read (nothing is written, nothing created)."""
        needed = contents.encrypted_learners - contents.erased_learners
        if not needed:
            return set()
        made_with = (
            "" if contents.key_store is None else f"; it was made with key store {contents.key_store.describe()}"
        )
        try:
            url = self.storage.key_store_url
            if url is not None and not key_store_exists(url):
                raise KeyStoreMissing(
                    f"the key store {self.storage.key_store_location()} is missing, and the backup holds encrypted "
                    f"events of {_learners(needed)}: restore the key store first (`dala keys restore FILE`)"
                )
            key_store = self.storage.key_store
            snapshot = key_store.snapshot()
        except KeyStoreError as error:
            raise type(error)(f"{error}{made_with}; nothing was restored") from error
        usable = {name for name, _ in snapshot.tombstones}
        for name, wrapped, _created in snapshot.keys:
            try:
                key_store.master_key.unwrap(name, wrapped)
                usable.add(name)
            except MasterKeyError:
                pass
        return needed - usable

    def backup_keys(self, destination: str | Path, *, replace: bool = False) -> KeyBackupResult:
        """A consistent copy of the key store's wrapped data keys and tombstones, never the
        master key (see `key_backup`). An existing file is refused unless `replace`."""
        from dala_events.key_backup import backup_keys

        return backup_keys(
            self.storage.key_store, destination, location=self.storage.key_store_location(), replace=replace
        )

    def restore_keys(self, source: str | Path) -> KeyBackupResult:
        """Restore a key backup into the configured key store (created if missing; merged where no
        learner conflicts), the file checked whole first (see `key_backup`)."""
        from dala_events.key_backup import read_key_backup, restore_keys

        read_key_backup(source)  # a damaged or altered file is refused before a key store is made
        return restore_keys(self.storage.key_store_to_restore_into(), source)

    def rebuild(
        self,
        projections: Sequence[str] | None = None,
        *,
        progress: Progress | None = None,
        skip: Collection[str] = (),
        lock_wait: float = LOCK_WAIT_SECONDS,
    ) -> RebuildResult:
        """Rebuild read models from the log and swap them in (see `projections.rebuild`).

        First every learner's data key is checked (`key_audit`): when any learner's events
        cannot be read (a missing or damaged key), RebuildError names every one of them, before
        anything is changed; the operator decides. Rebuilding the others is an explicit choice:
        `skip` those learners (recorded, and shown by `verify`, until a rebuild skips nobody).
        The swap's locks are waited for `lock_wait` seconds at most (then RebuildBlocked names
        their holder)."""
        from dala_events.key_audit import check_keys

        keys = check_keys(self.storage)
        if keys.failure is not None:
            raise RebuildError(f"the data keys cannot be read: {keys.failure}; nothing was changed")
        unreadable = {p.learner_id: p.kind for p in keys.problems if p.kind in ("missing", "damaged")}
        blocked = {name: kind for name, kind in unreadable.items() if name not in skip}
        if blocked:
            names = sorted(blocked)
            listed = ", ".join(f"{name!r} ({blocked[name]} key)" for name in names[:50])
            more = f" and {len(names) - 50} more" if len(names) > 50 else ""
            skips = " ".join(f"--skip {name}" for name in names[:5])
            raise RebuildError(
                f"the events of {len(names)} learner{'' if len(names) == 1 else 's'} cannot be read: {listed}{more}; "
                f"nothing was changed. Restore their keys (`dala keys restore FILE`), or rebuild without them: "
                f"dala rebuild {skips}{' ...' if len(names) > 5 else ''}"
            )
        return rebuild(
            self.engine,
            projections=projections,
            progress=progress,
            log_key=self.storage.log_key,
            cipher=self.cipher,
            skip=skip,
            lock_wait=lock_wait,
        )

    def subscription(self, name: str, *, event_types: Collection[str] | None = None) -> Subscription:
        """The named subscription of another system following this log (see `subscriptions`);
        its filter is its own: another one is refused (SubscriptionError)."""
        from dala_events.subscriptions import Subscription

        return Subscription(name, store=self.store, event_types=event_types)

    def reset_subscription(self, name: str) -> bool:
        """Start a subscription over from the beginning of the log, its filter forgotten (see
        `subscriptions.reset_subscription`); whether there was one of that name."""
        from dala_events.subscriptions import reset_subscription

        return reset_subscription(self.engine, name)

    def subscriptions(self) -> list[SubscriptionStatus]:
        """Every subscription with its checkpoint and lag, by name."""
        from dala_events.subscriptions import list_subscriptions

        return list_subscriptions(self.engine)

    def migrate(self, revision: str = "head", *, downgrade: bool = False) -> str | None:
        """Bring the log's schema to `revision` (see `schema.migrate`)."""
        return migrate(
            self.engine, revision, downgrade=downgrade, log_key=self.storage.log_key, cipher=self.storage.open_cipher
        )

    def status(self) -> StoreStatus:
        """Where the database, the key store, the master key and the pages are, what they hold,
        and what a backup must carry; creates and changes nothing (see `status.store_status`)."""
        from dala_events.status import store_status

        return store_status(self.storage)

    def rotate_master_key(self, new_master_key: MasterKey | None = None) -> int:
        """Re-wrap every data key under a new master key (see `Storage.rotate_master_key`)."""
        return self.storage.rotate_master_key(new_master_key)

    # -- its life -------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the engines of the database and the key store. Idempotent."""
        self.storage.close()

    def __enter__(self) -> Dala:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Dala {self.storage!r}>"


_RESTORE_SKIP_WHY = {
    "missing key": "restored by `dala restore` without their data key: restore it (`dala keys restore FILE`), "
    "then run `dala rebuild`",
    "damaged": "restored by `dala restore --skip` from a backup that lacks some of their events",
    "asked": "left out of the read models by `dala restore --skip`",
}
"""Why a restore left a learner out of the read models, as `rebuild_skips` records it."""


def _learners(names: set[str]) -> str:
    shown = ", ".join(repr(name) for name in sorted(names)[:20]) + (", ..." if len(names) > 20 else "")
    return f"{len(names)} learner{'' if len(names) == 1 else 's'} ({shown})"
