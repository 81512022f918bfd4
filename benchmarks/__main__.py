"""The harness of `make bench`: runs the measurements in child processes, prints a table or JSON.

See the package docstring (`benchmarks/__init__.py`) for what is measured and how to read it.
This process imports nothing from the trees under test; each measurement is a fresh
interpreter running `benchmarks.measure` (this checkout's copy, loaded by path, even when the
other tree has its own) with PYTHONPATH putting the tree under test first.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PACKAGE = Path(__file__).resolve().parent
THIS_TREE = PACKAGE.parent
GROUPS = ("writes", "rebuild", "audit", "backup", "startup", "postgres", "async")
PG_LEARNERS = 10
PG_HOT_COMMANDS = 400
STARTUP_REPEATS = 7
IMPLEMENTATIONS = {
    "ours": "ours",
    "floor": "checked floor (sqlite3)",
    "crud": "CRUD layer",
    "peer": "eventsourcing",
    "peer_aes": "eventsourcing + AES",
    "peer_aes_rm": "eventsourcing + AES + 8 tables",
}
AUDIT_REPEATS = 15
ORDER = (
    "writes_a_ours",
    "writes_a_floor",
    "writes_a_floor_keys",
    "floor_new_key",
    "writes_a_crud",
    "writes_a_peer",
    "writes_a_peer_aes",
    "writes_a_peer_aes_rm",
    "writes_b_ours",
    "writes_b_floor",
    "writes_b_floor_keys",
    "writes_b_crud",
    "writes_b_peer",
    "writes_b_peer_aes",
    "writes_b_peer_aes_rm",
    "rebuild_a",
    "rebuild_a_floor",
    "rebuild_scale",
    "rebuild_scale_floor",
    "audit_history",
    "audit_history_floor",
    "audit_profile_as_of",
    "audit_profile_as_of_floor",
    "backup",
    "restore",
    "startup_profile",
    "startup_profile_cpu",
    "startup_profile_no_bytecode",
    "startup_help",
    "startup_libraries",
    "startup_ratio",
    "pg_floor",
    "pg_writers_1",
    "pg_writers_2",
    "pg_writers_4",
    "pg_writers_8",
    "pg_one_writer_to_floor",
    "pg_checked_floor",
    "pg_one_writer_to_checked_floor",
    "pg_four_to_one",
    "pg_hot_1",
    "pg_hot_8",
    "pg_hot_8_to_1",
    "pg_subscription_rate",
    "pg_lag_median",
    "pg_lag_max",
    "pg_copy_events",
    "pg_restore_log",
    "pg_restore_log_to_copy",
    "pg_copy_read_models",
    "pg_restore_rebuild",
    "pg_rebuild_to_copy",
    "pg_restore",
    *(
        f"{backend}_{name}"
        for backend in ("aio_sqlite", "aio_pg")
        for name in (
            "sync_1_rate",
            "async_1_rate",
            "sync_50_rate",
            "async_50_rate",
            "async_to_sync_1",
            "async_to_sync_50",
            "sync_1_p50",
            "async_1_p50",
            "sync_1_p99",
            "async_1_p99",
            "sync_50_p50",
            "async_50_p50",
            "sync_50_p99",
            "async_50_p99",
            "loop_as_is",
            "loop_frozen",
            "history_async",
        )
    ),
)

# Loads this checkout's `benchmarks` package by path, then runs one task. `-P` keeps the
# working directory off sys.path, so only PYTHONPATH (the tree under test) and the installed
# packages decide where `dala_events` comes from.
_BOOTSTRAP = """\
import importlib.util, sys
spec = importlib.util.spec_from_file_location("benchmarks", sys.argv[1])
package = importlib.util.module_from_spec(spec)
sys.modules["benchmarks"] = package
spec.loader.exec_module(package)
from benchmarks.measure import main
main(sys.argv[2:])
"""


@dataclass(frozen=True)
class Tree:
    """A checkout under test: `this` (after) or `compare` (before)."""

    label: str
    root: Path


@dataclass
class Samples:
    """One measurement's values in one tree, a value per round."""

    values: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    count: int = 0

    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


@dataclass(frozen=True)
class Measurement:
    """What a row of the table shows."""

    label: str
    unit: str


class Results:
    """Every sample, by measurement and tree."""

    def __init__(self, trees: list[Tree]) -> None:
        self.trees = trees
        self.measurements: dict[str, Measurement] = {}
        self.samples: dict[str, dict[str, Samples]] = {}

    def record(self, name: str, measurement: Measurement, tree: Tree, value: float, rss: float, count: int) -> None:
        self.measurements.setdefault(name, measurement)
        samples = self.samples.setdefault(name, {}).setdefault(tree.label, Samples())
        samples.values.append(value)
        samples.peak_rss_mb = max(samples.peak_rss_mb, rss)
        samples.count = count

    def median(self, name: str, tree: str) -> float | None:
        samples = self.samples.get(name, {}).get(tree)
        return samples.median() if samples else None


# -- children -------------------------------------------------------------------------------------


def run_child(tree: Tree, task: str, params: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one task of `benchmarks.measure` in a fresh interpreter on `tree`; its JSON result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree.root), os.environ.get("PYTHONPATH")]))
    env.pop("DALA_DATABASE_URL", None)
    command = [sys.executable, "-P", "-c", _BOOTSTRAP, str(PACKAGE / "__init__.py")]
    command.append(json.dumps({"task": task, "params": params}))
    completed = subprocess.run(command, cwd=work, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"bench: the {task} measurement failed in {tree.root} (exit {completed.returncode})")
    lines = completed.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1])
    if Path(result["tree"]).resolve() != tree.root.resolve():
        raise SystemExit(f"bench: the child meant for {tree.root} imported dala_events from {result['tree']}")
    return result


# -- the run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    learners: int
    rounds: int
    rebuild_events: int
    audit_events: int
    peer: bool
    crud: bool
    only: tuple[str, ...]
    compare: Path | None


def run(options: Options, progress: Console) -> dict[str, Any]:
    """Every measurement, `options.rounds` times, alternating; the JSON-ready summary."""
    trees = [Tree("this", THIS_TREE)]
    if options.compare is not None:
        trees.append(Tree("compare", options.compare))
    notes: list[str] = []
    implementations = ["ours", "floor"]
    if options.crud:
        implementations.append("crud")
    if options.peer:
        if importlib.util.find_spec("eventsourcing") is None:
            notes.append("eventsourcing skipped: install the bench extra (pip install -e '.[bench]')")
        else:
            implementations += ["peer", "peer_aes", "peer_aes_rm"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dala-bench-") as folder:
        bench = _Run(options, trees, Path(folder), progress, notes)
        if {"rebuild", "backup"} & set(options.only) and options.rebuild_events:
            bench.write_logs()
        for number in range(1, options.rounds + 1):
            progress.print(f"round {number}/{options.rounds}")
            bench.writes(implementations)
            if bench.logs and "rebuild" in options.only:
                bench.rebuild_at_scale()
            if bench.logs and "backup" in options.only:
                bench.backup()
            if "audit" in options.only:
                bench.audit()
            if "startup" in options.only:
                bench.startup()
            if "postgres" in options.only:
                bench.postgres()
            if "async" in options.only:
                bench.asynchronous()
    return summary(bench.results, options, bench.mutations, notes, time.perf_counter() - started)


class _Run:
    """The measurements of one run: each starts a child per tree, one tree after the other."""

    def __init__(self, options: Options, trees: list[Tree], work: Path, progress: Console, notes: list[str]) -> None:
        self.options = options
        self.trees = trees
        self.work = work
        self.progress = progress
        self.notes = notes
        self.results = Results(trees)
        self.logs: dict[str, Path] = {}
        self.mutations = 0
        for tree in trees:
            (work / tree.label).mkdir()

    def child(self, tree: Tree, description: str, task: str, params: dict[str, Any]) -> dict[str, Any]:
        self.progress.print(f"  {description} ({tree.label} tree)")
        return run_child(tree, task, params, self.work)

    def write_logs(self) -> None:
        """The log of the rebuild at scale, once per tree, and the checked floor's, once (it
        is the same in both trees); not measurements."""
        events = self.options.rebuild_events
        for tree in self.trees:
            self.logs[tree.label] = self.work / tree.label / "scale.db"
            params = {"path": str(self.logs[tree.label]), "events": events}
            written = self.child(tree, f"writing a log of at least {events:,} events", "write_log", params)
            self.notes.append(
                f"{tree.label} tree: the log of the rebuild at scale, {written['events']:,} events, written "
                f"in {written['seconds']:.0f} s ({written['events'] / written['seconds']:,.0f} events/s)"
            )
        self.logs["floor"] = self.work / "floor-scale.db"
        params = {"path": str(self.logs["floor"]), "events": events, "impl": "floor"}
        written = self.child(
            self.trees[0], f"writing the checked floor's log of {events:,} events", "write_log", params
        )
        self.notes.append(
            f"the checked floor's log of the rebuild at scale, {written['events']:,} events, written in "
            f"{written['seconds']:.0f} s ({written['events'] / written['seconds']:,.0f} events/s)"
        )

    def writes(self, implementations: list[str]) -> None:
        """(a) then (b), each implementation in turn; the store's (a) also times the rebuild of
        what it wrote when rebuilds are measured (then it runs even without `writes`)."""
        measure_writes = "writes" in self.options.only
        for mode in ("a", "b"):
            for impl in implementations:
                rebuild = impl in ("ours", "floor") and mode == "a" and "rebuild" in self.options.only
                if not measure_writes and not rebuild:
                    continue
                for tree in self.trees:
                    params = {
                        "impl": impl,
                        "mode": mode,
                        "learners": self.options.learners,
                        "folder": str(self.work / tree.label),
                        "rebuild": rebuild,
                    }
                    out = self.child(tree, f"writes ({mode}) {IMPLEMENTATIONS[impl]}", "writes", params)
                    self.mutations = out["mutations"]
                    if measure_writes:
                        rate = out["mutations"] / out["seconds"]
                        measurement = _write_measurement(mode, impl)
                        self.results.record(
                            f"writes_{mode}_{impl}", measurement, tree, rate, out["peak_rss_mb"], out["mutations"]
                        )
                    if measure_writes and "key_seconds" in out:
                        self._floor_keys(mode, tree, out)
                    if rebuild:
                        rate = out["rebuild_events"] / out["rebuild_seconds"]
                        name, shown = ("rebuild_a", "rebuild of (a)")
                        if impl == "floor":
                            name, shown = ("rebuild_a_floor", "rebuild of (a): checked floor")
                        self.results.record(
                            name, Measurement(shown, "events/s"), tree, rate, out["peak_rss_mb"], out["rebuild_events"]
                        )

    def _floor_keys(self, mode: str, tree: Tree, out: dict[str, Any]) -> None:
        """The floor's writes with each new learner's key made durable as well (its key file's
        transactions timed after the writes), and (a)'s time a key."""
        rss, mutations = out["peak_rss_mb"], out["mutations"]
        batch = "batched" if mode == "a" else "per mutation"
        measurement = Measurement(f"({mode}) {batch}: checked floor + a durable key a learner", "mutations/s")
        rate = mutations / (out["seconds"] + out["key_seconds"])
        self.results.record(f"writes_{mode}_floor_keys", measurement, tree, rate, rss, mutations)
        if mode == "a":
            measurement = Measurement("checked floor: a new learner's key made durable", "ms")
            per_key = out["key_seconds"] / out["keys"] * 1000
            self.results.record("floor_new_key", measurement, tree, per_key, rss, out["keys"])

    def rebuild_at_scale(self) -> None:
        """`rebuild_projections` of each tree's log, in a fresh process; then the checked
        floor's rebuild of its own log."""
        for tree in self.trees:
            out = self.child(tree, "rebuild at scale", "rebuild", {"path": str(self.logs[tree.label])})
            measurement = Measurement(f"rebuild at scale, {out['events']:,} events", "events/s")
            rate = out["events"] / out["seconds"]
            self.results.record("rebuild_scale", measurement, tree, rate, out["peak_rss_mb"], out["events"])
            params = {"path": str(self.logs["floor"]), "impl": "floor"}
            out = self.child(tree, "rebuild at scale, checked floor", "rebuild", params)
            measurement = Measurement(f"rebuild at scale, {out['events']:,} events: checked floor", "events/s")
            rate = out["events"] / out["seconds"]
            self.results.record("rebuild_scale_floor", measurement, tree, rate, out["peak_rss_mb"], out["events"])

    def backup(self) -> None:
        """A backup of each tree's scale log and its restore into an empty database."""
        for tree in self.trees:
            out = self.child(tree, "backup and restore", "backup", {"path": str(self.logs[tree.label])})
            if out.get("skipped"):
                continue
            events, rss = out["events"], out["peak_rss_mb"]
            made = Measurement(f"backup of {events:,} events", "events/s")
            self.results.record("backup", made, tree, events / out["backup_seconds"], rss, events)
            restored = Measurement(f"restore of {events:,} events", "events/s")
            self.results.record("restore", restored, tree, events / out["restore_seconds"], rss, events)

    def audit(self) -> None:
        """History and as-of view of one long stream."""
        for tree in self.trees:
            params = {
                "folder": str(self.work / tree.label),
                "events": self.options.audit_events,
                "repeats": AUDIT_REPEATS,
            }
            out = self.child(tree, "audit", "audit", params)
            events, rss = out["events"], out["peak_rss_mb"]
            history = Measurement(f"audit.history, {events:,} events", "ms")
            self.results.record("audit_history", history, tree, out["history_ms"], rss, events)
            as_of = Measurement("audit.profile_as_of(version=latest)", "ms")
            self.results.record("audit_profile_as_of", as_of, tree, out["profile_as_of_ms"], rss, events)
            # The floor reads a stream of exactly as many events as the store's.
            out = self.child(tree, "audit, checked floor", "floor_audit", params | {"events": events})
            events, rss = out["events"], out["peak_rss_mb"]
            history = Measurement(f"history, {events:,} events: checked floor", "ms")
            self.results.record("audit_history_floor", history, tree, out["history_ms"], rss, events)
            as_of = Measurement("profile as of the latest version: checked floor", "ms")
            self.results.record("audit_profile_as_of_floor", as_of, tree, out["profile_as_of_ms"], rss, events)

    def startup(self) -> None:
        """`dala profile` from a fresh process (wall and CPU time; with no bytecode cache too) and
        `dala --help`, against Python importing only the profile's libraries."""
        for tree in self.trees:
            params = {"folder": str(self.work / tree.label), "repeats": STARTUP_REPEATS}
            out = self.child(tree, "start-up", "startup", params)
            rss = out["peak_rss_mb"]
            profile = Measurement("start-up: dala profile", "ms")
            self.results.record("startup_profile", profile, tree, out["profile_ms"], rss, STARTUP_REPEATS)
            cpu = Measurement("start-up: dala profile, CPU time (user + system)", "ms")
            self.results.record("startup_profile_cpu", cpu, tree, out["profile_cpu_ms"], rss, STARTUP_REPEATS)
            cold = Measurement("start-up: dala profile, no bytecode cache (a first run)", "ms")
            self.results.record(
                "startup_profile_no_bytecode", cold, tree, out["profile_no_bytecode_ms"], rss, STARTUP_REPEATS
            )
            help_ = Measurement("start-up: dala --help", "ms")
            self.results.record("startup_help", help_, tree, out["help_ms"], rss, STARTUP_REPEATS)
            libraries = Measurement("start-up: Python importing its libraries only", "ms")
            self.results.record("startup_libraries", libraries, tree, out["libraries_ms"], rss, STARTUP_REPEATS)
            ratio = Measurement("start-up: dala profile / libraries only", "x")
            self.results.record(
                "startup_ratio", ratio, tree, out["profile_ms"] / out["libraries_ms"], rss, STARTUP_REPEATS
            )

    def asynchronous(self) -> None:
        """The async group (`benchmarks.asynchronous`): for trees that have `dala_events.aio`."""
        for tree in self.trees:
            if not (tree.root / "dala_events" / "aio.py").is_file():
                note = f"async group skipped ({tree.label} tree): it has no dala_events.aio"
                if note not in self.notes:
                    self.notes.append(note)
                continue
            out = self.child(tree, "the async API against the synchronous one", "async", {"folder": str(self.work)})
            rss = out["peak_rss_mb"]
            if "postgresql_skipped" in out:
                note = f"async group on PostgreSQL skipped: {out['postgresql_skipped']}"
                if note not in self.notes:
                    self.notes.append(note)
            for backend, prefix, shown in (("sqlite", "aio_sqlite", "SQLite"), ("postgresql", "aio_pg", "PostgreSQL")):
                if backend not in out:
                    continue
                got = out[backend]
                rows = []
                for callers in (1, 50):
                    for api in ("sync", "async"):
                        figures = got[f"{api}_{callers}"]
                        who = f"{api}, {callers} {'caller' if callers == 1 else 'callers at once'}"
                        rows += [
                            (f"{api}_{callers}_rate", f"{who}: mutations/s", "mutations/s", figures["rate"]),
                            (f"{api}_{callers}_p50", f"{who}: p50 per call", "ms", figures["p50_ms"]),
                            (f"{api}_{callers}_p99", f"{who}: p99 per call", "ms", figures["p99_ms"]),
                        ]
                    ratio = got[f"async_{callers}"]["rate"] / got[f"sync_{callers}"]["rate"]
                    rows.append((f"async_to_sync_{callers}", f"async / sync, {callers} at once", "x", ratio))
                loop = got["loop"]
                rows += [
                    ("loop_as_is", "loop's worst delay during a 5,000-event history", "ms", loop["as_is_ms"]),
                    ("loop_frozen", "the same, start-up heap frozen (gc.freeze)", "ms", loop["frozen_ms"]),
                    ("history_async", "aio.history, 5,000 events", "ms", loop["history_async_ms"]),
                ]
                for name, label, unit, value in rows:
                    measurement = Measurement(f"{shown} async group: {label}", unit)
                    self.results.record(f"{prefix}_{name}", measurement, tree, value, rss, 1)

    def postgres(self) -> None:
        """The PostgreSQL group (`benchmarks.postgres`), or a note saying why it was skipped."""
        for tree in self.trees:
            params = {"learners": PG_LEARNERS, "hot_commands": PG_HOT_COMMANDS, "bulk_learners": self.options.learners}
            out = self.child(tree, "PostgreSQL writers and subscriptions", "postgres", params)
            if "skipped" in out:
                note = f"PostgreSQL group skipped ({tree.label} tree): {out['skipped']}"
                if note not in self.notes:
                    self.notes.append(note)
                continue
            rss = out["peak_rss_mb"]
            rows = [
                (
                    "pg_floor",
                    "PostgreSQL, per mutation: floor (psycopg, values precomputed)",
                    "mutations/s",
                    out["floor"],
                ),
                ("pg_writers_1", "PostgreSQL, per mutation: ours, 1 writer", "mutations/s", out["writers_1"]),
                ("pg_writers_2", "PostgreSQL, per mutation: ours, 2 writers", "mutations/s", out["writers_2"]),
                ("pg_writers_4", "PostgreSQL, per mutation: ours, 4 writers", "mutations/s", out["writers_4"]),
                ("pg_writers_8", "PostgreSQL, per mutation: ours, 8 writers", "mutations/s", out["writers_8"]),
                ("pg_one_writer_to_floor", "PostgreSQL: 1 writer / floor", "x", out["writers_1"] / out["floor"]),
                (
                    "pg_checked_floor",
                    "PostgreSQL, per mutation: checked floor (psycopg, the same per-event work)",
                    "mutations/s",
                    out["checked_floor"],
                ),
                (
                    "pg_one_writer_to_checked_floor",
                    "PostgreSQL: 1 writer / checked floor (goal >= 0.5)",
                    "x",
                    out["writers_1"] / out["checked_floor"],
                ),
                ("pg_four_to_one", "PostgreSQL: 4 writers / 1 writer", "x", out["writers_4"] / out["writers_1"]),
                ("pg_hot_1", "PostgreSQL, one learner: 1 writer (commands)", "mutations/s", out["hot_1"]),
                ("pg_hot_8", "PostgreSQL, one learner: 8 writers (commands)", "mutations/s", out["hot_8"]),
                ("pg_hot_8_to_1", "PostgreSQL, one learner: 8 writers / 1", "x", out["hot_8"] / out["hot_1"]),
                (
                    "pg_subscription_rate",
                    "PostgreSQL: subscription, no-op handler",
                    "events/s",
                    out["subscription_rate"],
                ),
                ("pg_lag_median", "PostgreSQL: subscription lag under 4 writers, median", "events", out["lag_median"]),
                ("pg_lag_max", "PostgreSQL: subscription lag under 4 writers, max", "events", out["lag_max"]),
            ]
            for name, label, unit, value in rows:
                self.results.record(name, Measurement(label, unit), tree, value, rss, PG_LEARNERS)
            if "bulk_events" in out:
                self._postgres_bulk(tree, out)

    def _postgres_bulk(self, tree: Tree, out: dict[str, Any]) -> None:
        """The bulk rows of the PostgreSQL group: `dala restore` and its rebuild against COPY."""
        events, rows = out["bulk_events"], out["bulk_read_model_rows"]
        figures = [
            ("pg_copy_events", f"PostgreSQL bulk: COPY of {events:,} event rows (psycopg)", "rows/s", events),
            ("pg_restore_log", "PostgreSQL bulk: dala restore, the log (ours)", "events/s", events),
            ("pg_restore_log_to_copy", "PostgreSQL bulk: restore of the log / COPY (goal >= 0.5)", "x", events),
            ("pg_copy_read_models", f"PostgreSQL bulk: COPY of {rows:,} read-model rows (psycopg)", "rows/s", rows),
            ("pg_restore_rebuild", "PostgreSQL bulk: dala restore, the rebuild's replay (ours)", "events/s", events),
            ("pg_rebuild_to_copy", "PostgreSQL bulk: rebuild's replay / COPY (goal >= 0.5)", "x", rows),
            ("pg_restore", "PostgreSQL bulk: dala restore, all of it (ours)", "events/s", events),
        ]
        keys = {
            "pg_copy_events": "copy_events",
            "pg_restore_log": "restore_log",
            "pg_restore_log_to_copy": "restore_log_to_copy",
            "pg_copy_read_models": "copy_read_models",
            "pg_restore_rebuild": "restore_rebuild",
            "pg_rebuild_to_copy": "rebuild_to_copy",
            "pg_restore": "restore",
        }
        for name, label, unit, count in figures:
            self.results.record(name, Measurement(label, unit), tree, out[keys[name]], out["peak_rss_mb"], count)


@dataclass(frozen=True)
class Ratio:
    """A ratio of the summary: the median of `ours` divided by the median of `anchor`, per tree
    (rates: above 1 is faster than the anchor; times: above 1 is slower), and the goal the
    project set for it, if any."""

    name: str
    ours: str
    anchor: str
    label: str
    goal: str | None = None


_WRITE_GOALS = {
    ("a", "floor"): ">= 0.5",
    ("b", "floor"): ">= 0.5",
    ("a", "peer_aes"): ">= 0.8",
    ("a", "peer_aes_rm"): ">= 1.4",
    ("b", "peer_aes"): "> 1",
    ("b", "peer_aes_rm"): "> 1",
}

RATIOS: tuple[Ratio, ...] = (
    *(
        Ratio(
            f"writes_{mode}_ours_to_{anchor}",
            f"writes_{mode}_ours",
            f"writes_{mode}_{anchor}",
            f"({mode}) ours / {IMPLEMENTATIONS[anchor]}",
            _WRITE_GOALS.get((mode, anchor)),
        )
        for mode in ("a", "b")
        for anchor in ("floor", "crud", "peer", "peer_aes", "peer_aes_rm")
    ),
    *(
        Ratio(
            f"writes_{mode}_ours_to_floor_keys",
            f"writes_{mode}_ours",
            f"writes_{mode}_floor_keys",
            f"({mode}) ours / checked floor + a durable key a learner",
        )
        for mode in ("a", "b")
    ),
    Ratio("rebuild_a_ours_to_floor", "rebuild_a", "rebuild_a_floor", "rebuild of (a): ours / checked floor", ">= 0.5"),
    Ratio(
        "rebuild_scale_ours_to_floor",
        "rebuild_scale",
        "rebuild_scale_floor",
        "rebuild at scale: ours / checked floor",
        ">= 0.5",
    ),
    Ratio(
        "audit_history_ours_to_floor",
        "audit_history",
        "audit_history_floor",
        "audit.history: ours / checked floor, time",
        "<= 2",
    ),
    Ratio(
        "audit_profile_as_of_ours_to_floor",
        "audit_profile_as_of",
        "audit_profile_as_of_floor",
        "audit.profile_as_of: ours / checked floor, time",
        "<= 2",
    ),
)
"""Every ratio the summary can hold, under names that stay (the JSON's `ratios` keys)."""


def _write_measurement(mode: str, impl: str) -> Measurement:
    batch = "batched" if mode == "a" else "per mutation"
    return Measurement(f"({mode}) {batch}: {IMPLEMENTATIONS[impl]}", "mutations/s")


LEGEND = (
    "(a) batched: ours with persistence off and one save() per learner; the CRUD layer with one session and",
    "    commit per learner; eventsourcing with one save per learner.",
    "(b) per mutation: one transaction (commit, save) per mutation. Rates count the workload's mutations.",
    "checked floor: plain sqlite3 doing the store's per-event work (JSON, AES-GCM under a key per learner,",
    "    SHA-256 link, the read-model statements; reads: fetch, check, decrypt, decode): benchmarks/floor.py.",
    "ours / anchor: for rates > 1 means the store is faster; for times (ms) > 1 means it is slower.",
    "after/before > 1 is better for rates, < 1 for ms and MB.",
)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def summary(results: Results, options: Options, mutations: int, notes: list[str], seconds: float) -> dict[str, Any]:
    """The JSON of the run (see `main` for its shape)."""
    labels = [tree.label for tree in results.trees]
    compare = "compare" in labels
    measurements: dict[str, Any] = {}
    for name in sorted(results.measurements, key=ORDER.index):
        measurement = results.measurements[name]
        entry: dict[str, Any] = {"label": measurement.label, "unit": measurement.unit}
        for label in labels:
            samples = results.samples[name].get(label, Samples())
            entry[label] = {
                "median": _rounded(samples.median()),
                "samples": [round(value, 4) for value in samples.values],
                "peak_rss_mb": round(samples.peak_rss_mb, 1),
                "count": samples.count,
            }
        if compare:
            entry["after_to_before"] = _rounded(_ratio(results.median(name, "this"), results.median(name, "compare")))
        measurements[name] = entry
    ratios: dict[str, Any] = {}
    for ratio in RATIOS:
        if ratio.ours not in measurements or ratio.anchor not in measurements:
            continue
        entry = {
            "label": ratio.label if ratio.goal is None else f"{ratio.label} (goal {ratio.goal})",
            "goal": ratio.goal,
            **{
                label: _rounded(_ratio(results.median(ratio.ours, label), results.median(ratio.anchor, label)))
                for label in labels
            },
        }
        if compare:
            entry["after_to_before"] = _rounded(_ratio(entry["this"], entry["compare"]))
        ratios[ratio.name] = entry
    return {
        "config": {
            "learners": options.learners,
            "mutations": mutations,
            "rounds": options.rounds,
            "rebuild_events": options.rebuild_events,
            "audit_events": options.audit_events,
            "only": list(options.only),
            "implementations": [
                name
                for name in IMPLEMENTATIONS
                if any(key.endswith(f"_{mode}_{name}") for key in measurements for mode in "ab")
            ],
            "seconds": round(seconds, 1),
        },
        "trees": {tree.label: str(tree.root) for tree in results.trees},
        "measurements": measurements,
        "ratios": ratios,
        "peak_rss_mb": {
            label: round(max((s[label].peak_rss_mb for s in results.samples.values() if label in s), default=0.0), 1)
            for label in labels
        },
        "notes": notes,
    }


# -- output ---------------------------------------------------------------------------------------


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit.endswith("/s"):
        return f"{value:,.0f}"
    if unit == "x":
        return f"{value:.2f}"
    return f"{value:,.2f}"


def print_table(data: dict[str, Any], console: Console) -> None:
    """The summary as a table: medians (and after/before with --compare), then the ratios."""
    config = data["config"]
    compare = "compare" in data["trees"]
    labels = ["this", "compare"] if compare else ["this"]
    workload = ""
    if config["mutations"]:
        workload = f"{config['learners']} learners x {config['mutations'] // config['learners']} mutations, "
    where = "SQLite unless a row says PostgreSQL"
    table = Table(title=f"make bench: {workload}median of {config['rounds']} rounds ({where})")
    names = {"this": "after", "compare": "before"} if compare else {"this": "median"}
    table.add_column("measurement", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    for label in labels:
        table.add_column(names[label], justify="right")
    if compare:
        table.add_column("after/before", justify="right")
    for label in labels:
        table.add_column(f"peak RSS MB, {names[label]}" if compare else "peak RSS MB", justify="right")
    for entry in data["measurements"].values():
        row = [entry["label"], entry["unit"]]
        row += [_format(entry[label]["median"], entry["unit"]) for label in labels]
        if compare:
            row.append(_format(entry["after_to_before"], "x"))
        row += [f"{entry[label]['peak_rss_mb']:,.0f}" for label in labels]
        table.add_row(*row)
    if data["ratios"]:
        table.add_section()
    for entry in data["ratios"].values():
        row = [entry["label"], "x"] + [_format(entry[label], "x") for label in labels]
        if compare:
            row.append(_format(entry["after_to_before"], "x"))
        table.add_row(*row, *([""] * len(labels)))
    console.print(table)
    if compare:
        console.print(f"after = {data['trees']['this']} (this tree), before = {data['trees']['compare']}")
    writes = any(name.startswith("writes_") for name in data["measurements"])
    for line in LEGEND if writes else LEGEND[-1:]:
        console.print(line)
    for note in data["notes"]:
        console.print(note)


def parse_args(argv: list[str] | None) -> tuple[Options, bool]:
    """The options (and whether to print JSON)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure the store's writes, rebuild and audit paths against the CRUD layer of the "
        "document and the eventsourcing library (SQLite, medians of alternating rounds).",
    )
    parser.add_argument("--learners", type=_at_least(1), default=200, help="learners in the workload (default 200)")
    parser.add_argument("--rounds", type=_at_least(1), default=3, help="alternating rounds (default 3)")
    parser.add_argument(
        "--rebuild-events",
        type=_at_least(0),
        default=1_000_000,
        help="size of the log for the rebuild at scale (default 1,000,000; 0 skips it)",
    )
    parser.add_argument(
        "--audit-events", type=_at_least(1), default=5_000, help="events of the audited learner (default 5,000)"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the eventsourcing library")
    parser.add_argument("--no-crud", action="store_true", help="skip the CRUD layer of the document")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="PATH",
        help="root of another checkout of this repository (before); every measurement runs for both trees",
    )
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        metavar="GROUPS",
        help="comma-separated subset of writes,rebuild,audit,backup,startup,postgres,async (default: all)",
    )
    args = parser.parse_args(argv)
    only = tuple(group.strip() for group in args.only.split(",") if group.strip())
    unknown = sorted(set(only) - set(GROUPS))
    if unknown or not only:
        parser.error(f"--only takes a comma-separated subset of {','.join(GROUPS)}, not {args.only!r}")
    compare: Path | None = None
    if args.compare is not None:
        compare = args.compare.expanduser().resolve()
        if not (compare / "dala_events" / "__init__.py").is_file():
            parser.error(f"--compare {args.compare}: not the root of a checkout (no dala_events/__init__.py)")
    options = Options(
        learners=args.learners,
        rounds=args.rounds,
        rebuild_events=args.rebuild_events,
        audit_events=args.audit_events,
        peer=not args.no_peer,
        crud=not args.no_crud,
        only=tuple(group for group in GROUPS if group in only),
        compare=compare,
    )
    return options, args.json


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", "").replace(",", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run, print.

    JSON shape: config; trees {this, compare?}; measurements {name: {label, unit, this: {median,
    samples, peak_rss_mb, count}, compare?: {...}, after_to_before?}}; ratios {name: {label,
    this, compare?, after_to_before?}} (ours / anchor of the median rates); peak_rss_mb {tree:
    largest of any measurement}; notes.
    """
    options, as_json = parse_args(argv)
    data = run(options, Console(stderr=True, markup=False, highlight=False))
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    # Piped (as under make), rich would wrap at 80 columns; the table needs a little more.
    console = Console(markup=False, highlight=False)
    if not console.is_terminal:
        console = Console(markup=False, highlight=False, width=132)
    print_table(data, console)


if __name__ == "__main__":
    main()
