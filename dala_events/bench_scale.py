"""`dala bench` at scale: a full rebuild of a large log, and the audit paths on a long stream.

Rebuild: a log of at least N events (default 1,000,000) is written with the bench's mixed
workload (one save per learner). Then, each in a fresh process so its peak memory is its own:

ours    `projections.rebuild.rebuild` of all eight tables (shadow tables, catch-up, swap)
floor   plain `sqlite3` reading the same log rows (the columns a projector needs, in position
        order, in batches) and inserting the final rows of the eight tables, precomputed (the
        rows our rebuild produced, read back beforehand), with `executemany`, one transaction

Audit: one learner with about 5,000 events; the median time of `audit.history` and of
`audit.profile_as_of` at the latest version, each called repeatedly in one process.
"""

from __future__ import annotations

import multiprocessing
import resource
import sqlite3
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dala_events.benchmark import fresh_engine
from dala_events.database_setup import create_dala_engine, store_for
from dala_events.dialects import SQLITE_BUSY_TIMEOUT_MS
from dala_events.hlp_module import LearnerProfile
from dala_events.workload import apply_workload, learner_workload

AUDIT_LEARNER = "audit-learner"


@dataclass(frozen=True)
class ScaleResult:
    """Rates and times of the scale measurements."""

    events: int
    rebuild_seconds: float
    rebuild_peak_rss_mb: float
    floor_seconds: float
    floor_peak_rss_mb: float
    audit_events: int
    history_ms: float
    as_of_ms: float

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "events": self.events,
            "rebuild_events_per_second": round(self.events / self.rebuild_seconds),
            "rebuild_peak_rss_mb": round(self.rebuild_peak_rss_mb, 1),
            "rebuild_floor_events_per_second": round(self.events / self.floor_seconds),
            "rebuild_floor_peak_rss_mb": round(self.floor_peak_rss_mb, 1),
            "rebuild_to_floor": round(self.floor_seconds / self.rebuild_seconds, 3),
            "audit_events": self.audit_events,
            "history_median_ms": round(self.history_ms, 2),
            "profile_as_of_median_ms": round(self.as_of_ms, 2),
        }


def run_scale_benchmark(
    events: int,
    folder: Path,
    *,
    audit_events: int = 5_000,
    audit_repeats: int = 15,
    progress: Callable[[str], None] = lambda _message: None,
) -> ScaleResult:
    """Write the log, then measure rebuild, its floor and the audit paths (see the module docstring)."""
    path = folder / "scale.db"
    progress(f"writing a log of at least {events:,} events (the bench workload, one save per learner)")
    written = write_log(path, events)
    spawn = multiprocessing.get_context("spawn")
    progress(f"rebuilding all eight read models from {written:,} events")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        rebuild_seconds, rebuild_rss = pool.submit(_rebuild_in_child, str(path)).result()
    progress("floor: plain sqlite3 reading the log and inserting the final rows")
    final_rows = _final_rows(path)
    floor_path = folder / "scale-floor.db"
    fresh_engine(folder, floor_path.stem).dispose()
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        floor_seconds, floor_rss = pool.submit(_floor_in_child, str(path), str(floor_path), final_rows).result()
    del final_rows
    progress(f"audit paths on one learner with about {audit_events:,} events")
    audit_path = folder / "audit.db"
    audit_written, history_ms, as_of_ms = _measure_audit(audit_path, audit_events, audit_repeats)
    return ScaleResult(
        events=written,
        rebuild_seconds=rebuild_seconds,
        rebuild_peak_rss_mb=rebuild_rss,
        floor_seconds=floor_seconds,
        floor_peak_rss_mb=floor_rss,
        audit_events=audit_written,
        history_ms=history_ms,
        as_of_ms=as_of_ms,
    )


def write_log(path: Path, events: int) -> int:
    """Write learners with the bench workload until the log holds at least `events` events."""
    engine = fresh_engine(path.parent, path.stem)
    store = store_for(engine)
    written = 0
    seed = 0
    try:
        while written < events:
            profile = LearnerProfile(f"scale-{seed:07d}", persistence_enabled=False, store=store)
            apply_workload(profile, learner_workload(seed))
            written += len(profile.pending_events)
            profile.save()
            seed += 1
    finally:
        engine.dispose()
    return written


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM belongs to the running program; the
    getrusage figure survives exec, so a freshly spawned child would report its parent's peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rebuild_in_child(path: str) -> tuple[float, float]:
    from projections.rebuild import rebuild

    engine = create_dala_engine(f"sqlite:///{path}")
    try:
        result = rebuild(engine)
    finally:
        engine.dispose()
    return result.seconds, _peak_rss_mb()


_READ_MODEL_TABLES = (
    "learner_profiles",
    "preferences",
    "interests",
    "struggles",
    "cognitive_metrics",
    "learning_objective_progress",
    "badges",
    "activity_attempts",
)


def _final_rows(path: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Each read-model table's columns (surrogate id aside) and rows, as stored."""
    connection = sqlite3.connect(path)
    try:
        rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        for table in _READ_MODEL_TABLES:
            columns = [
                info[1]
                for info in connection.execute(f'PRAGMA table_info("{table}")')
                if not (info[1] == "id" and table != "learner_profiles")
            ]
            quoted = ", ".join(f'"{column}"' for column in columns)
            rows[table] = (columns, connection.execute(f'SELECT {quoted} FROM "{table}"').fetchall())
        return rows
    finally:
        connection.close()


def _floor_in_child(
    log_path: str, floor_path: str, final_rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]]
) -> tuple[float, float]:
    source = sqlite3.connect(log_path)
    target = sqlite3.connect(floor_path, isolation_level=None)
    target.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    target.execute("PRAGMA journal_mode = WAL")
    target.execute("PRAGMA synchronous = NORMAL")
    target.execute("PRAGMA foreign_keys = ON")
    start = time.perf_counter()
    cursor = source.execute(
        "SELECT position, event_type, schema_version, payload, learner_id, version, occurred_at "
        "FROM event_log ORDER BY position"
    )
    read = 0
    while batch := cursor.fetchmany(10_000):
        read += len(batch)
    target.execute("BEGIN IMMEDIATE")
    for table in _READ_MODEL_TABLES:
        columns, rows = final_rows[table]
        quoted = ", ".join(f'"{column}"' for column in columns)
        marks = ", ".join("?" for _ in columns)
        target.executemany(f'INSERT INTO "{table}" ({quoted}) VALUES ({marks})', rows)
    target.execute("COMMIT")
    seconds = time.perf_counter() - start
    source.close()
    target.close()
    return seconds, _peak_rss_mb()


def _measure_audit(path: Path, events: int, repeats: int) -> tuple[int, float, float]:
    from dala_events import audit

    engine = fresh_engine(path.parent, path.stem)
    store = store_for(engine)
    try:
        profile = LearnerProfile(AUDIT_LEARNER, persistence_enabled=False, store=store)
        seed = 0
        while len(profile.pending_events) < events:
            apply_workload(profile, learner_workload(seed))
            seed += 1
        profile.save()
        history_times, as_of_times = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            audit.history(AUDIT_LEARNER, store=store)
            history_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            audit.profile_as_of(AUDIT_LEARNER, version=profile.version, store=store)
            as_of_times.append(time.perf_counter() - start)
        return profile.version, statistics.median(history_times) * 1000, statistics.median(as_of_times) * 1000
    finally:
        engine.dispose()
