"""One measurement in a child process: `make bench` starts one of these per measurement per round.

The harness (`benchmarks.__main__`) runs `main` with a JSON task in a fresh interpreter
whose PYTHONPATH puts the tree under test first, so `dala_events` and `projections` are that
tree's; this module's code is always the harness's own. `main` prints one JSON object: the
measured seconds and counts, the child's peak RSS and the folder `dala_events` came from.

Tasks:
  writes      {impl: ours|floor|crud|peer|peer_aes|peer_aes_rm, mode: a|b, learners, folder,
              rebuild}: the workload of `learners` learners, (a) batched or (b) one transaction
              per mutation, on a fresh SQLite file; with `rebuild` (ours or floor, (a)) also the
              rebuild of what it wrote; the floor also times making its learners' keys durable
              afterwards (`benchmarks.floor.FloorWriter.store_keys`)
  write_log   {path, events, impl: ours|floor}: a log of at least `events` events, the
              workload saved once per learner (not timed as a measurement)
  rebuild     {path, impl: ours|floor}: `rebuild_projections` (or the floor's rebuild) of the
              log at `path`
  audit       {folder, events, repeats}: one learner with about `events` events; median
              times of `audit.history` and `audit.profile_as_of` at the latest version
  floor_audit {folder, events, repeats}: the same reads by the checked floor, on a stream of
              exactly `events` events it wrote
  startup     {folder, repeats}: median wall times of `dala profile` on the demo's database (and
              its CPU time, and with no bytecode cache: a first run), of `dala --help`, and of a
              Python importing only the libraries `dala profile` needs
  postgres    {learners, hot_commands, bulk_learners}: the PostgreSQL group (`benchmarks.postgres`)

The only names used from the tree under test are those listed in `benchmarks/__init__.py`.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from benchmarks.workload import Mutation, apply_workload, learner_workload

Workloads = dict[str, list[Mutation]]
WARM_UP_LEARNERS = 2
"""Learners written untimed on a scratch file first, so a measurement is of a warm process
(imports, compiled statements and validators ready), as in a running application."""


def workloads_for(learners: int, prefix: str = "bench-learner") -> Workloads:
    """The bench's workload of `learners` learners, one seed each."""
    return {f"{prefix}-{seed:05d}": learner_workload(seed) for seed in range(learners)}


def remove_database(path: Path) -> None:
    """Delete a SQLite file and its WAL and shared-memory files, if present."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def fresh_engine(path: Path) -> Engine:
    """The store's engine on a new, empty SQLite file at `path`, every table created."""
    from dala_events.database_setup import create_dala_engine, create_tables

    remove_database(path)
    engine = create_dala_engine(f"sqlite:///{path}")
    create_tables(engine)
    return engine


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux VmHWM: it belongs to the running program,
    unlike getrusage's figure, which survives exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


# -- the three implementations ------------------------------------------------------------------


def run_ours(engine: Engine, workloads: Workloads, *, per_mutation: bool) -> int:
    """The store: (a) every learner's mutations in memory, then one save(); (b) one transaction
    per mutation. Returns the events recorded (creations included)."""
    from dala_events.database_setup import store_for
    from dala_events.hlp_module import LearnerProfile

    store = store_for(engine)
    events = 0
    for learner_id, mutations in workloads.items():
        profile = LearnerProfile(learner_id, persistence_enabled=per_mutation, store=store)
        events += 1 + apply_workload(profile, mutations)
        profile.save()
    return events


def _writes_ours(path: Path, workloads: Workloads, *, per_mutation: bool, rebuild: bool) -> dict[str, Any]:
    warm = fresh_engine(path.with_name(f"{path.stem}-warm.db"))
    run_ours(warm, workloads_for(WARM_UP_LEARNERS, "warm-up"), per_mutation=per_mutation)
    warm.dispose()
    remove_database(path.with_name(f"{path.stem}-warm.db"))
    engine = fresh_engine(path)
    try:
        seconds, events = _timed(lambda: run_ours(engine, workloads, per_mutation=per_mutation))
        result: dict[str, Any] = {"seconds": seconds, "events": events}
        if rebuild:
            rebuild_seconds, replayed = _timed(_rebuild_of(engine))
            result |= {"rebuild_seconds": rebuild_seconds, "rebuild_events": replayed}
        return result
    finally:
        engine.dispose()


def _writes_crud(path: Path, workloads: Workloads, *, per_mutation: bool) -> dict[str, Any]:
    from benchmarks import crud_layer

    warm_path = path.with_name(f"{path.stem}-warm.db")
    remove_database(warm_path)
    warm = crud_layer.init_db(f"sqlite:///{warm_path}")
    crud_layer.run_crud(workloads_for(WARM_UP_LEARNERS, "warm-up"), per_mutation=per_mutation)
    warm.dispose()
    remove_database(warm_path)
    remove_database(path)
    engine = crud_layer.init_db(f"sqlite:///{path}")
    try:
        seconds, _ = _timed(lambda: crud_layer.run_crud(workloads, per_mutation=per_mutation))
        return {"seconds": seconds}
    finally:
        engine.dispose()


def _writes_peer(path: Path, workloads: Workloads, *, per_mutation: bool, variant: str) -> dict[str, Any]:
    from benchmarks.peer import run_peer

    warm_path = path.with_name(f"{path.stem}-warm.db")
    run_peer(warm_path, workloads_for(WARM_UP_LEARNERS, "warm-up"), per_mutation=per_mutation, variant=variant)
    remove_database(warm_path)
    remove_database(warm_path.with_name(f"{warm_path.stem}-read-models.db"))
    try:
        seconds, _ = _timed(lambda: run_peer(path, workloads, per_mutation=per_mutation, variant=variant))
    finally:
        remove_database(path.with_name(f"{path.stem}-read-models.db"))
    return {"seconds": seconds}


def _writes_floor(path: Path, workloads: Workloads, *, per_mutation: bool, rebuild: bool) -> dict[str, Any]:
    from benchmarks import floor

    warm_path = path.with_name(f"{path.stem}-warm.db")
    warm = floor.FloorWriter(warm_path)
    warm.write(workloads_for(WARM_UP_LEARNERS, "warm-up"), per_mutation=per_mutation)
    warm.close()
    remove_database(warm_path)
    remove_database(path)
    keys_path = floor.keys_path_of(path)
    writer = floor.FloorWriter(path)
    try:
        seconds, events = _timed(lambda: writer.write(workloads, per_mutation=per_mutation))
    finally:
        writer.close()
    result: dict[str, Any] = {"seconds": seconds, "events": events}
    try:
        remove_database(keys_path)
        key_seconds = writer.store_keys(keys_path, durable_each=True)
        result |= {"key_seconds": key_seconds, "keys": len(writer.keys)}
        if rebuild:
            rebuild_seconds, replayed = _timed(lambda: floor.rebuild(path, keys_path))
            result |= {"rebuild_seconds": rebuild_seconds, "rebuild_events": replayed}
    finally:
        remove_database(keys_path)
    return result


PEER_IMPLEMENTATIONS = {"peer": "plain", "peer_aes": "aes", "peer_aes_rm": "aes_read_models"}
"""The bench's names of the `eventsourcing` variants (`benchmarks.peer.PEER_VARIANTS`)."""


# -- tasks ----------------------------------------------------------------------------------------


def task_writes(impl: str, mode: str, learners: int, folder: str, rebuild: bool = False) -> dict[str, Any]:
    """See the module docstring."""
    per_mutation = {"a": False, "b": True}[mode]
    workloads = workloads_for(learners)
    path = Path(folder) / f"writes-{impl}-{mode}.db"
    try:
        if impl == "ours":
            result = _writes_ours(path, workloads, per_mutation=per_mutation, rebuild=rebuild)
        elif impl == "floor":
            result = _writes_floor(path, workloads, per_mutation=per_mutation, rebuild=rebuild)
        elif impl == "crud":
            result = _writes_crud(path, workloads, per_mutation=per_mutation)
        elif impl in PEER_IMPLEMENTATIONS:
            result = _writes_peer(path, workloads, per_mutation=per_mutation, variant=PEER_IMPLEMENTATIONS[impl])
        else:
            raise ValueError(f"unknown implementation {impl!r}")
    finally:
        remove_database(path)
    return result | {"mutations": sum(len(plan) for plan in workloads.values()), "learners": learners}


def write_log(path: Path, events: int) -> int:
    """Write learners with the workload, one save each, until the log holds at least `events`."""
    from dala_events.database_setup import store_for
    from dala_events.hlp_module import LearnerProfile

    engine = fresh_engine(path)
    store = store_for(engine)
    written = 0
    seed = 0
    try:
        while written < events:
            profile = LearnerProfile(f"scale-{seed:07d}", persistence_enabled=False, store=store)
            written += 1 + apply_workload(profile, learner_workload(seed))
            profile.save()
            seed += 1
    finally:
        engine.dispose()
    return written


def write_floor_log(path: Path, events: int) -> int:
    """`write_log` by the checked floor: the same learners, one transaction each, and their
    keys saved in its key file."""
    from benchmarks import floor

    remove_database(path)
    writer = floor.FloorWriter(path)
    written = 0
    seed = 0
    try:
        while written < events:
            written += writer.write({f"scale-{seed:07d}": learner_workload(seed)}, per_mutation=False)
            seed += 1
    finally:
        writer.close()
    keys_path = floor.keys_path_of(path)
    remove_database(keys_path)
    writer.store_keys(keys_path, durable_each=False)
    return written


def task_write_log(path: str, events: int, impl: str = "ours") -> dict[str, Any]:
    """See the module docstring."""
    write = {"ours": write_log, "floor": write_floor_log}[impl]
    seconds, written = _timed(lambda: write(Path(path), events))
    return {"seconds": seconds, "events": written}


def _rebuild_of(engine: Engine) -> Callable[[], int]:
    """`rebuild_projections` of `engine`'s log, with the store's cipher in a tree that has one
    (a tree from before encryption, e.g. the --compare checkout, rebuilds without)."""
    from projections.rebuild import rebuild_projections

    try:
        from dala_events.database_setup import configured_cipher
    except ImportError:
        return lambda: rebuild_projections(engine)
    cipher = configured_cipher(engine)
    return lambda: rebuild_projections(engine, cipher=cipher)


def task_rebuild(path: str, impl: str = "ours") -> dict[str, Any]:
    """See the module docstring."""
    if impl == "floor":
        from benchmarks import floor

        seconds, replayed = _timed(lambda: floor.rebuild(path, floor.keys_path_of(path)))
        return {"seconds": seconds, "events": replayed}
    from dala_events.database_setup import create_dala_engine

    engine = create_dala_engine(f"sqlite:///{path}")
    try:
        seconds, replayed = _timed(_rebuild_of(engine))
    finally:
        engine.dispose()
    return {"seconds": seconds, "events": replayed}


def task_backup(path: str) -> dict[str, Any]:
    """`dala backup` of the scale log, then `dala restore` of it into a new SQLite file (the log
    only; the rebuild that follows a restore is the rebuild measurement). Skipped for a tree
    without backups."""
    if importlib.util.find_spec("dala_events.backup") is None:
        return {"skipped": True}
    from dala_events.backup import backup_log, restore_log
    from dala_events.database_setup import create_dala_engine

    source = create_dala_engine(f"sqlite:///{path}")
    copy = Path(path).with_suffix(".backup")
    target_path = Path(path).with_name("restored.db")
    remove_database(target_path)
    target = create_dala_engine(f"sqlite:///{target_path}")
    try:
        backup_seconds, made = _timed(lambda: backup_log(source, copy))
        restore_seconds, _ = _timed(lambda: restore_log(target, copy))
    finally:
        source.dispose()
        target.dispose()
        copy.unlink(missing_ok=True)
        remove_database(target_path)
    return {"events": made.events, "backup_seconds": backup_seconds, "restore_seconds": restore_seconds}


AUDIT_LEARNER = "audit-learner"


def task_audit(folder: str, events: int, repeats: int) -> dict[str, Any]:
    """See the module docstring."""
    from dala_events import audit
    from dala_events.database_setup import store_for
    from dala_events.hlp_module import LearnerProfile

    path = Path(folder) / "audit.db"
    engine = fresh_engine(path)
    try:
        store = store_for(engine)
        profile = LearnerProfile(AUDIT_LEARNER, persistence_enabled=False, store=store)
        recorded, seed = 1, 0
        while recorded < events:
            recorded += apply_workload(profile, learner_workload(seed))
            seed += 1
        profile.save()
        latest = audit.history(AUDIT_LEARNER, store=store)[-1].version
        history_times, as_of_times = [], []
        for _ in range(repeats):
            seconds, _ = _timed(lambda: audit.history(AUDIT_LEARNER, store=store))
            history_times.append(seconds)
            seconds, _ = _timed(lambda: audit.profile_as_of(AUDIT_LEARNER, version=latest, store=store))
            as_of_times.append(seconds)
    finally:
        engine.dispose()
        remove_database(path)
    return {
        "events": latest,
        "history_ms": statistics.median(history_times) * 1000,
        "profile_as_of_ms": statistics.median(as_of_times) * 1000,
    }


def task_floor_audit(folder: str, events: int, repeats: int) -> dict[str, Any]:
    """See the module docstring: the checked floor's `history` and `profile_as_of` of one
    learner's stream of exactly `events` events (the store's audited learner's count)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from benchmarks import floor

    path = Path(folder) / "floor-audit.db"
    remove_database(path)
    writer = floor.FloorWriter(path)
    try:
        seeds = (learner_workload(seed) for seed in range(events))
        written = writer.write_stream(AUDIT_LEARNER, list(_enough(seeds, events)), events)
        aead = AESGCM(writer.keys[AUDIT_LEARNER])
        connection = writer.connection
        history_times, as_of_times = [], []
        for _ in range(repeats):
            seconds, _ = _timed(lambda: floor.history(connection, AUDIT_LEARNER, aead))
            history_times.append(seconds)
            seconds, _ = _timed(lambda: floor.profile_as_of(connection, AUDIT_LEARNER, aead, written))
            as_of_times.append(seconds)
    finally:
        writer.close()
        remove_database(path)
    return {
        "events": written,
        "history_ms": statistics.median(history_times) * 1000,
        "profile_as_of_ms": statistics.median(as_of_times) * 1000,
    }


def _enough(workloads: Iterator[list[Mutation]], events: int) -> Iterator[list[Mutation]]:
    """Workloads until they hold `events` mutations."""
    held = 0
    for workload in workloads:
        yield workload
        held += len(workload)
        if held >= events:
            return


STARTUP_LEARNER = "student123"
LIBRARIES_ONLY = "import sqlalchemy, sqlalchemy.orm, pydantic, click, cryptography.hazmat.primitives.ciphers.aead"
"""What `dala profile` cannot start without: the floor its start-up is measured against."""


def task_startup(folder: str, repeats: int) -> dict[str, Any]:
    """The median wall time of `dala profile` (run as `python -m dala_events.cli`) on the demo's
    database, of `dala --help`, and of a Python that only imports the libraries the profile
    needs. Bytecode is compiled first into a cache of the run's own (as an installed package
    has it), so none pays for compiling sources; `dala profile` is also measured with no
    bytecode cache at all (every module compiled as it is imported: a first run, or a
    read-only install without one), and its CPU time (user + system) beside its wall time."""
    import os
    import resource
    import subprocess
    import tempfile

    import dala_events

    work = Path(folder) / "startup"
    work.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(Path(folder) / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    tree = Path(dala_events.__file__).resolve().parent.parent

    def run(*args: str, environment: dict[str, str] = env) -> None:
        subprocess.run([sys.executable, *args], cwd=work, env=environment, stdout=subprocess.DEVNULL, check=True)

    run("-m", "compileall", "-q", str(tree / "dala_events"), str(tree / "projections"))
    run("-m", "dala_events.cli", "demo")

    def medians(*args: str, environment: dict[str, str] = env, runs: int = repeats) -> tuple[float, float]:
        """Median wall and CPU seconds of `runs` runs."""
        walls, cpus = [], []
        for _ in range(runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            run(*args, environment=environment)
            walls.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        return statistics.median(walls), statistics.median(cpus)

    profile = ("-m", "dala_events.cli", "profile", STARTUP_LEARNER)
    command, command_cpu = medians(*profile)
    help_wall, _ = medians("-m", "dala_events.cli", "--help")
    libraries, _ = medians("-c", LIBRARIES_ONLY)
    with tempfile.TemporaryDirectory(dir=folder) as empty:  # no bytecode anywhere, none written
        cold = dict(env, PYTHONPYCACHEPREFIX=empty, PYTHONDONTWRITEBYTECODE="1")
        first_run, _ = medians(*profile, environment=cold, runs=min(repeats, 3))  # seconds each
    return {
        "profile_ms": command * 1000,
        "profile_cpu_ms": command_cpu * 1000,
        "profile_no_bytecode_ms": first_run * 1000,
        "help_ms": help_wall * 1000,
        "libraries_ms": libraries * 1000,
    }


def task_postgres(learners: int, hot_commands: int, bulk_learners: int = 0) -> dict[str, Any]:
    """See `benchmarks.postgres` (skipped, with the reason, without a server)."""
    from benchmarks import postgres

    return postgres.run(learners, hot_commands, bulk_learners)


def task_async(folder: str) -> dict[str, Any]:
    """See `benchmarks.asynchronous` (PostgreSQL skipped, with the reason, without a server)."""
    from benchmarks import asynchronous

    return asynchronous.run(folder)


TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "async": task_async,
    "writes": task_writes,
    "write_log": task_write_log,
    "rebuild": task_rebuild,
    "audit": task_audit,
    "floor_audit": task_floor_audit,
    "backup": task_backup,
    "startup": task_startup,
    "postgres": task_postgres,
}


def main(argv: list[str]) -> None:
    """Run the task given as JSON in argv[0] and print its result as one line of JSON."""
    task = json.loads(argv[0])
    result = TASKS[task["task"]](**task["params"])
    import dala_events

    result["peak_rss_mb"] = peak_rss_mb()
    result["tree"] = str(Path(dala_events.__file__).resolve().parent.parent)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
