"""`dala bench`: how fast the store writes and rebuilds, against its floor and a peer library.

Workload: N learners, each going through `workload.learner_workload` (75 mutations).
Measured, in alternating rounds in one process, the median reported:

(a) batched        persistence off, all of a learner's mutations, then one save() per learner
(b) per mutation   persistence on: one transaction per mutation
(c) rebuild        `rebuild_projections` over what (a) wrote, in events/s
floor (a), (b)     plain `sqlite3` doing only the database work: the INSERT/UPSERT/UPDATE/DELETE
                   statements the store executed, with their parameters already converted,
                   captured once from a run of ours and replayed in the same transactions
                   (one per learner for (a), one per mutation for (b)) on a fresh database
                   with the same schema and pragmas
peer (a), (b)      the `eventsourcing` library on its SQLite backend, same mutations; it keeps
                   no read models (install the `bench` extra to include it)
"""

from __future__ import annotations

import gc
import resource
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from dala_events.database_setup import create_dala_engine, create_tables, store_for
from dala_events.dialects import SQLITE_BUSY_TIMEOUT_MS
from dala_events.hlp_module import LearnerProfile
from dala_events.workload import Mutation, apply_workload, learner_workload

Transaction = list[tuple[str, Any, bool]]


@dataclass
class BenchResult:
    """Median rates of each measurement (per second) and the peak memory of the run."""

    learners: int
    mutations: int
    events: int
    rounds: int
    rates: dict[str, list[float]] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)

    def median(self, name: str) -> float | None:
        """The median rate of a measurement, or None if it was not run."""
        values = self.rates.get(name)
        return statistics.median(values) if values else None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        medians = {name: self.median(name) for name in self.rates}
        ratios: dict[str, float | None] = {}
        for mode in ("a", "b"):
            ours, floor, peer = medians.get(mode), medians.get(f"floor_{mode}"), medians.get(f"peer_{mode}")
            ratios[f"{mode}_to_floor"] = ours / floor if ours and floor else None
            ratios[f"{mode}_to_peer"] = ours / peer if ours and peer else None
        return {
            "learners": self.learners,
            "mutations": self.mutations,
            "events": self.events,
            "rounds": self.rounds,
            "median_per_second": medians,
            "ratios": ratios,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "notes": self.notes,
        }


def _learner_ids(count: int) -> list[str]:
    return [f"bench-learner-{n:05d}" for n in range(count)]


def fresh_engine(folder: Path, name: str) -> Engine:
    """An engine on a new, empty SQLite file `folder/name.db` with every table created."""
    path = folder / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = create_dala_engine(f"sqlite:///{path}")
    create_tables(engine)
    return engine


# -- ours ---------------------------------------------------------------------------------------


def run_ours_batched(engine: Engine, workloads: dict[str, list[Mutation]]) -> None:
    """(a): every learner's mutations in memory, then one save each."""
    store = store_for(engine)
    for learner_id, mutations in workloads.items():
        profile = LearnerProfile(learner_id, persistence_enabled=False, store=store)
        apply_workload(profile, mutations)
        profile.save()


def run_ours_per_mutation(engine: Engine, workloads: dict[str, list[Mutation]]) -> None:
    """(b): every mutation written in its own transaction."""
    store = store_for(engine)
    for learner_id, mutations in workloads.items():
        profile = LearnerProfile(learner_id, store=store)
        apply_workload(profile, mutations)


# -- the floor ----------------------------------------------------------------------------------


def capture_transactions(engine: Engine, run: Callable[[], None]) -> list[Transaction]:
    """Run `run` and return the writing statements it executed, grouped by transaction.

    What is captured is what reached the driver: SQL text and converted parameters. The
    version check (a SELECT) is left out, so the floor does strictly less than the store.
    """
    transactions: list[Transaction] = []
    current: Transaction = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "PRAGMA", "BEGIN")):
            return
        current.append((statement, parameters, many))

    def on_commit(_conn: Any) -> None:
        nonlocal current
        if current:
            transactions.append(current)
        current = []

    def on_rollback(_conn: Any) -> None:
        current.clear()

    listeners: dict[str, Callable[..., None]] = {
        "before_cursor_execute": on_execute,
        "commit": on_commit,
        "rollback": on_rollback,
    }
    for name, listener in listeners.items():
        event.listen(engine, name, listener)
    try:
        run()
    finally:
        for name, listener in listeners.items():
            event.remove(engine, name, listener)
    return transactions


def replay_transactions(path: Path, transactions: Sequence[Transaction]) -> None:
    """The floor: replay captured statements with plain sqlite3, one transaction at a time."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        for transaction in transactions:
            connection.execute("BEGIN IMMEDIATE")
            for statement, parameters, many in transaction:
                if many:
                    connection.executemany(statement, parameters)
                else:
                    connection.execute(statement, parameters)
            connection.execute("COMMIT")
    finally:
        connection.close()


# -- the peer -----------------------------------------------------------------------------------


def run_peer(db_path: Path, workloads: dict[str, list[Mutation]], *, per_mutation: bool) -> bool:
    """The peer's run of (a) or (b); False when `eventsourcing` is not installed."""
    try:
        from dala_events.bench_peer import PeerLearner, peer_application
    except ImportError:
        return False
    app = peer_application(db_path)
    learner_class = PeerLearner
    for learner_id, mutations in workloads.items():
        learner = learner_class(learner_id)
        if per_mutation:
            app.save(learner)
        for mutation in mutations:
            getattr(learner, mutation.method)(*mutation.args, **mutation.kwargs)
            if per_mutation:
                app.save(learner)
        if not per_mutation:
            app.save(learner)
    app.close()
    return True


# -- the run ------------------------------------------------------------------------------------


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def _measure_round(
    work: Path,
    workloads: dict[str, list[Mutation]],
    floor_a: list[Transaction],
    floor_b: list[Transaction],
    result: BenchResult,
    *,
    include_peer: bool,
) -> None:
    """One round of every measurement, each on a fresh database, in a fixed alternating order."""

    def record(name: str, count: int, run: Callable[[], Any]) -> None:
        seconds, _ = _timed(run)
        result.rates.setdefault(name, []).append(count / seconds)

    from projections.rebuild import rebuild_projections

    engine = fresh_engine(work, "ours_a")
    record("a", result.mutations, lambda: run_ours_batched(engine, workloads))
    record("c", result.events, lambda: rebuild_projections(engine))
    engine.dispose()

    fresh_engine(work, "floor_a").dispose()
    record("floor_a", result.mutations, lambda: replay_transactions(work / "floor_a.db", floor_a))

    engine_b = fresh_engine(work, "ours_b")
    record("b", result.mutations, lambda: run_ours_per_mutation(engine_b, workloads))
    engine_b.dispose()

    fresh_engine(work, "floor_b").dispose()
    record("floor_b", result.mutations, lambda: replay_transactions(work / "floor_b.db", floor_b))

    if include_peer:
        for mode, per_mutation in (("a", False), ("b", True)):
            path = work / f"peer_{mode}.db"
            seconds, ran = _timed(partial(run_peer, path, workloads, per_mutation=per_mutation))
            if not ran:
                return
            result.rates.setdefault(f"peer_{mode}", []).append(result.mutations / seconds)


def run_benchmark(
    learners: int = 200,
    rounds: int = 3,
    *,
    include_peer: bool = True,
    folder: Path | None = None,
    progress: Callable[[str], None] = lambda _message: None,
) -> BenchResult:
    """Run every measurement `rounds` times, alternating, and return the rates."""
    workloads = {learner_id: learner_workload(seed) for seed, learner_id in enumerate(_learner_ids(learners))}
    mutations = sum(len(plan) for plan in workloads.values())
    events = mutations + learners  # each learner's LearnerProfileCreated as well
    result = BenchResult(learners=learners, mutations=mutations, events=events, rounds=rounds)
    with tempfile.TemporaryDirectory(prefix="dala-bench-", dir=folder) as tmp:
        work = Path(tmp)
        progress("capturing the statements the store executes (for the floor)")
        engine = fresh_engine(work, "capture_a")
        floor_a = capture_transactions(engine, lambda: run_ours_batched(engine, workloads))
        engine.dispose()
        engine = fresh_engine(work, "capture_b")
        floor_b = capture_transactions(engine, lambda: run_ours_per_mutation(engine, workloads))
        engine.dispose()

        for number in range(1, rounds + 1):
            progress(f"round {number}/{rounds}")
            _measure_round(work, workloads, floor_a, floor_b, result, include_peer=include_peer)
            if include_peer and "peer_a" not in result.rates:
                result.notes.append("peer skipped: install the bench extra (pip install -e '.[bench]')")
                include_peer = False
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result
