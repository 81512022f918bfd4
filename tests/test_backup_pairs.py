"""A log backup and a key backup that always restore together, and a restore that leaves out the
learners whose keys are absent only when the operator says so (named, recorded, shown by verify).

`dala backup FILE --keys KEYS_FILE` takes the log first, then the keys: a learner's key is
durable before their first event commits and keys are only ever added (an erasure leaves a
tombstone), so the key backup holds a key, or a tombstone, for every learner of the log backup.
Taken the other way round (keys first), learners created in between have no key in the pair:
the restore refuses, naming them, unless told `--skip-missing-keys` (or `--skip LEARNER`); it
then restores every event of the log and leaves those learners out of the read models only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from dala_events.app import Dala
from dala_events.cli import main
from dala_events.envelopes import NewEvent
from dala_events.events import InterestAdded
from dala_events.settings import Settings
from dala_events.store import event_log
from dala_events.store.keys import DataKeyMissing
from dala_events.store.sql import rebuild_skips
from dala_events.wiring import Mode
from tests.conftest import POSTGRES_URL, TEST_MASTER_KEY, require_postgres, reset_postgres

LEARNERS = ("ann", "bea", "cy")


@pytest.fixture(params=["sqlite", "postgresql"])
def school(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Three learners with encrypted histories; on PostgreSQL the key store is a file beside it."""
    master = tmp_path / "master.key"
    master.write_text(TEST_MASTER_KEY + "\n")
    if request.param == "sqlite":
        settings = Settings(database_url=f"sqlite:///{tmp_path}/school.db", master_key_file=master)
    else:
        require_postgres()
        reset_postgres()
        settings = Settings(database_url=POSTGRES_URL, key_store=str(tmp_path / "school.keys"), master_key_file=master)
    with Dala.open(settings) as dala:
        for number, learner in enumerate(LEARNERS):
            dala.profile(learner).add_interest(f"interest {number}")
    yield settings


def _new_machine(tmp_path: Path) -> Settings:
    """A fresh folder holding only the school's master key (brought from where it is kept)."""
    machine = tmp_path / "new-machine"
    machine.mkdir()
    master = machine / "master.key"
    master.write_text(TEST_MASTER_KEY + "\n")
    return Settings(database_url=f"sqlite:///{machine}/school.db", master_key_file=master)


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {
        "DALA_DATABASE_URL": settings.database_url,
        "DALA_KEY_STORE": settings.key_store or "",
        "DALA_MASTER_KEY_FILE": "" if settings.master_key_file is None else str(settings.master_key_file),
        "DALA_MASTER_KEY": "",
    }
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def _events(settings: Settings) -> int:
    with Dala.open(settings, mode=Mode.RAW) as dala, dala.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(event_log)).scalar_one())


def _histories(settings: Settings, learners: tuple[str, ...]) -> dict[str, list[Any]]:
    with Dala.open(settings, mode=Mode.READ) as dala:
        return {learner: [(e.event_id, e.event) for e in dala.history(learner)] for learner in learners}


def test_one_command_takes_the_log_then_the_keys_and_the_pair_restores(
    school: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dala_events.backup as backup_module

    # A writer creates a learner between the two reads: after the log's snapshot, before the keys'.
    taken = backup_module.backup_keys

    def a_learner_arrives_first(*args: Any, **kwargs: Any) -> Any:
        with Dala.open(school) as other:
            other.profile("late").add_interest("Chess")
        return taken(*args, **kwargs)

    monkeypatch.setattr(backup_module, "backup_keys", a_learner_arrives_first)
    code, output = _cli(school, "backup", str(tmp_path / "log.backup"), "--keys", str(tmp_path / "keys.backup"))
    assert code == 0, output
    assert "log.backup" in output and "keys.backup" in output
    keys = [json.loads(line) for line in (tmp_path / "keys.backup").read_text().splitlines()]
    assert {line["key"] for line in keys if "key" in line} == {*LEARNERS, "late"}  # the later key as well

    target = _new_machine(tmp_path)
    assert _cli(target, "keys", "restore", str(tmp_path / "keys.backup"))[0] == 0
    code, output = _cli(target, "restore", str(tmp_path / "log.backup"))
    assert code == 0 and "intact" in output, output
    assert _histories(target, LEARNERS) == _histories(school, LEARNERS)


def test_keys_taken_before_the_log_refuse_the_restore_naming_the_learners_without_a_key(
    school: Settings, tmp_path: Path
) -> None:
    assert _cli(school, "keys", "backup", str(tmp_path / "keys.backup"))[0] == 0
    with Dala.open(school) as dala:
        dala.profile("dan").add_interest("Chess")  # after the keys, before the log
    assert _cli(school, "backup", str(tmp_path / "log.backup"))[0] == 0
    target = _new_machine(tmp_path)
    assert _cli(target, "keys", "restore", str(tmp_path / "keys.backup"))[0] == 0
    code, output = _cli(target, "restore", str(tmp_path / "log.backup"))
    assert code == 1 and "'dan'" in output and "--skip-missing-keys" in output, output
    assert not Path(target.database_url.removeprefix("sqlite:///")).exists()  # nothing written


def test_the_restore_leaves_out_the_learners_without_a_key_only_when_told_and_restores_every_event(
    school: Settings, tmp_path: Path
) -> None:
    assert _cli(school, "keys", "backup", str(tmp_path / "keys.backup"))[0] == 0
    with Dala.open(school) as dala:
        dala.profile("dan").add_interest("Chess")
        dala.profile("eve").add_struggle_area("Fractions")
    assert _cli(school, "backup", str(tmp_path / "log.backup"))[0] == 0
    target = _new_machine(tmp_path)
    assert _cli(target, "keys", "restore", str(tmp_path / "keys.backup"))[0] == 0

    code, output = _cli(target, "restore", str(tmp_path / "log.backup"), "--skip", "zed")
    assert code == 2 and "zed" in output, output  # not a learner of the backup: a wrong command line
    code, output = _cli(target, "restore", str(tmp_path / "log.backup"), "--skip", "dan")
    assert code == 1 and "'eve'" in output, output  # every learner without a key must be named

    code, output = _cli(target, "restore", str(tmp_path / "log.backup"), "--skip-missing-keys")
    assert code == 0, output
    assert "dan" in output and "eve" in output and "left out" in output
    assert _events(target) == _events(school)  # every event, the skipped learners' too
    with Dala.open(target, mode=Mode.READ) as dala:
        assert dala.full_profile("dan") is None and dala.full_profile("eve") is None
        assert dala.full_profile("ann") is not None
        report = dala.verify()
        assert sorted(skipped.learner_id for skipped in report.skipped) == ["dan", "eve"]
        assert all("dala restore" in skipped.why for skipped in report.skipped)
        with dala.engine.connect() as connection:
            assert sorted(connection.execute(select(rebuild_skips.c.learner_id)).scalars()) == ["dan", "eve"]
    code, output = _cli(target, "verify")
    assert code == 1 and "learner dan" in output and "dala restore" in output and "missing" in output

    # Their keys restored (a later key backup, merged) and a rebuild: nothing is left out.
    assert _cli(school, "keys", "backup", str(tmp_path / "later-keys.backup"))[0] == 0
    assert _cli(target, "keys", "restore", str(tmp_path / "later-keys.backup"))[0] == 0
    assert _cli(target, "rebuild")[0] == 0
    code, output = _cli(target, "verify")
    assert code == 0 and "intact" in output and "dala restore" not in output, output
    assert _histories(target, (*LEARNERS, "dan", "eve")) == _histories(school, (*LEARNERS, "dan", "eve"))


def test_no_new_key_is_ever_made_for_a_learner_whose_events_are_under_a_missing_key(
    school: Settings, tmp_path: Path
) -> None:
    assert _cli(school, "keys", "backup", str(tmp_path / "keys.backup"))[0] == 0
    with Dala.open(school) as dala:
        dala.profile("dan").add_interest("Chess")
    assert _cli(school, "backup", str(tmp_path / "log.backup"))[0] == 0
    target = _new_machine(tmp_path)
    assert _cli(target, "keys", "restore", str(tmp_path / "keys.backup"))[0] == 0
    assert _cli(target, "restore", str(tmp_path / "log.backup"), "--skip-missing-keys")[0] == 0
    before = _events(target)
    with Dala.open(target) as dala:
        with pytest.raises(DataKeyMissing, match=r"'dan'.*dala keys restore"):
            dala.store.append("dan", [NewEvent.now(InterestAdded(interest_name="Art"))], expected_version=2)
        with pytest.raises(Exception, match="dan"):
            dala.profile("dan").add_interest("Art")
        with pytest.raises(DataKeyMissing):
            dala.cipher.key_store.data_key("dan")  # still no key: none was made
    code, output = _cli(target, "history", "dan")
    assert code == 1 and "dala keys restore" in output, output
    assert _events(target) == before
    # A new learner still gets a key of their own.
    with Dala.open(target) as dala:
        dala.profile("fay").add_interest("Art")
        assert dala.cipher.key_store.data_key("fay")
