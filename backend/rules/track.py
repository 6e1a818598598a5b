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


EARTH_RADIUS_M = 6_371_008.8


def great_circle(lat0: float, lon0: float, lat1: float, lon1: float) -> float:
    """Haversine metres between two (lat, lon) points in degrees."""
    p0, p1 = math.radians(lat0), math.radians(lat1)
    a = (
        math.sin((p1 - p0) / 2) ** 2
        + math.cos(p0) * math.cos(p1) * math.sin(math.radians(lon1 - lon0) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


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
) -> float:
    """The accuracy to believe for a fix at (a, b), keeping the track's anchor in
    st["anchor"] ([t, a, b, accuracy, speed]) and the unexplained fixes since in st["odd"]."""
    anchor: list[float] | None = st.get("anchor")
    if anchor is None or t <= anchor[0]:
        st["anchor"], st["odd"] = [t, a, b, acc, 0.0], 0
        return acc
    dt = t - anchor[0]
    d = dist(anchor[1], anchor[2], a, b)
    excess = d - max(move_mps, anchor[4]) * dt - acc - anchor[3]
    st["odd"] = 0 if excess <= 0 else st.get("odd", 0) + 1
    if excess > 0 and st["odd"] < reanchor_fixes:
        return acc + excess
    st["anchor"], st["odd"] = [t, a, b, acc, min(d / dt, max_speed_mps)], 0
    return acc


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
