"""The event store contract, one suite run on every implementation: in memory, SQLite, PostgreSQL.

Each backend is built with one inline projection that records what it was handed, and a
switch that makes it fail, so atomicity is checked the same way everywhere.
"""

from __future__ import annotations

import asyncio
import copy
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from freezegun import freeze_time

from dala_events import aio
from dala_events.database_setup import create_dala_engine, create_tables
from dala_events.envelopes import NewEvent, ProjectableEvent
from dala_events.errors import ConcurrencyError, CorruptEventError, InvalidInput, LearnerErasedError
from dala_events.events import (
    ErasedContent,
    InterestAdded,
    LearnerErased,
    LearnerProfileCreated,
    PreferenceSet,
    StruggleAreaAdded,
)
from dala_events.store import MAX_VERSION, EventStore, InMemoryEventStore, SqlEventStore
from dala_events.store.contract import STREAM_BATCH_SIZE
from dala_events.store.keys import ENCRYPTED_PREFIX, KeyStore, LogCipher, MasterKey, MemoryKeyStore
from dala_events.wiring import open_key_store
from tests.conftest import POSTGRES_URL, require_postgres, reset_postgres

T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
T = TypeVar("T")


@dataclass
class Projection:
    """An inline projection that remembers what it saw and can be told to fail."""

    seen: list[tuple[str, int]] = field(default_factory=list)
    fail: bool = False

    def __call__(self, events: Sequence[ProjectableEvent]) -> None:
        if self.fail:
            raise RuntimeError("projection failed")
        self.seen.extend((event.learner_id, event.version) for event in events)


@dataclass
class Backend:
    store: Any  # an EventStore, or an AwaitedStore standing for the async one
    projection: Projection
    key_store: KeyStore

    def twin(self) -> Any:
        """Another instance of the store on the same log and key store, with its own cipher
        (its own cache of data keys): what another process would hold."""
        if isinstance(self.store, AwaitedStore):
            return self.store.twin(LogCipher(self.key_store))
        other = copy.copy(self.store)
        other.cipher = LogCipher(self.key_store)
        return other


class AwaitedStore:
    """The async store (`aio.AsyncEventStore`) under the contract's synchronous tests: each call
    awaited on an event loop of its own thread, where the store lives (several test threads may
    await at once, as several tasks would)."""

    def __init__(self, store: SqlEventStore, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.new_event_loop()
        if loop is None:
            threading.Thread(target=self.loop.run_forever, daemon=True, name="contract-loop").start()
        self.sync = store
        self.runner = aio.OnTheLoop() if store.engine.dialect.is_async else aio.InWorkerThreads()
        self.aio = aio.AsyncEventStore(store, self.runner)

    def _wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=300)

    def _all(self, batches: AsyncIterator[T]) -> list[T]:
        async def collect() -> list[T]:
            return [batch async for batch in batches]

        return self._wait(collect())

    def append(self, *args: Any, **kwargs: Any) -> int:
        return self._wait(self.aio.append(*args, **kwargs))

    def stream_version(self, *args: Any, **kwargs: Any) -> int:
        return self._wait(self.aio.stream_version(*args, **kwargs))

    def read_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._wait(self.aio.read_stream(*args, **kwargs))

    def last_position(self) -> int:
        return self._wait(self.aio.last_position())

    def erasures(self, *args: Any, **kwargs: Any) -> Any:
        return self._wait(self.aio.erasures(*args, **kwargs))

    def list_streams(self, *args: Any, **kwargs: Any) -> Any:
        return self._wait(self.aio.list_streams(*args, **kwargs))

    def read_all(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(self._all(self.aio.read_all(*args, **kwargs)))

    def read_all_batches(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(self._all(self.aio.read_all_batches(*args, **kwargs)))

    def read_for_projection(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(self._all(self.aio.read_for_projection(*args, **kwargs)))

    def read_stream_for_projection(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(self._all(self.aio.read_stream_for_projection(*args, **kwargs)))

    def events_for_projection(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(self._all(self.aio.events_for_projection(*args, **kwargs)))

    @property
    def cipher(self) -> LogCipher | None:
        return self.sync.cipher

    def stored_rows(self, *args: Any, **kwargs: Any) -> Any:
        async def rows() -> list[Any]:
            return await self.runner(lambda: list(self.sync.stored_rows(*args, **kwargs)))

        return iter(self._wait(rows()))

    def twin(self, cipher: LogCipher) -> AwaitedStore:
        other = copy.copy(self.sync)
        other.cipher = cipher
        return AwaitedStore(other, self.loop)

    def close(self) -> None:
        async def close() -> None:
            await self.runner(self.sync.engine.dispose)
            await self.runner.close()

        self._wait(close())
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(params=["memory", "sqlite", "postgresql", "sqlite-async", "postgresql-async"])
def backend(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[Backend]:
    """Every backend with encryption on (a data key per learner) and the erasure rules; the
    async store (`dala_events.aio`) on both databases too."""
    projection = Projection()
    if request.param == "memory":
        key_store: KeyStore = MemoryKeyStore()
        store = InMemoryEventStore(inline_projectors=[projection], cipher=LogCipher(key_store))
        yield Backend(store, projection, key_store)
        return
    if request.param.startswith("sqlite"):
        url = f"sqlite:///{tmp_path}/contract.db"
    else:
        require_postgres()
        reset_postgres()
        url = POSTGRES_URL
    asynchronous = request.param.endswith("-async")
    engine = create_dala_engine(url)
    create_tables(engine)
    if asynchronous and url == POSTGRES_URL:
        engine.dispose()
        engine = create_dala_engine(url, postgresql_engine=aio.psycopg_async_engine)
    key_store = open_key_store(f"sqlite:///{tmp_path}/contract.keys", MasterKey.generate())
    awaited: AwaitedStore | None = None
    try:
        store = SqlEventStore(
            engine,
            inline_projectors=[lambda _connection, events: projection(events)],
            cipher=LogCipher(key_store),
        )
        if asynchronous:
            awaited = AwaitedStore(store)
            yield Backend(awaited, projection, key_store)
        else:
            yield Backend(store, projection, key_store)
    finally:
        if awaited is not None:
            awaited.close()
        else:
            engine.dispose()
        key_store.engine.dispose()


def new(event: Any, *, at: datetime | None = None) -> NewEvent:
    return NewEvent.now(event, occurred_at=at)


def interests(*names: str) -> list[NewEvent]:
    return [new(InterestAdded(interest_name=name)) for name in names]


# -- append ----------------------------------------------------------------------------------


def test_append_numbers_versions_from_one_and_returns_the_new_version(backend: Backend) -> None:
    store = backend.store
    assert store.stream_version("ann") == 0
    assert store.append("ann", [new(LearnerProfileCreated()), *interests("Music")], 0) == 2
    assert store.append("ann", interests("Art", "Sports"), 2) == 4
    assert [event.version for event in store.read_stream("ann")] == [1, 2, 3, 4]
    assert store.stream_version("ann") == 4
    assert backend.projection.seen == [("ann", 1), ("ann", 2), ("ann", 3), ("ann", 4)]


def test_appending_nothing_writes_nothing(backend: Backend) -> None:
    assert backend.store.append("ann", [], 0) == 0
    assert backend.store.last_position() == 0
    assert backend.projection.seen == []


def test_a_stale_expected_version_is_refused_and_nothing_is_written(backend: Backend) -> None:
    store = backend.store
    store.append("ann", interests("Music"), 0)
    for stale in (0, 2):
        with pytest.raises(ConcurrencyError) as caught:
            store.append("ann", interests("Art"), stale)
        assert caught.value.learner_id == "ann"
        assert caught.value.expected_version == stale
    assert [event.event.interest_name for event in store.read_stream("ann")] == ["Music"]  # type: ignore[attr-defined]
    assert store.last_position() == 1


def test_of_two_writers_at_the_same_version_exactly_one_wins(backend: Backend) -> None:
    store = backend.store
    results: list[str] = []
    barrier = threading.Barrier(2)

    def write(name: str) -> None:
        barrier.wait(60)
        try:
            store.append("shared", interests(name), 0)
            results.append("won")
        except ConcurrencyError:
            results.append("lost")

    threads = [threading.Thread(target=write, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results) == ["lost", "won"]
    assert [event.version for event in store.read_stream("shared")] == [1]


def test_a_failing_inline_projection_undoes_the_append(backend: Backend) -> None:
    store = backend.store
    store.append("ann", interests("Music"), 0)
    backend.projection.fail = True
    with pytest.raises(RuntimeError, match="projection failed"):
        store.append("ann", interests("Art", "Sports"), 1)
    backend.projection.fail = False
    assert store.stream_version("ann") == 1
    assert store.last_position() == 1
    assert store.append("ann", interests("Art"), 1) == 2


def test_an_event_id_already_in_the_log_is_refused(backend: Backend) -> None:
    store = backend.store
    first = new(InterestAdded(interest_name="Music"))
    store.append("ann", [first], 0)
    with pytest.raises(InvalidInput) as caught:
        store.append("bob", [first], 0)
    assert caught.value.field == "event_id"
    assert store.stream_version("bob") == 0


def test_an_event_reads_back_equal_with_its_envelope(backend: Backend) -> None:
    store = backend.store
    occurred = datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    sent = new(PreferenceSet(category="visual_preference_task_1", value="visual"), at=occurred)
    with freeze_time(T0):
        store.append("ann", [sent], 0)
    (got,) = store.read_stream("ann")
    assert got.event == sent.event
    assert got.event_id == sent.event_id
    assert got.occurred_at == occurred and got.occurred_at.tzinfo == UTC
    assert got.recorded_at == T0
    assert got.event_type == "PreferenceSet"
    assert got.schema_version == 2
    assert dict(got.metadata) == dict(sent.metadata)
    assert got.position == 1 and got.learner_id == "ann" and got.version == 1


# -- read_stream -----------------------------------------------------------------------------


def test_read_stream_cuts_by_version_time_and_type(backend: Backend) -> None:
    store = backend.store
    for minute, event in enumerate(
        [LearnerProfileCreated(), InterestAdded(interest_name="Music"), StruggleAreaAdded(struggle_description="Maths")]
    ):
        with freeze_time(T0 + timedelta(minutes=minute)):
            store.append("ann", [new(event)], minute)
    assert [event.version for event in store.read_stream("ann", up_to_version=2)] == [1, 2]
    assert [event.version for event in store.read_stream("ann", up_to_version=0)] == []
    assert [event.version for event in store.read_stream("ann", up_to_version=MAX_VERSION + 1)] == [1, 2, 3]
    assert [e.version for e in store.read_stream("ann", since=T0 + timedelta(minutes=1))] == [2, 3]
    assert [e.version for e in store.read_stream("ann", until=T0 + timedelta(minutes=1))] == [1, 2]
    assert [e.version for e in store.read_stream("ann", event_types=["StruggleAreaAdded"])] == [3]
    far = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    assert [e.version for e in store.read_stream("ann", since=far, until=datetime.max.replace(tzinfo=UTC))] == [1, 2, 3]
    projectable = [event for batch in store.read_stream_for_projection("ann", up_to_version=2) for event in batch]
    assert [(event.learner_id, event.version, event.position) for event in projectable] == [
        ("ann", 1, 1),
        ("ann", 2, 2),
    ]
    assert store.read_stream("nobody") == []
    batches = store.read_stream_for_projection("ann", batch_size=2)
    assert [[event.version for event in batch] for batch in batches] == [[1, 2], [3]]
    cut = store.read_stream_for_projection("ann", until=T0 + timedelta(minutes=1), batch_size=1)
    assert [[event.version for event in batch] for batch in cut] == [[1], [2]]


# -- read_all ----------------------------------------------------------------------------------


def test_read_all_gives_the_whole_log_in_position_order_in_batches(backend: Backend) -> None:
    store = backend.store
    store.append("ann", interests("a1", "a2"), 0)
    store.append("bob", interests("b1"), 0)
    store.append("ann", interests("a3", "a4"), 2)
    everything = list(store.read_all())
    assert [event.position for event in everything] == [1, 2, 3, 4, 5]
    assert [(event.learner_id, event.version) for event in everything] == [
        ("ann", 1),
        ("ann", 2),
        ("bob", 1),
        ("ann", 3),
        ("ann", 4),
    ]
    assert [event.position for event in store.read_all(after_position=2, limit=2)] == [3, 4]
    assert [len(batch) for batch in store.read_all_batches(batch_size=2)] == [2, 2, 1]
    assert [[e.position for e in batch] for batch in store.read_for_projection(1, batch_size=3)] == [[2, 3, 4], [5]]
    assert list(store.read_all(limit=0)) == []
    assert list(store.read_all(after_position=5)) == []
    assert store.last_position() == 5


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field_name"),
    [
        (lambda s: s.append("", [], 0), "learner_id"),
        (lambda s: s.append(" ann", [], 0), "learner_id"),
        (lambda s: s.append(42, [], 0), "learner_id"),
        (lambda s: s.append("x" * 129, [], 0), "learner_id"),
        (lambda s: s.append("ann", [], -1), "expected_version"),
        (lambda s: s.append("ann", [], True), "expected_version"),
        (lambda s: s.append("ann", [], "0"), "expected_version"),
        (lambda s: s.append("ann", [InterestAdded(interest_name="x")], 0), "events"),
        (
            lambda s: s.append("ann", [NewEvent(InterestAdded(interest_name="x"), "id", datetime(2026, 1, 1), {})], 0),
            "occurred_at",
        ),
        (lambda s: s.append("ann", interests("x"), MAX_VERSION), "version"),
        (lambda s: s.read_stream("ann", up_to_version=-1), "up_to_version"),
        (lambda s: s.read_stream("ann", since=datetime(2026, 1, 1)), "since"),
        (lambda s: s.read_stream("ann", until="2026-01-01"), "until"),
        (lambda s: s.read_stream("ann", event_types=["NoSuchEvent"]), "event_types"),
        (lambda s: s.read_stream("ann", event_types="InterestAdded"), "event_types"),
        (lambda s: s.stream_version(None), "learner_id"),
        (lambda s: list(s.read_all(batch_size=0)), "batch_size"),
        (lambda s: list(s.read_all(limit=-1)), "limit"),
        (lambda s: list(s.read_all(after_position=-1)), "after_position"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(
    backend: Backend, call: Any, field_name: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        call(backend.store)
    assert caught.value.field == field_name
    assert backend.store.last_position() == 0


def test_an_unknown_type_names_the_known_ones(backend: Backend) -> None:
    with pytest.raises(InvalidInput, match="InterestAdded"):
        backend.store.read_stream("ann", event_types=["NoSuchEvent"])


# -- encryption and erasure, on every backend -------------------------------------------------


def _stored(store: EventStore | AwaitedStore) -> list[Any]:
    """The rows as the backend stores them (chain rows: payload and metadata as stored)."""
    assert isinstance(store, InMemoryEventStore | SqlEventStore | AwaitedStore)
    return [row for batch in store.stored_rows() for row in batch]


def test_payloads_and_reasons_are_stored_encrypted_and_read_back_equal(backend: Backend) -> None:
    from dala_events.attribution import recorded_as

    with recorded_as("teacher:1", reason="parent meeting notes"):
        events = [new(LearnerProfileCreated()), *interests("Robotics")]
    backend.store.append("ann", events, 0)
    stored = _stored(backend.store)
    assert all(row.payload.startswith(ENCRYPTED_PREFIX) for row in stored)
    assert not any("Robotics" in row.payload or "parent meeting" in row.metadata for row in stored)
    read = backend.store.read_stream("ann")
    assert [event.event for event in read] == [new_event.event for new_event in events]
    assert read[-1].metadata["reason"] == "parent meeting notes"


def _erase(store: EventStore, learner_id: str) -> None:
    version = store.stream_version(learner_id)
    store.append(learner_id, [new(LearnerErased(erased_up_to_version=version))], version)
    assert store.cipher is not None
    store.cipher.destroy(learner_id)


def test_an_erased_stream_takes_no_more_events_on_every_backend(backend: Backend) -> None:
    backend.store.append("ann", [new(LearnerProfileCreated()), *interests("Chess")], 0)
    _erase(backend.store, "ann")
    with pytest.raises(LearnerErasedError):
        backend.store.append("ann", interests("Art"), 3)
    with pytest.raises(LearnerErasedError):  # another instance, which never read the stream
        backend.twin().append("ann", interests("Art"), 3)
    assert backend.store.stream_version("ann") == 3


def test_erased_content_reads_as_erased_and_the_envelope_stays(backend: Backend) -> None:
    backend.store.append("ann", [new(LearnerProfileCreated()), *interests("Chess")], 0)
    backend.store.append("bob", interests("Art"), 0)
    _erase(backend.store, "ann")
    read = backend.store.read_stream("ann")
    assert [type(event.event) for event in read] == [ErasedContent, ErasedContent, LearnerErased]
    assert [event.event.erased_event_type for event in read[:2]] == ["LearnerProfileCreated", "InterestAdded"]
    assert [event.event for event in backend.store.read_stream("bob")] == [InterestAdded(interest_name="Art")]
    assert backend.store.erasures() == {"ann": read[-1].recorded_at}


def test_a_cut_read_with_a_cached_key_sees_an_erasure_made_elsewhere(backend: Backend) -> None:
    backend.store.append("ann", [new(LearnerProfileCreated()), *interests("Chess")], 0)
    other = backend.twin()
    assert other.read_stream("ann", up_to_version=2)[-1].event == InterestAdded(interest_name="Chess")  # key cached
    _erase(backend.store, "ann")
    cut = other.read_stream("ann", up_to_version=2)
    assert [type(event.event) for event in cut] == [ErasedContent, ErasedContent]
    batches = list(other.read_stream_for_projection("ann", up_to_version=1))
    assert type(batches[0][0].event) is ErasedContent


def test_personal_text_in_the_clear_after_encrypted_events_is_refused_however_long_the_stream(
    backend: Backend,
) -> None:
    """A stream is read in batches (`STREAM_BATCH_SIZE`): what was seen encrypted in one batch
    still counts in the next."""
    store = backend.store
    names = [f"topic {n}" for n in range(STREAM_BATCH_SIZE - 1)]  # the forged line opens the second read
    store.append("ann", [new(LearnerProfileCreated()), *interests(*names)], 0)
    plain = copy.copy(getattr(store, "sync", store))
    plain.cipher = None  # a line written around the store, chained (no log key here)
    forged = interests("forged")
    if isinstance(store, AwaitedStore):

        async def forge() -> int:
            return await store.runner(plain.append, "ann", forged, STREAM_BATCH_SIZE)

        store._wait(forge())
    else:
        plain.append("ann", forged, STREAM_BATCH_SIZE)
    with pytest.raises(CorruptEventError):
        store.read_stream("ann")
    with pytest.raises(CorruptEventError):
        list(store.events_for_projection("ann"))
