"""Each learner's page has a file of its own: `wiring.page_file_name` maps learner ids to file
names one to one (also where the file system ignores case), keeps plain ids readable, and
every way of writing or erasing a page uses it, so no child's page overwrites or takes
another's with it."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dala_events import aio
from dala_events.app import Dala
from dala_events.erasure import erase_learner
from dala_events.events import MAX_LEARNER_ID_LENGTH, check_learner_id
from dala_events.generate_interface import DEFAULT_INTERFACE_DIR, default_interface_path
from dala_events.settings import Settings
from dala_events.wiring import page_file_name

COLLIDING_TODAY = (
    ("a/b", "a_b"),
    ("a/b", "a:b"),
    (".", ".."),
    (".", "learner"),
    ("Ann", "ann"),
    ("ANN", "Ann"),
    ("café", "cafe\u0301"),  # the same word composed and decomposed
    ("Zoë", "zoe"),
    ("a", "\u0430"),  # Latin a, Cyrillic a
    ("a", "\uff41"),  # Latin a, fullwidth a
    ("x/../y", "x_.._y"),
    ("ann.html", "ann"),
)
SAFE_NAME = re.compile(r"[a-z0-9_-]+(\.[0-9a-f]{16})?\.html")


def _learner_ids() -> st.SearchStrategy[str]:
    def valid(value: str) -> bool:
        try:
            check_learner_id(value)
        except ValueError:
            return False
        return True

    plain = st.text(alphabet="abcAB0_-./ \u00e9\u0301", min_size=1, max_size=12)
    anything = st.text(min_size=1, max_size=MAX_LEARNER_ID_LENGTH)
    return st.one_of(plain, anything).filter(valid)


@pytest.mark.parametrize("first, second", COLLIDING_TODAY)
def test_ids_that_shared_a_page_file_have_their_own(first: str, second: str) -> None:
    assert page_file_name(first) != page_file_name(second)
    assert page_file_name(first).casefold() != page_file_name(second).casefold()


@given(first=_learner_ids(), second=_learner_ids())
@settings(max_examples=400)
def test_page_file_names_are_one_to_one_and_safe_everywhere(first: str, second: str) -> None:
    names = page_file_name(first), page_file_name(second)
    for name in names:
        assert SAFE_NAME.fullmatch(name), name  # lowercase ASCII: the same on every file system
        assert len(name.encode()) <= 255 and not name.startswith(".")
        assert unicodedata.normalize("NFD", name) == name  # nothing a file system could normalise
    if first != second:
        assert names[0].casefold() != names[1].casefold()
    else:
        assert names[0] == names[1]


def test_plain_ids_keep_their_name_and_others_stay_recognisable() -> None:
    assert page_file_name("student123") == "student123.html"
    assert page_file_name("kim-2_b") == "kim-2_b.html"
    assert re.fullmatch(r"ann\.[0-9a-f]{16}\.html", page_file_name("Ann"))
    assert re.fullmatch(r"zoe\.[0-9a-f]{16}\.html", page_file_name("Zoë"))
    assert re.fullmatch(r"x_y\.[0-9a-f]{16}\.html", page_file_name("x/../y"))
    assert re.fullmatch(r"learner\.[0-9a-f]{16}\.html", page_file_name(".."))
    # Fixed for good, as the README shows them: erasure finds a page by this name.
    assert page_file_name("Ann") == "ann.17239b6e25011033.html"
    assert page_file_name("a/b") == "a_b.c14cddc033f64b9d.html"
    long_id = "Ä" * MAX_LEARNER_ID_LENGTH
    assert len(page_file_name(long_id)) < 100


def test_every_way_of_choosing_a_page_path_uses_the_one_name(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/school.db")
    with Dala.open(settings) as dala:
        for learner in ("a/b", "student123", ".."):
            expected = tmp_path / "interface" / page_file_name(learner)
            assert dala.page_path(learner) == dala.storage.page_path(learner) == expected
            assert default_interface_path(learner) == DEFAULT_INTERFACE_DIR / page_file_name(learner)

    async def async_page() -> Path:
        async with await aio.AsyncDala.open(settings) as opened:
            await (await opened.profile("a/b")).add_interest("Kites")
            return await aio.generate_interface("a/b", store=opened.store)

    assert asyncio.run(async_page()) == tmp_path / "interface" / page_file_name("a/b")


def test_two_learners_whose_pages_collided_keep_their_own_and_erasure_takes_only_its_own(tmp_path: Path) -> None:
    with Dala.open(Settings(database_url=f"sqlite:///{tmp_path}/school.db")) as dala:
        learners = ("a/b", "a_b", ".", "..", "Ann", "ann")
        for learner in learners:
            dala.profile(learner).add_interest(f"Kites of {learner}")
        pages = {learner: dala.render_page(learner) for learner in learners}
        assert len(set(pages.values())) == len(learners)
        for learner, page in pages.items():
            assert page.parent == tmp_path / "interface"
            assert f"<title>Learner {learner} · DALA</title>" in page.read_text(encoding="utf-8")

        erased = dala.erase("a/b", reason="request 9")
        assert erased.page_removed == pages["a/b"] and not pages["a/b"].exists()
        assert pages["a_b"].exists() and "Kites of a_b" in pages["a_b"].read_text(encoding="utf-8")
        erase_learner("Ann", reason="request 10", store=dala.store, page=dala.page_path("Ann"))
        assert not pages["Ann"].exists() and pages["ann"].exists()
        assert sorted(path.name for path in (tmp_path / "interface").iterdir()) == sorted(
            pages[learner].name for learner in ("a_b", ".", "..", "ann")
        )


def test_erasure_also_removes_a_page_written_under_the_earlier_name_but_never_anothers(tmp_path: Path) -> None:
    """Before page names were unique, "Ann"'s page was `Ann.html` and "a/b"'s `a_b.html` (which
    `a_b` shares): erasing removes such a file only when it is that learner's page."""
    with Dala.open(Settings(database_url=f"sqlite:///{tmp_path}/school.db")) as dala:
        for learner in ("Ann", "a/b", "a_b"):
            dala.profile(learner).add_interest("Kites")
        folder = tmp_path / "interface"
        earlier_ann = dala.render_page("Ann", folder / "Ann.html")
        shared = dala.render_page("a_b")  # a_b's page, at the name a/b's page had too
        assert shared == folder / "a_b.html"
        dala.render_page("a/b")

        assert dala.erase("Ann", reason="request 11").page_removed == earlier_ann  # none at the new name
        assert not earlier_ann.exists()
        dala.erase("a/b", reason="request 12")
        assert shared.exists() and "<title>Learner a_b · DALA</title>" in shared.read_text(encoding="utf-8")
