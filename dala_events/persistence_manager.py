"""The persistence-layer document's functions and DTOs, on top of the event store.

Writers load the learner's aggregate, make the change through it (so the same rules decide
and the same events are recorded) and append; getters read the eight read-model tables.
Each function takes an optional `store`; without one it uses the process default set up by
`database_setup.init_db`.

Timestamps (created_at, timestamp, started_at, completed_at, earned_date, attempt_timestamp)
are filled by the store from the event's time: they are optional on input and must be left
empty there; getters always fill them.

Every argument is checked before anything is read or written: a learner id, DTO, store or
connection of the wrong type or value raises InvalidInput naming it (`learner_id`, `data`,
`store`, `connection`), and the DTO's values meet the events' limits (see README "Limits").

`export_learner` is the subject access request: everything held about a learner in one
document (the profile, the full history, the disclosure log); it records its own disclosure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Select, bindparam, select

from dala_events import audit
from dala_events.attribution import require_explicit_actor
from dala_events.database_setup import sql_store_or_default
from dala_events.dialects import read_transaction
from dala_events.disclosures import Disclosure, list_disclosures, record_disclosure
from dala_events.erasure import Erasure, erase_learner
from dala_events.errors import InvalidInput, LearnerNotFound
from dala_events.events import UtcDateTime, utc_now
from dala_events.hlp_module import LearnerProfile
from dala_events.store import EventStore, SqlEventStore
from dala_events.store.contract import valid_learner_id
from projections.database_models import SECTIONS
from projections.dtos import (
    ActivityAttemptData,
    BadgeData,
    CognitiveMetricData,
    FullLearnerProfileData,
    InterestData,
    LOProgressData,
    PreferenceData,
    RowData,
    StruggleData,
)
from projections.profiles import build_profile, section_rows
from projections.projectors import learner_profiles

__all__ = [
    "ActivityAttemptData",
    "BadgeData",
    "CognitiveMetricData",
    "Disclosure",
    "Erasure",
    "ExportedEvent",
    "FullLearnerProfileData",
    "InterestData",
    "LOProgressData",
    "LearnerExport",
    "LearnerSummary",
    "PreferenceData",
    "RowData",
    "StruggleData",
    "add_activity_attempt",
    "add_badge_record",
    "add_interest",
    "add_or_update_cognitive_metric",
    "add_or_update_lo_progress",
    "add_or_update_preference",
    "create_learner_profile",
    "delete_learner_profile",
    "erase_learner",
    "export_learner",
    "get_activity_attempts",
    "get_badges",
    "get_cognitive_metrics",
    "get_full_learner_profile_data",
    "get_interests",
    "get_lo_progress",
    "get_preferences",
    "get_struggles",
    "list_learners",
    "remove_interest",
    "remove_preference",
    "remove_struggle",
    "revoke_badge",
]

# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


def create_learner_profile(learner_id: str, *, store: SqlEventStore | None = None) -> FullLearnerProfileData:
    """Create the learner's profile (no event if it already exists) and return it."""
    valid_learner_id(learner_id)
    store = sql_store_or_default(store)  # it is read back from the read models: refuse others first
    LearnerProfile.open(learner_id, persistence_enabled=False, store=store).run_command(
        lambda profile: profile.create()
    )
    profile = get_full_learner_profile_data(learner_id, store=store)
    assert profile is not None, "the profile was just created"
    return profile


def delete_learner_profile(learner_id: str, *, store: EventStore | None = None) -> None:
    """Delete the learner's profile from every read model; its history stays in the log,
    readable to audits (`erase_learner` is what makes the history's content unreadable)."""
    require_explicit_actor("erasure")
    _command(learner_id, store, lambda profile: profile.delete())


def add_or_update_preference(learner_id: str, data: PreferenceData, *, store: EventStore | None = None) -> bool:
    """Set a preference. Returns whether anything changed."""
    data = _checked_data(learner_id, data, PreferenceData)
    return _command(learner_id, store, lambda profile: profile.update_preference(data.category, data.value))


def remove_preference(learner_id: str, category: str, *, store: EventStore | None = None) -> bool:
    """Remove the preference of `category`. Returns whether there was one."""
    return _command(learner_id, store, lambda profile: profile.remove_preference(category))


def add_interest(learner_id: str, data: InterestData, *, store: EventStore | None = None) -> bool:
    """Add an interest. Returns whether it was new."""
    data = _checked_data(learner_id, data, InterestData)
    return _command(learner_id, store, lambda profile: profile.add_interest(data.interest_name))


def remove_interest(learner_id: str, interest_name: str, *, store: EventStore | None = None) -> bool:
    """Remove an interest. Returns whether it was there."""
    return _command(learner_id, store, lambda profile: profile.remove_interest(interest_name))


def add_struggle(learner_id: str, data: StruggleData, *, store: EventStore | None = None) -> bool:
    """Add a struggle area. Returns whether it was new."""
    data = _checked_data(learner_id, data, StruggleData)
    return _command(learner_id, store, lambda profile: profile.add_struggle_area(data.struggle_description))


def remove_struggle(learner_id: str, struggle_description: str, *, store: EventStore | None = None) -> bool:
    """Remove a struggle area. Returns whether it was there."""
    return _command(learner_id, store, lambda profile: profile.remove_struggle_area(struggle_description))


def add_or_update_cognitive_metric(
    learner_id: str, data: CognitiveMetricData, *, store: EventStore | None = None
) -> bool:
    """Record a diagnostic task's metrics. Returns whether they differ from the stored ones."""
    data = _checked_data(learner_id, data, CognitiveMetricData)
    return _command(
        learner_id, store, lambda profile: profile.add_cognitive_metric(data.task_name, data.metric_details)
    )


def add_or_update_lo_progress(learner_id: str, data: LOProgressData, *, store: EventStore | None = None) -> bool:
    """Set an LO's status, score and details (see `LearnerProfile.update_lo_progress`)."""
    data = _checked_data(learner_id, data, LOProgressData)
    return _command(
        learner_id, store, lambda profile: profile.update_lo_progress(data.lo_id, data.status, data.score, data.details)
    )


def add_badge_record(learner_id: str, data: BadgeData, *, store: EventStore | None = None) -> bool:
    """Award a badge. Returns whether the learner did not already hold it."""
    data = _checked_data(learner_id, data, BadgeData)
    return _command(learner_id, store, lambda profile: profile.add_badge(data.badge_id, data.badge_name, data.details))


def revoke_badge(learner_id: str, badge_id: str, *, store: EventStore | None = None) -> bool:
    """Take a badge back. Returns whether the learner held it."""
    return _command(learner_id, store, lambda profile: profile.revoke_badge(badge_id))


def add_activity_attempt(learner_id: str, data: ActivityAttemptData, *, store: EventStore | None = None) -> bool:
    """Record an activity attempt (always recorded)."""
    data = _checked_data(learner_id, data, ActivityAttemptData)
    return _command(
        learner_id,
        store,
        lambda profile: profile.record_activity_attempt(
            data.lo_id, data.activity_id, data.activity_type, data.score, data.completed, data.attempt_details
        ),
    )


D = TypeVar("D", bound=RowData)
T = TypeVar("T")


def _checked_data(learner_id: str, data: object, dto: type[D]) -> D:
    """`data` if it is a `dto` for this learner with no store-filled field set, else InvalidInput."""
    learner_id = valid_learner_id(learner_id)
    if not isinstance(data, dto):
        raise InvalidInput("data", f"must be a {dto.__name__}, not {type(data).__name__}", learner_id=learner_id)
    data.check_input(learner_id)
    return data


def _command(learner_id: str, store: EventStore | None, change: Callable[[LearnerProfile], T]) -> T:
    """Make `change` to the learner's existing profile as a command: saved in one append, and
    on ConcurrencyError made again on what the other writer appended (only that is read), with
    bounded, jittered retries (`LearnerProfile.run_command`). A learner several processes write
    at once (a class's shared record) gets every change, each once."""
    if store is not None and not isinstance(store, EventStore):
        raise InvalidInput("store", f"must be an EventStore or None, not {type(store).__name__}")
    return LearnerProfile.load(learner_id, persistence_enabled=False, store=store).run_command(change)


# ---------------------------------------------------------------------------------------------
# Getters: read models only
# ---------------------------------------------------------------------------------------------


def _section_query(section: str) -> Select[Any]:
    model = SECTIONS[section]
    table = model.table
    columns = [column for column in table.columns if column.name != "id"]
    return (
        select(*columns)
        .where(table.c.learner_id == bindparam("learner_id"))
        .order_by(*(table.c[name] for name in model.order))
    )


_SECTION_QUERIES = {section: _section_query(section) for section in SECTIONS}
"""Each section's rows of a learner (column -> value, the surrogate id left out), in its order."""


def _rows(connection: Connection, section: str, learner_id: str) -> list[dict[str, Any]]:
    result = connection.execute(_SECTION_QUERIES[section], {"learner_id": learner_id})
    return [dict(row) for row in result.mappings()]


def _read(connection: Connection, section: str, learner_id: str) -> list[Any]:
    return section_rows(section, _rows(connection, section, learner_id))


def _get(section: str, learner_id: str, store: SqlEventStore | None) -> list[Any]:
    learner_id = valid_learner_id(learner_id)
    with read_transaction(sql_store_or_default(store).engine) as connection:
        return _read(connection, section, learner_id)


class LearnerSummary(BaseModel):
    """One learner as `list_learners` shows them: from the event log, plus whether a live
    profile exists in the read models."""

    model_config = ConfigDict(frozen=True)

    learner_id: str
    created_at: UtcDateTime | None
    """When the learner's first change was recorded (None: no recorded time of theirs reads back)."""
    last_updated_at: UtcDateTime | None
    """When the learner's latest change was recorded (None: as `created_at`)."""
    changes: int
    """How many changes (events) the learner's history holds."""
    has_profile: bool
    """False once the profile was deleted (its history stays) or the learner erased."""
    erased: bool = False
    """The learner was erased: their history's content is unreadable for good."""
    damaged: str | None = None
    """The rows of theirs whose recorded time does not read back (a damaged database), named."""


def list_learners(
    *, after: str | None = None, limit: int = 100, store: SqlEventStore | None = None
) -> list[LearnerSummary]:
    """The learners the store knows, in id order, at most `limit` of them after the id `after`
    (pass the last id of one page to get the next). A learner whose recorded times do not read
    back (a damaged database) is listed too, the rows named in `damaged`."""
    chosen = sql_store_or_default(store)
    streams = chosen.list_streams(after=after, limit=limit)
    if not streams:
        return []
    ids = [stream.learner_id for stream in streams]
    erased = chosen.erasures(ids)
    with read_transaction(chosen.engine) as connection:
        live = set(connection.execute(select(learner_profiles.c.id).where(learner_profiles.c.id.in_(ids))).scalars())

    return [
        LearnerSummary(
            learner_id=stream.learner_id,
            created_at=stream.first_recorded_at,
            last_updated_at=stream.last_recorded_at,
            changes=stream.version,
            has_profile=stream.learner_id in live,
            erased=stream.learner_id in erased,
            damaged=stream.damaged,
        )
        for stream in streams
    ]


def get_full_learner_profile_data(
    learner_id: str, *, store: SqlEventStore | None = None, connection: Connection | None = None
) -> FullLearnerProfileData | None:
    """The learner's whole profile from the read models, or None if there is none.

    Read in one transaction, so the sections agree with each other.
    """
    learner_id = valid_learner_id(learner_id)
    if connection is not None and not isinstance(connection, Connection):
        raise InvalidInput("connection", f"must be a SQLAlchemy Connection or None, not {type(connection).__name__}")
    if connection is None:
        with read_transaction(sql_store_or_default(store).engine) as own:
            return get_full_learner_profile_data(learner_id, connection=own)
    header = connection.execute(select(learner_profiles).where(learner_profiles.c.id == learner_id)).first()
    if header is None:
        return None
    sections = {section: _rows(connection, section, learner_id) for section in SECTIONS}
    try:
        return build_profile(dict(header._mapping), sections)
    except pydantic.ValidationError as error:  # pragma: no cover - read models are written by projectors only
        raise InvalidInput.from_pydantic(error, learner_id=learner_id) from None


def get_preferences(learner_id: str, *, store: SqlEventStore | None = None) -> list[PreferenceData]:
    """The learner's preferences, by category."""
    return _get("preferences", learner_id, store)


def get_interests(learner_id: str, *, store: SqlEventStore | None = None) -> list[InterestData]:
    """The learner's interests, oldest first."""
    return _get("interests", learner_id, store)


def get_struggles(learner_id: str, *, store: SqlEventStore | None = None) -> list[StruggleData]:
    """The learner's struggle areas, oldest first."""
    return _get("struggles", learner_id, store)


def get_cognitive_metrics(learner_id: str, *, store: SqlEventStore | None = None) -> list[CognitiveMetricData]:
    """The learner's latest metrics per diagnostic task, by task name."""
    return _get("cognitive_metrics", learner_id, store)


def get_lo_progress(learner_id: str, *, store: SqlEventStore | None = None) -> list[LOProgressData]:
    """The learner's LO progress, by start time."""
    return _get("lo_progress", learner_id, store)


def get_badges(learner_id: str, *, store: SqlEventStore | None = None) -> list[BadgeData]:
    """The learner's badges, by date earned."""
    return _get("badges", learner_id, store)


def get_activity_attempts(learner_id: str, *, store: SqlEventStore | None = None) -> list[ActivityAttemptData]:
    """The learner's activity attempts, oldest first."""
    return _get("activity_attempts", learner_id, store)


# ---------------------------------------------------------------------------------------------
# Export: everything held about a learner (subject access, portability)
# ---------------------------------------------------------------------------------------------


class ExportedEvent(BaseModel):
    """One change of a learner's history as the export (and `dala history --json`) shows it:
    what (type and payload), when (occurred and recorded), who and why (metadata)."""

    model_config = ConfigDict(frozen=True)

    position: int
    event_id: str
    learner_id: str
    version: int
    event_type: str
    schema_version: int
    occurred_at: UtcDateTime
    recorded_at: UtcDateTime
    payload: dict[str, Any]
    metadata: dict[str, Any]
    """actor, reason and correlation_id."""


class LearnerExport(BaseModel):
    """Everything held about one learner: `model_dump(mode="json")` is the export document."""

    model_config = ConfigDict(frozen=True)

    format: Literal["dala-learner-export"] = "dala-learner-export"
    format_version: Literal[1] = 1
    learner_id: str
    exported_at: UtcDateTime
    profile: FullLearnerProfileData | None
    """The profile as the read models hold it (None once it was deleted)."""
    history: list[ExportedEvent]
    """Every change, oldest first, with who made it and why."""
    disclosures: list[Disclosure]
    """Every disclosure of the learner's data, this export's own included."""


def export_learner(learner_id: str, *, store: SqlEventStore | None = None) -> LearnerExport:
    """Everything held about the learner: the profile as the read models hold it, the full
    history (what, when, who, why) and the disclosure log, this export included.

    Records the disclosure (`export_json`) under the current `recorded_as` attribution before
    returning. LearnerNotFound for a learner with no recorded changes (nothing is recorded
    then); a deleted learner's export has no profile but the whole history.
    """
    chosen = sql_store_or_default(store)
    events = audit.history(learner_id, store=chosen)
    if not events:
        raise LearnerNotFound(learner_id, f"learner {learner_id!r} has no recorded changes")
    profile = get_full_learner_profile_data(learner_id, store=chosen)
    history = [
        ExportedEvent(
            position=event.position,
            event_id=event.event_id,
            learner_id=event.learner_id,
            version=event.version,
            event_type=event.event_type,
            schema_version=event.schema_version,
            occurred_at=event.occurred_at,
            recorded_at=event.recorded_at,
            payload=event.event.model_dump(mode="json", exclude={"event_type"}),
            metadata=dict(event.metadata),
        )
        for event in events
    ]
    record_disclosure(learner_id, "export_json", store=chosen)
    return LearnerExport(
        learner_id=learner_id,
        exported_at=utc_now(),
        profile=profile,
        history=history,
        disclosures=list_disclosures(learner_id, store=chosen),
    )
