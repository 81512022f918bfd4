"""Who made a change and why: the metadata recorded with every event.

Every event's metadata names an actor (`teacher:42`, `learner:student123`,
`system:assessment`), an optional reason and a correlation id tying together the events of
one piece of work. Callers set them for a block:

    with recorded_as(actor="teacher:42", reason="parent meeting"):
        profile.add_struggle_area("Fractions")

Outside any block the actor is `system`, there is no reason, and each event is its own
correlation (its correlation id is its event id). Blocks nest; an inner block inherits what
it does not set. The context is a contextvar, so threads and asyncio tasks each see their own.

With DALA_REQUIRE_ACTOR=1 that silent `system` is refused: a write, an erasure or a
disclosure made outside every block that names an actor raises `ActorRequired` (see
`require_explicit_actor`). Off by default.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dala_events.errors import ActorRequired, InvalidInput
from dala_events.events import check_time, utc_now
from dala_events.switches import switch

DEFAULT_ACTOR = "system"
MAX_ACTOR_LENGTH = 200
MAX_REASON_LENGTH = 1000
MAX_CORRELATION_ID_LENGTH = 200
_ACTOR_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*(:[^\s:][^\s]*)?")
_CORRELATION_ID_PATTERN = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class Attribution:
    """The actor, reason and correlation id events are recorded under."""

    actor: str = DEFAULT_ACTOR
    reason: str | None = None
    correlation_id: str | None = None
    explicit_actor: bool = False
    """Whether a `recorded_as` block named the actor (False: the default `system`)."""

    def metadata_for(self, event_id: str) -> dict[str, Any]:
        """The metadata document of one event recorded under this attribution.

        Every event's attribution passes here, so this is where DALA_REQUIRE_ACTOR refuses an
        event whose actor nobody named (ActorRequired, before the event exists).
        """
        if not self.explicit_actor:
            require_explicit_actor("write")
        return {
            "actor": self.actor,
            "reason": self.reason,
            "correlation_id": self.correlation_id or event_id,
        }


_current: ContextVar[Attribution] = ContextVar("dala_attribution", default=Attribution())  # noqa: B039 (frozen)


def current_attribution() -> Attribution:
    """The attribution events recorded now will carry."""
    return _current.get()


def _shown(value: object) -> str:
    """`value` in a message: a str's repr cut to 60 characters; anything else by its type only
    (the repr of hostile input, a 100,000-deep dict say, may itself fail or be huge)."""
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    text = repr(value[:60])
    return text if len(value) <= 57 else repr(value[:57])[:-1] + "...'"


def check_actor(actor: object) -> str:
    """Return `actor` if it reads `kind` or `kind:id` (e.g. `teacher:42`): a str of at most 200
    printable characters without whitespace; else raise InvalidInput naming `actor`."""
    if (
        not isinstance(actor, str)
        or len(actor) > MAX_ACTOR_LENGTH
        or not actor.isprintable()
        or not _ACTOR_PATTERN.fullmatch(actor)
    ):
        raise InvalidInput(
            "actor",
            f"must be a str like 'kind' or 'kind:id' (e.g. 'teacher:42'), printable, at most "
            f"{MAX_ACTOR_LENGTH} characters; got {_shown(actor)}",
        )
    return actor


def check_reason(reason: object) -> str:
    """Return `reason` if it is a non-blank str of at most 1000 printable characters (one line,
    no NUL or lone surrogate), else raise InvalidInput naming `reason`."""
    if not isinstance(reason, str):
        raise InvalidInput("reason", f"must be a str, not {type(reason).__name__}")
    if not reason.strip() or len(reason) > MAX_REASON_LENGTH or not reason.isprintable():
        raise InvalidInput(
            "reason",
            f"must be non-blank, printable (one line) and at most {MAX_REASON_LENGTH} characters; got {_shown(reason)}",
        )
    return reason


def check_correlation_id(correlation_id: object) -> str:
    """Return `correlation_id` if it is a str of 1 to 200 printable characters without
    whitespace (a UUID, a job or request id), else raise InvalidInput naming `correlation_id`."""
    if not isinstance(correlation_id, str):
        raise InvalidInput("correlation_id", f"must be a str, not {type(correlation_id).__name__}")
    if (
        len(correlation_id) > MAX_CORRELATION_ID_LENGTH
        or not correlation_id.isprintable()
        or not _CORRELATION_ID_PATTERN.fullmatch(correlation_id)
    ):
        raise InvalidInput(
            "correlation_id",
            f"must be 1 to {MAX_CORRELATION_ID_LENGTH} printable characters without whitespace; "
            f"got {_shown(correlation_id)}",
        )
    return correlation_id


@contextmanager
def recorded_as(
    actor: str | None = None, *, reason: str | None = None, correlation_id: str | None = None
) -> Iterator[Attribution]:
    """Record every event made inside the block as done by `actor`, for `reason`.

    The block gets a fresh correlation id unless one is given (or an outer block set one and
    this block sets none of its own).
    """
    outer = _current.get()
    if actor is not None:
        check_actor(actor)
    if reason is not None:
        check_reason(reason)
    if correlation_id is not None:
        check_correlation_id(correlation_id)
    attribution = Attribution(
        actor=actor if actor is not None else outer.actor,
        reason=reason if reason is not None else outer.reason,
        correlation_id=correlation_id or outer.correlation_id or str(uuid.uuid4()),
        explicit_actor=actor is not None or outer.explicit_actor,
    )
    token = _current.set(attribution)
    try:
        yield attribution
    finally:
        _current.reset(token)


_occurring_at: ContextVar[datetime | None] = ContextVar("dala_occurring_at", default=None)


def occurrence_time() -> datetime:
    """When events recorded now happened: the time set by `occurring_at`, else the clock now."""
    return _occurring_at.get() or utc_now()


@contextmanager
def occurring_at(when: datetime) -> Iterator[datetime]:
    """Record the changes made inside the block as having happened at `when`.

    For entering what happened earlier (a paper assessment typed in later, an imported
    record, a simulation): each event's `occurred_at` (and the times the read models derive
    from it) is `when`, while `recorded_at` stays the moment the store learns of it, so
    audits, which cut on `recorded_at`, still see when the record was made. `when` must be
    timezone-aware, not in the future and not before 0001-01-02 UTC (`events.EARLIEST_TIME`);
    otherwise InvalidInput names `occurred_at`.

    The block records (and yields) `when` in UTC, the zone the log gives back: a date derived
    from it (a badge's earned_date) is then the same live, reloaded and rebuilt.
    """
    try:
        utc = check_time(when)
    except ValueError as error:
        raise InvalidInput("occurred_at", str(error)) from None
    if utc > utc_now():
        raise InvalidInput("occurred_at", f"must not be in the future, got {when.isoformat()}")
    token = _occurring_at.set(utc)
    try:
        yield utc
    finally:
        _occurring_at.reset(token)


REQUIRE_ACTOR_ENV = "DALA_REQUIRE_ACTOR"


def actor_required() -> bool:
    """Whether DALA_REQUIRE_ACTOR is on, read by the one rule of every switch (`switches`):
    1/true/yes/on; off when unset, empty or 0/false/no/off.

    Any other value is InvalidInput naming the variable: a typo must not turn the check off.
    """
    raw = os.environ.get(REQUIRE_ACTOR_ENV, "")
    known = _REQUIRE_ACTOR_VALUES.get(raw)
    if known is not None:  # every event outside a `recorded_as` block asks: the common answer first
        return known
    return switch(REQUIRE_ACTOR_ENV, raw) or False


_REQUIRE_ACTOR_VALUES = {"": False, "0": False, "1": True}


def require_explicit_actor(action: str) -> Attribution:
    """The current attribution, after checking that a `recorded_as` block named its actor when
    DALA_REQUIRE_ACTOR is on; else ActorRequired naming `action` (write, erasure, disclosure)."""
    attribution = _current.get()
    if not attribution.explicit_actor and actor_required():
        raise ActorRequired(action)
    return attribution
