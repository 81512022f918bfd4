"""What the command line accepts, and how it says no: every reader takes --json, an unknown
learner points to the list, and a value on the command line that cannot be used is a wrong
command line (exit status 2), one line naming the option."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dala_events.cli import main
from tests.test_cli import one_line_error
from tests.test_cli_and_readme import run_dala

CLEAN_ENVIRONMENT: dict[str, str | None] = {
    name: None
    for name in (
        "DALA_DATABASE_URL",
        "DALA_ACTOR",
        "DALA_REQUIRE_ACTOR",
        "DALA_KEY_STORE",
        "DALA_MASTER_KEY",
        "DALA_MASTER_KEY_FILE",
        "DALA_PAGE_DIR",
        "DALA_AUTO_REBUILD",
    )
}


def invoke(folder: Path, *args: str, env: Mapping[str, str | None] | None = None) -> Result:
    """`dala --database-url <folder's SQLite file> ARGS...` in this process, in a clean environment."""
    url = f"sqlite:///{folder}/dala.db"
    return CliRunner().invoke(main, ["--database-url", url, *args], env={**CLEAN_ENVIRONMENT, **(env or {})})


def error_line(result: Result, *, status: int = 1) -> str:
    """The one line a failed command writes on stderr (no traceback, no usage block)."""
    assert result.exit_code == status, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("values")
    made = invoke(folder, "demo")
    assert made.exit_code == 0, made.output
    return folder


def test_export_takes_json_like_every_other_reader(demo_folder: Path) -> None:
    plain = invoke(demo_folder, "export", "student123")
    with_flag = invoke(demo_folder, "export", "student123", "--json")
    assert with_flag.exit_code == 0, with_flag.output
    exported, again = json.loads(plain.stdout), json.loads(with_flag.stdout)
    assert again["learner_id"] == "student123" and again["profile"] == exported["profile"]
    assert "--json" in invoke(demo_folder, "export", "--help").stdout


def test_an_unknown_learner_is_an_error_that_points_to_the_list(demo_folder: Path) -> None:
    for command in (
        ["profile", "nobody"],
        ["history", "nobody"],
        ["diff", "nobody", "1", "2"],
        ["interface", "nobody"],
        ["export", "nobody"],
        ["disclosures", "nobody"],
        ["disclosures", "nobody", "--json"],
    ):
        message = error_line(invoke(demo_folder, *command))
        assert "'nobody'" in message and message.endswith("(see `dala learners`)"), (command, message)
    assert "has no profile" in error_line(invoke(demo_folder, "profile", "nobody"))


def test_a_known_learner_without_disclosures_lists_none(demo_folder: Path) -> None:
    from dala_events.app import Dala
    from dala_events.attribution import recorded_as
    from dala_events.settings import Settings

    with Dala.open(Settings(database_url=f"sqlite:///{demo_folder}/dala.db")) as dala, recorded_as("teacher:1"):
        dala.profile("quiet").add_interest("Chess")
    listed = invoke(demo_folder, "disclosures", "quiet")
    assert listed.exit_code == 0 and "no disclosure of quiet's data is recorded" in listed.stdout
    assert json.loads(invoke(demo_folder, "disclosures", "quiet", "--json").stdout) == []


@pytest.mark.parametrize(
    ("command", "option", "said"),
    [
        (["profile", "student123", "--version", "999"], "--version", "(the last change)"),
        (["diff", "student123", "1", "999"], "END", "(the last change)"),
        (["diff", "student123", "999", "1"], "START", "(the last change)"),
        (["rebuild", "--projection", "bogus"], "--projection", "unknown projection 'bogus'"),
        (["migrate", "--to", "bogus"], "--to", "unknown revision 'bogus'"),
        (["history", "student123", "--type", "NoSuchEvent"], "--type", "InterestAdded"),
        (["history", "student123", "--since", "2026-12-01", "--until", "2026-01-01"], "--since", "later than --until"),
    ],
)
def test_a_value_the_command_line_gives_that_cannot_be_used_is_status_2(
    demo_folder: Path, command: list[str], option: str, said: str
) -> None:
    message = error_line(invoke(demo_folder, *command), status=2)
    assert message.startswith(f"error: {option}: ") and said in message, message


def test_the_installed_command_says_2_for_a_wrong_command_line(demo_folder: Path) -> None:
    """The README's promise, through the console script."""
    url = f"sqlite:///{demo_folder}/dala.db"
    assert "--version" in one_line_error(
        run_dala("--database-url", url, "profile", "student123", "--version", "999", cwd=demo_folder), status=2
    )
    migrated = run_dala("--database-url", url, "migrate", "--to", "bogus", cwd=demo_folder)
    assert "--to" in one_line_error(migrated, status=2)


def test_history_help_lists_the_event_types(demo_folder: Path) -> None:
    from dala_events.events import EVENT_TYPES

    shown = invoke(demo_folder, "history", "--help", env={"COLUMNS": "80"})
    assert shown.exit_code == 0
    flat = " ".join(shown.stdout.split())
    assert all(name in flat for name in EVENT_TYPES), flat
