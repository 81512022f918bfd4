"""Human tables: within the terminal's width, a long value cut with `…`, no line padded with
spaces, and a diff that says in words what changed."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from dala_events.app import Dala
from dala_events.attribution import occurring_at, recorded_as
from dala_events.cli import main
from dala_events.settings import Settings
from tests.test_cli_values import invoke

LONG_DETAILS = {"accuracy": 0.64, "correct": 6, "items": 10, "notes": "worked steadily " * 8}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ann: a metric with long details, a learning objective whose score went 60 -> 75, an
    attempt; each change made on its own day of November 2026."""
    folder = tmp_path_factory.mktemp("tables")
    with Dala.open(Settings(database_url=f"sqlite:///{folder}/dala.db")) as dala, recorded_as("teacher:42"):
        with freeze_time("2026-11-02T09:00:00Z"):
            profile = dala.profile("ann")
            profile.add_interest("Robotics")
            profile.add_cognitive_metric("number_sense_sprint", LONG_DETAILS)
        with freeze_time("2026-11-03T09:00:00Z"):
            profile.start_lo("MATH_LO_001")
            profile.update_lo_progress("MATH_LO_001", "in_progress", score=60.0)
        with freeze_time("2026-11-20T09:00:00Z"):
            profile.update_lo_progress("MATH_LO_001", "in_progress", score=75.0)
            profile.record_activity_attempt("MATH_LO_001", "math_lo_001_act_1", "quiz", score=75.0, completed=True)
        with freeze_time("2026-11-25T09:00:00Z"), occurring_at(datetime(2026, 11, 4, 9, 0, tzinfo=UTC)):
            profile.add_interest("Chess")  # typed in on the 25th, happened on the 4th
    return folder


def _lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


@pytest.mark.parametrize(
    "command",
    [
        ["profile", "ann"],
        ["history", "ann"],
        ["diff", "ann", "0", "6"],
        ["disclosures", "ann"],
        ["learners"],
        ["verify"],
    ],
)
@pytest.mark.parametrize("width", [80, 200])
def test_no_line_is_wider_than_the_terminal_or_padded_with_spaces(
    folder: Path, command: list[str], width: int
) -> None:
    shown = invoke(folder, "--actor", "teacher:42", *command, env={"COLUMNS": str(width)})
    assert shown.exit_code == 0, shown.output
    lines = _lines(shown.stdout)
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
    assert [line for line in lines if line != line.rstrip()] == [], command
    if width == 200 and command[0] != "profile":  # a table is as wide as its content, not the terminal
        assert max(map(len, lines)) < 200, command


def test_a_value_cut_at_80_columns_ends_with_an_ellipsis(folder: Path) -> None:
    shown = _lines(invoke(folder, "profile", "ann", env={"COLUMNS": "80"}).stdout)
    (metric,) = [line for line in shown if line.startswith("number_sense_sprint")]
    assert len(metric) <= 80 and '"accuracy": 0.64' in metric
    assert metric.endswith("2026-11-02 09:00")  # the time, never cut, is there
    assert metric.split("│")[1].strip().endswith("…")  # the details, cut, say so
    wide = _lines(invoke(folder, "profile", "ann", env={"COLUMNS": "400"}).stdout)
    (whole,) = [line for line in wide if line.startswith("number_sense_sprint")]
    assert "…" not in whole and "worked steadily" in whole


def test_diff_says_what_changed_in_words_at_80_columns(folder: Path) -> None:
    shown = invoke(folder, "diff", "ann", "5", "7", env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    lines = _lines(shown.stdout)
    assert all(len(line) <= 80 for line in lines)
    heading = lines[1].split()
    assert heading[:3] == ["change", "┃", "section"] and "row" in heading, heading  # not folded ("chang/e")
    text = "\n".join(lines)
    assert re.search(r"changed.*learning objectives.*MATH_LO_001", text)
    assert "score 60 → 75" in text
    assert re.search(r"added.*activity attempts.*math_lo_001_act_1", text)
    assert "type quiz" in text and "score 75" in text
    assert "{" not in text  # what changed in words, not raw JSON


def test_diff_by_when_changes_happened(folder: Path) -> None:
    """--happened-since/--happened-until: what changed through the changes that happened
    between them, a backdated one included, as `history` bounds them."""
    bounds = ["--happened-since", "2026-11-04", "--happened-until", "2026-11-19"]
    listed = json.loads(invoke(folder, "history", "ann", *bounds, "--json").stdout)
    assert [event["event_type"] for event in listed] == ["InterestAdded"]
    shown = invoke(folder, "diff", "ann", *bounds, "--json")
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.stdout)
    assert [(row["change"], row["section"], row["key"]) for row in document["rows"]] == [
        ("added", "interests", "Chess")
    ]
    assert document["happened_since"] == "2026-11-04T00:00:00Z"
    assert document["happened_until"] == "2026-11-19T00:00:00Z"
    human = invoke(folder, "diff", "ann", *bounds, env={"COLUMNS": "80"}).stdout
    assert "happened" in _lines(human)[0] and "Chess" in human
    since_only = json.loads(invoke(folder, "diff", "ann", "--happened-since", "2026-11-20", "--json").stdout)
    assert {(row["change"], row["section"]) for row in since_only["rows"]} == {
        ("changed", "lo_progress"),
        ("added", "activity_attempts"),
    }


@pytest.mark.parametrize(
    "args",
    [
        ["ann", "1", "--happened-since", "2026-11-04"],
        ["ann", "1", "2", "--happened-until", "2026-11-04"],
        ["ann", "1"],
        ["ann"],
        ["ann", "--happened-since", "2026-11-20", "--happened-until", "2026-11-04"],
    ],
)
def test_diff_takes_two_points_or_happened_bounds(folder: Path, args: list[str]) -> None:
    refused = invoke(folder, "diff", *args)
    assert refused.exit_code == 2, refused.output
    assert len(refused.stderr.strip().splitlines()) == 1


def test_verify_wraps_its_lines_and_says_each_thing_once(database_url: str) -> None:
    with Dala.open(Settings.from_env().with_database(database_url)) as dala, recorded_as("teacher:42"):
        dala.profile("ann").add_interest("Robotics")
    shown = CliRunner().invoke(main, ["--database-url", database_url, "verify"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    lines = _lines(shown.stdout)
    # Wrapped at spaces; only a word longer than a line (a temporary folder's path) is left whole.
    assert all(len(line) <= 80 or " " not in line.strip() for line in lines), lines
    (check,) = [line for line in lines if line.startswith("database check")]
    if "not run" in shown.stdout:  # PostgreSQL without amcheck: that no check ran, said once
        assert shown.stdout.count("not run") == 1 and shown.stdout.count("amcheck") == 1
        assert len(re.findall(r"\bcheck\b", shown.stdout)) == 1, shown.stdout
    else:
        assert check.endswith("ok") or ": ok" in check, check
