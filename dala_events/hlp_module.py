"""The document's `LearnerProfile`: the learner aggregate, loaded and saved through a store.

`LearnerProfile` is a thin facade: every rule lives in `dala_events.aggregate` (pure: it
decides, records events and applies them); loading and saving go through a
`LearnerRepository` on an `EventStore` (the process default of `database_setup` unless one
is given). What the facade adds is the document's persistence behaviour:

    profile = get_or_create_learner_profile("student123")
    profile.add_interest("Robotics")      # persisted at once
    profile.persistence_enabled = False
    profile.update_preference("visual_preference_task_1", "visual")
    profile.save()                        # flushes what was pending
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from dala_events.aggregate import (
    PREDEFINED_INTERESTS,
    PREDEFINED_STRUGGLE_AREAS,
    ActivityAttempt,
    Badge,
    CognitiveMetric,
    LearnerAggregate,
    LearnerState,
    LOProgress,
    Preference,
)
from dala_events.audit import missing_profile_error
from dala_events.database_setup import store_or_default
from dala_events.envelopes import NewEvent
from dala_events.errors import LearnerNotFound
from dala_events.repository import COMMAND_ATTEMPTS, LearnerRepository
from dala_events.store import EventStore

T = TypeVar("T")

__all__ = [
    "PREDEFINED_INTERESTS",
    "PREDEFINED_STRUGGLE_AREAS",
    "ActivityAttempt",
    "Badge",
    "CognitiveMetric",
    "LOProgress",
    "LearnerProfile",
    "LearnerState",
    "Preference",
    "get_or_create_learner_profile",
]


class LearnerProfile(LearnerAggregate):
    """One learner's profile, persisted: the aggregate plus the document's save behaviour.

    Loading replays the learner's events; a learner with no live profile gets a
    `LearnerProfileCreated` event; an erased learner's id is refused with LearnerErasedError.
    Every mutation validates its input (raising InvalidInput
    naming the field), records at most one event (none when nothing would change) and applies
    it in memory. With `persistence_enabled` the event is appended at once; otherwise it waits
    in `pending_events` until `save()`, and nothing at all, the creation included, is written
    before then.

    On ConcurrencyError (another writer changed the learner since this profile was loaded)
    this object is stale: load the learner again and redo the change.
    """

    _repository: LearnerRepository
    _persistence_enabled: bool

    def __init__(
        self,
        learner_id: str,
        *,
        persistence_enabled: bool = True,
        store: EventStore | None = None,
    ) -> None:
        self._open(learner_id, persistence_enabled, store)
        if self.erased:
            raise self._erased_error()
        if persistence_enabled and not self.exists:
            # Another process may create the learner at the same moment: its creation is then
            # read and this one records nothing (get-or-create, as the document promises).
            self.run_command(lambda profile: profile.create())
        else:
            self.create()

    @classmethod
    def load(
        cls, learner_id: str, *, persistence_enabled: bool = True, store: EventStore | None = None
    ) -> LearnerProfile:
        """The learner's existing profile; raises LearnerNotFound instead of creating one
        (LearnerErasedError, saying when and by whom, for an erased learner)."""
        profile = cls.open(learner_id, persistence_enabled=persistence_enabled, store=store)
        if not profile.exists:
            raise LearnerNotFound(profile.learner_id)
        return profile

    @classmethod
    def open(
        cls, learner_id: str, *, persistence_enabled: bool = True, store: EventStore | None = None
    ) -> LearnerProfile:
        """The learner as stored, whether or not a profile exists yet (see `exists`); nothing
        is recorded. LearnerErasedError for an erased learner."""
        profile = cls.__new__(cls)
        profile._open(learner_id, persistence_enabled, store)
        if profile.erased:
            raise profile._erased_error()
        return profile

    def run_command(self, change: Callable[[LearnerProfile], T], *, attempts: int = COMMAND_ATTEMPTS) -> T:
        """Make `change` to this profile and save it in one append; when another writer changed
        the learner first, read only what they appended, then make the change again on that (at
        most `attempts` tries, jittered pauses between them: see `LearnerRepository.run_command`).
        The opt-in for a learner that several processes write at once; returns what `change`
        returned. Needs nothing pending (save first)."""
        enabled = self._persistence_enabled
        self._persistence_enabled = False  # the command's changes are saved together, once
        try:
            return self._repository.run_command(self, change, attempts=attempts)
        finally:
            self._persistence_enabled = enabled

    def _erased_error(self) -> LearnerNotFound:
        return missing_profile_error(self.learner_id, store=self._repository.store)

    def _open(self, learner_id: str, persistence_enabled: bool, store: EventStore | None) -> None:
        LearnerAggregate.__init__(self, learner_id)
        # The seed's attribute name, so code written against the seed still runs.
        self._persistence_enabled = persistence_enabled
        self._repository = LearnerRepository(store_or_default(store))
        self._repository.load_into(self)

    @property
    def persistence_enabled(self) -> bool:
        """Whether each change is written at once (True) or waits for `save()` (False)."""
        return self._persistence_enabled

    @persistence_enabled.setter
    def persistence_enabled(self, enabled: bool) -> None:
        self._persistence_enabled = bool(enabled)

    def save(self) -> None:
        """Write the pending events (and their projections) in one transaction; no-op if none."""
        self._repository.save(self)

    def _recorded(self, new: NewEvent) -> None:
        if self._persistence_enabled:
            self.save()


def get_or_create_learner_profile(learner_id: str, *, store: EventStore | None = None) -> LearnerProfile:
    """Load the learner's profile from the database, or create it there (and in memory)."""
    return LearnerProfile(learner_id, store=store)
