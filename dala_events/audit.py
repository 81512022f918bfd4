"""Audits: a learner's history, the profile as it stood at any time or version, and diffs.

"What did the system hold about this child on 3 March, and who changed it?" Every answer
here comes from the event log:

- `history` lists the learner's events with who (actor), why (reason), when, and what.
- `profile_as_of` runs the learner's events up to a point through the very projectors that
  maintain the live read models, into read models held in memory, and builds the profile from
  their rows with the getters' own builder: the profile exactly as the read models showed it then.
- `diff` compares two such profiles row by row: at two points of the recorded clock, or
  through the changes that happened between two times (`happened_since`, `happened_until`).
- `erasure_record` says when, by whom and why a learner was erased; `profile_as_of` and
  `diff` of an erased learner raise LearnerErasedError saying so (their content is gone).

A point in time means "as recorded by then": events are cut by `recorded_at`, when the store
learned of them (an event may have occurred a little earlier, in memory, before it was saved).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from dala_events.database_setup import store_or_default
from dala_events.envelopes import LoggedEvent, ProjectableEvent, RecordedEvent
from dala_events.errors import InvalidInput, LearnerErasedError, LearnerNotFound
from dala_events.events import ErasedContent, LearnerErased, UtcDateTime
from dala_events.store import EventStore, check_aware
from dala_events.store.contract import check_count
from projections.database_models import SECTIONS
from projections.dtos import FullLearnerProfileData
from projections.memory import MemoryReadModels

Point = datetime | int
"""A point in a learner's history: a timezone-aware time, or a stream version (0 = before
the first event)."""


def history(
    learner_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    event_types: Collection[str] | None = None,
    happened_since: datetime | None = None,
    happened_until: datetime | None = None,
    store: EventStore | None = None,
) -> list[RecordedEvent]:
    """The learner's events in order, each with position, version, type, the (upcast) event,
    occurred_at, recorded_at and metadata (actor, reason, correlation_id).

    Two clocks, each bounded inclusively: `since`/`until` bound when the store recorded a change
    (`recorded_at`), `happened_since`/`happened_until` when it happened (`occurred_at`: earlier
    for a backdated import). `event_types` keeps only those types. An unknown learner has an
    empty history.
    """
    check_aware("happened_since", happened_since)
    check_aware("happened_until", happened_until)
    events = _store(store).read_stream(learner_id, since=since, until=until, event_types=event_types)
    if happened_since is None and happened_until is None:
        return events
    return [event for event in events if _happened_within(event.occurred_at, happened_since, happened_until)]


def _happened_within(moment: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or moment >= since) and (until is None or moment <= until)


def profile_as_of(
    learner_id: str,
    *,
    at: datetime | None = None,
    version: int | None = None,
    happened_by: datetime | None = None,
    store: EventStore | None = None,
) -> FullLearnerProfileData | None:
    """The learner's full profile as it stood at a point of one of two clocks.

    `at`: as the read models showed it then (the changes recorded by then); `version`: after
    that change; `happened_by`: built from every change that had happened by then, as the log
    knows now (`occurred_at`: a backdated import counts from when it happened). Exactly one
    must be given. None when the learner had no profile then (not yet created, or deleted).
    LearnerErasedError once the learner was erased, for any point: the content is gone.
    """
    chosen = _store(store)
    if sum(point is not None for point in (at, version, happened_by)) != 1:
        raise InvalidInput("at", "give exactly one of `at`, `version` and `happened_by`", learner_id=learner_id)
    if version is not None:
        check_count("version", version, learner_id=learner_id)
    check_aware("at", at)
    check_aware("happened_by", happened_by)
    read_models = MemoryReadModels()

    def admitted(events: Iterator[LoggedEvent]) -> Iterator[LoggedEvent]:
        for logged in events:
            if type(logged.event) in _ERASED:  # the content is gone: no view of it, whatever was built
                raise missing_profile_error(learner_id, store=chosen)
            if happened_by is None or logged.occurred_at <= happened_by:
                yield logged

    read_models.project(admitted(chosen.events_for_projection(learner_id, up_to_version=version, until=at)))
    profile = read_models.profile(learner_id)
    if profile is None and (record := erasure_record(learner_id, store=chosen)) is not None:
        raise record.error()  # a point before the first change of an erased learner
    return profile


class ErasureRecord(BaseModel):
    """A learner's erasure as the log records it: when, by whom, why (no personal data)."""

    model_config = ConfigDict(frozen=True)

    learner_id: str
    erased_at: UtcDateTime
    """When the erasure was recorded."""
    actor: str | None
    """Who erased (None when only the key store recorded it: a log restored from a backup
    made before the erasure)."""
    reason: str | None
    erased_up_to_version: int | None
    """The last version whose content was erased (None when not recorded in this log)."""

    def error(self) -> LearnerErasedError:
        """The error saying the learner was erased, when, by whom and why."""
        return LearnerErasedError(self.learner_id, erased_at=self.erased_at, actor=self.actor, reason=self.reason)


def erasure_record(learner_id: str, *, store: EventStore | None = None) -> ErasureRecord | None:
    """The learner's erasure: its `LearnerErased` event, or, in a log without one (restored
    from a backup made before the erasure), the key store's record that their data key was
    destroyed. None for a learner never erased."""
    chosen = _store(store)
    recorded = chosen.read_stream(learner_id, event_types=[LearnerErased.model_fields["event_type"].default])
    if recorded:
        last = recorded[-1]
        assert isinstance(last.event, LearnerErased)
        actor = last.metadata.get("actor")
        reason = last.metadata.get("reason")
        return ErasureRecord(
            learner_id=last.learner_id,
            erased_at=last.recorded_at,
            actor=actor if isinstance(actor, str) else None,
            reason=reason if isinstance(reason, str) else None,
            erased_up_to_version=last.event.erased_up_to_version,
        )
    erased_at = None if chosen.cipher is None else chosen.cipher.key_store.erased_at(learner_id)
    if erased_at is None:
        return None
    return ErasureRecord(
        learner_id=learner_id, erased_at=erased_at, actor=None, reason=None, erased_up_to_version=None
    )


def missing_profile_error(
    learner_id: str, *, store: EventStore | None = None, not_found: LearnerNotFound | None = None
) -> LearnerNotFound:
    """What to raise when there is no profile of the learner to show: LearnerErasedError (when,
    by whom, why) if they were erased, else `not_found` (by default LearnerNotFound)."""
    record = erasure_record(learner_id, store=store)
    if record is not None:
        return record.error()
    return not_found if not_found is not None else LearnerNotFound(learner_id)


_ERASED = (LearnerErased, ErasedContent)
"""Events that say the learner was erased."""



class HistoryPoint(NamedTuple):
    """Where a point lands in a learner's history: the last change recorded by then."""

    version: int
    """The stream version the point resolves to (0: before the first change)."""
    recorded_at: datetime | None
    """When that change was recorded (None for version 0)."""
    last_version: int
    """The learner's latest version: how many changes the stream holds."""


def history_point(
    learner_id: str, *, at: datetime | None = None, version: int | None = None, store: EventStore | None = None
) -> HistoryPoint:
    """Resolve a time or a version of the learner's history to the change it shows.

    Raises LearnerNotFound for a learner with no events, and InvalidInput naming `version`
    for a version past the learner's last one (the message says which is the last).
    """
    if (at is None) == (version is None):
        raise InvalidInput("at", "give exactly one of `at` and `version`", learner_id=learner_id)
    chosen = store_or_default(store)
    last = chosen.stream_version(learner_id)
    if last == 0:
        raise LearnerNotFound(learner_id, f"learner {learner_id!r} has no recorded changes")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= last:
            raise InvalidInput(
                "version",
                f"must be a whole number from 0 to {last} (the last change), got {version!r}",
                learner_id=learner_id,
            )
        events = chosen.read_stream(learner_id, up_to_version=version)
    else:
        events = chosen.read_stream(learner_id, until=at)
    if not events:
        return HistoryPoint(0, None, last)
    return HistoryPoint(events[-1].version, events[-1].recorded_at, last)


class RowDiff(BaseModel):
    """One read-model row that differs between two points."""

    model_config = ConfigDict(frozen=True)

    section: str
    """The profile section (preferences, interests, ..., activity_attempts)."""
    key: str
    """What identifies the row within its section (category, interest name, LO id, ...)."""
    change: Literal["added", "changed", "removed"]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    fields: tuple[str, ...] = ()
    """For a change: the columns whose values differ."""


class ProfileDiff(BaseModel):
    """What was added, changed and removed in a learner's profile between two points."""

    model_config = ConfigDict(frozen=True)

    learner_id: str
    start_version: int
    """The last change the start counts (for a diff by when changes happened, the latest
    version among those counted: a backdated change may come after changes it precedes)."""
    end_version: int
    """The last change the end counts (the same way)."""
    existed_before: bool
    exists_after: bool
    rows: tuple[RowDiff, ...]
    happened_since: UtcDateTime | None = None
    """For a diff by when changes happened: the changes counted happened at or after this..."""
    happened_until: UtcDateTime | None = None
    """... and at or before this (None: no bound on that side)."""

    @property
    def added(self) -> list[RowDiff]:
        """Rows present at the end and not at the start."""
        return [row for row in self.rows if row.change == "added"]

    @property
    def changed(self) -> list[RowDiff]:
        """Rows present at both points with different values."""
        return [row for row in self.rows if row.change == "changed"]

    @property
    def removed(self) -> list[RowDiff]:
        """Rows present at the start and gone at the end."""
        return [row for row in self.rows if row.change == "removed"]


def diff(
    learner_id: str,
    start: Point | None = None,
    end: Point | None = None,
    *,
    happened_since: datetime | None = None,
    happened_until: datetime | None = None,
    store: EventStore | None = None,
) -> ProfileDiff:
    """Compare the learner's profile at `start` with the one at `end`, row by row.

    Each point is a timezone-aware datetime (as recorded by then) or a stream version. Or, by
    when changes happened instead: give `happened_since` and/or `happened_until` (not `start`
    and `end`), and the diff is what the changes that happened between them did, as `history`
    bounds them (inclusively; a backdated change counts from when it happened): the profile
    built from every change that happened before `happened_since` (none when not given)
    against the one built from every change that happened by `happened_until` (all when not
    given). The profile's own last_updated_at is left out: it changes with every event and
    says nothing on its own.
    """
    chosen = _store(store)
    by_happening = happened_since is not None or happened_until is not None
    if by_happening:
        if start is not None or end is not None:
            raise InvalidInput(
                "start", "give start and end, or happened_since and happened_until, not both", learner_id=learner_id
            )
        check_aware("happened_since", happened_since)
        check_aware("happened_until", happened_until)
        if happened_since is not None and happened_until is not None and happened_since > happened_until:
            raise InvalidInput(
                "happened_since", "is later than happened_until; nothing can lie between them", learner_id=learner_id
            )
    else:
        start = _checked_point(start, "start")
        end = _checked_point(end, "end")
    events = chosen.read_stream(learner_id)
    if any(type(event.event) in _ERASED for event in events):
        raise missing_profile_error(learner_id, store=chosen)
    if by_happening:
        earlier = [] if happened_since is None else [e for e in events if e.occurred_at < happened_since]
        later = [e for e in events if _happened_within(e.occurred_at, None, happened_until)]
    else:
        assert start is not None and end is not None  # checked above
        earlier = events[: _version_at(events, start)]
        later = events[: _version_at(events, end)]
    before = _project_profile(learner_id, earlier)
    after = _project_profile(learner_id, later)
    rows: list[RowDiff] = []
    before_rows, after_rows = _keyed_rows(before), _keyed_rows(after)
    for section in SECTIONS:
        old, new = before_rows.get(section, {}), after_rows.get(section, {})
        for key, row in new.items():
            if key not in old:
                rows.append(RowDiff(section=section, key=key, change="added", before=None, after=row))
            elif old[key] != row:
                fields = tuple(name for name in row if row[name] != old[key].get(name))
                rows.append(
                    RowDiff(section=section, key=key, change="changed", before=old[key], after=row, fields=fields)
                )
        for key, row in old.items():
            if key not in new:
                rows.append(RowDiff(section=section, key=key, change="removed", before=row, after=None))
    return ProfileDiff(
        learner_id=learner_id,
        start_version=max((event.version for event in earlier), default=0),
        end_version=max((event.version for event in later), default=0),
        existed_before=before is not None,
        exists_after=after is not None,
        rows=tuple(rows),
        happened_since=happened_since,
        happened_until=happened_until,
    )


# ---------------------------------------------------------------------------------------------
# As-of views: the projectors into read models in memory
# ---------------------------------------------------------------------------------------------


def _project_profile(learner_id: str, events: Sequence[ProjectableEvent]) -> FullLearnerProfileData | None:
    """Run `events` through the projectors into empty read models in memory and build the
    profile from their rows as the getters build it from the tables."""
    if not events:
        return None
    read_models = MemoryReadModels()
    read_models.project(events)
    return read_models.profile(learner_id)


def _store(store: EventStore | None) -> EventStore:
    if store is not None and not isinstance(store, EventStore):
        raise InvalidInput("store", f"must be an EventStore or None, not {type(store).__name__}")
    return store_or_default(store)


def _checked_point(point: object, field_name: str) -> Point:
    if isinstance(point, bool) or not isinstance(point, int | datetime):
        raise InvalidInput(field_name, f"must be a datetime or a stream version, not {type(point).__name__}")
    if isinstance(point, int):
        if point < 0:
            raise InvalidInput(field_name, f"a version must be >= 0, got {point}")
        return point
    check_aware(field_name, point)
    return point


def _version_at(events: Sequence[RecordedEvent], point: Point) -> int:
    if isinstance(point, int):
        return min(point, len(events))
    return sum(1 for event in events if event.recorded_at <= point)


def _keyed_rows(profile: FullLearnerProfileData | None) -> dict[str, dict[str, dict[str, Any]]]:
    if profile is None:
        return {}
    keyed: dict[str, dict[str, dict[str, Any]]] = {}
    for section, model in SECTIONS.items():
        rows: Iterable[BaseModel] = getattr(profile, section)
        key_columns = [name for name in model.natural_key if name != "learner_id"]
        separator = " @ " if model.insert_only else " / "
        by_key: dict[str, dict[str, Any]] = {}
        for row in rows:
            values = row.model_dump(mode="json", exclude={"learner_id"})
            key = separator.join(str(values[name]) for name in key_columns)
            while key in by_key:  # two identical attempts: told apart by a mark
                key += "'"
            by_key[key] = values
        keyed[section] = by_key
    return keyed


__all__ = [
    "HistoryPoint",
    "Point",
    "ProfileDiff",
    "RowDiff",
    "diff",
    "history",
    "history_point",
    "profile_as_of",
]
