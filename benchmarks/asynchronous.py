"""The async group of `make bench`: `dala_events.aio` against the synchronous API, same workload.

Runs in one child of the harness (task `async`), on a SQLite file and, when a server answers, on
a PostgreSQL database of its own (created and dropped here, with a key store database of its
own, as `benchmarks.postgres` does). For each backend, in one run:

- **mutations/s and latency per call**: `persistence_manager.add_activity_attempt` (a command:
  it reads the learner and appends one event with its read-model rows), `CALLS` calls over
  `LEARNERS` learners, with 1 caller and with 50 at once (each owning one learner): the synchronous API from 1 and from
  50 threads, the async API from 1 and from 50 tasks on one event loop. p50 and p99 of each
  call's time.
- **the loop's worst delay** while `aio.history` reads a 5,000-event learner: a ticker task
  sleeping 2 ms at a time on the same loop, its longest overshoot; with the heap as it is, and
  with the start-up heap frozen (`gc.freeze()`, as a server does): the difference is the
  garbage collector's full pass, not the store.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

LEARNERS = 50
CALLS = 500
CONCURRENT = 50
HISTORY_EVENTS = 5_000
TICK = 0.002


def _attempt(learner: int, n: int) -> Any:
    from dala_events.persistence_manager import ActivityAttemptData

    return ActivityAttemptData(lo_id="LO1", activity_id=f"a{learner}-{n}", activity_type="quiz", score=50.0)


def _calls(caller: int, callers: int) -> list[tuple[str, int]]:
    """The calls of one caller: those of the learners it owns (each learner has one caller, so
    callers never meet on a learner: the measure is of waiting, not of conflicts)."""
    return [(f"bench-{n % LEARNERS:03d}", n) for n in range(CALLS) if (n % LEARNERS) % callers == caller]


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return ordered[len(ordered) // 2] * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def _sync(settings: Any, callers: int) -> dict[str, float]:
    from dala_events import persistence_manager as pm
    from dala_events.app import Dala

    with Dala.open(settings) as dala:
        for n in range(LEARNERS):
            pm.create_learner_profile(f"bench-{n:03d}", store=dala.store)
        latencies: list[float] = []
        lock = threading.Lock()

        def call(item: tuple[str, int]) -> None:
            started = time.perf_counter()
            pm.add_activity_attempt(item[0], _attempt(item[1] % LEARNERS, item[1]), store=dala.store)
            took = time.perf_counter() - started
            with lock:
                latencies.append(took)

        def caller(number: int) -> None:
            for item in _calls(number, callers):
                call(item)

        started = time.perf_counter()
        if callers == 1:
            caller(0)
        else:
            with ThreadPoolExecutor(max_workers=callers) as pool:
                list(pool.map(caller, range(callers)))
        seconds = time.perf_counter() - started
    p50, p99 = _percentiles(latencies)
    return {"rate": CALLS / seconds, "p50_ms": p50, "p99_ms": p99}


def _async(settings: Any, callers: int) -> dict[str, float]:
    from dala_events import aio

    async def run() -> dict[str, float]:
        async with await aio.AsyncDala.open(settings) as dala:
            for n in range(LEARNERS):
                await aio.create_learner_profile(f"bench-{n:03d}", store=dala.store)
            latencies: list[float] = []
            async def caller(number: int) -> None:
                for learner_id, n in _calls(number, callers):
                    started = time.perf_counter()
                    await aio.add_activity_attempt(learner_id, _attempt(n % LEARNERS, n), store=dala.store)
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(caller(number) for number in range(callers)))
            seconds = time.perf_counter() - started
        p50, p99 = _percentiles(latencies)
        return {"rate": CALLS / seconds, "p50_ms": p50, "p99_ms": p99}

    return asyncio.run(run())


async def _worst_delay(during: Callable[[], Awaitable[Any]]) -> float:
    worst, running = 0.0, True

    async def ticker() -> None:
        nonlocal worst
        while running:
            started = time.perf_counter()
            await asyncio.sleep(TICK)
            worst = max(worst, time.perf_counter() - started - TICK)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    worst = 0.0
    try:
        await during()
    finally:
        running = False
        await ticking
    return worst * 1000


def write_long_history(dala: Any, learner_id: str, events: int) -> None:
    """Give the learner a stream of `events` events (interests added and removed in turn),
    saved 500 at a time through the synchronous `Dala`."""
    profile = dala.profile(learner_id, persistence_enabled=False)
    while profile.version < events:
        name = f"topic {profile.version % 40}"
        profile.add_interest(name) if name not in profile.interests else profile.remove_interest(name)
        if len(profile.pending) >= 500 or profile.version >= events:
            profile.save()


def _loop_delay(settings: Any) -> dict[str, float]:
    from dala_events import aio

    async def run() -> dict[str, float]:
        async with await aio.AsyncDala.open(settings) as dala:

            await dala.run(write_long_history, dala.sync, "long", HISTORY_EVENTS)
            history = dala.store
            as_is = await _worst_delay(lambda: aio.history("long", store=history))
            gc.collect()
            gc.freeze()
            try:
                frozen = await _worst_delay(lambda: aio.history("long", store=history))
            finally:
                gc.unfreeze()
            started = time.perf_counter()
            await aio.history("long", store=history)
            async_ms = (time.perf_counter() - started) * 1000
            return {"as_is_ms": as_is, "frozen_ms": frozen, "history_async_ms": async_ms}

    return asyncio.run(run())


def _backend(settings_for: Callable[[str], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for callers in (1, CONCURRENT):
        out[f"sync_{callers}"] = _sync(settings_for(f"sync{callers}"), callers)
        out[f"async_{callers}"] = _async(settings_for(f"async{callers}"), callers)
    out["loop"] = _loop_delay(settings_for("history"))
    return out


def run(folder: str) -> dict[str, Any]:
    """Both backends' figures (PostgreSQL's replaced by the reason it was skipped)."""
    from benchmarks import postgres
    from dala_events.settings import Settings

    results: dict[str, Any] = {}
    results["sqlite"] = _backend(lambda name: Settings(database_url=f"sqlite:///{Path(folder) / name}.db"))
    why = postgres.problem()
    if why is not None:
        results["postgresql_skipped"] = why
        return results
    with postgres.databases() as (log_url, keys_url):

        def fresh(_name: str) -> Any:
            postgres.reset_databases(log_url, keys_url)
            return postgres.settings_for(log_url, keys_url)

        results["postgresql"] = _backend(fresh)
    return results
