"""When a command cannot do its job: it says so before it writes anything, in words (what
failed and where, never a Python exception's name), one line, and leaves nothing behind."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.test_cli_values import error_line, invoke

EXCEPTION_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception|Warning)\b|\[Errno")


def said_in_words(message: str, *places: str) -> str:
    """`message` names every one of `places` and no Python exception."""
    assert not EXCEPTION_NAME.search(message), message
    assert all(place in message for place in places), (places, message)
    return message


def learners(folder: Path) -> list[str]:
    listed = invoke(folder, "learners", "--json")
    if listed.exit_code != 0:  # no database: nobody
        return []
    return [learner["learner_id"] for learner in json.loads(listed.stdout)]


def disclosure_count(folder: Path, learner: str) -> int:
    return len(json.loads(invoke(folder, "disclosures", learner, "--json").stdout))


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("failures")
    assert invoke(folder, "demo").exit_code == 0
    return folder


def test_a_demo_that_needs_an_actor_refuses_before_writing_anything(tmp_path: Path) -> None:
    refused = invoke(tmp_path, "demo", env={"DALA_REQUIRE_ACTOR": "1"})
    message = said_in_words(error_line(refused), "DALA_REQUIRE_ACTOR", "--actor")
    assert "disclosure" in message
    assert learners(tmp_path) == [] and refused.stdout == ""
    named = invoke(tmp_path, "--actor", "teacher:42", "demo", env={"DALA_REQUIRE_ACTOR": "1"})
    assert named.exit_code == 0, named.output
    assert learners(tmp_path) == ["student123"]


@pytest.mark.parametrize("where", ["device", "missing folder", "file as folder"])
def test_a_demo_whose_page_cannot_be_written_refuses_before_writing_anything(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    out = {
        "device": "/dev/full",
        "missing folder": f"{tmp_path}/missing/x.html",
        "file as folder": f"{tmp_path}/a-file/x.html",
    }[where]
    refused = invoke(tmp_path, "demo", "--out", out)
    said_in_words(error_line(refused), "--out", out)
    assert learners(tmp_path) == []
    assert not (tmp_path / "missing").exists()


def test_a_page_folder_that_cannot_be_made_is_said_in_words_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    pages = tmp_path / "a-file" / "pages"
    refused = invoke(tmp_path, "demo", env={"DALA_PAGE_DIR": str(pages)})
    said_in_words(error_line(refused), str(pages))
    assert learners(tmp_path) == []


@pytest.mark.parametrize("where", ["device", "missing folder", "file as folder"])
def test_a_page_that_cannot_be_written_is_refused_in_words_before_its_disclosure(
    demo_folder: Path, tmp_path: Path, where: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    out = {
        "device": "/dev/full",
        "missing folder": f"{tmp_path}/missing/x.html",
        "file as folder": f"{tmp_path}/a-file/x.html",
    }[where]
    before = disclosure_count(demo_folder, "student123")
    refused = invoke(demo_folder, "interface", "student123", "--out", out)
    said_in_words(error_line(refused), "--out", out)
    assert disclosure_count(demo_folder, "student123") == before
    assert not (tmp_path / "missing").exists()  # folders are not made for --out: it says so


@pytest.mark.parametrize("where", ["missing folder", "file as folder"])
def test_an_export_that_cannot_be_written_is_refused_in_words(demo_folder: Path, tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    out = {"missing folder": f"{tmp_path}/missing/x.json", "file as folder": f"{tmp_path}/a-file/x.json"}[where]
    before = disclosure_count(demo_folder, "student123")
    said_in_words(error_line(invoke(demo_folder, "export", "student123", "--out", out)), "--out", out)
    assert disclosure_count(demo_folder, "student123") == before


def test_a_checkpoint_that_cannot_be_written_is_refused_in_words(demo_folder: Path, tmp_path: Path) -> None:
    out = f"{tmp_path}/missing/checkpoint.json"
    said_in_words(error_line(invoke(demo_folder, "verify", "--checkpoint", out)), "--checkpoint", out)
    assert not (tmp_path / "missing").exists()


def test_quiet_demo_prints_nothing(tmp_path: Path) -> None:
    quiet = invoke(tmp_path, "-q", "demo")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    assert learners(tmp_path) == ["student123"]
    again = invoke(tmp_path, "demo", "-q")
    assert again.exit_code == 0 and again.stdout == ""


@pytest.mark.parametrize("variable", ["DALA_LOG_KEY_FILE", "DALA_MASTER_KEY_FILE"])
def test_a_key_file_that_cannot_be_read_is_said_in_words(demo_folder: Path, tmp_path: Path, variable: str) -> None:
    for path in (tmp_path / "missing.key", tmp_path):
        refused = invoke(demo_folder, "profile", "student123", env={variable: str(path)})
        said_in_words(error_line(refused), variable, str(path))


def test_a_checkpoint_that_cannot_be_read_is_said_in_words(demo_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "binary").write_bytes(b"\xff\xfe not text")
    message = error_line(invoke(demo_folder, "verify", "--against", str(tmp_path / "binary")))
    said_in_words(message, str(tmp_path / "binary"), "not a checkpoint")
