"""The learner page's chart of scores over time: placed by time on the 0-100 scale, round
ticks, titled axes, one told-apart series per objective, described in words."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dala_events.generate_interface import SCORE_TICKS, SERIES_STYLES, ScoreChart, score_chart
from dala_events.persistence_manager import ActivityAttemptData

START = datetime(2026, 11, 3, 15, 30, tzinfo=UTC)


def _attempt(when: datetime, score: float | None, lo_id: str = "MATH_LO_001", n: int = 1) -> ActivityAttemptData:
    return ActivityAttemptData(
        lo_id=lo_id, activity_id=f"act_{n}", activity_type="quiz", attempt_timestamp=when, score=score
    )


def _chart(
    attempts: list[ActivityAttemptData],
    *,
    width: int = 640,
    titles: dict[str, str] | None = None,
    time_zone: tzinfo = UTC,
) -> ScoreChart:
    chart = score_chart(attempts, width=width, titles=titles, time_zone=time_zone)
    assert chart is not None
    return chart


def test_x_positions_are_proportional_to_the_attempts_times() -> None:
    offsets = [timedelta(0), timedelta(hours=1), timedelta(days=1, hours=2), timedelta(days=9), timedelta(days=23)]
    chart = _chart([_attempt(START + offset, 50 + i, n=i) for i, offset in enumerate(offsets)])
    xs = [point.x for point in chart.points]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    total = offsets[-1].total_seconds()
    for x, offset in zip(xs, offsets, strict=True):
        share = (x - xs[0]) / (xs[-1] - xs[0])
        assert share == pytest.approx(offset.total_seconds() / total, abs=1e-9)
    assert chart.plot_left <= xs[0] < xs[-1] <= chart.plot_right
    # Evenly spaced points would put the second one a quarter of the way; by time it is at 1/552.
    assert (xs[1] - xs[0]) / (xs[-1] - xs[0]) < 0.01


ZONES = (UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), ZoneInfo("Australia/Lord_Howe"))
"""UTC, a zone whose clocks go back an hour on 1 Nov 2026, a half-hour offset, a half-hour
daylight-saving shift."""


@given(
    gaps=st.lists(st.integers(min_value=1, max_value=40 * 24 * 60), min_size=1, max_size=12),
    width=st.sampled_from([340, 640]),
    zone=st.sampled_from(ZONES),
    start=st.sampled_from([START, datetime(2026, 10, 31, 22, 15, tzinfo=UTC), datetime(2027, 3, 13, 23, tzinfo=UTC)]),
)
def test_proportional_for_any_gaps_and_ticks_inside_the_plot(
    gaps: list[int], width: int, zone: tzinfo, start: datetime
) -> None:
    times = [start]
    for gap in gaps:
        times.append(times[-1] + timedelta(minutes=gap))
    chart = _chart([_attempt(when, 60, n=i) for i, when in enumerate(times)], width=width, time_zone=zone)
    xs = [point.x for point in chart.points]
    span = (times[-1] - times[0]).total_seconds()
    for x, when in zip(xs, times, strict=True):
        assert (x - xs[0]) / (xs[-1] - xs[0]) == pytest.approx((when - times[0]).total_seconds() / span, abs=1e-6)
    assert chart.x_ticks, "at least one tick"
    assert all(chart.plot_left - 1e-6 <= x <= chart.plot_right + 1e-6 for x, _ in chart.x_ticks)
    labels = [label for _, label in chart.x_ticks]
    assert len(set(labels)) == len(labels)  # never two ticks reading the same
    assert len(labels) * 6 * chart.font_size <= (chart.plot_right - chart.plot_left) + 6 * chart.font_size
    tick_xs = [x for x, _ in chart.x_ticks]
    assert all(a < b for a, b in itertools.pairwise(tick_xs))  # in order, never two at one place


def test_the_time_axis_keeps_the_schools_clock() -> None:
    new_york = ZoneInfo("America/New_York")  # UTC-4 until 1 Nov 2026 02:00, then UTC-5
    weeks = _chart(
        [_attempt(START - timedelta(days=12), 40, n=1), _attempt(START + timedelta(days=12), 80, n=2)],
        time_zone=new_york,
    )
    assert weeks.x_title == "Date of attempt, 2026 (New York time)"
    assert [label for _, label in weeks.x_ticks] == ["26 Oct", "2 Nov", "9 Nov", "16 Nov"]  # Mondays
    x_of = {label: x for x, label in weeks.x_ticks}
    per_second = (x_of["9 Nov"] - x_of["2 Nov"]) / timedelta(days=7).total_seconds()
    # Midnight to midnight across the change is a week and an hour.
    assert x_of["2 Nov"] - x_of["26 Oct"] == pytest.approx(per_second * timedelta(days=7, hours=1).total_seconds())

    # Hours of the zone's clock; the hour it lives twice is ticked once, and takes its room.
    back = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)  # 00:30 in New York
    hours = _chart([_attempt(back, 40, n=1), _attempt(back + timedelta(hours=4), 80, n=2)], time_zone=new_york)
    assert hours.x_title == "Time of attempt on 1 Nov 2026 (New York time)"
    assert [label for _, label in hours.x_ticks] == ["00:30", "01:00", "01:30", "02:00", "02:30", "03:00", "03:30"]
    x_of = {label: x for x, label in hours.x_ticks}
    assert x_of["02:00"] - x_of["01:30"] == pytest.approx(3 * (x_of["01:30"] - x_of["01:00"]))  # 01:30 to 02:00 EST
    assert hours.points[0].label.endswith("1 Nov 2026, 00:30") and hours.points[1].label.endswith("1 Nov 2026, 03:30")
    forward = datetime(2027, 3, 14, 5, 40, tzinfo=UTC)  # 00:40 in New York; at 02:00 the clocks go to 03:00
    skipped = _chart([_attempt(forward, 40, n=1), _attempt(forward + timedelta(hours=3), 80, n=2)], time_zone=new_york)
    labels = [label for _, label in skipped.x_ticks]
    assert labels == ["14 Mar", "01:00", "03:00", "04:00", "05:00"]  # no 02:00: the clocks never read it
    # The zone is named in the axis title where it fits (else the page's header names it alone).
    weeks_apart = [_attempt(START, 40, n=1), _attempt(START + timedelta(days=24), 80, n=2)]
    buenos_aires = ZoneInfo("America/Argentina/Buenos_Aires")
    assert _chart(weeks_apart, time_zone=buenos_aires).x_title == "Date of attempt, 2026 (Buenos Aires time)"
    assert score_chart(weeks_apart, width=340, font_size=13, time_zone=buenos_aires).x_title == "Date of attempt, 2026"  # type: ignore[union-attr]
    london = score_chart(weeks_apart, width=340, font_size=13, time_zone=ZoneInfo("Europe/London"))
    assert london is not None and london.x_title == "Date of attempt, 2026 (London time)"
    # A day that is a day in UTC and two in Kolkata.
    kolkata = _chart(
        [_attempt(datetime(2026, 11, 3, 10, tzinfo=UTC), 40, n=1), _attempt(datetime(2026, 11, 3, 20, tzinfo=UTC), 80)],
        time_zone=ZoneInfo("Asia/Kolkata"),
    )
    assert kolkata.x_title == "Time of attempt, 3 Nov 2026 to 4 Nov 2026 (Kolkata time)"
    assert kolkata.description.startswith("2 scored attempts at 1 objective between 3 Nov 2026 and 4 Nov 2026")


def test_the_score_axis_is_the_documented_0_to_100_scale_with_round_ticks() -> None:
    chart = _chart([_attempt(START, 40, n=1), _attempt(START + timedelta(days=2), 60, n=2)])
    assert SCORE_TICKS == (0, 25, 50, 75, 100)
    assert [label for _, label in chart.y_ticks] == ["0", "25", "50", "75", "100"]
    y_of = {label: y for y, label in chart.y_ticks}
    assert y_of["0"] == chart.plot_bottom and y_of["100"] == chart.plot_top
    assert y_of["50"] == pytest.approx((chart.plot_top + chart.plot_bottom) / 2)
    first, second = chart.points
    assert first.y == pytest.approx(chart.plot_bottom - 0.4 * (chart.plot_bottom - chart.plot_top))
    assert second.y == pytest.approx(chart.plot_bottom - 0.6 * (chart.plot_bottom - chart.plot_top))
    # A score outside the scale (only a row written before scores were checked can hold one) is
    # drawn at its edge; its label keeps the real value.
    old_rows = [
        _attempt(START, 0, n=1).model_copy(update={"score": -1.0}),
        _attempt(START + timedelta(days=1), 100, n=2).model_copy(update={"score": 150.0}),
    ]
    odd = _chart(old_rows)
    assert [point.y for point in odd.points] == [odd.plot_bottom, odd.plot_top]
    assert [label for _, label in odd.y_ticks] == ["0", "25", "50", "75", "100"]
    assert "score 150" in odd.points[1].label


def test_axes_are_titled_and_time_ticks_are_round() -> None:
    weeks = _chart([_attempt(START, 40, n=1), _attempt(START + timedelta(days=24), 80, n=2)])
    assert weeks.y_title == "Score (%)" and weeks.x_title == "Date of attempt, 2026 (UTC)"
    labels = [label for _, label in weeks.x_ticks]
    assert labels == ["9 Nov", "16 Nov", "23 Nov"]  # Mondays
    one_day = _chart([_attempt(START, 40, n=1), _attempt(START + timedelta(hours=3), 80, n=2)])
    assert one_day.x_title == "Time of attempt on 3 Nov 2026 (UTC)"
    hours = [label for _, label in one_day.x_ticks]
    assert hours == ["15:30", "16:00", "16:30", "17:00", "17:30", "18:00", "18:30"]
    steps = {round(b - a, 6) for (a, _), (b, _) in itertools.pairwise(one_day.x_ticks)}
    assert len(steps) == 1  # evenly spaced
    two_days = _chart([_attempt(START, 40, n=1), _attempt(START + timedelta(hours=27), 80, n=2)])
    assert [label for _, label in two_days.x_ticks] == ["4 Nov", "12:00"]  # not 18:00 twice
    assert two_days.x_title == "Time of attempt, 3 Nov 2026 to 4 Nov 2026 (UTC)"
    same_minute = _chart([_attempt(START, 40, n=1), _attempt(START + timedelta(seconds=20), 80, n=2)])
    ticks = [label for _, label in same_minute.x_ticks]
    assert ticks and len(set(ticks)) == len(ticks)
    assert same_minute.points[0].x < same_minute.points[1].x


def test_one_series_per_objective_told_apart_by_colour_and_by_marker_and_dash() -> None:
    attempts = [
        _attempt(START + timedelta(days=day), 30 + day, lo_id=lo_id, n=day)
        for day, lo_id in enumerate(["MATH_LO_001", "LIT_LO_001", "MATH_LO_001", "X_LO", "LIT_LO_001", "SCI_LO_001"])
    ]
    titles = {"MATH_LO_001": "Know number bonds to 20", "LIT_LO_001": "Hear and blend the sounds in short words"}
    chart = _chart(attempts, titles=titles)
    assert [series.lo_id for series in chart.series] == ["MATH_LO_001", "LIT_LO_001", "X_LO", "SCI_LO_001"]
    assert [series.title for series in chart.series][:3] == [*titles.values(), "X_LO"]
    assert [len(series.points) for series in chart.series] == [2, 2, 1, 1]
    styles = [(series.colour, series.marker, series.dash) for series in chart.series]
    for colours_markers_dashes in zip(*styles, strict=True):
        assert len(set(colours_markers_dashes)) == len(styles)  # colours, markers and dashes all differ
    assert len({colour for colour, _, _ in SERIES_STYLES}) == len(SERIES_STYLES)
    assert len({(marker, dash) for _, marker, dash in SERIES_STYLES}) == len(SERIES_STYLES)
    for series in chart.series:
        assert series.marker_path(10, 10).startswith("M") and series.marker_path(10, 10).endswith("Z")


def test_the_chart_is_described_in_words() -> None:
    attempts = [
        _attempt(START, 42.9, n=1),
        _attempt(START + timedelta(days=7), 80, n=2),
        _attempt(START + timedelta(days=9), 60.4, lo_id="LIT_LO_001", n=1),
        _attempt(START + timedelta(days=10), 71.5, lo_id="LIT_LO_001", n=2),
    ]
    chart = _chart(attempts, titles={"MATH_LO_001": "Know number bonds to 20"})
    assert chart.description == (
        "4 scored attempts at 2 objectives between 3 Nov 2026 and 13 Nov 2026, scores out of 100."
        " Know number bonds to 20: 2 attempts: from 42.9 on 3 Nov 2026 to 80 on 10 Nov 2026."
        " LIT_LO_001: 2 attempts: from 60.4 on 12 Nov 2026 to 71.5 on 13 Nov 2026."
    )
    assert chart.points[0].label == "Know number bonds to 20: act_1 (Quiz), score 42.9, 3 Nov 2026, 15:30"


def test_no_chart_without_two_scored_attempts() -> None:
    assert score_chart([]) is None
    assert score_chart([_attempt(START, 50), _attempt(START + timedelta(days=1), None)]) is None


def test_long_spans_name_the_years() -> None:
    across = _chart([_attempt(START, 40, n=1), _attempt(START + timedelta(days=80), 80, n=2)])
    assert across.x_title == "Date of attempt, 2026 to 2027 (UTC)"
    assert all(label.endswith(("2026", "2027")) for _, label in across.x_ticks)
    years = _chart([_attempt(START + timedelta(days=day), 50, n=day) for day in (0, 400, 1200)], width=340)
    labels = [label for _, label in years.x_ticks]
    assert labels and len(set(labels)) == len(labels)
