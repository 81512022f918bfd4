"""`dala`: the command line of the store (init, demo, profile, rebuild, bench).

Human output is tables; `--json` prints one JSON document. Errors go to stderr with exit
status 1 (2 for a wrong command line) and no traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
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
        except DalaError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
        except Exception as error:  # a database or OS failure: say what, not where
            click.echo(f"error: {type(error).__name__}: {error}", err=True)
            sys.exit(1)

    return run  # type: ignore[return-value]


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
@click.option("--learner", default="student123", show_default=True, help="Learner id of the sample learner.")
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the sample data.")
@click.pass_obj
@_reports_errors
def demo(obj: dict[str, Any], learner: str, seed: int) -> None:
    """Create a sample learner with a realistic spread of data and print the profile."""
    from dala_events.attribution import recorded_as
    from dala_events.hlp_module import LearnerProfile
    from dala_events.persistence_manager import get_full_learner_profile_data
    from dala_events.workload import apply_workload, learner_workload

    _init(obj["database_url"])
    profile = LearnerProfile(learner, persistence_enabled=False)
    with recorded_as("system:demo", reason="sample data"):
        changed = apply_workload(profile, learner_workload(seed))
    recorded = len(profile.pending_events)
    profile.save()
    data = get_full_learner_profile_data(learner)
    assert data is not None
    _print_profile(data)
    click.echo(f"\n{recorded} events recorded ({changed} changes); stream version {profile.version}.")


@main.command()
@click.argument("learner")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
@_reports_errors
def profile(obj: dict[str, Any], learner: str, as_json: bool) -> None:
    """Show a learner's profile as the read models hold it."""
    from dala_events.errors import LearnerNotFound
    from dala_events.persistence_manager import get_full_learner_profile_data

    _init(obj["database_url"])
    data = get_full_learner_profile_data(learner)
    if data is None:
        raise LearnerNotFound(learner)
    if as_json:
        click.echo(data.model_dump_json(indent=2))
    else:
        _print_profile(data)


@main.command()
@click.pass_obj
@_reports_errors
def rebuild(obj: dict[str, Any]) -> None:
    """Rebuild the eight read models from the event log."""
    from projections.rebuild import rebuild_projections

    engine = _init(obj["database_url"])
    replayed = rebuild_projections(engine)
    click.echo(f"rebuilt the read models from {replayed} events")


@main.command()
@click.option("--learners", default=200, show_default=True, type=click.IntRange(1), help="Learners in the workload.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1), help="Alternating rounds.")
@click.option("--no-peer", is_flag=True, help="Skip the eventsourcing library.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_reports_errors
def bench(learners: int, rounds: int, no_peer: bool, as_json: bool) -> None:
    """Measure write and rebuild speed against the plain-sqlite3 floor and a peer library."""
    from dala_events.benchmark import run_benchmark

    result = run_benchmark(
        learners,
        rounds,
        include_peer=not no_peer,
        progress=lambda message: click.echo(message, err=True),
    )
    summary = result.as_dict()
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
