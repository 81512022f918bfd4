"""The public API, awaited: for asyncio web applications, on the same events, projectors, codec and SQL.

Every function here is the synchronous one of the same name, run so that the event loop keeps
serving other requests while it waits for the database; nothing is decided twice. The same
aggregate decides, the same store contract checks and chains, the same projectors and
statements write, the same codec encrypts and decrypts, and the same errors come out:

    from dala_events import aio

    await aio.init_db()                                 # DALA_DATABASE_URL, as `init_db`
    profile = await aio.get_or_create_learner_profile("student123")
    await profile.add_interest("Robotics")              # persisted at once
    profile.persistence_enabled = False
    await profile.update_preference("visual_preference_task_1", "visual")
    await profile.save()                                # flushes what was pending
    events = await aio.history("student123")

How each backend waits (one `Runner` per open store; `AsyncDala.open` picks it):

- **PostgreSQL**: psycopg's asyncio connection, through SQLAlchemy's asyncio extension. The
  synchronous code runs inside SQLAlchemy's greenlet bridge (`AsyncSession.run_sync`): each
  statement it executes is awaited on the loop, which serves other tasks meanwhile. Work on the
  CPU between statements (encoding, decrypting, checking the chain) runs on the loop in bounded
  slices: long reads come in batches, each fetched with an await (see `EventStore.read_stream`).
- **SQLite**: its driver only blocks, so the synchronous code runs in a small pool of worker
  threads of the store's own (2; one for an in-memory database, whose one connection cannot be
  shared), with the caller's context (`recorded_as`, `occurring_at`) copied in.

The required actor, encryption, the chain, erasure and disclosures behave exactly as in the
synchronous API: `recorded_as` is a context variable, so a `with recorded_as(...)` block
around awaits attributes what they record.

**Cancellation.** A save is one database transaction: a task cancelled while it runs leaves
all of its events or none. On PostgreSQL a cancelled transaction is rolled back (or, cancelled
while committing, is committed or not as the server decided, whole either way); on SQLite the
worker thread finishes what it started and the awaiting task is told it was cancelled. A data
key is committed to the key store before any event encrypted with it. After a cancelled call,
load the profile again: what it holds in memory may be behind or ahead of the log.

`AsyncDala` is the async counterpart of `app.Dala`: a configured store (`AsyncDala.open`),
its `store` (an `AsyncEventStore`: the store contract, awaited) and `profile()`. The module's
functions use a process default opened by `init_db()` (or on first use), or the `store`
they are handed, an `AsyncEventStore`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from sqlalchemy import Engine, make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from dala_events import audit, persistence_manager, xapi
from dala_events.aggregate import ActivityAttempt, Badge, LOProgress
from dala_events.app import Dala
from dala_events.envelopes import LoggedEvent, NewEvent, RecordedEvent
from dala_events.erasure import Erasure
from dala_events.erasure import erase_learner as _erase_learner
from dala_events.errors import InvalidInput
from dala_events.events import DomainEvent
from dala_events.generate_interface import generate_interface as _generate_interface
from dala_events.hlp_module import LearnerProfile
from dala_events.persistence_manager import (
    ActivityAttemptData,
    BadgeData,
    CognitiveMetricData,
    InterestData,
    LearnerExport,
    LearnerSummary,
    LOProgressData,
    PreferenceData,
    StruggleData,
)
from dala_events.repository import COMMAND_ATTEMPTS
from dala_events.settings import Settings
from dala_events.store import SqlEventStore
from dala_events.store.contract import STREAM_BATCH_SIZE
from dala_events.wiring import Mode, Storage
from projections.dtos import FullLearnerProfileData

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

SQLITE_WORKERS = 2
"""Worker threads of a SQLite store (SQLite writes one at a time whatever the number)."""
POSTGRESQL_AT_ONCE = 4
"""Calls of one PostgreSQL store running at once on the loop; the rest wait their turn without
blocking it. More only lengthens each turn of the loop (every running call's next step runs
before a timer's): measured with 50 tasks, 2, 4, 8 and 50 at once all wrote at the same rate,
and the loop's worst delay grew from 4 ms (4) to 12 ms (50)."""


# -- how a store's synchronous code is awaited --------------------------------------------------


class Runner(ABC):
    """Runs a synchronous function of the store so that the event loop is not blocked."""

    @abstractmethod
    async def __call__(self, function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`function(*args, **kwargs)`, awaited."""

    async def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Stop accepting work once what was started has finished."""


class OnTheLoop(Runner):
    """PostgreSQL on psycopg's asyncio connection: the function runs in SQLAlchemy's greenlet
    bridge, and every statement it executes is awaited on the running loop."""

    def __init__(self, at_once: int = POSTGRESQL_AT_ONCE) -> None:
        self._slots = asyncio.Semaphore(at_once)
        # A session with no bind, never used: `run_sync` is SQLAlchemy's public door to the bridge,
        # and one session for every call makes no garbage per call.
        self._bridge = AsyncSession()

    async def __call__(self, function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        async with self._slots:
            return await self._bridge.run_sync(lambda _session: function(*args, **kwargs))


class InWorkerThreads(Runner):
    """SQLite: the function runs in one of the runner's own worker threads, in a copy of the
    caller's context (its `recorded_as` attribution)."""

    def __init__(self, workers: int = SQLITE_WORKERS) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dala-aio")

    async def __call__(self, function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        context = contextvars.copy_context()
        call = functools.partial(context.run, function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, True)


def psycopg_async_engine(url: str | URL, **options: Any) -> Engine:
    """The synchronous face of an `AsyncEngine` on psycopg's asyncio connection: what
    `wiring.Storage.open` is handed as its `postgresql_engine` here."""
    return create_async_engine(make_url(url).set(drivername="postgresql+psycopg_async"), **options).sync_engine


def _in_memory(database_url: str) -> bool:
    return make_url(database_url).database in (None, "", ":memory:")


# -- the store contract, awaited ----------------------------------------------------------------


def _awaited(method: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]:
    """An async method running `method` on the wrapped synchronous object with the runner."""

    @functools.wraps(method)  # its name, and its signature for `inspect` and the docs
    async def call(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        run: Runner = self.run
        return await run(method, self.sync, *args, **kwargs)

    call.__doc__ = f"`{method.__qualname__}`, awaited: {(method.__doc__ or '').strip()}"
    return call


class AsyncEventStore:
    """The event store contract (`store.EventStore`), awaited: the same checks, the same errors.

    `sync` is the synchronous store it runs (on psycopg's asyncio connection for PostgreSQL),
    which only `run` may call; `run(function, ...)` awaits any synchronous function of it.
    """

    def __init__(self, store: SqlEventStore, run: Runner, storage: Storage | None = None) -> None:
        self.sync = store
        self.run = run
        self.storage = storage

    append = _awaited(SqlEventStore.append)
    stream_version = _awaited(SqlEventStore.stream_version)
    read_stream = _awaited(SqlEventStore.read_stream)
    last_position = _awaited(SqlEventStore.last_position)
    list_streams = _awaited(SqlEventStore.list_streams)
    unencrypted_versions = _awaited(SqlEventStore.unencrypted_versions)
    erasures = _awaited(SqlEventStore.erasures)
    forget_erased_keys = _awaited(SqlEventStore.forget_erased_keys)

    # The log read whole comes in batches, each read and decoded by one awaited step: by
    # default of `STREAM_BATCH_SIZE` events (a few milliseconds of work on the loop), where the
    # synchronous store reads `DEFAULT_BATCH_SIZE` at a time.

    async def read_all(
        self, after_position: int = 0, limit: int | None = None, *, batch_size: int = STREAM_BATCH_SIZE
    ) -> AsyncIterator[RecordedEvent]:
        """`EventStore.read_all`, awaited batch by batch."""
        async for batch in self.read_all_batches(after_position, limit, batch_size=batch_size):
            for recorded in batch:
                yield recorded

    async def read_all_batches(
        self, after_position: int = 0, limit: int | None = None, *, batch_size: int = STREAM_BATCH_SIZE
    ) -> AsyncIterator[list[RecordedEvent]]:
        """`EventStore.read_all_batches`, each batch awaited."""
        async for batch in self._iterate(self.sync.read_all_batches, after_position, limit, batch_size=batch_size):
            yield batch

    async def read_for_projection(
        self, after_position: int = 0, limit: int | None = None, *, batch_size: int = STREAM_BATCH_SIZE
    ) -> AsyncIterator[list[LoggedEvent]]:
        """`EventStore.read_for_projection`, each batch awaited."""
        async for batch in self._iterate(self.sync.read_for_projection, after_position, limit, batch_size=batch_size):
            yield batch

    async def read_stream_for_projection(
        self,
        learner_id: str,
        *,
        up_to_version: int | None = None,
        until: datetime | None = None,
        batch_size: int = STREAM_BATCH_SIZE,
    ) -> AsyncIterator[list[LoggedEvent]]:
        """`EventStore.read_stream_for_projection`, each batch awaited."""
        batches = functools.partial(
            self.sync.read_stream_for_projection, learner_id, up_to_version=up_to_version, until=until
        )
        async for batch in self._iterate(batches, batch_size=batch_size):
            yield batch

    async def events_for_projection(
        self,
        learner_id: str,
        *,
        up_to_version: int | None = None,
        until: datetime | None = None,
        batch_size: int = STREAM_BATCH_SIZE,
    ) -> AsyncIterator[LoggedEvent]:
        """`EventStore.events_for_projection`: the events of each batch of
        `read_stream_for_projection`, one at a time."""
        async for batch in self.read_stream_for_projection(
            learner_id, up_to_version=up_to_version, until=until, batch_size=batch_size
        ):
            for event in batch:
                yield event

    async def _iterate(
        self, batches: Callable[..., Iterator[list[T]]], /, *args: Any, **kwargs: Any
    ) -> AsyncIterator[list[T]]:
        # Each batch is read (and decoded) by one awaited step; the generator is made in one too,
        # since it checks its arguments when first stepped.
        iterator = iter(await self.run(batches, *args, **kwargs))
        while True:
            batch = await self.run(next, iterator, None)
            if batch is None:
                return
            yield batch


# -- the document's facade, awaited -------------------------------------------------------------


class _Held(Generic[T]):
    """A read of the synchronous profile's attribute of the same name (no I/O: it is in memory)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, profile: AsyncLearnerProfile | None, owner: type | None = None) -> T:
        if profile is None:  # on the class: nothing held
            raise AttributeError(self.name)
        value: T = getattr(profile.sync, self.name)
        return value


class AsyncLearnerProfile:
    """`hlp_module.LearnerProfile`, its changes awaited: `await profile.add_interest("Robotics")`.

    Reading what it holds (`interests`, `preferences`, `version`, ...) needs no await: it is
    in memory. `sync` is the synchronous profile; `persistence_enabled` works as there.
    """

    def __init__(self, profile: LearnerProfile, run: Runner) -> None:
        self.sync = profile
        self.run = run

    @classmethod
    async def open(
        cls, learner_id: str, *, persistence_enabled: bool = True, store: AsyncEventStore | None = None
    ) -> AsyncLearnerProfile:
        """`LearnerProfile.open`, awaited."""
        chosen = await _store(store)
        profile = await chosen.run(
            LearnerProfile.open, learner_id, persistence_enabled=persistence_enabled, store=chosen.sync
        )
        return cls(profile, chosen.run)

    @classmethod
    async def load(
        cls, learner_id: str, *, persistence_enabled: bool = True, store: AsyncEventStore | None = None
    ) -> AsyncLearnerProfile:
        """`LearnerProfile.load`, awaited."""
        chosen = await _store(store)
        profile = await chosen.run(
            LearnerProfile.load, learner_id, persistence_enabled=persistence_enabled, store=chosen.sync
        )
        return cls(profile, chosen.run)

    @property
    def persistence_enabled(self) -> bool:
        """Whether each change is written at once (True) or waits for `save()` (False)."""
        return self.sync.persistence_enabled

    @persistence_enabled.setter
    def persistence_enabled(self, enabled: bool) -> None:
        self.sync.persistence_enabled = enabled

    # What it holds, read without an await (the synchronous profile's own properties).
    learner_id: _Held[str] = _Held()
    version: _Held[int] = _Held()
    saved_version: _Held[int] = _Held()
    exists: _Held[bool] = _Held()
    erased: _Held[bool] = _Held()
    pending_events: _Held[tuple[DomainEvent, ...]] = _Held()
    pending: _Held[tuple[NewEvent, ...]] = _Held()
    created_at: _Held[datetime | None] = _Held()
    last_updated_at: _Held[datetime | None] = _Held()
    preferences: _Held[Mapping[str, str]] = _Held()
    interests: _Held[list[str]] = _Held()
    struggles: _Held[list[str]] = _Held()
    cognitive_metrics: _Held[Mapping[str, Mapping[str, Any]]] = _Held()
    lo_progress: _Held[Mapping[str, LOProgress]] = _Held()
    badges: _Held[Mapping[str, Badge]] = _Held()
    activity_attempts: _Held[tuple[ActivityAttempt, ...]] = _Held()

    create = _awaited(LearnerProfile.create)
    save = _awaited(LearnerProfile.save)
    update_preference = _awaited(LearnerProfile.update_preference)
    remove_preference = _awaited(LearnerProfile.remove_preference)
    add_interest = _awaited(LearnerProfile.add_interest)
    remove_interest = _awaited(LearnerProfile.remove_interest)
    add_struggle_area = _awaited(LearnerProfile.add_struggle_area)
    remove_struggle_area = _awaited(LearnerProfile.remove_struggle_area)
    add_cognitive_metric = _awaited(LearnerProfile.add_cognitive_metric)
    start_lo = _awaited(LearnerProfile.start_lo)
    update_lo_progress = _awaited(LearnerProfile.update_lo_progress)
    mark_lo_completed = _awaited(LearnerProfile.mark_lo_completed)
    add_badge = _awaited(LearnerProfile.add_badge)
    revoke_badge = _awaited(LearnerProfile.revoke_badge)
    record_activity_attempt = _awaited(LearnerProfile.record_activity_attempt)
    delete = _awaited(LearnerProfile.delete)
    erase = _awaited(LearnerProfile.erase)

    async def run_command(self, change: Callable[[LearnerProfile], T], *, attempts: int = COMMAND_ATTEMPTS) -> T:
        """`LearnerProfile.run_command`, awaited: `change` (a plain function of the synchronous
        profile) is made again on what other writers appended, until it saves."""
        return await self.run(self.sync.run_command, change, attempts=attempts)

    def __repr__(self) -> str:
        return f"<AsyncLearnerProfile {self.learner_id!r} v{self.version}>"


class AsyncDala:
    """`app.Dala`, awaited: one configured store for an event loop.

    `await AsyncDala.open(settings)` sets the database up (migrations, tables, a rebuild of
    stale read models: with the standard driver, off the loop) and opens it for the loop;
    `store` is its `AsyncEventStore`; `run(function, ...)` awaits any synchronous use case on
    it (`dala.run(dala.sync.verify)`); `await close()` frees its connections. A store belongs to
    the loop that opened it.
    """

    def __init__(self, dala: Dala, run: Runner) -> None:
        self.sync = dala
        self.run = run
        self.store = AsyncEventStore(dala.store, run, dala.storage)
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, settings: Settings | None = None, *, mode: Mode = Mode.CREATE) -> AsyncDala:
        """Open the store `settings` describe (default: `Settings.from_env()`), as
        `Dala.open(settings, mode=mode)` would."""
        settings = Settings.from_env() if settings is None else settings
        if make_url(settings.database_url).get_backend_name() != "postgresql":
            threads = InWorkerThreads(1 if _in_memory(settings.database_url) else SQLITE_WORKERS)
            try:
                return cls(await threads(Dala.open, settings, mode=mode), threads)
            except BaseException:
                await threads.close()
                raise
        if mode in (Mode.CREATE, Mode.MIGRATE, Mode.UPGRADE, Mode.READ):
            # Migrations, tables, rebuilds and the start-up checks, once, with the standard driver.
            await asyncio.to_thread(lambda: Storage.open(settings, mode).close())
        loop = OnTheLoop()
        storage = await loop(Storage.open, settings, Mode.RAW, postgresql_engine=psycopg_async_engine)
        try:
            await loop(lambda: storage.store)  # opens the key store now, not under the first request
        except BaseException:
            await loop(storage.close)
            raise
        return cls(Dala(storage), loop)

    async def profile(
        self, learner_id: str, *, create: bool = True, persistence_enabled: bool = True
    ) -> AsyncLearnerProfile:
        """`Dala.profile`, awaited."""
        profile = await self.run(self.sync.profile, learner_id, create=create, persistence_enabled=persistence_enabled)
        return AsyncLearnerProfile(profile, self.run)

    async def close(self) -> None:
        """Close every connection of the database and of the key store. Idempotent."""
        try:
            await self.run(self.sync.close)
        finally:
            await self.run.close()

    async def __aenter__(self) -> AsyncDala:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncDala {self.sync.storage!r}>"


# -- the process default -------------------------------------------------------------------------

_default: AsyncDala | None = None
_opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def init_db(database_url: str | None = None, *, check_projections: bool = True) -> AsyncDala:
    """`database_setup.init_db`, awaited: open the store (set up as there) and make it the
    default of this module's functions, closing the previous one. Returns it."""
    mode = Mode.CREATE if check_projections else Mode.MIGRATE
    return await _make_default(await AsyncDala.open(Settings.from_env().with_database(database_url), mode=mode))


async def open_db(database_url: str | None = None) -> AsyncDala:
    """`database_setup.open_db`, awaited: an existing, current database, changing nothing."""
    return await _make_default(await AsyncDala.open(Settings.from_env().with_database(database_url), mode=Mode.READ))


async def _make_default(opened: AsyncDala) -> AsyncDala:
    global _default
    previous, _default = _default, opened
    if previous is not None:
        await _close(previous)
    return opened


async def close_db() -> None:
    """Forget the default store and close its connections."""
    global _default
    previous, _default = _default, None
    if previous is not None:
        await _close(previous)


async def _close(dala: AsyncDala) -> None:
    if dala.loop is asyncio.get_running_loop():
        await dala.close()
    else:  # its loop is gone (an earlier `asyncio.run`): drop its connections without a word to them
        dala.sync.storage.engine.dispose(close=False)
        await dala.run.close()


async def _store(store: AsyncEventStore | None) -> AsyncEventStore:
    """`store`, or the default (opened by `init_db()` on first use, and opened again when the
    loop it belonged to has ended)."""
    if store is not None:
        if not isinstance(store, AsyncEventStore):
            raise InvalidInput("store", f"must be an aio.AsyncEventStore or None, not {type(store).__name__}")
        return store
    loop = asyncio.get_running_loop()
    if _default is None or _default.loop is not loop:
        # One opening at a time: tasks that arrive together share the one opened.
        opening = _opening.setdefault(loop, asyncio.Lock())
        async with opening:
            if _default is None or _default.loop is not loop:
                await init_db()
    assert _default is not None
    return _default.store


async def _call(function: Callable[..., R], store: AsyncEventStore | None, /, *args: Any, **kwargs: Any) -> R:
    chosen = await _store(store)
    return await chosen.run(function, *args, store=chosen.sync, **kwargs)


def _page(store: AsyncEventStore, learner_id: str, given: str | Path | None) -> str | Path | None:
    # The synchronous default store writes and removes pages in its own folder: so does ours.
    if given is not None or store.storage is None:
        return given
    return store.storage.page_path(learner_id)


async def get_or_create_learner_profile(
    learner_id: str, *, store: AsyncEventStore | None = None
) -> AsyncLearnerProfile:
    """`hlp_module.get_or_create_learner_profile`, awaited."""
    chosen = await _store(store)
    return AsyncLearnerProfile(await chosen.run(LearnerProfile, learner_id, store=chosen.sync), chosen.run)


# -- persistence_manager, awaited ----------------------------------------------------------------


async def create_learner_profile(learner_id: str, *, store: AsyncEventStore | None = None) -> FullLearnerProfileData:
    """`persistence_manager.create_learner_profile`, awaited."""
    return await _call(persistence_manager.create_learner_profile, store, learner_id)


async def delete_learner_profile(learner_id: str, *, store: AsyncEventStore | None = None) -> None:
    """`persistence_manager.delete_learner_profile`, awaited."""
    await _call(persistence_manager.delete_learner_profile, store, learner_id)


async def add_or_update_preference(
    learner_id: str, data: PreferenceData, *, store: AsyncEventStore | None = None
) -> bool:
    """`persistence_manager.add_or_update_preference`, awaited."""
    return await _call(persistence_manager.add_or_update_preference, store, learner_id, data)


async def remove_preference(learner_id: str, category: str, *, store: AsyncEventStore | None = None) -> bool:
    """`persistence_manager.remove_preference`, awaited."""
    return await _call(persistence_manager.remove_preference, store, learner_id, category)


async def add_interest(learner_id: str, data: InterestData, *, store: AsyncEventStore | None = None) -> bool:
    """`persistence_manager.add_interest`, awaited."""
    return await _call(persistence_manager.add_interest, store, learner_id, data)


async def remove_interest(learner_id: str, interest_name: str, *, store: AsyncEventStore | None = None) -> bool:
    """`persistence_manager.remove_interest`, awaited."""
    return await _call(persistence_manager.remove_interest, store, learner_id, interest_name)


async def add_struggle(learner_id: str, data: StruggleData, *, store: AsyncEventStore | None = None) -> bool:
    """`persistence_manager.add_struggle`, awaited."""
    return await _call(persistence_manager.add_struggle, store, learner_id, data)


async def remove_struggle(learner_id: str, struggle_description: str, *, store: AsyncEventStore | None = None) -> bool:
    """`persistence_manager.remove_struggle`, awaited."""
    return await _call(persistence_manager.remove_struggle, store, learner_id, struggle_description)


async def add_or_update_cognitive_metric(
    learner_id: str, data: CognitiveMetricData, *, store: AsyncEventStore | None = None
) -> bool:
    """`persistence_manager.add_or_update_cognitive_metric`, awaited."""
    return await _call(persistence_manager.add_or_update_cognitive_metric, store, learner_id, data)


async def add_or_update_lo_progress(
    learner_id: str, data: LOProgressData, *, store: AsyncEventStore | None = None
) -> bool:
    """`persistence_manager.add_or_update_lo_progress`, awaited."""
    return await _call(persistence_manager.add_or_update_lo_progress, store, learner_id, data)


async def add_badge_record(learner_id: str, data: BadgeData, *, store: AsyncEventStore | None = None) -> bool:
    """`persistence_manager.add_badge_record`, awaited."""
    return await _call(persistence_manager.add_badge_record, store, learner_id, data)


async def revoke_badge(learner_id: str, badge_id: str, *, store: AsyncEventStore | None = None) -> bool:
    """`persistence_manager.revoke_badge`, awaited."""
    return await _call(persistence_manager.revoke_badge, store, learner_id, badge_id)


async def add_activity_attempt(
    learner_id: str, data: ActivityAttemptData, *, store: AsyncEventStore | None = None
) -> bool:
    """`persistence_manager.add_activity_attempt`, awaited."""
    return await _call(persistence_manager.add_activity_attempt, store, learner_id, data)


async def list_learners(
    *, after: str | None = None, limit: int = 100, store: AsyncEventStore | None = None
) -> list[LearnerSummary]:
    """`persistence_manager.list_learners`, awaited."""
    return await _call(persistence_manager.list_learners, store, after=after, limit=limit)


async def get_full_learner_profile_data(
    learner_id: str, *, store: AsyncEventStore | None = None
) -> FullLearnerProfileData | None:
    """`persistence_manager.get_full_learner_profile_data`, awaited."""
    return await _call(persistence_manager.get_full_learner_profile_data, store, learner_id)


async def get_preferences(learner_id: str, *, store: AsyncEventStore | None = None) -> list[PreferenceData]:
    """`persistence_manager.get_preferences`, awaited."""
    return await _call(persistence_manager.get_preferences, store, learner_id)


async def get_interests(learner_id: str, *, store: AsyncEventStore | None = None) -> list[InterestData]:
    """`persistence_manager.get_interests`, awaited."""
    return await _call(persistence_manager.get_interests, store, learner_id)


async def get_struggles(learner_id: str, *, store: AsyncEventStore | None = None) -> list[StruggleData]:
    """`persistence_manager.get_struggles`, awaited."""
    return await _call(persistence_manager.get_struggles, store, learner_id)


async def get_cognitive_metrics(learner_id: str, *, store: AsyncEventStore | None = None) -> list[CognitiveMetricData]:
    """`persistence_manager.get_cognitive_metrics`, awaited."""
    return await _call(persistence_manager.get_cognitive_metrics, store, learner_id)


async def get_lo_progress(learner_id: str, *, store: AsyncEventStore | None = None) -> list[LOProgressData]:
    """`persistence_manager.get_lo_progress`, awaited."""
    return await _call(persistence_manager.get_lo_progress, store, learner_id)


async def get_badges(learner_id: str, *, store: AsyncEventStore | None = None) -> list[BadgeData]:
    """`persistence_manager.get_badges`, awaited."""
    return await _call(persistence_manager.get_badges, store, learner_id)


async def get_activity_attempts(learner_id: str, *, store: AsyncEventStore | None = None) -> list[ActivityAttemptData]:
    """`persistence_manager.get_activity_attempts`, awaited."""
    return await _call(persistence_manager.get_activity_attempts, store, learner_id)


async def export_learner(learner_id: str, *, store: AsyncEventStore | None = None) -> LearnerExport:
    """`persistence_manager.export_learner`, awaited (the disclosure recorded first, as there)."""
    return await _call(persistence_manager.export_learner, store, learner_id)


async def erase_learner(
    learner_id: str,
    *,
    reason: str | None = None,
    store: AsyncEventStore | None = None,
    vacuum_full: bool = False,
    page: Path | None = None,
) -> Erasure:
    """`erasure.erase_learner`, awaited (the store's page of the learner removed, as there)."""
    chosen = await _store(store)
    shown = _page(chosen, learner_id, page)
    return await _call(
        _erase_learner,
        chosen,
        learner_id,
        reason=reason,
        vacuum_full=vacuum_full,
        page=None if shown is None else Path(shown),
    )


# -- audits, xAPI and the learner's page, awaited -------------------------------------------------


async def history(
    learner_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    event_types: Collection[str] | None = None,
    happened_since: datetime | None = None,
    happened_until: datetime | None = None,
    store: AsyncEventStore | None = None,
) -> list[RecordedEvent]:
    """`audit.history`, awaited."""
    return await _call(
        audit.history,
        store,
        learner_id,
        since=since,
        until=until,
        event_types=event_types,
        happened_since=happened_since,
        happened_until=happened_until,
    )


async def profile_as_of(
    learner_id: str,
    *,
    at: datetime | None = None,
    version: int | None = None,
    happened_by: datetime | None = None,
    store: AsyncEventStore | None = None,
) -> FullLearnerProfileData | None:
    """`audit.profile_as_of`, awaited."""
    return await _call(audit.profile_as_of, store, learner_id, at=at, version=version, happened_by=happened_by)


async def diff(
    learner_id: str,
    start: audit.Point | None = None,
    end: audit.Point | None = None,
    *,
    happened_since: datetime | None = None,
    happened_until: datetime | None = None,
    store: AsyncEventStore | None = None,
) -> audit.ProfileDiff:
    """`audit.diff`, awaited."""
    return await _call(
        audit.diff, store, learner_id, start, end, happened_since=happened_since, happened_until=happened_until
    )


async def export_learner_xapi(
    learner_id: str, *, homepage: str | None = None, store: AsyncEventStore | None = None
) -> list[dict[str, Any]]:
    """`xapi.export_learner_xapi`, awaited (the disclosure recorded first, as there)."""
    return await _call(xapi.export_learner_xapi, store, learner_id, homepage=homepage)


async def generate_interface(
    learner_id: str,
    output_path: str | Path | None = None,
    *,
    store: AsyncEventStore | None = None,
    time_zone: tzinfo | None = None,
) -> Path:
    """`generate_interface.generate_interface`, awaited: by default written where the store
    keeps pages, its times in the store's time zone, as the synchronous default store does."""
    chosen = await _store(store)
    if time_zone is None and chosen.storage is not None:
        time_zone = chosen.storage.settings.time_zone
    path = _page(chosen, learner_id, output_path)
    return await _call(_generate_interface, chosen, learner_id, path, time_zone=time_zone)


__all__ = [
    "AsyncDala",
    "AsyncEventStore",
    "AsyncLearnerProfile",
    "InWorkerThreads",
    "OnTheLoop",
    "Runner",
    "add_activity_attempt",
    "add_badge_record",
    "add_interest",
    "add_or_update_cognitive_metric",
    "add_or_update_lo_progress",
    "add_or_update_preference",
    "add_struggle",
    "close_db",
    "create_learner_profile",
    "delete_learner_profile",
    "diff",
    "erase_learner",
    "export_learner",
    "export_learner_xapi",
    "generate_interface",
    "get_activity_attempts",
    "get_badges",
    "get_cognitive_metrics",
    "get_full_learner_profile_data",
    "get_interests",
    "get_lo_progress",
    "get_or_create_learner_profile",
    "get_preferences",
    "get_struggles",
    "history",
    "init_db",
    "list_learners",
    "open_db",
    "profile_as_of",
    "remove_interest",
    "remove_preference",
    "remove_struggle",
    "revoke_badge",
]
