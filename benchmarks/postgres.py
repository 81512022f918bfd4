"""The PostgreSQL group of `make bench`: the store with many writer processes, against its floor.

Runs in one child of the harness (task `postgres`), on databases it creates on the server of
`DALA_BENCH_POSTGRES_URL` (default: the test server, 127.0.0.1:5432) and drops at the end, each
named after that URL's database and a random suffix (`<database>_bench_<hex>`), so runs never
meet: the log's, and a key store's of its own (one key store shared by every writer process, as a
school group would run it), and the bulk measurements' target (`<database>_bench_bulk_<hex>`).
Skipped, with the reason, when no server answers.

- **one writer vs its floor**: the workload, one transaction per mutation, through the store;
  the floor is psycopg doing what each mutation must at least do, with every value computed
  beforehand: insert the event row, write the read-model row, move `last_updated_at`, commit.
- **one writer vs the checked floor**: `benchmarks.floor.PgFloorWriter`, psycopg doing the
  store's per-event work as simply as Python allows (the event decided, JSON, AES-GCM under a
  key per learner, the SHA-256 link, the event row, the read-model statement and
  `last_updated_at`, one transaction per mutation), on the same workload.
- **K writers**: K = 1, 2, 4, 8 processes, each on learners of its own, started together;
  mutations/s of all of them.
- **hot learner**: 8 processes recording activity attempts of one learner through the
  persistence manager (commands that retry on conflicts), against one process doing the same.
- **subscription**: events/s a subscription delivers to a handler that does nothing, over the
  whole log; and its lag (events appended but not yet delivered) while 4 writers write.
- **bulk, against COPY**: the workload of `bulk_learners` learners written by the store (one
  save each) and backed up (`dala backup`); then `dala restore` of that file into an empty
  database (`Dala.restore`: the file checked, the keys checked, the log inserted, then the
  read models rebuilt, whose replay `RebuildResult.seconds` times apart), against psycopg's
  `COPY ... FROM STDIN` (`Cursor.copy`, a `write_row` a row, one transaction) of the same event
  rows into an empty log, and of the same read-model rows into empty tables, every row read
  into memory before the clock starts. Ratios: ours / COPY for the same rows (above 1: faster).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.workload import apply_workload, learner_workload

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MASTER_KEY = "6b" * 32
KS = (1, 2, 4, 8)
HOT_WRITERS = 8
SUBSCRIBER_WRITERS = 4


def admin_url() -> str:
    return os.environ.get("DALA_BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL)


def problem() -> str | None:
    """Why the group cannot run here (no server, no driver), or None."""
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(admin_url())
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as error:  # any failure to connect is the reason to skip
        return f"no PostgreSQL server answers at {admin_url()}: {str(error).splitlines()[0]}"
    return None


@contextmanager
def databases() -> Iterator[tuple[str, str]]:
    """A log database and a key-store database of the bench's own, dropped afterwards."""
    with _created(("bench", "bench_keys")) as (log_url, keys_url):
        yield log_url, keys_url


@contextmanager
def _created(kinds: Sequence[str]) -> Iterator[list[str]]:
    """A database per kind, `<database>_<kind>_<hex>` after the configured URL's database (one
    suffix for the set), dropped afterwards; their URLs."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    suffix = uuid.uuid4().hex[:8]
    prefix = make_url(admin_url()).database or "dala"
    names = [f"{prefix}_{kind}_{suffix}" for kind in kinds]
    admin = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f"CREATE DATABASE {name}"))
        base = make_url(admin_url())
        yield [base.set(database=name).render_as_string(hide_password=False) for name in names]
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def settings_for(log_url: str, keys_url: str) -> Any:
    from dala_events.settings import Settings
    from dala_events.store.keys import MasterKey

    return Settings(database_url=log_url, key_store=keys_url, master_key=MasterKey.from_hex(MASTER_KEY))


def reset_databases(log_url: str, keys_url: str, *, keys: bool = True) -> None:
    """Empty both databases (the log's only, without `keys`) and create the log's tables
    (between measurements)."""
    from sqlalchemy import create_engine, text

    from dala_events.app import Dala

    for url in (log_url, keys_url) if keys else (log_url,):
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    Dala.open(settings_for(log_url, keys_url)).close()


# -- writers ----------------------------------------------------------------------------------


def _write_learners(log_url: str, keys_url: str, prefix: str, learners: int, start: Any) -> int:
    """In a writer process: the workload of `learners` learners, one transaction per mutation."""
    from dala_events.app import Dala

    plans = [learner_workload(seed) for seed in range(learners)]
    with Dala.open(settings_for(log_url, keys_url)) as dala:
        dala.profile(f"{prefix}-warm-up").add_interest("Chess")
        start.wait()
        mutations = 0
        for seed, plan in enumerate(plans):
            profile = dala.profile(f"{prefix}-{seed:04d}")
            mutations += apply_workload(profile, plan)
    return mutations


def _hot_writer(log_url: str, keys_url: str, worker: int, commands: int, start: Any) -> int:
    from dala_events import persistence_manager as pm
    from dala_events.app import Dala

    with Dala.open(settings_for(log_url, keys_url)) as dala:
        pm.add_interest("hot", pm.InterestData(interest_name=f"warm {worker}"), store=dala.store)
        start.wait()
        for n in range(commands):
            attempt = pm.ActivityAttemptData(lo_id="LO1", activity_id=f"w{worker}-{n}", activity_type="quiz")
            pm.add_activity_attempt("hot", attempt, store=dala.store)
    return commands


def _create_hot(log_url: str, keys_url: str) -> None:
    from dala_events.app import Dala

    with Dala.open(settings_for(log_url, keys_url)) as dala:
        dala.profile("hot")


def _run_together(target: Any, argument_sets: list[tuple[Any, ...]]) -> float:
    """Start one process per argument set, release them together, return the seconds until
    the last ends."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(len(argument_sets)) as pool:
        start = manager.Event()  # a proxy: it can travel with the task
        pending = [pool.apply_async(target, (*arguments, start)) for arguments in argument_sets]
        time.sleep(0.5)  # let every process open its store before the start (not timed)
        began = time.perf_counter()
        start.set()
        for result in pending:
            result.get(timeout=1800)
        return time.perf_counter() - began


def _floor(log_url: str, keys_url: str, learners: int) -> tuple[int, float]:
    """psycopg doing the least each mutation must: the event row, the read-model row,
    last_updated_at, one transaction each; every value computed before the clock starts."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(log_url)
    conninfo = f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}"
    payload = "dala-aes256gcm/1:" + "A" * 200
    statements = []
    for seed in range(learners):
        learner = f"floor-{seed:04d}"
        for version in range(1, len(learner_workload(seed)) + 2):
            statements.append((learner, version, str(uuid.uuid4()), payload, "f" * 64))
    with psycopg.connect(conninfo) as connection:
        with connection.transaction():
            for seed in range(learners):
                connection.execute(
                    "INSERT INTO learner_profiles (id, created_at, last_updated_at) VALUES (%s, now(), now())",
                    (f"floor-{seed:04d}",),
                )
        began = time.perf_counter()
        for learner, version, event_id, text, digest in statements:
            with connection.transaction():
                connection.execute(
                    "INSERT INTO event_log (event_id, learner_id, version, event_type, schema_version, occurred_at,"
                    " recorded_at, payload, metadata, hash) VALUES (%s, %s, %s, 'ActivityAttemptRecorded', 1, now(),"
                    " now(), %s, '{}', %s)",
                    (event_id, learner, version, text, digest),
                )
                connection.execute(
                    "INSERT INTO activity_attempts (learner_id, lo_id, activity_id, activity_type, attempt_timestamp,"
                    " score, completed, attempt_details) VALUES (%s, 'LO1', %s, 'quiz', now(), 50, true, NULL)",
                    (learner, event_id),
                )
                connection.execute("UPDATE learner_profiles SET last_updated_at = now() WHERE id = %s", (learner,))
        return len(statements), time.perf_counter() - began


# -- bulk: dala restore and the rebuild's replay against COPY -------------------------------------

READ_MODEL_TABLES = (
    "learner_profiles",
    "preferences",
    "interests",
    "struggles",
    "cognitive_metrics",
    "learning_objective_progress",
    "badges",
    "activity_attempts",
)
"""The eight tables, parent first."""


def conninfo(url: str) -> str:
    """psycopg's connection string for a SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    password = f" password={parsed.password}" if parsed.password else ""
    return f"host={parsed.host} port={parsed.port or 5432} user={parsed.username} dbname={parsed.database}{password}"


def _table_rows(connection: Any, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """A table's rows as stored (JSON columns as their text), without a serial id or a column the
    database fills (`transaction_id`): what COPY writes back."""
    columns = connection.execute(
        "SELECT column_name, data_type, column_default FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    kept = [
        (name, kind)
        for name, kind, default in columns
        if not (default and "nextval" in default and table != "event_log") and name != "transaction_id"
    ]
    selected = ", ".join(f"{name}::text" if kind in ("json", "jsonb") else name for name, kind in kept)
    rows = connection.execute(f"SELECT {selected} FROM {table}").fetchall()
    return [name for name, _ in kept], rows


def _copy_seconds(url: str, tables: Sequence[tuple[str, list[str], list[tuple[Any, ...]]]]) -> float:
    """Seconds psycopg takes to COPY the rows into the (empty) tables, in one transaction."""
    import psycopg

    with psycopg.connect(conninfo(url)) as connection:
        began = time.perf_counter()
        with connection.cursor() as cursor:
            for table, columns, rows in tables:
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        connection.commit()
        return time.perf_counter() - began


def _bulk(log_url: str, keys_url: str, target_url: str, learners: int) -> dict[str, Any]:
    """See the module docstring ("bulk, against COPY")."""
    import psycopg

    from dala_events.app import Dala
    from dala_events.backup import backup_log
    from dala_events.hlp_module import LearnerProfile

    reset_databases(log_url, keys_url)
    with tempfile.TemporaryDirectory(prefix="dala-bench-bulk-") as folder:
        backup = Path(folder) / "log.backup"
        with Dala.open(settings_for(log_url, keys_url)) as dala:
            for seed in range(learners):
                profile = LearnerProfile(f"bulk-{seed:05d}", persistence_enabled=False, store=dala.store)
                apply_workload(profile, learner_workload(seed))
                profile.save()
            backup_log(dala.engine, backup)
        with psycopg.connect(conninfo(log_url)) as connection:
            events = _table_rows(connection, "event_log")
            read_models = [(table, *_table_rows(connection, table)) for table in READ_MODEL_TABLES]
        reset_databases(target_url, keys_url, keys=False)
        with Dala.open(settings_for(target_url, keys_url)) as target:
            began = time.perf_counter()
            restored, rebuilt = target.restore(backup)
            restore_seconds = time.perf_counter() - began
    reset_databases(target_url, keys_url, keys=False)
    copy_events = _copy_seconds(target_url, [("event_log", *events)])
    reset_databases(target_url, keys_url, keys=False)
    copy_read_models = _copy_seconds(target_url, read_models)
    count, rows = restored.events, sum(len(table_rows) for _, _, table_rows in read_models)
    return {
        "bulk_events": count,
        "bulk_read_model_rows": rows,
        "copy_events": len(events[1]) / copy_events,
        "restore": count / restore_seconds,
        "restore_log": count / (restore_seconds - rebuilt.seconds),
        "restore_rebuild": count / rebuilt.seconds,
        "copy_read_models": rows / copy_read_models,
        "restore_log_to_copy": copy_events / (restore_seconds - rebuilt.seconds),
        "rebuild_to_copy": copy_read_models / rebuilt.seconds,
    }


def _checked_floor(log_url: str, learners: int) -> tuple[int, float]:
    """The workload of `learners` learners through the checked floor, one transaction per
    mutation (after one warm-up learner); the mutations and the seconds they took."""
    from benchmarks.floor import PgFloorWriter

    writer = PgFloorWriter(conninfo(log_url))
    try:
        writer.write({"checked-floor-warm-up": learner_workload(learners)}, per_mutation=True)
        workloads = {f"checked-floor-{seed:04d}": learner_workload(seed) for seed in range(learners)}
        began = time.perf_counter()
        writer.write(workloads, per_mutation=True)
        return sum(len(plan) for plan in workloads.values()), time.perf_counter() - began
    finally:
        writer.close()


# -- subscriptions ------------------------------------------------------------------------------


def _subscription_rate(log_url: str, keys_url: str) -> tuple[int, float]:
    from dala_events.app import Dala

    with Dala.open(settings_for(log_url, keys_url)) as dala:
        subscription = dala.subscription(f"noop-{uuid.uuid4().hex[:6]}")
        began = time.perf_counter()
        delivered = subscription.run(lambda _event: None, stop_when_idle=True, batch_size=1000)
        return delivered, time.perf_counter() - began


def _lag_under_load(log_url: str, keys_url: str, learners: int) -> list[int]:
    """The lag (events in the log not yet delivered) a no-op subscription sees at each fetch
    while SUBSCRIBER_WRITERS writers write."""
    from sqlalchemy import func, select

    from dala_events.app import Dala
    from dala_events.store import event_log

    lags: list[int] = []
    with Dala.open(settings_for(log_url, keys_url)) as dala:
        subscription = dala.subscription("under-load")
        done = threading.Event()

        def follow() -> None:
            delivered = 0
            while True:
                finished = done.is_set()
                events = subscription.fetch(500)
                for event in events:
                    subscription.ack(event)
                delivered += len(events)
                with dala.engine.connect() as connection:
                    total = connection.execute(select(func.count()).select_from(event_log)).scalar_one()
                lags.append(max(0, total - delivered - _already))
                if finished and not events:
                    return

        with dala.engine.connect() as connection:
            _already = connection.execute(select(func.count()).select_from(event_log)).scalar_one()
        follower = threading.Thread(target=follow)
        follower.start()
        arguments = [(log_url, keys_url, f"load{k}", learners) for k in range(SUBSCRIBER_WRITERS)]
        _run_together(_write_learners, arguments)
        done.set()
        follower.join()
    return lags


# -- the task -----------------------------------------------------------------------------------


def run(learners: int, hot_commands: int, bulk_learners: int = 0) -> dict[str, Any]:
    """Every PostgreSQL measurement once; the harness repeats it per round. `bulk_learners`: the
    learners of the bulk measurements (0: none)."""
    reason = problem()
    if reason is not None:
        return {"skipped": reason}
    results: dict[str, Any] = {}
    with _created(("bench", "bench_keys", "bench_bulk")) as (log_url, keys_url, bulk_url):
        if bulk_learners:
            results |= _bulk(log_url, keys_url, bulk_url, bulk_learners)
        reset_databases(log_url, keys_url)
        mutations, seconds = _floor(log_url, keys_url, learners)
        results["floor"] = mutations / seconds
        reset_databases(log_url, keys_url)
        mutations, seconds = _checked_floor(log_url, learners)
        results["checked_floor"] = mutations / seconds
        for k in KS:
            reset_databases(log_url, keys_url)
            seconds = _run_together(_write_learners, [(log_url, keys_url, f"k{k}w{w}", learners) for w in range(k)])
            mutations = k * sum(len(learner_workload(seed)) for seed in range(learners))
            results[f"writers_{k}"] = mutations / seconds
        results["subscription"] = _subscription_rate(log_url, keys_url)
        delivered, seconds = results.pop("subscription")
        results["subscription_rate"] = delivered / seconds
        for writers in (1, HOT_WRITERS):
            reset_databases(log_url, keys_url)
            _create_hot(log_url, keys_url)
            seconds = _run_together(
                _hot_writer, [(log_url, keys_url, w, hot_commands // writers) for w in range(writers)]
            )
            results[f"hot_{writers}"] = (hot_commands // writers) * writers / seconds
        reset_databases(log_url, keys_url)
        lags = _lag_under_load(log_url, keys_url, max(1, learners // 2))
        results["lag_median"] = statistics.median(lags) if lags else 0
        results["lag_max"] = max(lags) if lags else 0
    return results
