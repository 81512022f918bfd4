"""`dala status`: where everything lives and what a backup must carry, read only, never a key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from dala_events.app import Dala
from dala_events.cli import main
from dala_events.schema import LOG_SCHEMA_HEAD
from dala_events.store import LogKey
from dala_events.store.keys import MasterKey
from tests.conftest import POSTGRES_URL, TEST_MASTER_KEY, require_postgres, reset_postgres

LOG_KEY = "ab" * 32


def _cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    base = {"DALA_KEY_STORE": "", "DALA_MASTER_KEY": "", "DALA_MASTER_KEY_FILE": "", "DALA_LOG_KEY": ""}
    result = CliRunner().invoke(main, list(args), env=base | env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_status_of_the_embedded_default_creates_nothing_and_names_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DALA_DATABASE_URL", raising=False)
    code, out, _ = _cli("status", "--json", env={})
    assert code == 0, out
    found = json.loads(out)
    assert found["database"]["exists"] is False and found["key_store"]["exists"] is False
    assert list(tmp_path.iterdir()) == []  # nothing made: no folder, no file

    assert CliRunner().invoke(main, ["demo", "-q"], env={"DALA_KEY_STORE": "", "DALA_MASTER_KEY": ""}).exit_code == 0
    code, out, err = _cli("status", "--json", env={})
    assert code == 0, err
    found = json.loads(out)
    database = Path("database/edpsych_connect_dala.db")
    assert found["database"] | {"log_chain": None} == {
        "url": str(database),
        "exists": True,
        "schema_revision": LOG_SCHEMA_HEAD,
        "code_revision": LOG_SCHEMA_HEAD,
        "learners": 1,
        "events": found["database"]["events"],
        "log_chain": None,
        "restore_unfinished": None,
        "problem": None,
    }
    assert found["database"]["events"] > 20
    master_file = Path(f"{database}.keys.master")
    master = MasterKey.from_hex(master_file.read_text())
    assert found["key_store"]["location"] == f"{database}.keys" and found["key_store"]["data_keys"] == 1
    assert found["master_key"] == {
        "source": str(master_file),
        "file": str(master_file),
        "present": True,
        "id": master.key_id,
        "opens_key_store": True,
        "problem": None,
    }
    assert found["page_folder"] == "database/interface" and found["problems"] == []
    assert [carried["where"] for carried in found["backup"]] == [str(database), f"{database}.keys", str(master_file)]
    assert master.hex() not in out
    code, out, _ = _cli("status", env={})
    assert code == 0 and "a backup must carry" in out and master.hex() not in out
    assert all(len(line) <= 80 for line in out.splitlines() if str(database) not in line), out

    # The master key file gone: named, exit 1.
    master_file.rename(tmp_path / "elsewhere")
    code, out, err = _cli("status", env={})
    assert code == 1 and "master key: the file is missing" in err, err


def test_status_on_postgresql_names_the_variable_never_the_key_and_creates_no_table(tmp_path: Path) -> None:
    require_postgres()
    reset_postgres()
    env = {
        "DALA_DATABASE_URL": POSTGRES_URL,
        "DALA_KEY_STORE": str(tmp_path / "school.keys"),
        "DALA_MASTER_KEY": TEST_MASTER_KEY,
        "DALA_LOG_KEY": LOG_KEY,
    }
    code, out, err = _cli("status", "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["database"]["events"] is None
    engine = create_engine(POSTGRES_URL)
    try:
        assert "event_log" not in inspect(engine).get_table_names()  # status made nothing
    finally:
        engine.dispose()
    assert not (tmp_path / "school.keys").exists()

    from dala_events.settings import Settings

    settings = Settings(
        database_url=POSTGRES_URL,
        key_store=str(tmp_path / "school.keys"),
        master_key=MasterKey.from_hex(TEST_MASTER_KEY),
        log_key=LogKey.from_hex(LOG_KEY),
    )
    with Dala.open(settings) as dala:
        for learner in ("ann", "bea"):
            dala.profile(learner).add_interest("Chess")
    code, out, err = _cli("status", "--json", env=env)
    assert code == 0, err
    found = json.loads(out)
    assert (found["database"]["learners"], found["database"]["events"]) == (2, 4)
    assert found["database"]["log_chain"] == {"mode": "hmac-sha256", "key_id": LogKey.from_hex(LOG_KEY).key_id}
    assert found["log_key_id"] == LogKey.from_hex(LOG_KEY).key_id
    assert found["master_key"]["source"] == "the variable DALA_MASTER_KEY" and found["master_key"]["file"] is None
    assert found["master_key"]["opens_key_store"] is True
    assert "postgres@" in found["database"]["url"] and TEST_MASTER_KEY not in out and LOG_KEY not in out
    assert [carried["what"] for carried in found["backup"]][-1] == "the log key"
    code, out, err = _cli("status", env={**env, "DALA_LOG_KEY": ""})  # the log's key not configured
    assert code == 1 and "log key: the log is chained with" in err


def test_keys_restore_without_the_master_key_file_says_what_is_missing(tmp_path: Path) -> None:
    machine = tmp_path / "new-machine"
    machine.mkdir()
    env = {"DALA_DATABASE_URL": f"sqlite:///{machine}/school.db"}
    source = {"DALA_DATABASE_URL": f"sqlite:///{tmp_path}/school.db"}
    assert CliRunner().invoke(main, ["demo", "-q"], env=source | {"DALA_KEY_STORE": ""}).exit_code == 0
    code, out, err = _cli("backup", str(tmp_path / "log.backup"), "--keys", str(tmp_path / "keys.backup"), env=source)
    assert code == 0, err
    assert f"keep the master key ({tmp_path}/school.db.keys.master) apart from both files" in out
    code, out, err = _cli("keys", "restore", str(tmp_path / "keys.backup"), env=env)
    assert code == 1 and f"{machine}/school.db.keys.master is missing" in err
    assert "no key store beside it yet" in err and "holds data keys" not in err, err
