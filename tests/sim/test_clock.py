"""Sim clock and local-time helpers, including both daylight-saving changes in London."""

from __future__ import annotations

from datetime import date, time

import pytest

from sim import clock

H = clock.MS_PER_H


def test_clock_is_integer_ms_and_only_moves_forward() -> None:
    c = clock.SimClock(1_750_000_000_000)
    assert c.advance(1500) == 1_750_000_001_500
    assert c.advance_to(1_750_000_002_000) == 1_750_000_002_000
    with pytest.raises(clock.ClockError):
        c.advance(-1)
    with pytest.raises(clock.ClockError):
        c.advance(1.5)  # type: ignore[arg-type]
    with pytest.raises(clock.ClockError):
        c.advance_to(0)
    assert list(c.ticks(c.now_ms + 3000, 1000)) == [
        1_750_000_003_000,
        1_750_000_004_000,
        1_750_000_005_000,
    ]


def test_local_time_in_summer_and_winter() -> None:
    assert clock.local_to_ms(date(2025, 1, 15), time(19, 0)) == clock.from_datetime(
        clock.utc(0).replace(year=2025, month=1, day=15, hour=19)
    )
    summer = clock.local_to_ms(date(2025, 7, 15), time(19, 0))
    assert clock.utc(summer).hour == 18  # BST is UTC+1
    assert clock.to_local(summer).hour == 19


def test_day_lengths_across_the_clock_changes() -> None:
    spring = clock.day_bounds(date(2025, 3, 30))
    autumn = clock.day_bounds(date(2025, 10, 26))
    normal = clock.day_bounds(date(2025, 6, 1))
    assert spring[1] - spring[0] == 23 * H
    assert autumn[1] - autumn[0] == 25 * H
    assert normal[1] - normal[0] == 24 * H


def test_overnight_curfew_is_11_or_13_hours_on_change_nights() -> None:
    start, end = time(19, 0), time(7, 0)
    s, e = clock.window_ms(date(2025, 3, 29), start, end)
    assert e - s == 11 * H
    s, e = clock.window_ms(date(2025, 10, 25), start, end)
    assert e - s == 13 * H
    s, e = clock.window_ms(date(2025, 6, 1), start, end)
    assert e - s == 12 * H
    assert clock.to_local(e).hour == 7 and clock.to_local(s).hour == 19


def test_nonexistent_and_ambiguous_local_times() -> None:
    gap = clock.local_to_ms(date(2025, 3, 30), time(1, 30))  # 01:30 does not exist
    local = clock.to_local(gap)
    assert (local.hour, local.minute) == (2, 30)
    fold = clock.local_to_ms(date(2025, 10, 26), time(1, 30))  # happens twice: the first
    assert clock.utc(fold).hour == 0 and clock.utc(fold).minute == 30


def test_windows_include_the_night_that_began_before_the_run() -> None:
    ws = clock.windows_ms(date(2025, 6, 9), 2, time(19, 0), time(7, 0))
    assert len(ws) == 3
    assert ws[0][1] == clock.local_to_ms(date(2025, 6, 9), time(7, 0))


def test_bad_inputs() -> None:
    with pytest.raises(clock.ClockError):
        clock.zone("Europe/Atlantis")
    with pytest.raises(clock.ClockError):
        clock.parse_hhmm("7pm")
    with pytest.raises(clock.ClockError):
        clock.from_datetime(clock.utc(0).replace(tzinfo=None))
