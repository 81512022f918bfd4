"""The async API (`dala_events.aio`): the synchronous behaviour, awaited, on both backends.

Each async function is checked against its synchronous twin: the same parameters, and on the
same inputs the same results and the same errors. Then what only concurrency shows: 100 learners
written at once from one loop, a task cancelled in the middle of a save, and a loop that keeps
ticking while a long history is read beside 50 writers.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import re
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine, create_engine, event, select

from benchmarks.asynchronous import write_long_history
from dala_events import aio, audit, erasure, generate_interface, hlp_module, persistence_manager, xapi
from dala_events.app import Dala
from dala_events.attribution import recorded_as
from dala_events.errors import DalaError, InvalidInput, LearnerErasedError
from dala_events.hlp_module import LearnerProfile
from dala_events.persistence_manager import (
    ActivityAttemptData,
    BadgeData,
    CognitiveMetricData,
    InterestData,
    LOProgressData,
    PreferenceData,
    StruggleData,
)
from dala_events.settings import Settings
from dala_events.store import event_log
from dala_events.store.contract import STREAM_BATCH_SIZE
from dala_events.store.keys import MasterKey
from projections.database_models import READ_MODEL_METADATA
from projections.rebuild import rebuild_projections
from tests.conftest import POSTGRES_URL, TEST_MASTER_KEY, require_postgres, reset_postgres

SYNC_TWINS: dict[str, Callable[..., Any]] = {
    name: getattr(module, name)
    for module, names in (
        (
            persistence_manager,
            (
                "create_learner_profile",
                "delete_learner_profile",
                "add_or_update_preference",
                "remove_preference",
                "add_interest",
                "remove_interest",
                "add_struggle",
                "remove_struggle",
                "add_or_update_cognitive_metric",
                "add_or_update_lo_progress",
                "add_badge_record",
                "revoke_badge",
                "add_activity_attempt",
                "list_learners",
                "get_full_learner_profile_data",
                "get_preferences",
                "get_interests",
                "get_struggles",
                "get_cognitive_metrics",
                "get_lo_progress",
                "get_badges",
                "get_activity_attempts",
                "export_learner",
            ),
        ),
        (audit, ("history", "profile_as_of", "diff")),
        (xapi, ("export_learner_xapi",)),
        (generate_interface, ("generate_interface",)),
        (erasure, ("erase_learner",)),
        (hlp_module, ("get_or_create_learner_profile",)),
    )
    for name in names
}


def test_every_async_twin_takes_the_arguments_of_its_synchronous_one() -> None:
    for name, sync in SYNC_TWINS.items():
        twin = getattr(aio, name)
        assert inspect.iscoroutinefunction(twin), name
        ours = inspect.signature(twin).parameters
        theirs = inspect.signature(sync).parameters
        theirs = {key: value for key, value in theirs.items() if key != "connection"}  # a SQL detail of one getter
        assert [(p.name, p.kind, p.default) for p in ours.values()] == [
            (p.name, p.kind, p.default) for p in theirs.values()
        ], name
    for name in ("init_db", "open_db"):
        sync_parameters = inspect.signature(getattr(__import__("dala_events.database_setup").database_setup, name))
        assert list(inspect.signature(getattr(aio, name)).parameters) == list(sync_parameters.parameters), name
    for name in PROFILE_CHANGES:
        ours = getattr(aio.AsyncLearnerProfile, name)
        assert inspect.iscoroutinefunction(ours), name
        theirs = inspect.signature(getattr(LearnerProfile, name)).parameters
        assert list(inspect.signature(ours).parameters) == list(theirs), name


PROFILE_CHANGES = (
    "create",
    "save",
    "run_command",
    "update_preference",
    "remove_preference",
    "add_interest",
    "remove_interest",
    "add_struggle_area",
    "remove_struggle_area",
    "add_cognitive_metric",
    "start_lo",
    "update_lo_progress",
    "mark_lo_completed",
    "add_badge",
    "revoke_badge",
    "record_activity_attempt",
    "delete",
    "erase",
)
"""What changes a `LearnerProfile` (and may write): each awaited on an `AsyncLearnerProfile`."""


# -- the same inputs through both APIs ------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Settings]:
    """Settings of an empty database (PostgreSQL: the tests' database, emptied) with its own key store."""

    def make(name: str) -> Settings:
        pages = tmp_path / f"{name}-pages"
        if request.param == "sqlite":
            return Settings(database_url=f"sqlite:///{tmp_path}/{name}.db", page_dir=pages)
        require_postgres()
        reset_postgres()
        return Settings(
            database_url=POSTGRES_URL,
            key_store=str(tmp_path / f"{name}.keys"),
            master_key=MasterKey.from_hex(TEST_MASTER_KEY),
            page_dir=pages,
        )

    return make


HOME = "https://school.example"

STEPS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("create_learner_profile", ("ann",), {}),
    ("create_learner_profile", ("ann",), {}),
    ("create_learner_profile", ("bob",), {}),
    ("add_interest", ("ann", InterestData(interest_name="Robotics")), {}),
    ("add_interest", ("ann", InterestData(interest_name="Robotics")), {}),
    ("add_or_update_preference", ("ann", PreferenceData(category="visual_preference_task_1", value="visual")), {}),
    ("add_struggle", ("ann", StruggleData(struggle_description="Fractions")), {}),
    (
        "add_or_update_cognitive_metric",
        ("ann", CognitiveMetricData(task_name="memory", metric_details={"span": 7})),
        {},
    ),
    ("add_or_update_lo_progress", ("ann", LOProgressData(lo_id="LO1", status="in_progress")), {}),
    ("add_badge_record", ("ann", BadgeData(badge_id="b1", badge_name="Explorer")), {}),
    (
        "add_activity_attempt",
        ("ann", ActivityAttemptData(lo_id="LO1", activity_id="a1", activity_type="quiz", score=0.8, completed=True)),
        {},
    ),
    ("remove_interest", ("ann", "Robotics"), {}),
    ("remove_interest", ("ann", "Chess"), {}),
    ("remove_preference", ("ann", "visual_preference_task_1"), {}),
    ("remove_struggle", ("ann", "Fractions"), {}),
    ("revoke_badge", ("ann", "b1"), {}),
    ("add_interest", ("nobody", InterestData(interest_name="Art")), {}),
    ("add_interest", ("", InterestData(interest_name="Art")), {}),
    ("add_or_update_preference", ("ann", {"category": "x"}), {}),
    ("get_full_learner_profile_data", ("ann",), {}),
    ("get_full_learner_profile_data", ("nobody",), {}),
    ("get_preferences", ("ann",), {}),
    ("get_interests", ("ann",), {}),
    ("get_struggles", ("ann",), {}),
    ("get_cognitive_metrics", ("ann",), {}),
    ("get_lo_progress", ("ann",), {}),
    ("get_badges", ("ann",), {}),
    ("get_activity_attempts", ("ann",), {}),
    ("list_learners", (), {}),
    ("list_learners", (), {"after": "ann", "limit": 1}),
    ("list_learners", (), {"limit": 0}),
    ("history", ("ann",), {}),
    ("history", ("ann",), {"event_types": ["InterestAdded", "InterestRemoved"]}),
    ("history", ("ann",), {"event_types": ["NoSuchEvent"]}),
    ("profile_as_of", ("ann",), {"version": 3}),
    ("profile_as_of", ("ann",), {}),
    ("diff", ("ann", 1, 6), {}),
    ("diff", ("ann", 6, "yesterday"), {}),
    ("export_learner", ("ann",), {}),
    ("export_learner_xapi", ("ann",), {"homepage": HOME}),
    ("export_learner_xapi", ("ann",), {"homepage": "not a url"}),
    ("generate_interface", ("ann", "page.html"), {}),
    ("generate_interface", ("nobody", "page.html"), {}),
    ("delete_learner_profile", ("bob",), {}),
    ("get_full_learner_profile_data", ("bob",), {}),
    ("erase_learner", ("ann",), {}),
    ("erase_learner", ("ann",), {"reason": "parent's request, ref 7"}),
    ("history", ("ann",), {}),
    ("get_interests", ("ann",), {}),
    ("add_interest", ("ann", InterestData(interest_name="Art")), {}),
    ("profile_as_of", ("ann",), {"version": 2}),
    ("list_learners", (), {}),
]
"""Every async function on the same inputs as its twin: results, refusals and errors."""

_TIME_TEXT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def plain(value: Any) -> Any:
    """`value` with what differs between two runs of the same steps (times, ids, folders) blanked."""
    if isinstance(value, BaseModel):
        return {type(value).__name__: plain(value.model_dump())}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return plain(value._asdict())
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, datetime | date):
        return "<time>"
    if isinstance(value, Path):
        return value.name
    if isinstance(value, str):
        return _UUID.sub("<id>", _TIME_TEXT.sub("<time>", value))
    return value


def outcome(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return plain(function(*args, **kwargs))
    except DalaError as error:
        return ("error", type(error).__name__, getattr(error, "field", None), plain(str(error)))


async def async_outcome(function: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    try:
        return plain(await function(*args, **kwargs))
    except DalaError as error:
        return ("error", type(error).__name__, getattr(error, "field", None), plain(str(error)))


def _arguments(args: tuple[Any, ...], folder: Path, name: str) -> tuple[Any, ...]:
    return (args[0], folder / args[1]) if name == "generate_interface" else args


def test_each_async_function_does_what_its_twin_does(fresh: Callable[[str], Settings], tmp_path: Path) -> None:
    with Dala.open(fresh("sync")) as dala, recorded_as("teacher:7", reason="term review"):
        expected = [
            outcome(SYNC_TWINS[name], *_arguments(args, tmp_path / "sync", name), store=dala.store, **kwargs)
            for name, args, kwargs in STEPS
        ]

    async def run() -> list[Any]:
        async with await aio.AsyncDala.open(fresh("async")) as dala:
            with recorded_as("teacher:7", reason="term review"):  # a context variable: it crosses awaits
                return [
                    await async_outcome(
                        getattr(aio, name), *_arguments(args, tmp_path / "async", name), store=dala.store, **kwargs
                    )
                    for name, args, kwargs in STEPS
                ]

    found = asyncio.run(run())
    for step, ours, theirs in zip(STEPS, found, expected, strict=True):
        assert ours == theirs, step[0]
    assert any(isinstance(item, tuple) and item[1] == "LearnerErasedError" for item in found)
    assert any(isinstance(item, tuple) and item[1] == "InvalidInput" for item in found)


def _configure(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment `aio`'s default store is opened from: these settings' database and keys."""
    monkeypatch.setenv("DALA_DATABASE_URL", settings.database_url)
    if settings.key_store:
        monkeypatch.setenv("DALA_KEY_STORE", settings.key_store)
        monkeypatch.setenv("DALA_MASTER_KEY", TEST_MASTER_KEY)


def test_the_module_default_is_opened_on_first_use_and_the_profile_is_awaited(
    fresh: Callable[[str], Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fresh("default")
    _configure(settings, monkeypatch)

    async def run() -> None:
        try:
            profile = await aio.get_or_create_learner_profile("student123")
            await profile.add_interest("Robotics")
            profile.persistence_enabled = False
            await profile.update_preference("visual_preference_task_1", "visual")
            assert [event.event_type for event in await aio.history("student123")] == [
                "LearnerProfileCreated",
                "InterestAdded",
            ]
            await profile.save()
            assert profile.version == 3 and not profile.pending
            assert [p.value for p in await aio.get_preferences("student123")] == ["visual"]
            loaded = await aio.AsyncLearnerProfile.load("student123")
            assert loaded.interests == ["Robotics"] and loaded.preferences == profile.preferences
            with pytest.raises(InvalidInput) as caught:
                await aio.get_interests("student123", store=object())  # type: ignore[arg-type]
            assert caught.value.field == "store"
            added = await loaded.run_command(lambda p: p.add_interest("Chess"))
            assert added and (await aio.get_or_create_learner_profile("student123")).version == 4
        finally:
            await aio.close_db()

    asyncio.run(run())
    asyncio.run(_reopened())  # a second loop opens the default again


async def _reopened() -> None:
    try:
        assert [i.interest_name for i in await aio.get_interests("student123")] == ["Robotics", "Chess"]
    finally:
        await aio.close_db()


# -- concurrency ---------------------------------------------------------------------------------

LEARNERS = 100


def _workload(learner_id: str) -> list[tuple[str, tuple[Any, ...]]]:
    n = int(learner_id[1:])
    return [
        ("create_learner_profile", (learner_id,)),
        ("add_interest", (learner_id, InterestData(interest_name=f"topic {n % 7}"))),
        ("add_or_update_preference", (learner_id, PreferenceData(category="pace", value=f"p{n % 3}"))),
        ("add_or_update_lo_progress", (learner_id, LOProgressData(lo_id="LO1", status="in_progress"))),
        (
            "add_activity_attempt",
            (learner_id, ActivityAttemptData(lo_id="LO1", activity_id=f"a{n}", activity_type="quiz", score=n / 100)),
        ),
        ("add_interest", (learner_id, InterestData(interest_name="shared"))),
        ("remove_interest", (learner_id, f"topic {n % 7}")),
    ]


def _tables(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The eight tables' rows without surrogate ids and times: what two runs at different moments share."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for table in READ_MODEL_METADATA.sorted_tables:
            columns = [c for c in table.columns if not (c.name == "id" and table.name != "learner_profiles")]
            rows = connection.execute(select(*columns)).all()
            found[table.name] = sorted(
                tuple(repr(v) for v in row if not isinstance(v, datetime | date)) for row in rows
            )
    return found


def _versions(engine: Engine) -> dict[str, list[int]]:
    versions: dict[str, list[int]] = {}
    with engine.connect() as connection:
        for learner_id, version in connection.execute(select(event_log.c.learner_id, event_log.c.version)):
            versions.setdefault(learner_id, []).append(version)
    return versions


@pytest.mark.slow
def test_a_hundred_learners_written_at_once_from_one_loop_equal_the_same_work_done_synchronously(
    fresh: Callable[[str], Settings],
) -> None:
    learners = [f"l{n:03}" for n in range(LEARNERS)]
    settings = fresh("sync")
    with Dala.open(settings) as dala:
        for learner_id in learners:
            for name, args in _workload(learner_id):
                SYNC_TWINS[name](*args, store=dala.store)
    engine = create_engine(settings.database_url)
    try:
        expected = _tables(engine)
    finally:
        engine.dispose()

    settings = fresh("async")

    async def run() -> None:
        async with await aio.AsyncDala.open(settings) as dala:

            async def one(learner_id: str) -> None:
                for name, args in _workload(learner_id):
                    await getattr(aio, name)(*args, store=dala.store)

            await asyncio.gather(*(one(learner_id) for learner_id in learners))

    asyncio.run(run())
    engine = create_engine(settings.database_url)
    try:
        versions = _versions(engine)
        assert sorted(versions) == learners
        assert all(sorted(found) == list(range(1, len(found) + 1)) for found in versions.values())
        inline = _tables(engine)
        assert inline == expected
        with Dala.open(settings) as dala:
            rebuild_projections(dala.engine, cipher=dala.cipher)
        assert _tables(engine) == inline
    finally:
        engine.dispose()


def _hooked(engine: Engine, at: int, on_statement: Callable[[], None]) -> Callable[[], None]:
    """Call `on_statement` after the `at`-th statement run on `engine` from now; returns the unhook."""
    count = [0]

    def after(*_args: Any) -> None:
        count[0] += 1
        if count[0] == at:
            on_statement()

    event.listen(engine, "after_cursor_execute", after)
    return lambda: event.remove(engine, "after_cursor_execute", after)


def test_a_save_cancelled_at_any_statement_leaves_all_of_its_events_or_none(
    fresh: Callable[[str], Settings],
) -> None:
    settings = fresh("cancel")
    outcomes: set[str] = set()

    async def attempt(dala: aio.AsyncDala, learner_id: str, at: int) -> bool:
        profile = await dala.profile(learner_id, persistence_enabled=False)  # nothing written yet
        for name in ("Art", "Music", "Chess", "Robotics"):
            await profile.add_interest(name)
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        unhook = _hooked(dala.sync.engine, at, lambda: loop.call_soon_threadsafe(task.cancel))
        try:
            await profile.save()
            return False
        except asyncio.CancelledError:
            task.uncancel()
            return True
        finally:
            unhook()

    async def run() -> list[tuple[str, bool]]:
        results = []
        async with await aio.AsyncDala.open(settings) as dala:
            for at in range(1, 12):
                results.append((f"c{at}", await attempt(dala, f"c{at}", at)))
        return results

    results = asyncio.run(run())
    assert any(cancelled for _, cancelled in results)
    with Dala.open(settings) as dala:  # another store: its own key cache, as another process
        for learner_id, _cancelled in results:
            version = dala.store.stream_version(learner_id)
            assert version in (0, 5), learner_id
            outcomes.add("all" if version else "none")
            if version:  # the key committed before the events: every event decrypts
                assert [e.event.interest_name for e in dala.history(learner_id)[1:]] == [  # type: ignore[attr-defined]
                    "Art",
                    "Music",
                    "Chess",
                    "Robotics",
                ]
                assert len(persistence_manager.get_interests(learner_id, store=dala.store)) == 4
            else:
                assert persistence_manager.get_full_learner_profile_data(learner_id, store=dala.store) is None
    assert "all" in outcomes


LONG_HISTORY = 5_000
WRITERS = 50


def test_the_loop_keeps_ticking_while_a_long_history_is_read_beside_fifty_writers(
    fresh: Callable[[str], Settings],
) -> None:
    """The history is read in batches of STREAM_BATCH_SIZE, each read awaited, so the loop's
    longest hold is a batch's work, a small part of the whole read. Nothing here is an
    absolute time (how long a batch takes depends on the machine and its load): the longest
    delay of a ticker on the same loop is compared with how long the same read took on it.
    The figure itself is the bench's (`python -m benchmarks --only async`)."""
    settings = fresh("ticking")

    async def run() -> tuple[float, float, int, int]:
        async with await aio.AsyncDala.open(settings) as dala:
            await dala.run(write_long_history, dala.sync, "long", LONG_HISTORY)
            writers = [f"w{n}" for n in range(WRITERS)]
            for learner_id in writers:
                await aio.create_learner_profile(learner_id, store=dala.store)
            worst, running = 0.0, True
            reads = 0

            def count_reads(_c: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
                nonlocal reads
                if "event_log" in statement and "'long'" in repr(parameters):
                    reads += 1

            async def ticker() -> None:
                nonlocal worst
                while running:
                    started = time.perf_counter()
                    await asyncio.sleep(0.002)
                    worst = max(worst, time.perf_counter() - started - 0.002)

            async def writer(learner_id: str) -> None:
                for n in range(5):
                    await aio.add_interest(learner_id, InterestData(interest_name=f"i{n}"), store=dala.store)

            async def read() -> tuple[int, float]:
                started = time.perf_counter()
                history = await aio.history("long", store=dala.store)
                return len(history), time.perf_counter() - started

            # The heap as it stands is kept out of the collector's full passes (`gc.freeze`), as a
            # server does after start-up: what is measured is the store's own hold on the loop,
            # not the collector's walk over every module loaded (15-100 ms here, in any Python
            # program with this heap, the synchronous API's included: the README says so).
            gc.collect()
            gc.freeze()
            event.listen(dala.sync.engine, "before_cursor_execute", count_reads)
            ticking = asyncio.create_task(ticker())
            try:
                await asyncio.sleep(0.01)
                worst = 0.0
                (read_events, reading), *_ = await asyncio.gather(read(), *(writer(name) for name in writers))
            finally:
                running = False
                await ticking
                event.remove(dala.sync.engine, "before_cursor_execute", count_reads)
                gc.unfreeze()
            return worst, reading, read_events, reads

    worst, reading, read, reads = asyncio.run(run())
    assert read == LONG_HISTORY
    assert reads >= LONG_HISTORY // STREAM_BATCH_SIZE  # read a batch at a time, each read awaited
    assert worst < reading / 3, f"the loop was held {worst * 1000:.1f} ms of a {reading * 1000:.0f} ms read"


def test_an_erasure_awaited_is_refused_to_the_next_append_of_another_store(fresh: Callable[[str], Settings]) -> None:
    settings = fresh("erase")

    async def run() -> None:
        async with await aio.AsyncDala.open(settings) as first, await aio.AsyncDala.open(settings) as second:
            profile = await first.profile("ann")
            await profile.add_interest("Chess")
            other = await second.profile("ann")
            with recorded_as("dpo:1", reason="parent's request"):
                await aio.erase_learner("ann", store=first.store)
            with pytest.raises(LearnerErasedError):
                await other.add_interest("Art")
            with pytest.raises(LearnerErasedError):
                await aio.get_or_create_learner_profile("ann", store=second.store)

    asyncio.run(run())


def test_no_thread_or_connection_outlives_a_closed_async_store(fresh: Callable[[str], Settings]) -> None:
    settings = fresh("closing")
    before = set(threading.enumerate())

    async def run() -> aio.AsyncDala:
        dala = await aio.AsyncDala.open(settings)
        await (await dala.profile("ann")).add_interest("Chess")
        await dala.close()
        return dala

    dala = asyncio.run(run())
    assert dala.sync.engine.pool.checkedout() == 0
    leftover = {t for t in threading.enumerate() if t not in before and t.name.startswith("dala-aio")}
    assert not leftover


def test_tasks_that_first_use_the_default_together_share_one_store(
    fresh: Callable[[str], Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fresh("together")
    _configure(settings, monkeypatch)

    async def run() -> list[int]:
        try:
            profiles = await asyncio.gather(*(aio.get_or_create_learner_profile(f"t{n}") for n in range(3)))
            for profile in profiles:
                await profile.add_interest("Chess")
            return [profile.version for profile in profiles]
        finally:
            await aio.close_db()

    assert asyncio.run(run()) == [2, 2, 2]
