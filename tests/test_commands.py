"""Commands on a learner several writers change at once: a conflict re-reads only what the
other writer appended, decides again, and gives up after a bounded number of tries."""

from __future__ import annotations

from typing import Any

import pytest

from dala_events import repository
from dala_events.attribution import recorded_as
from dala_events.errors import ConcurrencyError, LearnerErasedError
from dala_events.hlp_module import LearnerProfile
from dala_events.persistence_manager import erase_learner
from dala_events.store import SqlEventStore


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses between tries, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(repository.time, "sleep", slept.append)
    return slept


def _spy_reads(monkeypatch: pytest.MonkeyPatch, store: SqlEventStore) -> list[int]:
    after: list[int] = []
    read_stream = store.read_stream

    def spied(learner_id: str, **kwargs: Any) -> Any:
        after.append(kwargs.get("after_version", 0))
        return read_stream(learner_id, **kwargs)

    monkeypatch.setattr(store, "read_stream", spied)
    return after


def test_a_command_that_meets_another_writer_reads_only_what_it_appended(
    store: SqlEventStore, monkeypatch: pytest.MonkeyPatch, pauses: list[float]
) -> None:
    LearnerProfile("ann", store=store).add_interest("Robotics")
    mine = LearnerProfile.load("ann", persistence_enabled=False, store=store)
    theirs = LearnerProfile.load("ann", store=store)
    theirs.add_interest("Chess")
    theirs.add_struggle_area("Fractions")
    reads = _spy_reads(monkeypatch, store)
    assert mine.run_command(lambda profile: profile.add_interest("Dinosaurs")) is True
    assert reads == [2]  # only the events after version 2, which it held
    assert len(pauses) == 1 and 0 <= pauses[0] <= repository.RETRY_BASE_SECONDS * 2
    assert list(mine.state.interests) == ["Robotics", "Chess", "Dinosaurs"]
    assert [e.version for e in store.read_stream("ann")] == [1, 2, 3, 4, 5]
    assert mine.persistence_enabled is False and mine.pending == ()


def test_a_change_another_writer_already_made_is_not_made_twice(store: SqlEventStore, pauses: list[float]) -> None:
    LearnerProfile("ann", store=store)
    mine = LearnerProfile.load("ann", persistence_enabled=False, store=store)
    LearnerProfile.load("ann", store=store).add_interest("Robotics")
    assert mine.run_command(lambda profile: profile.add_interest("Robotics")) is False
    assert [e.event_type for e in store.read_stream("ann")] == ["LearnerProfileCreated", "InterestAdded"]


def test_a_command_gives_up_after_its_attempts_with_pauses_then_writing_alone(
    store: SqlEventStore, monkeypatch: pytest.MonkeyPatch, pauses: list[float]
) -> None:
    profile = LearnerProfile("ann", store=store)

    def always_moved(*_args: Any) -> int:
        raise ConcurrencyError("ann", 1, 2)

    monkeypatch.setattr(store, "append", always_moved)
    alone: list[str] = []
    writing_alone = store.writing_alone

    def counted(learner_id: str) -> Any:
        alone.append(learner_id)
        return writing_alone(learner_id)

    monkeypatch.setattr(store, "writing_alone", counted)
    with pytest.raises(ConcurrencyError):
        profile.run_command(lambda p: p.add_interest("Robotics"), attempts=6)
    # Pauses between the tries made alongside others; then each try writes alone.
    assert len(pauses) == repository.ALONE_AFTER - 1
    assert alone == ["ann"] * (6 - repository.ALONE_AFTER)
    for attempt, pause in enumerate(pauses, start=1):
        assert 0 <= pause <= min(repository.RETRY_MAX_SECONDS, repository.RETRY_BASE_SECONDS * 2**attempt)
    assert profile.pending == () and list(profile.state.interests) == []  # back where it was


def test_a_learner_erased_meanwhile_stops_the_command(store: SqlEventStore, pauses: list[float]) -> None:
    LearnerProfile("ann", store=store).add_interest("Robotics")
    mine = LearnerProfile.load("ann", persistence_enabled=False, store=store)
    with recorded_as(actor="dpo:jane"):
        erase_learner("ann", reason="request", store=store)
    with pytest.raises(LearnerErasedError):
        mine.run_command(lambda profile: profile.add_interest("Chess"))


def test_the_package_errors_cross_a_process_boundary_as_themselves() -> None:
    """A worker pool hands a command's error back pickled: same type, fields and message."""
    import pickle

    from dala_events.errors import DalaError, InvalidInput, LearnerNotFound

    made: list[DalaError] = [
        ConcurrencyError("ann", 3, 5),
        LearnerNotFound("ann"),
        InvalidInput("score", "must be from 0 to 100", learner_id="ann"),
        LearnerErasedError("ann"),
    ]
    for error in made:
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error) and vars(again) == vars(error)
