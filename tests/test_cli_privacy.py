"""The command line on a child's data: export, the record of disclosures, --actor and --reason."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import one_line_error
from tests.test_cli_and_readme import run_dala
from tests.xapi_rules import batch_problems

HOME = "https://learning.example.org"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("privacy")
    result = run_dala("demo", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def disclosures(folder: Path) -> list[dict[str, Any]]:
    listed = run_dala("disclosures", "student123", "--json", cwd=folder)
    assert listed.returncode == 0, listed.stderr
    found: list[dict[str, Any]] = json.loads(listed.stdout)
    return found


def test_reads_that_show_a_learners_data_are_recorded_with_actor_and_reason(demo_dir: Path) -> None:
    before = disclosures(demo_dir)
    assert before[0]["what"] == "page"  # the demo rendered the page
    who = ("--actor", "teacher:42", "--reason", "parent meeting")
    assert run_dala(*who, "profile", "student123", cwd=demo_dir).returncode == 0
    assert run_dala(*who, "profile", "student123", "--version", "3", "--json", cwd=demo_dir).returncode == 0
    assert run_dala(*who, "history", "student123", "-n", "2", cwd=demo_dir).returncode == 0
    page = demo_dir / "page.html"
    assert run_dala(*who, "interface", "student123", "--out", str(page), cwd=demo_dir).returncode == 0
    by_env = run_dala("history", "student123", "--json", cwd=demo_dir, env={"DALA_ACTOR": "learner:student123"})
    assert by_env.returncode == 0
    assert run_dala("diff", "student123", "1", "3", cwd=demo_dir).returncode == 0
    # Reads that show no learner's data record nothing.
    assert run_dala("learners", cwd=demo_dir).returncode == 0
    assert run_dala("profile", "nobody", cwd=demo_dir).returncode == 1

    new = disclosures(demo_dir)[len(before) :]
    assert [(d["what"], d["actor"], d["reason"]) for d in new] == [
        ("cli_profile", "teacher:42", "parent meeting"),
        ("cli_profile", "teacher:42", "parent meeting"),
        ("cli_history", "teacher:42", "parent meeting"),
        ("page", "teacher:42", "parent meeting"),
        ("cli_history", "learner:student123", None),
        ("cli_diff", "system", None),
    ]
    assert len({d["correlation_id"] for d in new}) == len(new)  # one piece of work per command
    assert all(d["learner_id"] == "student123" and d["disclosed_at"].endswith("Z") for d in new)


def test_disclosures_read_at_80_columns(demo_dir: Path) -> None:
    assert (
        run_dala("--actor", "teacher:42", "--reason", "x" * 200, "profile", "student123", cwd=demo_dir).returncode == 0
    )
    table = run_dala("disclosures", "student123", cwd=demo_dir, env={"COLUMNS": "80"})
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("Disclosures of student123:") and all(len(line) <= 80 for line in lines)
    assert "cli_profile" in table.stdout and "teacher:42" in table.stdout and "…" in table.stdout
    # A learner the store has never heard of is an error, pointing to the list, as for every reader.
    assert "see `dala learners`" in one_line_error(run_dala("disclosures", "nobody", cwd=demo_dir))
    assert "see `dala learners`" in one_line_error(run_dala("disclosures", "nobody", "--json", cwd=demo_dir))


def test_the_json_export_goes_to_stdout_or_a_private_file(demo_dir: Path) -> None:
    shown = run_dala("--actor", "dpo:1", "--reason", "subject access request", "export", "student123", cwd=demo_dir)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["learner_id"] == "student123" and document["profile"]["learner_id"] == "student123"
    history = json.loads(run_dala("history", "student123", "--json", cwd=demo_dir).stdout)
    assert [event["event_id"] for event in document["history"]] == [event["event_id"] for event in history]
    assert document["history"][0] == history[0]
    assert document["disclosures"][-1]["what"] == "export_json"
    assert document["disclosures"][-1]["actor"] == "dpo:1"

    out = demo_dir / "student123.json"
    written = run_dala("export", "student123", "--out", str(out), cwd=demo_dir)
    assert written.returncode == 0 and f"json export of student123 written: {out}" in written.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text(encoding="utf-8"))["learner_id"] == "student123"
    assert run_dala("-q", "export", "student123", "--out", str(out), cwd=demo_dir).stdout == ""
    assert "no recorded changes" in one_line_error(run_dala("export", "nobody", cwd=demo_dir))


def test_the_xapi_export_needs_the_home_page_and_passes_the_lrs_rules(demo_dir: Path) -> None:
    before = len(disclosures(demo_dir))
    message = one_line_error(run_dala("export", "student123", "--format", "xapi", cwd=demo_dir))
    assert "DALA_XAPI_HOMEPAGE" in message
    assert len(disclosures(demo_dir)) == before
    exported = run_dala(
        "--actor",
        "lrs:sync",
        "export",
        "student123",
        "--format",
        "xapi",
        cwd=demo_dir,
        env={"DALA_XAPI_HOMEPAGE": HOME},
    )
    assert exported.returncode == 0, exported.stderr
    statements = json.loads(exported.stdout)
    assert batch_problems(statements) == []
    verbs = [statement["verb"]["display"]["en"] for statement in statements]
    assert verbs.count("attempted") >= 3 and "earned" in verbs and {"passed", "failed"} & set(verbs)
    assert all(s["actor"]["account"] == {"homePage": HOME, "name": "student123"} for s in statements)
    assert [(d["what"], d["actor"]) for d in disclosures(demo_dir)[before:]] == [("export_xapi", "lrs:sync")]


def test_require_actor_refuses_unnamed_reads_and_shows_nothing(demo_dir: Path) -> None:
    required = {"DALA_REQUIRE_ACTOR": "1"}
    before = len(disclosures(demo_dir))
    for command in (["profile", "student123"], ["history", "student123"], ["export", "student123"]):
        refused = run_dala(*command, cwd=demo_dir, env=required)
        assert "DALA_REQUIRE_ACTOR" in one_line_error(refused) and "--actor" in refused.stderr
        assert refused.stdout == ""
    assert len(disclosures(demo_dir)) == before
    named = run_dala("--actor", "teacher:42", "profile", "student123", "--json", cwd=demo_dir, env=required)
    assert named.returncode == 0 and json.loads(named.stdout)["learner_id"] == "student123"
    reason_only = run_dala("--reason", "curious", "profile", "student123", cwd=demo_dir, env=required)
    assert "DALA_REQUIRE_ACTOR" in one_line_error(reason_only)


def test_a_bad_actor_or_reason_is_a_command_line_error(demo_dir: Path) -> None:
    assert "--actor: must be a str like" in one_line_error(
        run_dala("--actor", "not an actor", "profile", "student123", cwd=demo_dir), status=2
    )
    assert "--reason:" in one_line_error(run_dala("--reason", " ", "profile", "student123", cwd=demo_dir), status=2)


def test_an_older_log_schema_is_reported_with_what_to_run(tmp_path: Path) -> None:
    assert run_dala("init", cwd=tmp_path).returncode == 0
    assert run_dala("migrate", "--to", "0002", "--downgrade", cwd=tmp_path).returncode == 0
    for command in (["profile", "ann"], ["disclosures", "ann"], ["export", "ann"]):
        assert "run `dala migrate`" in one_line_error(run_dala(*command, cwd=tmp_path))
    assert run_dala("migrate", cwd=tmp_path).returncode == 0
    assert "'ann' has no recorded changes" in one_line_error(run_dala("disclosures", "ann", "--json", cwd=tmp_path))
