"""Presence hysteresis: two RSSI thresholds, smoothing, and an away timeout measured from the
last beacon that kept the tag home."""

from __future__ import annotations

import pytest

from home_unit.presence import AWAY, HOME, UNKNOWN, Change, PresenceTracker, Thresholds

TH = Thresholds(enter_dbm=-70, exit_dbm=-85, away_timeout_s=60, smoothing=1.0)


def test_strong_beacon_brings_tag_home_weak_one_does_not() -> None:
    t = PresenceTracker(TH)
    assert t.observe(-80, 10) == (None, False)  # between the thresholds: not yet home
    assert t.state == UNKNOWN
    change, kept = t.observe(-65, 20)
    assert change == Change(HOME, 20, -65) and kept


def test_edge_of_range_does_not_flap() -> None:
    """A tag hovering between the thresholds stays home; it is never reported in and out."""
    t = PresenceTracker(TH)
    t.observe(-60, 0)
    changes = []
    for i, rssi in enumerate([-84, -72, -83, -79, -85, -71] * 20):
        now = 10.0 * (i + 1)
        c, kept = t.observe(rssi, now)
        assert kept
        changes.append(c)
        changes.append(t.expire(now))
    assert changes == [None] * len(changes)
    assert t.state == HOME


def test_away_only_after_timeout_of_silence_and_dated_at_last_beacon() -> None:
    t = PresenceTracker(TH)
    t.observe(-60, 100)
    t.observe(-70, 130)
    assert t.expire(189.9) is None
    assert t.deadline() == 190
    change = t.expire(190)
    assert change == Change(AWAY, 130, -70)  # when it was last heard, not when we noticed
    assert t.state == AWAY and t.deadline() is None
    assert t.expire(1000) is None  # reported once


def test_weak_beacons_do_not_keep_a_tag_home() -> None:
    """Beacons below the exit threshold (a tag outside, heard through a wall) do not refresh."""
    t = PresenceTracker(TH)
    t.observe(-60, 0)
    for now in range(10, 60, 10):
        assert t.observe(-95, now) == (None, False)
    assert t.expire(60) == Change(AWAY, 0, -60)


def test_return_after_away_needs_the_enter_threshold_again() -> None:
    t = PresenceTracker(TH)
    t.observe(-60, 0)
    t.expire(60)
    assert t.observe(-80, 70) == (None, False)
    assert t.observe(-69, 80)[0] == Change(HOME, 80, -69)


def test_smoothing_rides_out_a_single_deep_fade() -> None:
    th = Thresholds(enter_dbm=-70, exit_dbm=-85, away_timeout_s=60, smoothing=0.3)
    t = PresenceTracker(th)
    for now in range(0, 50, 10):
        t.observe(-65, now)
    assert t.state == HOME
    _, kept = t.observe(-100, 50)  # one faded beacon: smoothed -75.5, still above exit
    assert kept
    # and a single strong spike does not bring an away tag home
    t2 = PresenceTracker(th)
    for now in range(0, 50, 10):
        t2.observe(-95, now)
    assert t2.observe(-60, 50) == (None, False)


def test_restored_home_state_expires_from_the_stored_time() -> None:
    t = PresenceTracker(TH, HOME, last_kept=1000.0, rssi=-66)
    assert t.expire(1059) is None
    assert t.expire(1060) == Change(AWAY, 1000.0, -66)


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError):
        Thresholds(enter_dbm=-90, exit_dbm=-80)
    with pytest.raises(ValueError):
        Thresholds(away_timeout_s=0)
    with pytest.raises(ValueError):
        Thresholds(smoothing=0)
    with pytest.raises(ValueError):
        PresenceTracker(TH, HOME)
