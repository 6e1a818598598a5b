"""One device's GNSS track as the position rules judge it: which fixes count, which are
jumps, and how much of a fix's reported accuracy to believe. The zone rule (zones.py) and the
proximity rule (proximity.py) both judge fixes this way, so a multipath fix means the same to
both.

The accuracy a receiver reports comes from its satellites' geometry and is optimistic under
multipath, exactly when it matters: a fix further from the last one the track explained (the
anchor) than both accuracies and the wearer's motion allow (`move_mps` on foot, or the speed
the track was already moving at) has its accuracy inflated by the excess. Such a fix is
"unexplained"; after `reanchor_fixes` of them in a row the wearer has moved on (a car pulling
away) and the latest becomes the anchor, believed at its reported accuracy.

An outlier can also lie within what the anchor allows (50-110 m in 15-30 s with urban
accuracies) and become the anchor itself, and the true fixes after it are then doubted. So a
fix the anchor cannot explain at walking pace is also judged from the anchor before it (a
spike test): if that one explains it and the fix lies nearer to it than the anchor did (out
and back again, where a wearer on the move goes on), the anchor was a spike. It is dropped,
and the caller is told (`believed`), as it may have judged the spike as explained.

Points are opaque pairs measured by a `Distance` the caller passes: planar metres for the
zone rule (its projected plane), great-circle metres on (lat, lon) for the proximity rule
(two people may be anywhere)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from backend.rules.base import Context
from backend.rules.model import TAG, Command, Obs
from firmware import frame as fr

Distance = Callable[[float, float, float, float], float]


def planar(x0: float, y0: float, x1: float, y1: float) -> float:
    return math.hypot(x1 - x0, y1 - y0)


# The spike test (`believed`) looks this many anchors back, at most SPIKE_S before the fix
# (an anchor from before a long gap in the fixes would explain almost anything). Two anchors
# back removed no more standing alerts than one (measured: docs/rules.md, promise (b)); 90 s,
# not 60, because a phone indoors goes 70 s without a fix and its first one after can be the
# outlier that would otherwise become the anchor.
SPIKE_FIXES = 1
SPIKE_S = 90


def usable(obs: Obs, max_accuracy_m: float, role: str = TAG) -> bool:
    """A GNSS fix from a device in `role`, with a fix and an accuracy worth judging."""
    return (
        obs.name == "fix"
        and obs.role == role
        and obs.v("source") == fr.SOURCE_GNSS
        and obs.v("fix_type") > 0
        and obs.v("acc_dm") / 10 <= max_accuracy_m
    )


def is_jump(
    prev: list[Any] | None,
    t: int,
    a: float,
    b: float,
    acc: float,
    max_speed_mps: float,
    dist: Distance = planar,
) -> bool:
    """Whether a fix implies more than `max_speed_mps` from the previous accepted one
    ([t, a, b, accuracy, ...]) beyond both accuracies: stuck or multipath GNSS."""
    if prev is None or t <= prev[0]:
        return False
    d = dist(prev[1], prev[2], a, b)
    slack: float = acc + prev[3]
    return d > slack and (d - slack) / (t - prev[0]) > max_speed_mps


def believed(
    st: dict[str, Any],
    t: int,
    a: float,
    b: float,
    acc: float,
    move_mps: float,
    max_speed_mps: float,
    reanchor_fixes: int,
    dist: Distance = planar,
    ref: str = "",
) -> float:
    """The accuracy to believe for a fix at (a, b), keeping the track's anchor in
    st["anchor"] ([t, a, b, accuracy, speed]), the unexplained fixes since in st["odd"] (and
    in st["odds"], [t, a, b, accuracy, ref] each), and the anchors before it in st["before"]
    (at most SPIKE_FIXES, each the one that explained the next). When the fix shows anchors
    to have been spikes (`_spiked_from`) they are dropped, the fix is judged from the anchor
    before them, and their event times are left in st["spiked"] until the next fix, for a
    caller that judged them as explained. When it re-anchors the track and lies on a straight
    run with the unexplained fixes before it (`_straight`: the wearer moved on, as on a bus
    pulling away, or the anchor was the outlier), those were where the wearer was: they are
    left in st["vindicated"] ([t, accuracy, ref] each) until the next fix, for a caller that
    judged them doubted."""
    st.pop("spiked", None)
    st.pop("vindicated", None)
    anchor: list[float] | None = st.get("anchor")
    if anchor is None or t <= anchor[0]:
        st["anchor"], st["odd"], st["before"], st["odds"] = [t, a, b, acc, 0.0], 0, [], []
        return acc
    chain = [*st.get("before", []), anchor]
    base = _spiked_from(chain, st.get("odd", 0), t, a, b, acc, move_mps, dist)
    if base is not None:
        st["spiked"] = [int(x[0]) for x in chain[base + 1 :]]
        chain = chain[: base + 1]
    excess = _excess(chain[-1], t, a, b, acc, move_mps, dist)
    odds = st.get("odds", []) if excess > 0 else []  # absent from states stored before it
    st["odd"] = 0 if excess <= 0 else st.get("odd", 0) + 1
    if excess > 0 and st["odd"] < reanchor_fixes:
        st["odds"] = [*odds, [t, a, b, acc, ref]][-reanchor_fixes:]
        return acc + excess
    if odds and _straight([*odds, [t, a, b, acc]], dist):
        st["vindicated"] = [[int(o[0]), o[3], o[4]] for o in odds]
    last = chain[-1]
    d = dist(last[1], last[2], a, b)
    st["before"] = chain[-SPIKE_FIXES:] if excess <= 0 else []
    st["anchor"], st["odd"], st["odds"] = (
        [t, a, b, acc, min(d / (t - last[0]), max_speed_mps)],
        0,
        [],
    )
    return acc


def _straight(run: list[list[Any]], dist: Distance) -> bool:
    """Whether fixes [t, a, b, accuracy, ...] lie on a straight run: at each one between
    two others, the way through it is longer than the direct way by no more than its own
    accuracy. An outlier between true fixes is off to one side by tens of metres (a detour
    of tens of metres more); true fixes of a wearer moving on, or standing, are not."""
    for p, q, r in zip(run, run[1:], run[2:], strict=False):
        detour = dist(p[1], p[2], q[1], q[2]) + dist(q[1], q[2], r[1], r[2])
        if detour - dist(p[1], p[2], r[1], r[2]) > q[3]:
            return False
    return len(run) >= 3


def _spiked_from(
    chain: list[list[float]],
    odd: int,
    t: int,
    a: float,
    b: float,
    acc: float,
    move_mps: float,
    dist: Distance,
) -> int | None:
    """The index in `chain` (anchors, each explained from the one before, the last the
    track's) of the anchor the fix at (a, b) shows the later ones to be a spike from: it
    explains the fix, the fix is nearer to it than each later anchor is (out and back, where
    a wearer on the move goes on), and the track's anchor cannot explain the fix at walking
    pace (its own speed came from the spike). None if there is none, or after unexplained
    fixes (the chain is then not what the track last believed)."""
    last = chain[-1]
    if odd or len(chain) < 2 or _excess([*last[:4], 0.0], t, a, b, acc, move_mps, dist) <= 0:
        return None
    for i in range(len(chain) - 2, -1, -1):
        base = chain[i]
        if t - base[0] > SPIKE_S:
            return None
        near = dist(base[1], base[2], a, b)
        if all(dist(base[1], base[2], m[1], m[2]) > near for m in chain[i + 1 :]) and (
            _excess(base, t, a, b, acc, move_mps, dist) <= 0
        ):
            return i
    return None


def _excess(
    anchor: list[float], t: int, a: float, b: float, acc: float, move_mps: float, dist: Distance
) -> float:
    """How far a fix at (a, b) lies beyond what `anchor` explains: both accuracies and the
    wearer's motion since (`move_mps` on foot, or the speed the track was moving at)."""
    dt = t - anchor[0]
    d = dist(anchor[1], anchor[2], a, b)
    return d - max(move_mps, anchor[4]) * dt - acc - anchor[3]


def ask_fast(
    st: dict[str, Any], ctx: Context, device: int, t: int, ref: str, fast_for_s: int, reason: str
) -> None:
    """Ask a device (a tag, a victim's device) to sample fast until t + fast_for_s (a COMMAND
    with cmd_config CFG_FAST_UNTIL), unless an earlier request still covers half of that;
    st["fast_until"] remembers the last request. Sent for live data only."""
    if st["fast_until"] >= t + fast_for_s // 2:
        return
    st["fast_until"] = t + fast_for_s
    if ctx.live:
        ctx.commands.append(
            Command(device, fr.CFG_FAST_UNTIL, st["fast_until"], reason, ref, fast_for_s // 2)
        )
