"""End to end: the console script in a fresh directory, and the README's examples as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dala_events.database_setup import LOG_SCHEMA_HEAD

ROOT = Path(__file__).resolve().parent.parent
DALA = shutil.which("dala", path=str(Path(sys.executable).parent)) or "dala"


def run_dala(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DALA_DATABASE_URL"} | (env or {})
    return subprocess.run([DALA, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def test_demo_profile_and_rebuild_through_the_console_script(tmp_path: Path) -> None:
    first = run_dala("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "database" / "edpsych_connect_dala.db").exists()
    recorded = int(re.search(r"(\d+) events recorded", first.stdout).group(1))  # type: ignore[union-attr]

    shown = run_dala("profile", "student123", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    profile = json.loads(shown.stdout)
    assert profile["learner_id"] == "student123"
    assert len(profile["activity_attempts"]) == 6 and len(profile["cognitive_metrics"]) == 5
    human = run_dala("profile", "student123", cwd=tmp_path)
    assert "Interests" in human.stdout and "story_weaver" in human.stdout

    rebuilt = run_dala("rebuild", cwd=tmp_path)
    assert rebuilt.returncode == 0 and f"from {recorded} events" in rebuilt.stdout
    assert json.loads(run_dala("profile", "student123", "--json", cwd=tmp_path).stdout) == profile

    again = run_dala("demo", cwd=tmp_path)  # running twice is safe
    assert again.returncode == 0, again.stderr


def test_audit_commands_through_the_console_script(tmp_path: Path) -> None:
    assert run_dala("demo", cwd=tmp_path).returncode == 0

    listed = run_dala("history", "student123", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    events = json.loads(listed.stdout)
    assert [event["version"] for event in events] == list(range(1, len(events) + 1))
    assert events[0]["metadata"]["actor"] == "system:demo" and events[0]["event_type"] == "LearnerProfileCreated"
    assert events[1]["metadata"]["actor"] == "system:assessment" and "payload" in events[1]
    human = run_dala("history", "student123", "--type", "BadgeAwarded", cwd=tmp_path)
    assert human.returncode == 0 and "Badge earned" in human.stdout and "Interest added" not in human.stdout

    then = json.loads(run_dala("profile", "student123", "--version", "3", "--json", cwd=tmp_path).stdout)
    assert then["learner_id"] == "student123" and len(then["preferences"]) == 2 and then["activity_attempts"] == []
    future = run_dala("profile", "student123", "--as-of", "2999-01-01T00:00:00", "--json", cwd=tmp_path)
    now = run_dala("profile", "student123", "--json", cwd=tmp_path)
    as_of = json.loads(future.stdout)
    assert as_of.pop("as_of")["version"] == len(events)
    assert as_of == json.loads(now.stdout)
    before = run_dala("profile", "student123", "--as-of", "2000-01-01", cwd=tmp_path)
    assert before.returncode == 1 and "had no profile at 2000-01-01" in before.stderr

    changed = json.loads(run_dala("diff", "student123", "v3", "10", "--json", cwd=tmp_path).stdout)
    assert (changed["start_version"], changed["end_version"]) == (3, 10) and changed["rows"]
    assert "rows differ" in run_dala("diff", "student123", "0", f"v{len(events)}", cwd=tmp_path).stdout
    bad = run_dala("diff", "student123", "yesterday", "3", cwd=tmp_path)
    assert bad.returncode == 2 and "not an ISO 8601 time" in bad.stderr

    partial = run_dala("rebuild", "--projection", "badges", "--projection", "interests", cwd=tmp_path)
    assert partial.returncode == 0 and "rebuilt interests, badges from" in partial.stdout
    unknown = run_dala("rebuild", "--projection", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown projection 'nope'" in unknown.stderr
    migrated = run_dala("migrate", cwd=tmp_path)
    assert migrated.returncode == 0 and f"revision {LOG_SCHEMA_HEAD}" in migrated.stdout


def test_errors_go_to_stderr_without_traceback(tmp_path: Path) -> None:
    assert run_dala("init", cwd=tmp_path).returncode == 0
    missing = run_dala("profile", "nobody", cwd=tmp_path)
    assert missing.returncode == 1
    assert "learner 'nobody' has no profile" in missing.stderr and "Traceback" not in missing.stderr
    bad_url = run_dala("--database-url", "mysql://x/y", "init", cwd=tmp_path)
    assert bad_url.returncode == 1 and "database_url" in bad_url.stderr and "Traceback" not in bad_url.stderr
    assert run_dala("profile", cwd=tmp_path).returncode == 2


def test_readme_python_examples_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dala_events.database_setup import close_db

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DALA_DATABASE_URL", raising=False)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 6
    for block in blocks:  # a block copied alone must run: what it uses of the package it imports
        if "recorded_as(" in block:
            assert "import recorded_as" in block, block
    namespace: dict[str, object] = {}
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)
        profile = namespace["learner_profile"]
        assert "Robotics" in profile.interests  # type: ignore[attr-defined]
        assert profile.lo_progress["MATH_LO_001"].status == "completed"  # type: ignore[attr-defined]
        assert (tmp_path / "database" / "edpsych_connect_dala.db").exists()
    finally:
        close_db()
