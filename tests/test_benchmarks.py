"""The bench (`python -m benchmarks`): its anchors do the store's work, and the harness runs.

No timing is asserted here: only that the CRUD anchor and the checked floor end in the same rows
as the store (and the floor's rows are ones the store reads back and verifies), that the floor
refuses what the store's checks refuse, and that the harness runs its children and reports every
measurement, each ratio the quotient of the figures it divides.
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
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchmarks import crud_layer, floor, postgres
from benchmarks.__main__ import RATIOS, Measurement, Options, Results, Tree, parse_args, summary
from benchmarks.measure import fresh_engine, run_ours, workloads_for
from benchmarks.workload import learner_workload
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


def store_tables(tmp_path: Path, workloads: dict[str, Any], *, per_mutation: bool) -> dict[str, Any]:
    """The eight tables the store ends in for `workloads`."""
    path = tmp_path / f"store-{per_mutation}.db"
    engine = fresh_engine(path)
    try:
        run_ours(engine, workloads, per_mutation=per_mutation)
    finally:
        engine.dispose()
    return eight_tables(path)


def floor_log(path: Path, workloads: dict[str, Any], **options: Any) -> floor.FloorWriter:
    """The checked floor's log of `workloads` at `path` (batched), its writer closed."""
    writer = floor.FloorWriter(path, **options)
    try:
        writer.write(workloads, per_mutation=False)
    finally:
        writer.close()
    return writer


def schema_of(path: Path, table: str) -> tuple[Any, ...]:
    """A table's columns, indexes (with their columns) and foreign keys, as SQLite reports them."""
    connection = sqlite3.connect(path)
    try:
        columns = [row[1:] for row in connection.execute(f'PRAGMA table_info("{table}")')]
        indexes = sorted(
            (unique, partial, [info[2] for info in connection.execute(f'PRAGMA index_info("{name}")')])
            for _seq, name, unique, _origin, partial in connection.execute(f'PRAGMA index_list("{table}")')
        )
        keys = [row[2:5] for row in connection.execute(f'PRAGMA foreign_key_list("{table}")')]
        return columns, indexes, keys
    finally:
        connection.close()


def test_the_checked_floor_writes_the_stores_tables(tmp_path: Path) -> None:
    engine = fresh_engine(tmp_path / "store.db")
    engine.dispose()
    floor_log(tmp_path / "floor.db", {})
    for table in ("event_log", *TABLES):
        assert schema_of(tmp_path / "floor.db", table) == schema_of(tmp_path / "store.db", table), table


def test_the_checked_floor_ends_in_the_same_eight_tables_as_the_store(tmp_path: Path) -> None:
    workloads = workloads_for(3)
    for per_mutation in (False, True):
        path = tmp_path / f"floor-{per_mutation}.db"
        writer = floor.FloorWriter(path)
        try:
            written = writer.write(workloads, per_mutation=per_mutation)
        finally:
            writer.close()
        assert written == 3 * 76
        store = store_tables(tmp_path, workloads, per_mutation=per_mutation)
        assert eight_tables(path) == store, f"per mutation {per_mutation}"


TIMED_FIELDS = {"started_at", "completed_at"}


def masked(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload with its times reduced to whether they are set (the two write at different moments)."""
    return {name: (value is not None) if name in TIMED_FIELDS else value for name, value in payload.items()}


def test_the_store_reads_back_verifies_and_rebuilds_what_the_checked_floor_writes(tmp_path: Path) -> None:
    from dala_events import audit
    from dala_events.database_setup import configured_cipher, store_for
    from dala_events.events import encode_payload
    from projections.rebuild import rebuild_projections

    workloads = workloads_for(2)
    path = tmp_path / "floor-in-store.db"
    engine = fresh_engine(path)
    try:
        cipher = configured_cipher(engine)
        writer = floor_log(path, workloads, key_for=lambda learner: cipher.key_store.data_key(learner, create=True))
        ours_path = tmp_path / "ours.db"
        ours_engine = fresh_engine(ours_path)
        try:
            run_ours(ours_engine, workloads, per_mutation=False)
            ours = {learner: audit.history(learner, store=store_for(ours_engine)) for learner in workloads}
        finally:
            ours_engine.dispose()
        store = store_for(engine)
        connection = sqlite3.connect(path)
        try:
            for learner in workloads:
                read = audit.history(learner, store=store)  # every link checked, every payload decrypted
                assert [(e.event_type, e.schema_version) for e in read] == [
                    (e.event_type, e.schema_version) for e in ours[learner]
                ]
                expected = [masked(json.loads(encode_payload(e.event))) for e in ours[learner]]
                assert [masked(json.loads(encode_payload(e.event))) for e in read] == expected
                assert {e.metadata["actor"] for e in read} == {"system"}
                aead = AESGCM(writer.keys[learner])
                floor_read = floor.history(connection, learner, aead)
                assert [masked(payload) for *_, payload, _metadata in floor_read] == expected
        finally:
            connection.close()
        replayed = rebuild_projections(engine, cipher=cipher)
        assert replayed == 2 * 76
    finally:
        engine.dispose()
    assert eight_tables(path) == eight_tables(ours_path)


def test_the_store_reads_back_and_rebuilds_what_the_checked_floor_writes_per_mutation(database_url: str) -> None:
    from dala_events import audit
    from dala_events.database_setup import close_db, configured_cipher, in_memory_store, init_db, store_for
    from dala_events.events import encode_payload
    from dala_events.hlp_module import LearnerProfile
    from projections.rebuild import rebuild_projections

    workloads = workloads_for(2)
    memory = in_memory_store()[0]
    expected = {}
    for learner, plan in workloads.items():
        apply_workload_to(LearnerProfile(learner, store=memory), plan)
        expected[learner] = [
            (e.event_type, masked(json.loads(encode_payload(e.event)))) for e in memory.read_stream(learner)
        ]
    engine = init_db(database_url)
    try:
        cipher = configured_cipher(engine)
        options: dict[str, Any] = {"key_for": lambda learner: cipher.key_store.data_key(learner, create=True)}
        writer: floor.FloorWriter | floor.PgFloorWriter
        if engine.dialect.name == "sqlite":
            writer = floor.FloorWriter(str(engine.url.database), **options)
        else:
            writer = floor.PgFloorWriter(postgres.conninfo(database_url), **options)
        try:
            assert writer.write(workloads, per_mutation=True) == 2 * 76
        finally:
            writer.close()
        store = store_for(engine)
        for learner in workloads:
            read = audit.history(learner, store=store)  # every link checked, every payload decrypted
            assert [(e.event_type, masked(json.loads(encode_payload(e.event)))) for e in read] == expected[learner]
        assert rebuild_projections(engine, cipher=cipher) == 2 * 76
    finally:
        close_db()


def apply_workload_to(profile: Any, plan: list[Any]) -> None:
    for mutation in plan:
        assert mutation.apply_to(profile)


def test_the_checked_floor_folds_a_profile_as_of_a_version(tmp_path: Path) -> None:
    path = tmp_path / "floor.db"
    writer = floor_log(path, {"learner": learner_workload(0)})
    connection = sqlite3.connect(path)
    try:
        aead = AESGCM(writer.keys["learner"])
        latest = floor.profile_as_of(connection, "learner", aead, 76)
        sizes = {name: len(value) for name, value in latest.items() if isinstance(value, dict | list)}
        assert sizes == {
            "preferences": 4,
            "interests": 4,
            "struggles": 2,
            "cognitive_metrics": 5,
            "lo_progress": 8,
            "badges": 2,
            "activity_attempts": 31,
        }
        early = floor.profile_as_of(connection, "learner", aead, 6)
        assert len(early["preferences"]) == 4 and not early["interests"] and not early["activity_attempts"]
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("UPDATE event_log SET metadata = replace(metadata, 'system', 'someone') WHERE version = 7", "does not verify"),
        ("DELETE FROM event_log WHERE version = 7", "version 8 where 7 was due"),
    ],
)
def test_the_checked_floor_refuses_a_row_that_does_not_verify(tmp_path: Path, tamper: str, message: str) -> None:
    path = tmp_path / "floor.db"
    writer = floor_log(path, {"learner": learner_workload(0)})
    writer.store_keys(floor.keys_path_of(path), durable_each=False)
    connection = sqlite3.connect(path)
    try:
        connection.execute(tamper)
        connection.commit()
        aead = AESGCM(writer.keys["learner"])
        with pytest.raises(floor.FloorError, match=message):
            floor.history(connection, "learner", aead)
        with pytest.raises(floor.FloorError, match=message):
            floor.profile_as_of(connection, "learner", aead, 76)
    finally:
        connection.close()
    with pytest.raises(floor.FloorError, match=message):
        floor.rebuild(path, floor.keys_path_of(path))


def test_the_checked_floor_refuses_a_payload_in_the_clear(tmp_path: Path) -> None:
    path = tmp_path / "floor.db"
    writer = floor_log(path, {"learner": learner_workload(0)})
    connection = sqlite3.connect(path)
    try:
        row = connection.execute("SELECT * FROM event_log WHERE version = 1").fetchone()
        connection.execute("DELETE FROM event_log")
        # The first event again, its payload in the clear and the row chained as the floor chains.
        event_id, metadata = row[1], row[9]
        digest = floor.link("", floor.dashed(event_id), *row[2:8], "{}", metadata)
        connection.execute(floor.INSERT_EVENT, (event_id, *row[2:8], "{}", metadata, digest))
        connection.commit()
        with pytest.raises(floor.FloorError, match="in the clear"):
            floor.history(connection, "learner", AESGCM(writer.keys["learner"]))
    finally:
        connection.close()


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


def assert_ratios_are_quotients(summary: dict[str, Any], trees: tuple[str, ...] = ("this",)) -> None:
    """Every ratio of the summary is the quotient of the medians it names (both rounded to 4 places)."""
    by_name = {ratio.name: ratio for ratio in RATIOS}
    measurements = summary["measurements"]
    for name, entry in summary["ratios"].items():
        ratio = by_name[name]
        for tree in trees:
            expected = measurements[ratio.ours][tree]["median"] / measurements[ratio.anchor][tree]["median"]
            assert entry[tree] == pytest.approx(expected, rel=1e-3, abs=1e-4), (name, tree)
        assert entry["goal"] == ratio.goal and (ratio.goal is None or ratio.goal in entry["label"])


def test_a_small_run_reports_every_measurement_as_json() -> None:
    summary = run_bench(
        "--learners",
        "2",
        "--rounds",
        "1",
        "--rebuild-events",
        "300",
        "--audit-events",
        "50",
        "--no-peer",
        "--only",
        "writes,rebuild,audit,startup",
    )
    assert summary["config"]["mutations"] == 150
    assert summary["config"]["implementations"] == ["ours", "floor", "crud"]
    assert summary["trees"] == {"this": str(ROOT)}
    measurements = summary["measurements"]
    assert set(measurements) == {
        "writes_a_ours",
        "writes_a_floor",
        "writes_a_floor_keys",
        "floor_new_key",
        "writes_a_crud",
        "writes_b_ours",
        "writes_b_floor",
        "writes_b_floor_keys",
        "writes_b_crud",
        "rebuild_a",
        "rebuild_a_floor",
        "rebuild_scale",
        "rebuild_scale_floor",
        "audit_history",
        "audit_history_floor",
        "audit_profile_as_of",
        "audit_profile_as_of_floor",
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
    assert measurements["rebuild_a"]["this"]["count"] == measurements["rebuild_a_floor"]["this"]["count"] == 152
    assert measurements["rebuild_scale"]["this"]["count"] == measurements["rebuild_scale_floor"]["this"]["count"]
    assert measurements["rebuild_scale_floor"]["this"]["count"] >= 300
    assert measurements["floor_new_key"]["this"]["count"] == 2
    for mode in ("a", "b"):  # the floor with its keys made durable is slower than without
        floor_rate = measurements[f"writes_{mode}_floor"]["this"]["median"]
        assert 0 < measurements[f"writes_{mode}_floor_keys"]["this"]["median"] < floor_rate
    # The floor reads a stream exactly as long as the store's.
    assert measurements["audit_history_floor"]["this"]["count"] == measurements["audit_history"]["this"]["count"]
    assert measurements["audit_history"]["this"]["count"] >= 50
    assert set(summary["ratios"]) == {
        "writes_a_ours_to_floor",
        "writes_a_ours_to_crud",
        "writes_b_ours_to_floor",
        "writes_b_ours_to_crud",
        "writes_a_ours_to_floor_keys",
        "writes_b_ours_to_floor_keys",
        "rebuild_a_ours_to_floor",
        "rebuild_scale_ours_to_floor",
        "audit_history_ours_to_floor",
        "audit_profile_as_of_ours_to_floor",
    }
    assert_ratios_are_quotients(summary)
    assert summary["peak_rss_mb"]["this"] > 0


def test_the_summary_names_the_ratios_to_the_peers_and_their_goals() -> None:
    this = Tree("this", ROOT)
    results = Results([this])
    rates = {"ours": 1200.0, "floor": 2400.0, "crud": 300.0, "peer": 1500.0, "peer_aes": 1000.0, "peer_aes_rm": 600.0}
    for mode in ("a", "b"):
        for impl, rate in rates.items():
            results.record(f"writes_{mode}_{impl}", Measurement(impl, "mutations/s"), this, rate, 50.0, 150)
    options = Options(100, 1, 0, 50, peer=True, crud=True, only=("writes",), compare=None)
    ratios = summary(results, options, 150, [], 1.0)["ratios"]
    goals = {
        "writes_a_ours_to_peer_aes": ">= 0.8",
        "writes_a_ours_to_peer_aes_rm": ">= 1.4",
        "writes_b_ours_to_peer_aes": "> 1",
        "writes_b_ours_to_peer_aes_rm": "> 1",
        "writes_a_ours_to_floor": ">= 0.5",
        "writes_b_ours_to_floor": ">= 0.5",
    }
    for name, goal in goals.items():
        anchor = name.rsplit("_to_", 1)[1]
        assert ratios[name]["this"] == pytest.approx(1200.0 / rates[anchor]), name
        assert ratios[name]["goal"] == goal and goal in ratios[name]["label"], name
    assert ratios["writes_a_ours_to_peer"]["goal"] is None


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
    assert set(measurements) == {
        "rebuild_a",
        "rebuild_a_floor",
        "rebuild_scale",
        "rebuild_scale_floor",
        "audit_history",
        "audit_history_floor",
        "audit_profile_as_of",
        "audit_profile_as_of_floor",
    }
    for entry in measurements.values():
        assert entry["this"]["median"] > 0 and entry["compare"]["median"] > 0 and entry["after_to_before"] > 0
    assert measurements["rebuild_scale"]["this"]["count"] >= 200
    # Each tree's ratios divide by the floor measured in that tree's turn.
    assert set(summary["ratios"]) == {
        "rebuild_a_ours_to_floor",
        "rebuild_scale_ours_to_floor",
        "audit_history_ours_to_floor",
        "audit_profile_as_of_ours_to_floor",
    }
    assert_ratios_are_quotients(summary, ("this", "compare"))
    for entry in summary["ratios"].values():
        assert entry["after_to_before"] == pytest.approx(entry["this"] / entry["compare"], rel=1e-3, abs=1e-4)


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
    summary = run_bench("--only", "postgres", "--rounds", "1", "--learners", "3")
    measurements = summary["measurements"]
    for name in (
        "pg_floor",
        "pg_checked_floor",
        "pg_writers_1",
        "pg_writers_4",
        "pg_hot_1",
        "pg_hot_8",
        "pg_subscription_rate",
    ):
        assert measurements[name]["this"]["median"] > 0, name
    for ratio, anchor in (
        ("pg_one_writer_to_floor", "pg_floor"),
        ("pg_one_writer_to_checked_floor", "pg_checked_floor"),
    ):
        expected = measurements["pg_writers_1"]["this"]["median"] / measurements[anchor]["this"]["median"]
        assert measurements[ratio]["this"]["median"] == pytest.approx(expected, rel=1e-3, abs=1e-4), ratio
    # The bulk rows: dala restore of the workload's 3 x 76 events, against COPY of the same rows.
    figure = {name: entry["this"]["median"] for name, entry in measurements.items()}
    for name in ("pg_copy_events", "pg_restore_log", "pg_copy_read_models", "pg_restore_rebuild", "pg_restore"):
        assert figure[name] > 0, name
    events = measurements["pg_restore_log"]["this"]["count"]
    rows = measurements["pg_copy_read_models"]["this"]["count"]
    assert events == measurements["pg_copy_events"]["this"]["count"] == 3 * 76
    assert rows == measurements["pg_rebuild_to_copy"]["this"]["count"] > 0
    assert figure["pg_restore_log_to_copy"] == pytest.approx(
        figure["pg_restore_log"] / figure["pg_copy_events"], rel=1e-3, abs=1e-4
    )
    # Seconds of COPY over seconds of the replay: the replay's events/s against COPY's rows/s, per row.
    assert figure["pg_rebuild_to_copy"] == pytest.approx(
        (figure["pg_restore_rebuild"] / events) / (figure["pg_copy_read_models"] / rows), rel=1e-3, abs=1e-4
    )
    assert 1 / figure["pg_restore"] == pytest.approx(
        1 / figure["pg_restore_log"] + 1 / figure["pg_restore_rebuild"], rel=1e-4
    )
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
