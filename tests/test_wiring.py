"""The configured store: built from Settings, frees everything it opened, and nothing outlives it."""

from __future__ import annotations

import gc
import os
import weakref
from pathlib import Path
from typing import Any

import pytest

from dala_events.app import Dala
from dala_events.errors import InvalidInput
from dala_events.settings import Settings
from dala_events.store.keys import MasterKey, MasterKeyError, SqlKeyStore
from dala_events.wiring import Mode
from tests.conftest import POSTGRES_URL, TEST_MASTER_KEY, require_postgres, reset_postgres


def _open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _settings(backend: str, tmp_path: Path) -> Settings:
    if backend == "sqlite":
        return Settings(database_url=f"sqlite:///{tmp_path}/school.db")
    require_postgres()
    reset_postgres()
    return Settings(
        database_url=POSTGRES_URL,
        key_store=str(tmp_path / "school.keys"),
        master_key=MasterKey.from_hex(TEST_MASTER_KEY),
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_fifty_stores_opened_and_closed_leave_nothing_alive(backend: str, tmp_path: Path) -> None:
    settings = _settings(backend, tmp_path)
    with Dala.open(settings) as warm:  # imports, compiled statements and the schema: made once
        warm.profile("warm").add_interest("Art")
    gc.collect()
    before = _open_descriptors()
    alive: list[weakref.ref[Any]] = []
    for number in range(50):
        with Dala.open(settings) as dala:
            dala.profile(f"learner-{number}").add_interest("Robotics")
            assert [event.event_type for event in dala.history(f"learner-{number}")][-1] == "InterestAdded"
            key_store = dala.storage.key_store
            assert isinstance(key_store, SqlKeyStore)
            for thing in (dala, dala.storage, dala.engine, dala.engine.pool, dala.store, dala.cipher, key_store):
                alive.append(weakref.ref(thing))
            alive.append(weakref.ref(key_store.engine))
            alive.append(weakref.ref(key_store.engine.pool))
        assert dala.storage.closed
    del dala, key_store, thing
    gc.collect()
    left = [ref() for ref in alive if ref() is not None]
    assert left == [], f"{len(left)} objects outlived their store: {sorted({type(obj).__name__ for obj in left})}"
    assert _open_descriptors() <= before


def test_settings_from_the_environment_are_read_once_and_checked(tmp_path: Path) -> None:
    key_file = tmp_path / "log.key"
    key_file.write_text("ab" * 32 + "\n")
    settings = Settings.from_env(
        {
            "DALA_DATABASE_URL": f"sqlite:///{tmp_path}/a.db",
            "DALA_LOG_KEY_FILE": str(key_file),
            "DALA_MASTER_KEY": TEST_MASTER_KEY,
            "DALA_AUTO_REBUILD": "0",
            "DALA_PAGE_DIR": str(tmp_path / "pages"),
        }
    )
    assert settings.database_url.endswith("/a.db") and settings.log_key is not None
    assert settings.master_key is not None and settings.auto_rebuild is False
    assert settings.page_dir == tmp_path / "pages"
    assert Settings.from_env({}) == Settings()
    with pytest.raises(InvalidInput, match="DALA_AUTO_REBUILD"):
        Settings.from_env({"DALA_AUTO_REBUILD": "maybe"})
    with pytest.raises(MasterKeyError, match="not both"):
        Settings.from_env({"DALA_MASTER_KEY": TEST_MASTER_KEY, "DALA_MASTER_KEY_FILE": "x"})
    with pytest.raises(InvalidInput, match="DALA_LOG_KEY"):
        Settings.from_env({"DALA_LOG_KEY": "not hex"})


@pytest.mark.parametrize(
    ("variable", "error"),
    [("DALA_MASTER_KEY", MasterKeyError), ("DALA_NEW_MASTER_KEY", MasterKeyError), ("DALA_LOG_KEY", InvalidInput)],
)
def test_a_key_of_hex_digits_but_the_wrong_length_is_told_its_length(variable: str, error: type[Exception]) -> None:
    for digits in ("abc", "ab" * 31):
        with pytest.raises(error) as refused:
            Settings.from_env({variable: digits})
        message = str(refused.value)
        assert message.startswith(f"{variable}: ") and "64" in message and f"got {len(digits)}" in message, message
        assert "must be hex digits" not in message
    with pytest.raises(error, match="must be hex digits"):
        Settings.from_env({variable: "not hex at all"})


def test_two_schools_open_side_by_side_keep_their_own_data_and_pages(tmp_path: Path) -> None:
    north = Settings(database_url=f"sqlite:///{tmp_path}/north/dala.db")
    south = Settings(database_url=f"sqlite:///{tmp_path}/south/dala.db")
    with Dala.open(north) as first, Dala.open(south) as second:
        first.profile("ann").add_interest("Music")
        second.profile("ann").add_interest("Art")
        assert [i.interest_name for i in first.full_profile("ann").interests] == ["Music"]  # type: ignore[union-attr]
        assert [i.interest_name for i in second.full_profile("ann").interests] == ["Art"]  # type: ignore[union-attr]
        first_page, second_page = first.render_page("ann"), second.render_page("ann")
        assert first_page == tmp_path / "north" / "interface" / "ann.html"
        assert second_page == tmp_path / "south" / "interface" / "ann.html"
        # Erasing in one school removes its page only.
        erased = second.erase("ann", reason="request 7")
        assert erased.page_removed == second_page and not second_page.exists() and first_page.exists()
        assert first.store.cipher is not second.store.cipher


def test_an_erasure_needs_a_reason_from_the_caller_or_the_attribution(tmp_path: Path) -> None:
    from dala_events.attribution import recorded_as

    with Dala.open(Settings(database_url=f"sqlite:///{tmp_path}/dala.db")) as dala:
        dala.profile("bea").add_interest("Chess")
        with pytest.raises(InvalidInput, match="reason"):
            dala.erase("bea")
        with recorded_as("dpo:jane", reason="request 9"):
            assert dala.erase("bea").record.reason == "request 9"


def test_read_mode_creates_nothing(tmp_path: Path) -> None:
    from dala_events.errors import DatabaseNotFound

    with pytest.raises(DatabaseNotFound):
        Dala.open(Settings(database_url=f"sqlite:///{tmp_path}/missing.db"), mode=Mode.READ)
    assert list(tmp_path.iterdir()) == []
