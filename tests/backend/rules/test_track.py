"""The track's spike test (backend/rules/track.py, `believed`), on planar points."""

from __future__ import annotations

from typing import Any

from backend.rules import track

MOVE_MPS, MAX_SPEED_MPS, REANCHOR = 2.5, 70.0, 3


def judge(fixes: list[tuple[int, float, float]]) -> tuple[list[float], dict[str, Any]]:
    """The accuracy believed for each (t, x, accuracy) fix, and the track's state after."""
    st: dict[str, Any] = {}
    out = [
        track.believed(st, t, x, 0.0, acc, MOVE_MPS, MAX_SPEED_MPS, REANCHOR) for t, x, acc in fixes
    ]
    return out, st


def test_a_fix_out_and_back_again_is_a_spike() -> None:
    # 80 m out after a missed fix (within 30 s on foot and both accuracies, so explained),
    # then back where the wearer stood 15 s later: more than walking pace allows from the
    # outlier, well within what the fix before it allows.
    believed, st = judge([(0, 0.0, 20.0), (30, 80.0, 20.0), (45, 2.0, 10.0)])
    assert believed == [20.0, 20.0, 10.0]
    assert st["spiked"] == [30]
    assert st["anchor"][:2] == [45, 2.0]


def test_an_outlier_after_a_gap_is_a_spike() -> None:
    # A phone indoors: a fix, 70 s without one, an outlier 80 m off (reported 30 m, which the
    # fix before the gap explains at walking pace), then the true fix 10 s later. The fix
    # before the gap is 85 s older than the true fix and still the one to judge it from.
    believed, st = judge([(0, 0.0, 20.0), (75, 80.0, 30.0), (85, 3.0, 20.0)])
    assert believed == [20.0, 30.0, 20.0]
    assert st["spiked"] == [75]
    assert st["anchor"][:2] == [85, 3.0]


def test_a_wearer_walking_on_or_turning_back_makes_no_spike() -> None:
    # Walking at 2 m/s and on, and walking 30 m out and back at 2 m/s: every fix explained,
    # none taken for a spike. Nor is a fix judged from an anchor more than SPIKE_S before
    # it (after a gap an old anchor would explain almost anything).
    for fixes in (
        [(0, 0.0, 5.0), (15, 30.0, 5.0), (30, 60.0, 5.0), (45, 90.0, 5.0)],
        [(0, 0.0, 5.0), (15, 30.0, 5.0), (30, 0.0, 5.0)],
        [(0, 0.0, 20.0), (80, 160.0, 20.0), (95, 0.0, 10.0)],
    ):
        st: dict[str, Any] = {}
        for t, x, acc in fixes:
            track.believed(st, t, x, 0.0, acc, MOVE_MPS, MAX_SPEED_MPS, REANCHOR)
            assert "spiked" not in st, (fixes, t)


def run_xy(fixes: list[tuple[int, float, float, float]]) -> dict[str, Any]:
    st: dict[str, Any] = {}
    for t, x, y, acc in fixes:
        track.believed(st, t, x, y, acc, MOVE_MPS, MAX_SPEED_MPS, REANCHOR, ref=f"f{t}")
    return st


# Standing at a bus stop, then on the bus at 8 m/s: more than the stop explains, so the first
# two fixes on the bus are doubted and the third re-anchors the track.
STOP = [(0, 0.0, 0.0, 5.0), (15, 0.0, 0.0, 5.0)]


def test_a_straight_run_the_track_re_anchors_on_vindicates_the_fixes_it_doubted() -> None:
    st = run_xy([*STOP, (30, 120.0, 0.0, 5.0), (45, 240.0, 0.0, 5.0), (60, 360.0, 0.0, 5.0)])
    assert st["vindicated"] == [[30, 5.0, "f30"], [45, 5.0, "f45"]]
    assert st["anchor"][:2] == [60, 360.0] and st["odds"] == []


def test_an_outlier_in_the_run_vindicates_nothing() -> None:
    # The middle fix 100 m to the side, reporting 10 m: the way through it is 61 m longer
    # than the direct way. Nor does the next fix keep what only the re-anchoring fix may say.
    st = run_xy([*STOP, (30, 120.0, 0.0, 5.0), (45, 240.0, 100.0, 10.0), (60, 360.0, 0.0, 5.0)])
    assert "vindicated" not in st
    st = run_xy([*STOP, (30, 120.0, 0.0, 5.0), (45, 240.0, 0.0, 5.0), (60, 360.0, 0.0, 5.0),
                 (75, 480.0, 0.0, 5.0)])  # fmt: skip
    assert "vindicated" not in st
