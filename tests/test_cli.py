"""The command line as a new user meets it: one test per thing that used to get in the way."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dala_events.database_setup import LOG_SCHEMA_HEAD
from tests.test_cli_and_readme import DALA, run_dala

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    result = run_dala("demo", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def one_line_error(result: subprocess.CompletedProcess[str], *, status: int = 1) -> str:
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "sqlalche.me" not in result.stderr
    return lines[0]


def test_unknown_learners_are_errors_that_point_to_the_list(demo_dir: Path) -> None:
    assert "no recorded changes" in one_line_error(run_dala("history", "nobody", cwd=demo_dir))
    assert "no recorded changes" in one_line_error(run_dala("diff", "nobody", "1", "2", cwd=demo_dir))
    assert "has no profile" in one_line_error(run_dala("profile", "nobody", cwd=demo_dir))


def test_impossible_points_name_what_exists(demo_dir: Path) -> None:
    last = len(json.loads(run_dala("history", "student123", "--json", cwd=demo_dir).stdout))
    # A value the command line gives that cannot be used is a wrong command line: status 2.
    message = one_line_error(run_dala("profile", "student123", "--version", "999", cwd=demo_dir), status=2)
    assert f"0 to {last}" in message
    assert f"0 to {last}" in one_line_error(run_dala("diff", "student123", "1", "999", cwd=demo_dir), status=2)
    crossed = run_dala("history", "student123", "--since", "2026-12-01", "--until", "2026-01-01", cwd=demo_dir)
    assert "later than --until" in one_line_error(crossed, status=2)
    far = run_dala("profile", "student123", "--as-of", "0001-01-01T00:00+14:00", cwd=demo_dir)
    assert "outside the years 1 to 9999" in one_line_error(far, status=2)


def test_historical_views_say_which_point_they_show(demo_dir: Path) -> None:
    human = run_dala("profile", "student123", "--version", "3", cwd=demo_dir)
    assert human.returncode == 0, human.stderr
    assert re.match(
        r"Learner student123 as of change 3 of \d+ \(recorded \d{4}-\d\d-\d\d \d\d:\d\d UTC\)", human.stdout
    )
    document = json.loads(run_dala("profile", "student123", "--version", "3", "--json", cwd=demo_dir).stdout)
    assert document["as_of"]["version"] == 3 and RFC3339_UTC.match(document["as_of"]["recorded_at"])
    assert "as_of" not in json.loads(run_dala("profile", "student123", "--json", cwd=demo_dir).stdout)


def test_history_reads_at_80_columns_with_limit_and_reverse(demo_dir: Path) -> None:
    everything = json.loads(run_dala("history", "student123", "--json", cwd=demo_dir).stdout)
    table = run_dala("history", "student123", cwd=demo_dir, env={"COLUMNS": "80"})
    lines = table.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert len(lines) <= 3 + 3 * len(everything)  # title, heading, rule, at most three lines a change
    assert f"{len(everything)} changes" in lines[0]
    last_two = run_dala("history", "student123", "-n", "2", cwd=demo_dir, env={"COLUMNS": "80"}).stdout
    assert "showing 2" in last_two
    numbers = [int(m) for m in re.findall(r"^\s*(\d+) │", last_two, flags=re.M)]
    assert numbers == [len(everything) - 1, len(everything)]
    newest_first = run_dala("history", "student123", "--reverse", "--limit", "2", cwd=demo_dir).stdout
    assert [int(m) for m in re.findall(r"^\s*(\d+) │", newest_first, flags=re.M)] == [
        len(everything),
        len(everything) - 1,
    ]
    one = run_dala("history", "student123", "--type", "LearnerProfileCreated", cwd=demo_dir).stdout
    assert "1 change\n" in one or "1 change " in one


def test_profile_tables_never_cut_identifiers(demo_dir: Path) -> None:
    shown = run_dala("profile", "student123", cwd=demo_dir, env={"COLUMNS": "80"}).stdout
    assert all(len(line) <= 80 for line in shown.splitlines())
    for activity in json.loads(run_dala("profile", "student123", "--json", cwd=demo_dir).stdout)["activity_attempts"]:
        assert activity["activity_id"] in shown
    assert "last 10 of 6" not in shown


def test_learners_lists_who_exists(demo_dir: Path) -> None:
    listed = json.loads(run_dala("learners", "--json", cwd=demo_dir).stdout)
    assert [learner["learner_id"] for learner in listed] == ["student123"]
    (learner,) = listed
    assert learner["changes"] > 10 and learner["has_profile"] is True
    assert RFC3339_UTC.match(learner["created_at"]) and RFC3339_UTC.match(learner["last_updated_at"])
    human = run_dala("learners", cwd=demo_dir).stdout
    assert "student123" in human and "1 learner" in human
    assert json.loads(run_dala("learners", "--json", "--after", "student123", cwd=demo_dir).stdout) == []


def test_every_json_output_uses_one_time_format(demo_dir: Path) -> None:
    events = json.loads(run_dala("history", "student123", "--json", cwd=demo_dir).stdout)
    profile = json.loads(run_dala("profile", "student123", "--json", cwd=demo_dir).stdout)
    changes = json.loads(run_dala("diff", "student123", "0", "5", "--json", cwd=demo_dir).stdout)
    times = [event["occurred_at"] for event in events] + [event["recorded_at"] for event in events]
    times += [profile["created_at"], profile["last_updated_at"]]
    times += [row["timestamp"] for row in profile["interests"]]
    times += [row["after"]["timestamp"] for row in changes["rows"] if row["after"] and "timestamp" in row["after"]]
    assert times and all(RFC3339_UTC.match(moment) for moment in times), times


def test_unknown_types_and_revisions_list_the_valid_ones(demo_dir: Path) -> None:
    unknown_type = run_dala("history", "student123", "--type", "NoSuchEvent", cwd=demo_dir)
    assert "InterestAdded" in one_line_error(unknown_type, status=2)
    message = one_line_error(run_dala("migrate", "--to", "", cwd=demo_dir), status=2)
    assert "unknown revision" in message and "head" in message and "AssertionError" not in message


def test_bad_database_urls_name_their_source(tmp_path: Path) -> None:
    from_environment = run_dala("profile", "ann", cwd=tmp_path, env={"DALA_DATABASE_URL": "garbage"})
    assert one_line_error(from_environment).startswith("error: DALA_DATABASE_URL:")
    server = run_dala("profile", "ann", "--database-url", "postgresql://nobody@127.0.0.1:1/none", cwd=tmp_path)
    refused = one_line_error(server)  # a DatabaseFault naming the database, in the key store's words
    assert refused.startswith("error: the database postgresql://nobody@127.0.0.1:1/none cannot be used: ")
    assert "Connection refused" in refused and "check that the server runs and the database URL is right" in refused


def test_database_url_is_accepted_after_the_command_name(demo_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{demo_dir}/database/edpsych_connect_dala.db"
    shown = run_dala("profile", "student123", "--database-url", url, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["learner_id"] == "student123"


def test_reading_commands_never_create_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    for command in (
        ["profile", "ann"],
        ["history", "ann"],
        ["diff", "ann", "1", "2"],
        ["interface", "ann"],
        ["learners"],
        ["export", "ann"],
        ["disclosures", "ann"],
    ):
        message = one_line_error(run_dala("--database-url", f"sqlite:///{missing}", *command, cwd=tmp_path))
        assert f"no database at {missing}" in message and "dala init" in message
    assert not (tmp_path / "no").exists()
    assert not (tmp_path / "database").exists()
    assert one_line_error(run_dala("profile", "ann", cwd=tmp_path)).startswith("error: no database at")
    assert not (tmp_path / "database").exists()


@pytest.mark.parametrize(
    "command", ["history student123 --json", "history student123", "profile student123", "learners"]
)
def test_a_closed_pipe_ends_quietly_with_status_0(demo_dir: Path, command: str) -> None:
    shell = f"'{DALA}' {command} | head -c 10 > /dev/null; echo ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", shell], cwd=demo_dir, capture_output=True, text=True, timeout=60)
    assert "BrokenPipe" not in result.stderr and "error" not in result.stderr
    assert result.stdout.strip() == "0"


def test_every_command_takes_the_shared_options_after_its_name(demo_dir: Path) -> None:
    quiet = run_dala("rebuild", "-q", cwd=demo_dir)
    assert quiet.returncode == 0 and quiet.stdout == "", quiet.stderr
    verbose = run_dala("rebuild", "-v", cwd=demo_dir)
    assert "INFO dala_events.rebuild: rebuilt" in verbose.stderr
    shown = run_dala("history", "student123", "--actor", "teacher:42", "--reason", "review", "-n", "1", cwd=demo_dir)
    assert shown.returncode == 0, shown.stderr
    disclosures = json.loads(run_dala("disclosures", "student123", "--json", cwd=demo_dir).stdout)
    assert (disclosures[-1]["actor"], disclosures[-1]["reason"]) == ("teacher:42", "review")


@pytest.mark.parametrize(
    "args",
    [["profile"], ["profile", "x", "--bogus"], ["nosuchcommand"], ["profile", "x", "--as-of", "1", "--version", "1"]],
)
def test_usage_errors_are_one_line(demo_dir: Path, args: list[str]) -> None:
    message = one_line_error(run_dala(*args, cwd=demo_dir), status=2)
    assert "Usage:" not in message and "--help" in message


def test_learner_text_cannot_drive_the_terminal(tmp_path: Path) -> None:
    from dala_events.app import Dala
    from dala_events.settings import Settings

    with Dala.open(Settings(database_url=f"sqlite:///{tmp_path}/dala.db")) as dala:
        dala.profile("ann").add_interest("Robo\x1b[2Jtics\u202e")
    url = f"sqlite:///{tmp_path}/dala.db"
    for args in (["history", "ann"], ["profile", "ann"], ["diff", "ann", "1", "2"]):
        shown = run_dala(*args, "--database-url", url, cwd=tmp_path, env={"COLUMNS": "200"})
        assert shown.returncode == 0, shown.stderr
        assert "\x1b" not in shown.stdout and "\u202e" not in shown.stdout, args
        assert "\\x1b" in shown.stdout, (args, shown.stdout)


def test_verify_of_an_unknown_learner_is_an_error(demo_dir: Path) -> None:
    assert "nobody" in one_line_error(run_dala("verify", "nobody", cwd=demo_dir))
    assert run_dala("verify", "student123", cwd=demo_dir).returncode == 0


def test_rebuild_never_creates_a_database(tmp_path: Path) -> None:
    assert "no database at" in one_line_error(run_dala("rebuild", cwd=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_diff_never_cuts_what_changed_where(demo_dir: Path) -> None:
    shown = run_dala("diff", "student123", "1", "6", cwd=demo_dir, env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    heading = lines[1]
    assert "change" in heading and "section" in heading and "row" in heading
    assert any(line.split()[0] == "added" for line in lines[3:])


def test_an_export_to_where_it_cannot_be_written_records_no_disclosure(demo_dir: Path) -> None:
    before = json.loads(run_dala("disclosures", "student123", "--json", cwd=demo_dir).stdout)
    assert "not a file" in one_line_error(run_dala("export", "student123", "--out", "/dev/full", cwd=demo_dir))
    assert json.loads(run_dala("disclosures", "student123", "--json", cwd=demo_dir).stdout) == before


def test_the_database_its_keys_and_pages_are_private(demo_dir: Path) -> None:
    database = demo_dir / "database"
    for path in (
        database / "edpsych_connect_dala.db",
        database / "edpsych_connect_dala.db.keys",
        database / "edpsych_connect_dala.db.keys.master",
        database / "interface" / "student123.html",
    ):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_migrate_current_and_history(demo_dir: Path) -> None:
    current = run_dala("migrate", "current", cwd=demo_dir)
    from dala_events.database_setup import migration_history

    assert current.returncode == 0 and current.stdout.split()[0] == LOG_SCHEMA_HEAD and "(head)" in current.stdout
    listed = run_dala("migrate", "history", cwd=demo_dir).stdout.splitlines()
    newest = migration_history()[0]
    assert listed[0].startswith(f"{newest.down_revision} -> {LOG_SCHEMA_HEAD}")
    assert listed[-1].startswith("base -> 0001")
    assert len(listed) == len(migration_history())


def test_verbose_shows_the_librarys_log_and_quiet_hides_status(demo_dir: Path) -> None:
    verbose = run_dala("-v", "rebuild", cwd=demo_dir)
    assert verbose.returncode == 0 and "INFO dala_events.rebuild: rebuilt" in verbose.stderr
    quiet = run_dala("-q", "rebuild", cwd=demo_dir)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    debug = run_dala("-vv", "init", cwd=demo_dir)
    assert debug.returncode == 0


def test_rebuild_leaves_no_lock_file_behind(demo_dir: Path) -> None:
    assert run_dala("rebuild", cwd=demo_dir).returncode == 0
    assert list((demo_dir / "database").glob("*.rebuild-lock")) == []


def test_a_read_starts_quickly(demo_dir: Path) -> None:
    """Start-up is most of a read's time: reads must not import Alembic (a migration's tool)."""
    probe = (
        "import sys, dala_events.cli; from dala_events.database_setup import open_db; print('alembic' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=demo_dir, timeout=120
    )
    assert result.stdout.strip() == "False"


def test_shell_completion_is_provided(tmp_path: Path) -> None:
    environment = {**os.environ, "_DALA_COMPLETE": "bash_source"}
    script = subprocess.run([DALA], env=environment, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "_dala_completion" in script.stdout
    assert "_DALA_COMPLETE" in run_dala("--help", cwd=tmp_path).stdout
