"""Two clocks a parent may ask about: when a change was recorded, and when it happened."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from freezegun import freeze_time

from dala_events.app import Dala
from dala_events.attribution import occurring_at
from dala_events.cli import main
from dala_events.settings import Settings

HAPPENED = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
IMPORTED = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ASKED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _backdated_import(tmp_path: Path) -> Settings:
    """Ann's record, imported on 25 Nov, of what happened on 1 Nov; one change on 28 Nov."""
    settings = Settings(database_url=f"sqlite:///{tmp_path}/dala.db")
    with Dala.open(settings) as dala:
        with freeze_time(IMPORTED), occurring_at(HAPPENED):
            profile = dala.profile("ann")
            profile.add_interest("Music")
        with freeze_time("2026-11-28T10:00:00Z"):
            profile.add_interest("Chess")
    return settings


def test_a_profile_by_when_changes_happened_answers_for_a_backdated_import(tmp_path: Path) -> None:
    with Dala.open(_backdated_import(tmp_path)) as dala:
        assert dala.as_of("ann", at=ASKED) is None  # nothing was recorded by 20 Nov
        happened = dala.as_of("ann", happened_by=ASKED)
        assert happened is not None and [i.interest_name for i in happened.interests] == ["Music"]
        assert happened.created_at == HAPPENED
        later = dala.as_of("ann", happened_by=datetime(2026, 11, 30, tzinfo=UTC))
        assert later is not None and {i.interest_name for i in later.interests} == {"Music", "Chess"}


def test_history_is_bounded_by_either_clock(tmp_path: Path) -> None:
    with Dala.open(_backdated_import(tmp_path)) as dala:
        assert dala.history("ann", until=ASKED) == []
        by_happening = dala.history("ann", happened_until=ASKED)
        assert [event.event_type for event in by_happening] == ["LearnerProfileCreated", "InterestAdded"]
        assert all(event.occurred_at == HAPPENED and event.recorded_at == IMPORTED for event in by_happening)
        assert [e.event_type for e in dala.history("ann", happened_since=ASKED)] == ["InterestAdded"]


def test_the_command_line_offers_both_clocks_and_says_which(tmp_path: Path) -> None:
    settings = _backdated_import(tmp_path)
    runner = CliRunner()
    url = ["--database-url", settings.database_url]
    recorded = runner.invoke(main, [*url, "profile", "ann", "--as-of", "2026-11-20T12:00"])
    assert recorded.exit_code == 1 and "had no profile" in recorded.output
    happened = runner.invoke(main, [*url, "profile", "ann", "--happened-by", "2026-11-20T12:00", "--json"])
    assert happened.exit_code == 0, happened.output
    document = json.loads(happened.output)
    assert document["happened_by"] == "2026-11-20T12:00:00Z"
    assert [i["interest_name"] for i in document["interests"]] == ["Music"]
    human = runner.invoke(main, [*url, "profile", "ann", "--happened-by", "2026-11-20T12:00"])
    assert "had happened by 2026-11-20 12:00 UTC" in human.output
    listed = runner.invoke(main, [*url, "history", "ann", "--happened-until", "2026-11-20", "--json"])
    assert [event["event_type"] for event in json.loads(listed.output)] == ["LearnerProfileCreated", "InterestAdded"]
    both = runner.invoke(main, [*url, "profile", "ann", "--as-of", "2026-11-20", "--happened-by", "2026-11-20"])
    assert both.exit_code == 2
    learners = runner.invoke(main, [*url, "learners"], env={"COLUMNS": "120"})
    assert "first recorded (UTC)" in learners.output
