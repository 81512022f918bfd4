"""The shape of the code: dependencies point one way, the domain is pure, the collector is left alone."""

from __future__ import annotations

import ast
import gc
import subprocess
import sys
import threading
import time
from pathlib import Path

from dala_events import audit
from dala_events.hlp_module import LearnerProfile
from dala_events.store import SqlEventStore

ROOT = Path(__file__).resolve().parent.parent

LAYERS: dict[str, int] = {
    # domain: pure
    "dala_events.errors": 0,
    "dala_events.events": 0,
    "dala_events.attribution": 0,
    "dala_events.switches": 0,
    "dala_events.envelopes": 0,
    "dala_events.aggregate": 0,
    # the write side's storage
    "dala_events.dialects": 1,
    "dala_events.store": 1,
    # the read side
    "projections": 2,
    # wiring
    "dala_events.settings": 3,
    "dala_events.schema": 3,
    "dala_events.wiring": 3,
    "dala_events.database_setup": 3,
    "dala_events.migrations": 3,
    # use cases and ways in
    "dala_events.repository": 4,
    "dala_events.hlp_module": 4,
    "dala_events.persistence_manager": 4,
    "dala_events.audit": 4,
    "dala_events.integrity": 4,
    "dala_events.key_audit": 4,
    "dala_events.assessment": 4,
    "dala_events.pathway": 4,
    "dala_events.summaries": 4,
    "dala_events.disclosures": 4,
    "dala_events.erasure": 4,
    "dala_events.subscriptions": 4,
    "dala_events.generate_interface": 5,
    "dala_events.xapi": 5,
    "dala_events.demo": 5,
    "dala_events.app": 5,
    "dala_events.aio": 6,
    "dala_events.backup": 4,
    "dala_events.checksummed": 4,
    "dala_events.private_files": 4,
    "dala_events.key_backup": 4,
    "dala_events.status": 4,
    "dala_events.cli": 6,
}


def _layer(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, layer)
    return None if best is None else best[1]


def _modules() -> dict[str, Path]:
    found = {}
    for package in ("dala_events", "projections"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] in ("dala_events", "projections")}


def test_every_module_has_a_layer() -> None:
    assert [name for name in _modules() if name not in ("dala_events", "projections") and _layer(name) is None] == []


def test_dependencies_point_down_only() -> None:
    modules = _modules()
    upward = []
    for name, path in modules.items():
        own = _layer(name)
        for imported in _imports(path, top_level_only=False):
            target = next((m for m in (imported, imported.rsplit(".", 1)[0]) if m in modules), None)
            if target is None or own is None:
                continue
            theirs = _layer(target)
            if theirs is not None and theirs > own:
                upward.append(f"{name} (layer {own}) imports {target} (layer {theirs})")
    assert upward == []


def test_no_import_cycles_among_modules() -> None:
    modules = _modules()

    def resolved(imported: str) -> str | None:
        return next((m for m in (imported, imported.rsplit(".", 1)[0]) if m in modules), None)

    graph = {
        name: {target for i in _imports(path, top_level_only=True) if (target := resolved(i)) is not None}
        for name, path in modules.items()
    }
    # A package's __init__ re-exporting its own modules is not a cycle.
    for name in graph:
        graph[name] = {target for target in graph[name] if target != name and not target.startswith(name + ".")}
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        if node in done:
            return
        if node in visiting:
            cycles.append([*visiting[visiting.index(node) :], node])
            return
        visiting.append(node)
        for target in sorted(graph[node]):
            visit(target)
        visiting.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)
    assert cycles == []


def test_only_the_command_line_and_the_facade_defer_imports_of_the_package() -> None:
    """Function-level imports would hide a cycle; the two entry points at the top, the CLI and
    the `Dala` facade, defer them only to start fast (what they import is below them, which
    `test_dependencies_point_down_only` checks, deferred imports included)."""
    deferred = []
    for name, path in _modules().items():
        if name in ("dala_events.cli", "dala_events.app"):
            continue
        if _imports(path, top_level_only=False) - _imports(path, top_level_only=True):
            deferred.append(name)
    assert deferred == []


def test_the_aggregate_imports_no_database_and_no_store() -> None:
    probe = (
        "import sys, dala_events.aggregate, dala_events.envelopes\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'psycopg', 'sqlite3', 'projections')"
        " or m.startswith(('dala_events.store', 'dala_events.dialects', 'dala_events.database_setup')))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True, timeout=120
    )
    assert result.stdout.strip() == ""


def test_another_thread_sees_the_collector_on_throughout_history_and_as_of(store: SqlEventStore) -> None:
    profile = LearnerProfile("long", persistence_enabled=False, store=store)
    for n in range(1500):
        profile.record_activity_attempt("LO1", f"a{n}", "quiz", score=n % 100, attempt_details={"n": n})
    profile.save()
    samples: list[tuple[float, bool]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), gc.isenabled()))

    assert gc.isenabled()
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        started = time.perf_counter()
        for _ in range(3):
            assert len(audit.history("long", store=store)) == 1501
            as_of = audit.profile_as_of("long", version=1501, store=store)
            assert as_of is not None and len(as_of.activity_attempts) == 1500
        ended = time.perf_counter()
    finally:
        done.set()
        sampler.join(60)
    during = [enabled for at, enabled in samples if started <= at <= ended]
    assert during, "the sampling thread never ran while the reads did"
    assert all(during)
    assert gc.isenabled()


def test_no_module_switches_the_collector_or_signal_handlers() -> None:
    """Not the library, and not its command line either: a process-wide switch is its owner's."""
    switches = {("gc", "disable"), ("gc", "freeze"), ("gc", "set_threshold"), ("signal", "signal")}
    found = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            attribute = node if isinstance(node, ast.Attribute) else None
            if attribute and isinstance(attribute.value, ast.Name) and (attribute.value.id, attribute.attr) in switches:
                found.append(f"{name}:{attribute.lineno}: {attribute.value.id}.{attribute.attr}")
    assert found == []
