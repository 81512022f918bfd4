"""The learner's page: rendered from the read models and history, escaped, self-contained;
checked in a real headless Chromium; and `dala demo` end to end through the console script."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from dala_events.attribution import recorded_as
from dala_events.demo import run_demo
from dala_events.errors import InvalidInput, LearnerNotFound
from dala_events.generate_interface import default_interface_path, generate_interface
from dala_events.hlp_module import LearnerProfile
from dala_events.store import SqlEventStore
from dala_events.wiring import page_file_name
from tests.conftest import IN_CI
from tests.test_cli_and_readme import run_dala

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
LONG_ZONE = "America/Argentina/Buenos_Aires"
INJECTED = '<script>window.__dala_xss = 1; document.title = "pwned";</script>'
INJECTED_IMG = '<img src=x onerror="window.__dala_xss = 2">'
SECTIONS = (
    "preferences",
    "interests",
    "struggles",
    "cognitive-metrics",
    "learning-objectives",
    "pathway",
    "badges",
    "scores",
    "activity-attempts",
    "timeline",
)


def _hostile_learner(store: SqlEventStore, tmp_path: Path) -> Path:
    run_demo("ann", 3, tmp_path / "first.html", store=store)
    with recorded_as("teacher:<b>evil</b>", reason=INJECTED):
        profile = LearnerProfile("ann", store=store)
        profile.add_interest(INJECTED)
        profile.add_struggle_area(INJECTED_IMG)
        profile.update_preference("note", "</style><script>window.__dala_xss = 3</script>")
    # A school far from UTC with a long zone name: the page's times and the chart's titles in it.
    return generate_interface("ann", tmp_path / "ann.html", store=store, time_zone=ZoneInfo(LONG_ZONE))


def test_page_shows_every_section_from_the_read_models_and_escapes_learner_text(
    sqlite_store: SqlEventStore, tmp_path: Path
) -> None:
    page = _hostile_learner(sqlite_store, tmp_path).read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}"' in page
    assert "<script" not in page.lower() and "onerror=" not in page.replace("onerror=&#34;", "")
    assert "&lt;script&gt;window.__dala_xss = 1;" in page
    assert "by teacher &lt;b&gt;evil&lt;/b&gt;" in page
    assert "by the assessment" in page and "by the learner" in page  # the audit timeline, in words
    assert "<svg" in page and "<polyline" in page  # the score chart
    assert "<progress" in page and "Trailblazer" in page
    assert not re.search(r"(src|href)=\"https?://", page)  # self-contained: nothing fetched
    assert '<meta name="viewport"' in page and '<html lang="en">' in page


def test_page_paths_and_errors(sqlite_store: SqlEventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with freeze_time("2026-10-01T10:00:00Z"):
        LearnerProfile("x/../y", store=sqlite_store).add_interest("Music")
        written = generate_interface("x/../y", store=sqlite_store)
    assert written == default_interface_path("x/../y") == Path("database/interface") / page_file_name("x/../y")
    assert written.name.startswith("x_y.") and written.resolve().parent == (tmp_path / "database/interface").resolve()
    assert written.exists() and "Generated 1 Oct 2026, 10:00 UTC" in written.read_text()
    with pytest.raises(LearnerNotFound):
        generate_interface("nobody", tmp_path / "n.html", store=sqlite_store)
    with pytest.raises(InvalidInput, match="output_path"):
        generate_interface("x/../y", tmp_path, store=sqlite_store)


def test_demo_twice_is_safe_and_keeps_the_learner(sqlite_store: SqlEventStore, tmp_path: Path) -> None:
    first = run_demo("kim", 4, tmp_path / "kim.html", store=sqlite_store)
    assert first.created and first.events_recorded == sqlite_store.stream_version("kim")
    again = run_demo("kim", 4, tmp_path / "kim.html", store=sqlite_store)
    assert not again.created and again.events_recorded == 0
    assert sqlite_store.stream_version("kim") == first.events_recorded
    actors = {event.metadata["actor"] for event in sqlite_store.read_stream("kim")}
    assert actors == {"system:demo", "system:assessment", "system:pathway", "learner:kim", "system:badges"}


def test_dala_demo_end_to_end_in_a_fresh_directory(tmp_path: Path) -> None:
    first = run_dala("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    page = tmp_path / "database" / "interface" / "student123.html"
    assert page.exists() and f"page written: {page.relative_to(tmp_path)}" in first.stdout
    assert "events recorded" in first.stdout and "1. " in first.stdout
    html = page.read_text()
    assert "Learner profile: student123" in html and "Next steps on the pathway" in html

    again = run_dala("demo", cwd=tmp_path)
    assert again.returncode == 0 and "already has a profile" in again.stdout

    # --out makes no folder (as export's does not): it says so and writes nothing.
    refused = run_dala("demo", "--learner", "lee", "--seed", "9", "--out", "pages/lee.html", cwd=tmp_path)
    assert refused.returncode == 1 and "the folder pages does not exist" in refused.stderr
    assert not (tmp_path / "pages").exists()
    (tmp_path / "pages").mkdir()
    other = run_dala("demo", "--learner", "lee", "--seed", "9", "--out", "pages/lee.html", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert (tmp_path / "pages" / "lee.html").exists()
    rendered = run_dala("interface", "lee", "--out", "lee-again.html", cwd=tmp_path)
    assert rendered.returncode == 0 and (tmp_path / "lee-again.html").exists()
    missing = run_dala("interface", "nobody", cwd=tmp_path)
    assert missing.returncode == 1 and "no profile" in missing.stderr


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


_LAYOUT_PROBLEMS = """
document.querySelectorAll("details").forEach(details => { details.open = true; });
const root = document.documentElement;
const clippedAway = cell => {  // inside a visually hidden (clipped) element, e.g. a stacked table's head
  for (let e = cell; e && e !== document.body; e = e.parentElement) {
    if (getComputedStyle(e).clipPath !== "none") return true;
  }
  return false;
};
const broken = [];
for (const cell of document.querySelectorAll("td, th")) {
  if (!cell.getClientRects().length || clippedAway(cell)) continue;
  const box = cell.getBoundingClientRect();
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest("progress")) continue;  // fallback text, not rendered
    for (const word of node.data.matchAll(/[^\\s\\-\u2013]+/g)) {
      const range = document.createRange();
      range.setStart(node, word.index);
      range.setEnd(node, word.index + word[0].length);
      const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      const r = range.getBoundingClientRect();
      if (lines.size > 1 || r.right > box.right + 1 || r.left < box.left - 1) broken.push(word[0]);
    }
  }
}
const chartText = [];
const chartClipped = [];
for (const svg of document.querySelectorAll("#scores svg.chart")) {
  const box = svg.getBoundingClientRect();
  if (!box.width) continue;
  const scale = box.width / svg.viewBox.baseVal.width;
  for (const text of svg.querySelectorAll("text")) {
    chartText.push([text.textContent, parseFloat(getComputedStyle(text).fontSize) * scale]);
    const r = text.getBoundingClientRect();
    if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1) {
      chartClipped.push(text.textContent);
    }
  }
}
return {
  width: window.innerWidth,
  overflow: root.scrollWidth - root.clientWidth,
  cells: document.querySelectorAll("td, th").length,
  broken: broken,
  chartText: chartText,
  chartClipped: chartClipped,
};
"""
"""Opens every <details>, then measures: horizontal overflow of the document; words of table
cells that are split over lines or stick out of their cell; the rendered size of the visible
chart's text (its font size times the SVG's scale), and which of it sticks out of the chart."""


def _at_width(driver: Any, width: int, height: int = 900) -> None:
    """Emulate a viewport exactly `width` CSS px wide (a headless window cannot be made narrower
    than 500 px)."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def _full_page_screenshot(driver: Any, width: int, path: Path) -> None:
    _at_width(driver, width, int(driver.execute_script("return document.documentElement.scrollHeight")))
    assert driver.save_screenshot(str(path))
    _at_width(driver, width)


def test_page_in_headless_chromium(sqlite_store: SqlEventStore, tmp_path: Path) -> None:
    found = _chromium()
    if found is None:
        reason = "headless Chromium not installed (Debian packages chromium and chromium-driver)"
        if IN_CI:
            pytest.fail(f"{reason}; CI must run the browser test")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    page = _hostile_learner(sqlite_store, tmp_path)
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,2000")
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        _at_width(driver, 1280)
        driver.get(page.resolve().as_uri())
        assert driver.title == "Learner ann · DALA"
        for section in SECTIONS:
            element = driver.find_element(By.ID, section)
            assert element.is_displayed() and element.size["height"] > 0, section
        assert driver.execute_script("return window.__dala_xss === undefined")
        interests = driver.find_element(By.ID, "interests").text
        assert "<script>window.__dala_xss = 1;" in interests  # shown as text
        assert driver.find_elements(By.CSS_SELECTOR, "#scores svg polyline")
        _full_page_screenshot(driver, 1280, ARTIFACTS / "learner-page.png")

        for width in (1280, 390):  # a desktop, a phone
            _at_width(driver, width)
            found_problems = driver.execute_script(_LAYOUT_PROBLEMS)
            assert found_problems["width"] == width
            assert found_problems["overflow"] <= 0, f"horizontal overflow at {width} px"
            assert found_problems["cells"] > 20
            assert found_problems["broken"] == [], f"words broken in table cells at {width} px"
            sizes = found_problems["chartText"]
            assert len(sizes) >= 8, f"chart text not found at {width} px"  # 5 y ticks, x ticks, 2 titles
            small = [(text, round(size, 1)) for text, size in sizes if size < 12]
            assert small == [], f"chart text under 12 px at {width} px"
            assert found_problems["chartClipped"] == [], f"chart text cut off at {width} px"
        _full_page_screenshot(driver, 390, ARTIFACTS / "learner-page-phone.png")

        # The checks can fail: squeeze the cells and let words break anywhere, and they notice.
        driver.execute_script(
            "const style = document.createElement('style');"
            "style.textContent = 'td, th { overflow-wrap: anywhere; max-width: 3ch; }';"
            "document.head.append(style);"
        )
        assert driver.execute_script(_LAYOUT_PROBLEMS)["broken"]
        driver.execute_script(
            "document.querySelector('svg.chart-narrow text.axis-title').textContent += ' and words it has no room for';"
        )
        _at_width(driver, 390)
        assert driver.execute_script(_LAYOUT_PROBLEMS)["chartClipped"]
    finally:
        driver.quit()
    assert os.path.getsize(ARTIFACTS / "learner-page.png") > 10_000
    assert os.path.getsize(ARTIFACTS / "learner-page-phone.png") > 10_000
