"""The bench (`python -m benchmarks`): its CRUD anchor does the store's work, and the harness runs.

No timing is asserted here: only that the anchor ends in the same rows, and that the harness
runs its children and reports every measurement.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import crud_layer
from benchmarks.__main__ import parse_args
from benchmarks.measure import fresh_engine, run_ours, workloads_for
from tests.conftest import POSTGRES_URL, require_postgres

ROOT = Path(__file__).resolve().parent.parent
TABLES = (
    "learner_profiles",
    "preferences",
    "interests",
    "struggles",
    "cognitive_metrics",
    "learning_objective_progress",
    "badges",
    "activity_attempts",
)
TIMES = {"created_at", "last_updated_at", "timestamp", "started_at", "completed_at", "earned_date", "attempt_timestamp"}
JSON_COLUMNS = {
    ("cognitive_metrics", "metric_details"),
    ("learning_objective_progress", "details"),
    ("activity_attempts", "attempt_details"),
}


def eight_tables(path: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Each table's columns and rows, sorted: surrogate ids left out, JSON parsed, and a time
    reduced to whether it is set (the two write at different moments)."""
    connection = sqlite3.connect(path)
    try:
        contents: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        for table in TABLES:
            columns = sorted(
                info[1]
                for info in connection.execute(f'PRAGMA table_info("{table}")')
                if not (info[1] == "id" and table != "learner_profiles")
            )
            quoted = ", ".join(f'"{column}"' for column in columns)
            rows = []
            for row in connection.execute(f'SELECT {quoted} FROM "{table}"'):
                values = []
                for column, value in zip(columns, row, strict=True):
                    if column in TIMES:
                        value = value is not None
                    elif (table, column) in JSON_COLUMNS and value is not None:
                        value = json.dumps(json.loads(value), sort_keys=True)
                    values.append(value)
                rows.append(tuple(values))
            contents[table] = (columns, sorted(rows, key=repr))
        return contents
    finally:
        connection.close()


def test_the_crud_anchor_ends_in_the_same_eight_tables_as_the_store(tmp_path: Path) -> None:
    workloads = workloads_for(3)
    results = {}
    for per_mutation in (False, True):
        path = tmp_path / f"ours-{per_mutation}.db"
        engine = fresh_engine(path)
        try:
            run_ours(engine, workloads, per_mutation=per_mutation)
        finally:
            engine.dispose()
        results[f"ours, per mutation {per_mutation}"] = eight_tables(path)

        path = tmp_path / f"crud-{per_mutation}.db"
        engine = crud_layer.init_db(f"sqlite:///{path}")
        try:
            crud_layer.run_crud(workloads, per_mutation=per_mutation)
            profile = crud_layer.get_full_learner_profile_data("bench-learner-00000")
            assert profile is not None and len(profile.interests) == 4 and len(profile.badges) == 2
        finally:
            engine.dispose()
        results[f"crud, per mutation {per_mutation}"] = eight_tables(path)

    store = results["ours, per mutation False"]
    counts = {table: len(rows) for table, (_columns, rows) in store.items()}
    assert counts == {
        "learner_profiles": 3,
        "preferences": 12,
        "interests": 12,
        "struggles": 6,
        "cognitive_metrics": 15,
        "learning_objective_progress": 24,
        "badges": 6,
        "activity_attempts": 93,
    }
    for name, contents in results.items():
        for table in TABLES:
            assert contents[table] == store[table], f"{name}: {table}"


def run_bench(*args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args, "--json"],
        cwd=ROOT,
        # The bench's databases are made on the tests' server, named after the tests' database.
        env={**os.environ, "DALA_BENCH_POSTGRES_URL": POSTGRES_URL},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def test_a_small_run_reports_every_measurement_as_json() -> None:
    summary = run_bench(
        "--learners",
        "2",
        "--rounds",
        "1",
        "--rebuild-events",
        "0",
        "--audit-events",
        "50",
        "--no-peer",
        "--only",
        "writes,rebuild,audit,startup",
    )
    assert summary["config"]["mutations"] == 150 and summary["config"]["implementations"] == ["ours", "crud"]
    assert summary["trees"] == {"this": str(ROOT)}
    measurements = summary["measurements"]
    assert set(measurements) == {
        "writes_a_ours",
        "writes_a_crud",
        "writes_b_ours",
        "writes_b_crud",
        "rebuild_a",
        "audit_history",
        "audit_profile_as_of",
        "startup_profile",
        "startup_profile_cpu",
        "startup_profile_no_bytecode",
        "startup_help",
        "startup_libraries",
        "startup_ratio",
    }
    assert measurements["startup_ratio"]["this"]["median"] == pytest.approx(  # rounded to 4 places
        measurements["startup_profile"]["this"]["median"] / measurements["startup_libraries"]["this"]["median"],
        abs=1e-3,
    )
    for entry in measurements.values():
        assert entry["this"]["median"] > 0 and entry["this"]["peak_rss_mb"] > 0 and len(entry["this"]["samples"]) == 1
    assert measurements["rebuild_a"]["this"]["count"] == 152
    assert measurements["audit_history"]["this"]["count"] >= 50
    assert set(summary["ratios"]) == {"writes_a_ours_to_crud", "writes_b_ours_to_crud"}
    assert all(ratio["this"] > 0 for ratio in summary["ratios"].values())
    assert summary["peak_rss_mb"]["this"] > 0


def test_compare_runs_every_measurement_in_both_trees() -> None:
    summary = run_bench(
        "--only",
        "rebuild,audit",
        "--learners",
        "1",
        "--rounds",
        "1",
        "--rebuild-events",
        "200",
        "--audit-events",
        "50",
        "--compare",
        str(ROOT),
    )
    assert summary["trees"] == {"this": str(ROOT), "compare": str(ROOT)}
    measurements = summary["measurements"]
    assert set(measurements) == {"rebuild_a", "rebuild_scale", "audit_history", "audit_profile_as_of"}
    for entry in measurements.values():
        assert entry["this"]["median"] > 0 and entry["compare"]["median"] > 0 and entry["after_to_before"] > 0
    assert measurements["rebuild_scale"]["this"]["count"] >= 200
    assert summary["ratios"] == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "writes,nope"], "--only takes"),
        (["--compare", "/nonexistent/checkout"], "not the root of a checkout"),
        (["--learners", "0"], "must be at least 1"),
    ],
)
def test_bad_options_are_refused(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_the_postgresql_group_reports_its_writers_and_subscriptions() -> None:
    require_postgres()
    summary = run_bench("--only", "postgres", "--rounds", "1")
    measurements = summary["measurements"]
    for name in ("pg_floor", "pg_writers_1", "pg_writers_4", "pg_hot_1", "pg_hot_8", "pg_subscription_rate"):
        assert measurements[name]["this"]["median"] > 0, name
    ratio = measurements["pg_one_writer_to_floor"]["this"]["median"]
    expected = measurements["pg_writers_1"]["this"]["median"] / measurements["pg_floor"]["this"]["median"]
    assert ratio == pytest.approx(expected, abs=1e-3)
    assert measurements["pg_lag_max"]["this"]["median"] >= measurements["pg_lag_median"]["this"]["median"] >= 0
    assert not [note for note in summary["notes"] if "PostgreSQL group skipped" in note]


@pytest.mark.slow
def test_the_async_group_reports_both_apis_on_both_databases() -> None:
    require_postgres()
    summary = run_bench("--only", "async", "--rounds", "1")
    measurements = summary["measurements"]
    for backend in ("aio_sqlite", "aio_pg"):
        for callers in (1, 50):
            sync, ours = (
                measurements[f"{backend}_{api}_{callers}_rate"]["this"]["median"] for api in ("sync", "async")
            )
            assert sync > 0 and ours > 0, backend
            ratio = measurements[f"{backend}_async_to_sync_{callers}"]["this"]["median"]
            assert ratio == pytest.approx(ours / sync, rel=1e-3)
            for api in ("sync", "async"):
                p50 = measurements[f"{backend}_{api}_{callers}_p50"]["this"]["median"]
                assert 0 < p50 <= measurements[f"{backend}_{api}_{callers}_p99"]["this"]["median"]
        assert measurements[f"{backend}_loop_frozen"]["this"]["median"] >= 0
        assert measurements[f"{backend}_history_async"]["this"]["median"] > 0
    assert not [note for note in summary["notes"] if "async group" in note]
