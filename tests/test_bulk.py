"""Unit tests of the collector pause used by bulk reads and rebuilds."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from dala_events import bulk
from dala_events.bulk import bulk_allocation


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was_enabled = gc.isenabled()
    yield
    (gc.enable if was_enabled else gc.disable)()


def test_the_collector_is_off_inside_and_back_on_after() -> None:
    gc.enable()
    with bulk_allocation():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_nested_pauses_end_with_the_outermost() -> None:
    gc.enable()
    with bulk_allocation():
        with bulk_allocation():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_still_switches_it_back_on() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), bulk_allocation():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_application_stays_off() -> None:
    gc.disable()
    with bulk_allocation():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_pauses_in_threads_keep_it_off_until_the_last_ends() -> None:
    gc.enable()
    first_inside, second_inside, first_may_leave = threading.Event(), threading.Event(), threading.Event()
    observed: list[bool] = []

    def first() -> None:
        with bulk_allocation():
            first_inside.set()
            first_may_leave.wait(timeout=10)

    def second() -> None:
        first_inside.wait(timeout=10)
        with bulk_allocation():
            second_inside.set()
            first_may_leave.set()
            worker.join(timeout=10)  # the first pause has ended while this one runs
            observed.append(gc.isenabled())

    worker = threading.Thread(target=first)
    other = threading.Thread(target=second)
    worker.start()
    other.start()
    other.join(timeout=10)
    assert second_inside.is_set()
    assert observed == [False]
    assert gc.isenabled()


def test_the_pause_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DALA_PAUSE_GC", "0")
    gc.enable()
    with bulk_allocation():
        assert gc.isenabled()


def test_what_was_built_during_the_pause_is_not_walked_when_it_ends() -> None:
    collections: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.enable()
    try:
        with bulk_allocation():
            gc.callbacks.append(record)
            built = [[index] for index in range(20_000)]
        # Left in the youngest generation, these would start a collection walking all of them
        # at the next allocation.
        after = [[index] for index in range(10)]
    finally:
        gc.callbacks.remove(record)
    assert collections == []
    assert len(built) == 20_000 and len(after) == 10


def test_objects_the_application_froze_stay_frozen() -> None:
    gc.enable()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with bulk_allocation():
            _built = [[index] for index in range(1_000)]
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


class Node:
    partner: object


def test_cycles_handed_over_unexamined_are_collected_after_enough_hand_overs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "FULL_COLLECTION_AFTER", 30_000)
    monkeypatch.setattr(bulk, "_handed_over", 0)
    gc.enable()
    gc.collect()
    node = Node()
    node.partner = node
    alive = weakref.ref(node)
    del node
    with bulk_allocation():
        built = [[index] for index in range(20_000)]
    assert alive() is not None  # handed over with what the pause built, not examined
    with bulk_allocation():
        built += [[index] for index in range(20_000)]
    assert alive() is None  # 40,000 handed over: a full collection ran
    assert len(built) == 40_000


def test_cycles_dropped_during_the_pause_are_still_collected() -> None:
    gc.enable()
    with bulk_allocation():
        node = Node()
        node.partner = node
        alive = weakref.ref(node)
        del node
    assert alive() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert alive() is None
