"""`dala`: the command line of the store (init, demo, interface, profile, history, diff, rebuild, migrate, bench).

Human output is tables; `--json` prints one JSON document. Errors go to stderr with exit
status 1 (2 for a wrong command line) and no traceback.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from dala_events.errors import DalaError

F = TypeVar("F", bound=Callable[..., Any])

# markup off: learner-supplied text must print as it is, never as rich markup.
out = Console(soft_wrap=True, markup=False, highlight=False)


def _reports_errors(command: F) -> F:
    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise  # a wrong command line: click prints it with usage, exit status 2
        except DalaError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
        except Exception as error:  # a database or OS failure: say what, not where
            click.echo(f"error: {type(error).__name__}: {error}", err=True)
            sys.exit(1)

    return run  # type: ignore[return-value]


_out_option = click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the page (default: database/interface/<learner>.html).",
)


def _init(database_url: str | None) -> Any:
    from dala_events.database_setup import init_db

    return init_db(database_url)


@click.group()
@click.option(
    "--database-url",
    envvar="DALA_DATABASE_URL",
    default=None,
    help="SQLAlchemy URL of the database (default: sqlite:///database/edpsych_connect_dala.db).",
)
@click.version_option(package_name="dala-events")
@click.pass_context
def main(context: click.Context, database_url: str | None) -> None:
    """DALA events: the event-sourced learner-profile store."""
    context.obj = {"database_url": database_url}


@main.command()
@click.pass_obj
@_reports_errors
def init(obj: dict[str, Any]) -> None:
    """Create the event log and the eight read-model tables where missing."""
    engine = _init(obj["database_url"])
    click.echo(f"database ready: {engine.url.render_as_string(hide_password=True)}")


@main.command()
@click.option("--learner", default="student123", show_default=True, help="Learner id of the demo learner.")
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the simulated assessment.")
@_out_option
@click.pass_obj
@_reports_errors
def demo(obj: dict[str, Any], learner: str, seed: int, out: Path | None) -> None:
    """The main job: assess a learner, plan their pathway, make a start, and write their page.

    A learner who already has a profile is kept as is and their page is rendered again.
    """
    from dala_events.demo import run_demo

    _init(obj["database_url"])
    result = run_demo(learner, seed, out)
    if result.assessment is not None:
        found = result.assessment
        click.echo(
            f"assessed {learner} (seed {seed}): interests {', '.join(found.interests)}; "
            f"struggle areas {', '.join(found.struggles)}"
        )
        click.echo(f"{result.events_recorded} events recorded")
    else:
        click.echo(f"{learner} already has a profile; nothing recorded, page rendered again")
    for number, step in enumerate(result.pathway, start=1):
        click.echo(f"  {number}. {step.lo_id} {step.title}: {step.reason}")
    click.echo(f"page written: {result.page}")


@main.command()
@click.argument("learner")
@_out_option
@click.pass_obj
@_reports_errors
def interface(obj: dict[str, Any], learner: str, out: Path | None) -> None:
    """Render a stored learner's page (self-contained HTML) from the read models."""
    from dala_events.generate_interface import generate_interface

    _init(obj["database_url"])
    click.echo(f"page written: {generate_interface(learner, out)}")


@main.command()
@click.argument("learner")
@click.option("--as-of", "as_of", default=None, help="Show it as recorded at this time (ISO 8601; naive = UTC).")
@click.option("--version", "version", default=None, type=click.IntRange(0), help="Show it at this stream version.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
@_reports_errors
def profile(obj: dict[str, Any], learner: str, as_of: str | None, version: int | None, as_json: bool) -> None:
    """Show a learner's profile as the read models hold it, or as they held it then."""
    from dala_events.errors import LearnerNotFound
    from dala_events.persistence_manager import get_full_learner_profile_data

    _init(obj["database_url"])
    if as_of is not None and version is not None:
        raise click.UsageError("give --as-of or --version, not both")
    if as_of is None and version is None:
        data = get_full_learner_profile_data(learner)
    else:
        from dala_events.audit import profile_as_of

        at = None if as_of is None else _parse_time(as_of, "--as-of")
        data = profile_as_of(learner, at=at, version=version)
    if data is None:
        if as_of is None and version is None:
            raise LearnerNotFound(learner)
        when = f"at {as_of}" if as_of is not None else f"at version {version}"
        raise LearnerNotFound(learner, f"learner {learner!r} had no profile {when}")
    if as_json:
        click.echo(data.model_dump_json(indent=2))
    else:
        _print_profile(data)


@main.command()
@click.argument("learner")
@click.option("--since", default=None, help="Only events recorded at or after this time (ISO 8601; naive = UTC).")
@click.option("--until", default=None, help="Only events recorded at or before this time (ISO 8601; naive = UTC).")
@click.option("--type", "event_types", multiple=True, help="Only events of this type (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of events.")
@click.pass_obj
@_reports_errors
def history(
    obj: dict[str, Any],
    learner: str,
    since: str | None,
    until: str | None,
    event_types: tuple[str, ...],
    as_json: bool,
) -> None:
    """List a learner's events: who changed what, when, and why."""
    from dala_events import audit

    _init(obj["database_url"])
    events = audit.history(
        learner,
        since=None if since is None else _parse_time(since, "--since"),
        until=None if until is None else _parse_time(until, "--until"),
        event_types=event_types or None,
    )
    if as_json:
        click.echo(json.dumps([_event_json(event) for event in events], indent=2, ensure_ascii=False))
        return
    table = Table(title=f"History of {learner}: {len(events)} events", title_justify="left", show_edge=False)
    table.add_column("version", no_wrap=True)
    table.add_column("recorded (UTC)", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("actor", overflow="fold")
    table.add_column("reason", overflow="fold")
    table.add_column("details", overflow="fold", ratio=1)
    for event in events:
        table.add_row(
            str(event.version),
            f"{event.recorded_at:%Y-%m-%d %H:%M:%S}",
            event.event_type,
            str(event.metadata.get("actor", "")),
            str(event.metadata.get("reason") or ""),
            _cell(event.event.model_dump(mode="json", exclude={"event_type"})),
        )
    out.print(table)


@main.command()
@click.argument("learner")
@click.argument("start")
@click.argument("end")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
@_reports_errors
def diff(obj: dict[str, Any], learner: str, start: str, end: str, as_json: bool) -> None:
    """Show what changed in a learner's profile between START and END.

    Each is a time (ISO 8601; naive = UTC) or a stream version (a whole number, or vN).
    """
    from dala_events import audit

    _init(obj["database_url"])
    result = audit.diff(learner, _parse_point(start, "START"), _parse_point(end, "END"))
    if as_json:
        click.echo(result.model_dump_json(indent=2))
        return
    out.print(f"{learner}: version {result.start_version} -> {result.end_version}, {len(result.rows)} rows differ")
    if result.existed_before != result.exists_after:
        out.print("profile " + ("created" if result.exists_after else "deleted") + " in between")
    table = Table(show_edge=False)
    for column in ("change", "section", "row", "before", "after"):
        table.add_column(column)
    for row in result.rows:
        before, after = row.before, row.after
        if row.change == "changed" and before is not None and after is not None:
            before = {name: before[name] for name in row.fields}
            after = {name: after[name] for name in row.fields}
        table.add_row(row.change, row.section, row.key, _cell(before), _cell(after))
    out.print(table)


@main.command()
@click.argument("learners", nargs=-1)
@click.option(
    "--checkpoint",
    "checkpoint_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="When the log is intact, write every stream's head (last version, hash, events) to FILE, signed.",
)
@click.option(
    "--against",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also compare with a checkpoint FILE: finds events cut from a stream's end and removed streams.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
@_reports_errors
def verify(
    obj: dict[str, Any], learners: tuple[str, ...], checkpoint_out: Path | None, against: Path | None, as_json: bool
) -> None:
    """Check the event log's hash chains (all, or LEARNER's) and the database's own integrity.

    Reports each changed, inserted, deleted, reordered or moved event by learner and version.
    Exit status 0 when intact, 1 otherwise. Reads only; uses DALA_LOG_KEY or DALA_LOG_KEY_FILE.
    """
    from dala_events.database_setup import configured_database_url, configured_log_key, create_dala_engine
    from dala_events.integrity import load_checkpoint, verify_log, write_checkpoint

    log_key = configured_log_key()
    checkpoint = None if against is None else load_checkpoint(against, log_key)
    engine = create_dala_engine(obj["database_url"] or configured_database_url())
    try:
        report = verify_log(engine, log_key, learner_ids=learners or None, checkpoint=checkpoint)
    finally:
        engine.dispose()
    written = None
    if checkpoint_out is not None and report.intact:
        write_checkpoint(checkpoint_out, report.heads, log_key)
        written = str(checkpoint_out)
    if as_json:
        click.echo(json.dumps({**report.as_dict(), "checkpoint_written": written}, indent=2, ensure_ascii=False))
        sys.exit(0 if report.intact else 1)
    mode = "HMAC-SHA256 with the log key" if report.key_id else "plain SHA-256 (no log key: a checksum, not a seal)"
    key = f" (key id {report.key_id})" if report.key_id else ""
    streams = f"{report.streams:,} stream{'' if report.streams == 1 else 's'}"
    out.print(f"checked {report.events:,} events in {streams}: {mode}{key}")
    if report.engine_check is not None:
        check = report.engine_check
        status = {True: "ok", False: "FAILED", None: "not run"}[check.ok]
        detail = "" if check.detail == "ok" else f": {check.detail}"
        out.print(f"database check {check.name}: {status}{detail}")
    if checkpoint is not None:
        heads = len(checkpoint.heads)
        out.print(f"against checkpoint {checkpoint.path} of {checkpoint.created_at} ({heads:,} streams)")
    if report.problems:
        table = Table(show_edge=False)
        for column in ("problem", "learner", "version", "position", "detail"):
            table.add_column(column, overflow="fold")
        for problem in report.problems:
            position = "" if problem.position is None else str(problem.position)
            table.add_row(problem.kind, problem.learner_id, problem.versions, position, problem.detail)
        out.print(table)
    if report.unlisted:
        more = ", ".join(f"{number:,} {kind}" for kind, number in report.unlisted.items())
        out.print(f"... and {more} not listed")
    if report.hint:
        out.print(f"note: {report.hint}")
    if report.intact:
        out.print("intact")
        if written is not None:
            out.print(f"checkpoint written: {written}")
    else:
        counts = ", ".join(f"{number:,} {kind}" for kind, number in report.counts().items())
        out.print(f"NOT INTACT: {counts or 'the database check failed'}")
        if checkpoint_out is not None:
            out.print("no checkpoint written: the log does not verify")
    sys.exit(0 if report.intact else 1)


@main.command()
@click.option(
    "--projection",
    "projections",
    multiple=True,
    help="Rebuild only this read-model table (repeatable; learner_profiles brings all). Default: all.",
)
@click.pass_obj
@_reports_errors
def rebuild(obj: dict[str, Any], projections: tuple[str, ...]) -> None:
    """Rebuild read models from the event log into shadow tables and swap them in.

    Safe while the application writes; an interrupted rebuild leaves the live tables as they
    were and can simply be run again.
    """
    from dala_events.database_setup import get_store, init_db
    from projections.rebuild import rebuild as run_rebuild

    engine = init_db(obj["database_url"], check_projections=False)
    log_key = get_store().log_key  # the key init_db read and checked
    with _progress_bar("rebuilding") as progress, _collector_paused():
        result = run_rebuild(engine, projections=projections or None, progress=progress, log_key=log_key)
    rate = result.events / result.seconds if result.seconds else 0.0
    click.echo(
        f"rebuilt {', '.join(result.projections)} from {result.events} events "
        f"(log position {result.position}) in {result.seconds:.2f} s, {rate:,.0f} events/s"
    )


@main.command()
@click.option("--to", "revision", default="head", show_default=True, help="The revision to end at.")
@click.option("--downgrade", is_flag=True, help="Go down to --to (dropping what later revisions added).")
@click.pass_obj
@_reports_errors
def migrate(obj: dict[str, Any], revision: str, downgrade: bool) -> None:
    """Migrate the event log and bookkeeping tables (Alembic); read models are rebuilt instead."""
    from dala_events.database_setup import configured_database_url, create_dala_engine
    from dala_events.database_setup import migrate as run_migrate

    engine = create_dala_engine(obj["database_url"] or configured_database_url())
    try:
        reached = run_migrate(engine, revision, downgrade=downgrade)
    finally:
        engine.dispose()
    click.echo(f"event log schema at revision {reached or 'base (no tables)'}")


@main.command()
@click.option("--learners", default=200, show_default=True, type=click.IntRange(1), help="Learners in the workload.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1), help="Alternating rounds.")
@click.option("--no-peer", is_flag=True, help="Skip the eventsourcing library.")
@click.option(
    "--rebuild-events",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(0),
    help="Size of the log for the rebuild-at-scale and audit measurements (0: skip them).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_reports_errors
def bench(learners: int, rounds: int, no_peer: bool, rebuild_events: int, as_json: bool) -> None:
    """Measure write, rebuild and audit speed against plain-sqlite3 floors and a peer library."""
    import tempfile

    from dala_events.bench_scale import run_scale_benchmark
    from dala_events.benchmark import run_benchmark

    def progress(message: str) -> None:
        click.echo(message, err=True)

    result = run_benchmark(learners, rounds, include_peer=not no_peer, progress=progress)
    summary = result.as_dict()
    if rebuild_events:
        with tempfile.TemporaryDirectory(prefix="dala-bench-scale-") as folder:
            summary["scale"] = run_scale_benchmark(rebuild_events, Path(folder), progress=progress).as_dict()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    medians, ratios = summary["median_per_second"], summary["ratios"]
    table = Table(title=f"dala bench: {learners} learners x 75 mutations, median of {rounds} rounds (SQLite)")
    for column in ("measurement", "per second", "x floor", "x peer"):
        table.add_column(column, justify="right" if column != "measurement" else "left")
    labels = {
        "a": "(a) batched: one save() per learner",
        "b": "(b) per mutation: one transaction each",
        "c": "(c) rebuild of (a), events",
        "floor_a": "floor (a): plain sqlite3",
        "floor_b": "floor (b): plain sqlite3",
        "peer_a": "peer (a): eventsourcing",
        "peer_b": "peer (b): eventsourcing",
    }
    for key, label in labels.items():
        if medians.get(key) is None:
            continue
        to_floor = ratios.get(f"{key}_to_floor")
        to_peer = ratios.get(f"{key}_to_peer")
        table.add_row(
            label,
            f"{medians[key]:,.0f}",
            f"{to_floor:.2f}" if to_floor else "",
            f"{to_peer:.2f}" if to_peer else "",
        )
    out.print(table)
    out.print(f"peak memory (max RSS): {summary['peak_rss_mb']} MB")
    scale = summary.get("scale")
    if scale:
        out.print(
            f"rebuild of {scale['events']:,} events into all eight tables: "
            f"{scale['rebuild_events_per_second']:,} events/s, peak RSS {scale['rebuild_peak_rss_mb']} MB; "
            f"floor (plain sqlite3) {scale['rebuild_floor_events_per_second']:,} events/s; "
            f"ratio to floor {scale['rebuild_to_floor']:.2f}"
        )
        out.print(
            f"one learner with {scale['audit_events']:,} events: history {scale['history_median_ms']} ms, "
            f"profile_as_of {scale['profile_as_of_median_ms']} ms (medians)"
        )
    for note in summary["notes"]:
        out.print(note)


def _print_profile(data: Any) -> None:
    out.print(
        f"Learner {data.learner_id}  created {data.created_at:%Y-%m-%d %H:%M} UTC, "
        f"last updated {data.last_updated_at:%Y-%m-%d %H:%M} UTC"
    )
    sections: list[tuple[str, list[Any], list[str]]] = [
        ("Preferences", data.preferences, ["category", "value", "timestamp"]),
        ("Interests", data.interests, ["interest_name", "timestamp"]),
        ("Struggle areas", data.struggles, ["struggle_description", "timestamp"]),
        ("Cognitive metrics", data.cognitive_metrics, ["task_name", "metric_details", "timestamp"]),
        ("Learning objectives", data.lo_progress, ["lo_id", "status", "score", "started_at", "completed_at"]),
        ("Badges", data.badges, ["badge_id", "badge_name", "earned_date", "details"]),
        (
            "Activity attempts",
            data.activity_attempts[-10:],
            ["lo_id", "activity_id", "activity_type", "score", "completed", "attempt_timestamp"],
        ),
    ]
    for title, rows, columns in sections:
        suffix = f" (last 10 of {len(data.activity_attempts)})" if title == "Activity attempts" else ""
        table = Table(title=f"{title}{suffix}", title_justify="left", show_edge=False)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(_cell(getattr(row, column)) for column in columns))
        if not rows:
            table.add_row(*(["-"] * len(columns)))
        out.print(table)


def _parse_time(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}", param_hint=option) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _parse_point(value: str, name: str) -> datetime | int:
    text = value.strip()
    digits = text[1:] if text[:1] in ("v", "V") else text
    if digits.isdigit():
        return int(digits)
    return _parse_time(text, name)


def _event_json(event: Any) -> dict[str, Any]:
    return {
        "position": event.position,
        "event_id": event.event_id,
        "learner_id": event.learner_id,
        "version": event.version,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "payload": event.event.model_dump(mode="json", exclude={"event_type"}),
        "metadata": dict(event.metadata),
    }


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while `dala rebuild` replays the log.

    The command owns its process, so it may: a rebuild creates millions of short-lived
    objects that form no cycles, and the collector re-walking the survivors was over a third
    of a rebuild's time. The library itself never touches the collector.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _progress_bar(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar with rate and ETA on a terminal (stderr); nothing otherwise."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=None, rate="")

        def update(done: int, total: int) -> None:
            speed = bar.tasks[0].speed
            bar.update(task, completed=done, total=max(total, done), rate=f"{speed:,.0f} events/s" if speed else "")

        yield update


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if hasattr(value, "strftime") and hasattr(value, "hour"):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


if __name__ == "__main__":  # pragma: no cover
    main()
