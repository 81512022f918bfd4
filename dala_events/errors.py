"""The package's errors: one small hierarchy, each message naming the learner, field or event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pydantic


class DalaError(Exception):
    """Base of every error this package raises on purpose.

    Each one pickles with the arguments it was made with, so it crosses a process boundary (a
    worker pool's result) as itself, whatever its constructor takes."""

    _made_with: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> DalaError:
        error = super().__new__(cls, *args)
        error._made_with = (args, kwargs)
        return error

    def __reduce__(self) -> tuple[Any, ...]:
        args, kwargs = self._made_with
        return _remade, (type(self), args, kwargs)


def _remade(cls: type[DalaError], args: tuple[Any, ...], kwargs: dict[str, Any]) -> DalaError:
    return cls(*args, **kwargs)


def in_words(error: OSError) -> str:
    """An OS error for a message: its words ("no such file or directory"), without the number
    and class name Python prints; the message around it says which file and what was being done."""
    return (error.strerror or str(error)).lower()


class InvalidInput(DalaError, ValueError):
    """Input refused before anything was written; `field` names the offending field."""

    def __init__(self, field: str, problem: str, *, learner_id: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.learner_id = learner_id
        where = f" (learner {learner_id!r})" if learner_id is not None else ""
        super().__init__(f"{field}: {problem}{where}")

    @classmethod
    def from_pydantic(
        cls, error: pydantic.ValidationError, *, learner_id: str | None = None, prefix: str = ""
    ) -> InvalidInput:
        """The first problem of a pydantic ValidationError, as an InvalidInput naming its field."""
        first = error.errors(include_url=False)[0]
        location = ".".join(str(part) for part in first["loc"] if part != "function-after")
        field = f"{prefix}.{location}" if prefix and location else (location or prefix or "input")
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "string_unicode":
            message = "must be Unicode text, without lone surrogates"
        elif first["type"].endswith("_type"):  # wrong type: say which one was given
            message = f"{message}, not {type(first['input']).__name__}"
        return cls(field, message, learner_id=learner_id)


class LearnerNotFound(DalaError, LookupError):
    """No (live) profile exists for the learner."""

    def __init__(self, learner_id: str, message: str | None = None) -> None:
        self.learner_id = learner_id
        super().__init__(message or f"learner {learner_id!r} has no profile")


class LearnerErasedError(LearnerNotFound):
    """The learner was erased: their data is gone for good and their id takes no new profile.

    Says when, by whom and why when the erasure's record (its `LearnerErased` event) is at hand.
    """

    def __init__(
        self,
        learner_id: str,
        *,
        erased_at: datetime | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.erased_at = erased_at
        self.actor = actor
        self.reason = reason
        when = "" if erased_at is None else f" at {erased_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        who = "" if actor is None else f" by {actor}"
        why = "" if reason is None else f" ({reason})"
        super().__init__(
            learner_id,
            f"learner {learner_id!r} was erased{when}{who}{why}: their data is gone for good and "
            "the id cannot be used for a new profile",
        )


class ErasureFailed(DalaError):
    """A learner could not be erased (nothing was erased): the message says why and what to do."""

    def __init__(self, learner_id: str, problem: str) -> None:
        self.learner_id = learner_id
        super().__init__(f"learner {learner_id!r} was not erased: {problem}")


class ConcurrencyError(DalaError):
    """Another writer appended to the learner's stream first; nothing of this append was written.

    Reload the profile (its state is stale) and make the change again.
    """

    def __init__(self, learner_id: str, expected_version: int, actual_version: int | None) -> None:
        self.learner_id = learner_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        actual = "unknown" if actual_version is None else str(actual_version)
        super().__init__(
            f"learner {learner_id!r}: expected stream version {expected_version}, "
            f"but it is at {actual}; reload the profile and retry"
        )


class CorruptEventError(DalaError):
    """A stored event could not be read back; names its log position and type."""

    def __init__(self, position: int, event_type: str, problem: str) -> None:
        self.position = position
        self.event_type = event_type
        super().__init__(f"event at log position {position} ({event_type}): {problem}")


class SchemaMismatchError(DalaError):
    """The database's tables do not match this code's definitions; says what to run."""


class DatabaseNotFound(DalaError):
    """There is no DALA database where one was to be read; nothing was created."""

    def __init__(self, where: str, hint: str = "create one with `dala init` (or `dala demo`)") -> None:
        self.where = where
        super().__init__(f"no database at {where}; {hint}")


class RefusedToDestroy(DalaError):
    """A command would have destroyed records (the event log, or read models an empty log
    cannot rebuild); nothing was changed."""


class ActorRequired(InvalidInput):
    """DALA_REQUIRE_ACTOR is on and a write, erasure or disclosure names no actor; nothing was
    written. Make it inside `recorded_as(actor=...)` (on the command line: `dala --actor ...`)."""

    def __init__(self, action: str) -> None:
        self.action = action
        super().__init__(
            "actor",
            f"DALA_REQUIRE_ACTOR is on and this {action} names no actor; make it inside "
            "recorded_as(actor=...) (on the command line: dala --actor KIND:ID ...)",
        )


class DatabaseFault(DalaError):
    """The database failed under a statement: full, read-only, damaged, locked too long,
    unreachable, or the connection to it lost. `database` names it (a SQLite file, or the URL
    without its password); the driver's error is chained (`__cause__`). `disconnected`: the
    connection was lost (the next call gets a new one). A statement refused for what it asked
    (a broken constraint, a missing table) is not a fault: it keeps SQLAlchemy's error, and a
    stale append is ConcurrencyError as ever."""

    def __init__(self, database: str, problem: str, hint: str, *, disconnected: bool = False) -> None:
        self.database = database
        self.problem = problem
        self.disconnected = disconnected
        super().__init__(f"the database {database} cannot be used: {problem}; {hint}")


class SubscriptionError(DalaError):
    """A subscription cannot be opened or go on as asked: it delivers another filter's events,
    or it was reset since it was opened here. Names the subscription and says what to do."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        super().__init__(f"subscription {name!r} {problem}")
