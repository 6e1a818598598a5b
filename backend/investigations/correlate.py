"""Crime-scene correlation: who was in a place during a time window, and — for a named
subject — where they were instead.

Accuracy semantics (docs/investigations.md). With `edge` the signed distance of a position to
the area's edge (negative inside) and `a` its accuracy (the fix's own estimate; for home
presence the RF range of the home unit):

- **within**: a measured position (a fix, or home presence) inside the area by at least
  k·a — inside even allowing for its error;
- **possibly within**: a measured position whose accuracy circle (k·a) reaches the area, or
  the straight path between two fixes at most `max_gap_s` apart passing within k·a of it
  (the accuracy interpolated along the path). Interpolation is an assumption about the path
  between measurements, never a measurement: it gives at most "possibly within";
- otherwise **not within**.

Everything is vectorized over all candidate subjects at once (numpy + shapely 2): fixes'
signed distances, the segments between consecutive fixes clipped to the window in time,
their distance to the area, the closest point and the time spent inside."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from sqlalchemy import Connection, Select

from backend.investigations import evidence as ev
from backend.investigations.area import Area
from backend.rules.geo import HOME_RANGE_M, M_PER_DEG_LAT
from backend.rules.schedule import merge, subtract

F64 = npt.NDArray[np.float64]

WITHIN = "within"
POSSIBLY = "possibly_within"
NOT_WITHIN = "not_within"
NO_DATA = "no_data"
_RANK = {WITHIN: 0, POSSIBLY: 1, NOT_WITHIN: 2, NO_DATA: 3}

FIX = "fix"
RF_HOME_FIX = "rf_home_fix"
INTERPOLATED = "interpolated"
HOME_PRESENCE = "home_presence"

MAX_WINDOW_S = 7 * 86400
MAX_PATH_POINTS = 2000


@dataclass(frozen=True)
class Params:
    """Query options (all have defaults; docs/investigations.md)."""

    k: float = 1.0  # accuracy multiplier: how many accuracies a position may be off by
    max_gap_s: int = 900  # interpolate only between fixes at most this far apart in time
    margin_m: float = 1500.0  # candidates: a fix within this of the area, in the window
    home_range_m: float = HOME_RANGE_M  # where a tag its home unit hears may be


@dataclass
class Approach:
    """One position relative to the area: a fix, a point interpolated between two fixes,
    or a home stay."""

    t: int
    lat: float
    lon: float
    distance_m: float  # to the area, 0 inside
    edge_m: float  # signed distance to the edge, negative inside
    accuracy_m: float
    source: str
    status: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    gap_s: int | None = None  # interpolated: time between the bracketing fixes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SubjectHit:
    subject_id: int
    reference: str
    name: str
    status: str
    closest: Approach
    inside_s: int  # time inside the area by the best estimate (fixes, interpolation, home)
    first_inside: int | None
    last_inside: int | None
    fixes_in_window: int
    devices: list[int]
    path: list[list[float]]  # [lon, lat, t] through the window, with clipped ends

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["closest"] = self.closest.as_dict()
        return d


@dataclass
class _Table:
    """Approaches of every subject as parallel arrays (one row per approach)."""

    subject: list[npt.NDArray[np.int64]] = field(default_factory=list)
    dist: list[F64] = field(default_factory=list)
    edge: list[F64] = field(default_factory=list)
    interp: list[npt.NDArray[np.int64]] = field(default_factory=list)
    status: list[npt.NDArray[np.int64]] = field(default_factory=list)
    inside_s: list[F64] = field(default_factory=list)
    first_in: list[F64] = field(default_factory=list)
    last_in: list[F64] = field(default_factory=list)
    build: list[Any] = field(default_factory=list)  # (kind, arrays) to build Approach lazily


def classify(edge: F64, acc: F64, k: float, measured: bool) -> npt.NDArray[np.int64]:
    """Status codes (0 within, 1 possibly, 2 not within) for positions."""
    reach = k * acc
    if measured:
        out = np.where(edge <= -reach, 0, np.where(edge <= reach, 1, 2))
    else:
        out = np.where(edge <= reach, 1, 2)
    return np.asarray(out, dtype=np.int64)


_CODES = (WITHIN, POSSIBLY, NOT_WITHIN)


def check_window(t0: int, t1: int) -> None:
    if t1 <= t0:
        raise ValueError("the window must end after it starts")
    if t1 - t0 > MAX_WINDOW_S:
        raise ValueError(f"the window may be at most {MAX_WINDOW_S // 86400} days")


def analyse(
    area: Area,
    t0: int,
    t1: int,
    fixes: ev.Fixes,
    stays: list[ev.HomeStay],
    p: Params,
) -> dict[int, tuple[str, Approach, int, int | None, int | None, int]]:
    """Per subject: (status, closest approach, seconds inside, first and last time inside,
    fixes in the window). Subjects with no fix or stay in the window are absent."""
    tab = _Table()
    _fix_approaches(tab, area, t0, t1, fixes, p)
    _segment_approaches(tab, area, t0, t1, fixes, p)
    _stay_approaches(tab, area, t0, t1, stays, p)
    if not tab.subject:
        return {}
    sub = np.concatenate(tab.subject)
    if len(sub) == 0:
        return {}
    dist = np.concatenate(tab.dist)
    edge = np.concatenate(tab.edge)
    interp = np.concatenate(tab.interp)
    status = np.concatenate(tab.status)
    inside = np.concatenate(tab.inside_s)
    first_in = np.concatenate(tab.first_in)
    last_in = np.concatenate(tab.last_in)
    # Closest approach: smallest distance (to the centimetre), then a measurement before an
    # interpolation, then the deepest inside.
    order = np.lexsort((edge, interp, np.round(dist, 2), sub))
    sub_o = sub[order]
    starts = np.flatnonzero(np.r_[True, sub_o[1:] != sub_o[:-1]])
    in_window = (fixes.t >= t0) & (fixes.t <= t1)
    fix_counts = dict(zip(*np.unique(fixes.subject[in_window], return_counts=True), strict=True))
    out: dict[int, tuple[str, Approach, int, int | None, int | None, int]] = {}
    offsets = np.cumsum([0] + [len(s) for s in tab.subject])
    for s_i, start in enumerate(starts):
        stop = starts[s_i + 1] if s_i + 1 < len(starts) else len(order)
        rows = order[start:stop]
        sid = int(sub_o[start])
        best = int(np.min(status[rows]))
        inside_total = round(float(np.sum(inside[rows])))
        fi = first_in[rows]
        li = last_in[rows]
        first = int(np.nanmin(fi)) if np.any(~np.isnan(fi)) else None
        last = int(np.nanmax(li)) if np.any(~np.isnan(li)) else None
        closest = _approach(tab, offsets, int(rows[0]), status)
        out[sid] = (_CODES[best], closest, inside_total, first, last, int(fix_counts.get(sid, 0)))
    return out


def _push(
    tab: _Table,
    sub: npt.NDArray[np.int64],
    dist: F64,
    edge: F64,
    interp: int,
    status: npt.NDArray[np.int64],
    inside_s: F64,
    first_in: F64,
    last_in: F64,
    build: Any,
) -> None:
    tab.subject.append(sub)
    tab.dist.append(dist)
    tab.edge.append(edge)
    tab.interp.append(np.full(len(sub), interp, dtype=np.int64))
    tab.status.append(status)
    tab.inside_s.append(inside_s)
    tab.first_in.append(first_in)
    tab.last_in.append(last_in)
    tab.build.append(build)


def _fix_approaches(tab: _Table, area: Area, t0: int, t1: int, f: ev.Fixes, p: Params) -> None:
    (idx,) = np.nonzero((f.t >= t0) & (f.t <= t1))
    if len(idx) == 0:
        return
    w = f.take(idx)
    x, y = area.xy(w.lat_e7, w.lon_e7)
    edge = area.signed_distance(x, y)
    status = classify(edge, w.acc_m, p.k, measured=True)
    tin = np.where(edge <= 0, w.t.astype(np.float64), np.nan)
    _push(
        tab, w.subject, np.maximum(edge, 0.0), edge, 0, status, np.zeros(len(idx)), tin, tin,
        ("fix", w, edge, status),
    )  # fmt: skip


def _segment_approaches(tab: _Table, area: Area, t0: int, t1: int, f: ev.Fixes, p: Params) -> None:
    if len(f) < 2:
        return
    dt = f.t[1:] - f.t[:-1]
    ok = (
        (f.subject[1:] == f.subject[:-1])
        & (dt > 0)
        & (dt <= p.max_gap_s)
        & (f.t[:-1] < t1)
        & (f.t[1:] > t0)
    )
    (i,) = np.nonzero(ok)
    if len(i) == 0:
        return
    ta_raw, tb_raw = f.t[i].astype(np.float64), f.t[i + 1].astype(np.float64)
    span = tb_raw - ta_raw
    ta, tb = np.maximum(ta_raw, t0), np.minimum(tb_raw, t1)
    xa, ya = area.xy(f.lat_e7[i], f.lon_e7[i])
    xb, yb = area.xy(f.lat_e7[i + 1], f.lon_e7[i + 1])
    fa, fb = (ta - ta_raw) / span, (tb - ta_raw) / span
    # The part of each segment inside the window, by time.
    ax, ay = xa + (xb - xa) * fa, ya + (yb - ya) * fa
    bx, by = xa + (xb - xa) * fb, ya + (yb - ya) * fb
    acc_a, acc_b = f.acc_m[i], f.acc_m[i + 1]
    if area.radius_m is not None:
        u, dist, inside_frac, tin_lo, tin_hi = _circle_segments(ax, ay, bx, by, area.radius_m)
    else:
        u, dist, inside_frac, tin_lo, tin_hi = _polygon_segments(ax, ay, bx, by, area)
    cx, cy = ax + (bx - ax) * u, ay + (by - ay) * u
    edge = area.signed_distance(cx, cy)
    seg_t = ta + (tb - ta) * u
    g_frac = fa + (fb - fa) * u  # fraction along the whole fix-to-fix segment
    acc = acc_a + (acc_b - acc_a) * g_frac
    status = classify(edge, acc, p.k, measured=False)
    inside_s = inside_frac * (tb - ta)
    has = inside_frac > 0
    first_in = np.where(has, ta + (tb - ta) * tin_lo, np.nan)
    last_in = np.where(has, ta + (tb - ta) * tin_hi, np.nan)
    lon = area.proj.lon0 + cx / area.proj.kx
    lat = area.proj.lat0 + cy / M_PER_DEG_LAT
    _push(
        tab, f.subject[i], np.asarray(dist, dtype=np.float64), edge, 1, status, inside_s,
        first_in, last_in, ("seg", f, i, lat, lon, seg_t, edge, acc, status),
    )  # fmt: skip


Segs = tuple[F64, F64, F64, F64, F64]


def _circle_segments(ax: F64, ay: F64, bx: F64, by: F64, r: float) -> Segs:
    """Segments against a circle of radius r at the origin, analytically: (fraction of the
    closest/deepest point — the foot of the perpendicular from the centre —, distance to
    the circle, fraction of the segment inside, and where the inside part starts and ends)."""
    dx, dy = bx - ax, by - ay
    a = dx * dx + dy * dy
    u = _fraction(ax, ay, bx, by, np.zeros(len(ax)), np.zeros(len(ax)))
    dist = np.maximum(np.hypot(ax + dx * u, ay + dy * u) - r, 0.0)
    # |A + u d|^2 = r^2: a u^2 + b u + c = 0, inside between the roots.
    b = 2 * (ax * dx + ay * dy)
    c = ax * ax + ay * ay - r * r
    disc = b * b - 4 * a * c
    moving = a > 1e-12
    root = np.sqrt(np.maximum(disc, 0.0))
    safe_a = np.where(moving, a, 1.0)
    lo = np.clip((-b - root) / (2 * safe_a), 0.0, 1.0)
    hi = np.clip((-b + root) / (2 * safe_a), 0.0, 1.0)
    crosses = moving & (disc > 0) & (hi > lo)
    still_inside = ~moving & (c <= 0)
    frac = np.where(crosses, hi - lo, np.where(still_inside, 1.0, 0.0))
    tin_lo = np.where(crosses, lo, 0.0)
    tin_hi = np.where(crosses, hi, 1.0)
    return u, dist, frac, tin_lo, tin_hi


def _polygon_segments(ax: F64, ay: F64, bx: F64, by: F64, area: Area) -> Segs:
    """The same against any polygon, with shapely 2 (vectorized): the closest point is the
    end of the shortest line to the area, or for a segment that reaches it, the middle of
    its inside part."""
    n = len(ax)
    segs: Any = shapely.linestrings(
        np.stack([np.stack([ax, ay], axis=1), np.stack([bx, by], axis=1)], axis=1)
    )
    dist = np.asarray(shapely.distance(segs, area.geom), dtype=np.float64)
    seg_len = np.hypot(bx - ax, by - ay)
    u = np.zeros(n)
    far = dist > 0
    if np.any(far):
        near_pts = shapely.get_coordinates(shapely.shortest_line(segs[far], area.geom))[0::2]
        u[far] = _fraction(ax[far], ay[far], bx[far], by[far], near_pts[:, 0], near_pts[:, 1])
    touch = ~far
    frac = np.zeros(n)
    tin_lo, tin_hi = np.zeros(n), np.ones(n)
    if np.any(touch):
        parts = shapely.intersection(segs[touch], area.geom)
        plen = shapely.length(parts)
        length = seg_len[touch]
        frac[touch] = np.where(length > 1e-9, plen / np.where(length > 1e-9, length, 1.0), 1.0)
        coords, which = shapely.get_coordinates(parts, return_index=True)
        lo = np.full(int(np.sum(touch)), np.inf)
        hi = np.full(int(np.sum(touch)), -np.inf)
        if len(which):
            g = _fraction(
                ax[touch][which], ay[touch][which], bx[touch][which], by[touch][which],
                coords[:, 0], coords[:, 1],
            )  # fmt: skip
            np.minimum.at(lo, which, g)
            np.maximum.at(hi, which, g)
        met = np.isfinite(lo)
        lo, hi = np.where(met, lo, 0.0), np.where(met, hi, 1.0)
        u[touch] = np.where(met, (lo + hi) / 2, 0.0)
        tin_lo[touch], tin_hi[touch] = lo, hi
    return u, dist, frac, tin_lo, tin_hi


def _fraction(ax: F64, ay: F64, bx: F64, by: F64, px: F64, py: F64) -> F64:
    """Where the projection of P falls along AB, as a fraction clipped to [0, 1]."""
    dx, dy = bx - ax, by - ay
    norm = dx * dx + dy * dy
    safe = np.where(norm > 0, norm, 1.0)
    g = ((px - ax) * dx + (py - ay) * dy) / safe
    return np.asarray(np.clip(np.where(norm > 0, g, 0.0), 0.0, 1.0), dtype=np.float64)


def _stay_approaches(
    tab: _Table,
    area: Area,
    t0: int,
    t1: int,
    stays: list[ev.HomeStay],
    p: Params,
) -> None:
    use = [s for s in stays if s.home is not None and s.start <= t1 and s.end > t0]
    if not use:
        return
    lat = np.array([s.home.lat for s in use if s.home]) * 1e7
    lon = np.array([s.home.lon for s in use if s.home]) * 1e7
    x, y = area.xy(lat, lon)
    edge = area.signed_distance(x, y)
    acc = np.full(len(use), p.home_range_m)
    status = classify(edge, acc, p.k, measured=True)
    lo = np.array([max(s.start, t0) for s in use], dtype=np.float64)
    hi = np.array([min(s.end, t1) for s in use], dtype=np.float64)
    inside = np.where(edge <= 0, hi - lo, 0.0)
    first_in = np.where(edge <= 0, lo, np.nan)
    last_in = np.where(edge <= 0, hi, np.nan)
    sub = np.array([s.subject for s in use], dtype=np.int64)
    _push(
        tab, sub, np.maximum(edge, 0.0), edge, 0, status, inside, first_in, last_in,
        ("stay", use, lo, edge, status, p.home_range_m),
    )  # fmt: skip


def _source(code: int) -> str:
    return RF_HOME_FIX if code == 1 else FIX


def _fixref(f: ev.Fixes, j: int) -> dict[str, Any]:
    return asdict(
        ev.FixRef(
            int(f.t[j]),
            int(f.lat_e7[j]) / 1e7,
            int(f.lon_e7[j]) / 1e7,
            float(f.acc_m[j]),
            int(f.device[j]),
            _source(int(f.source[j])),
        )
    )


def _approach(tab: _Table, offsets: Any, row: int, status: npt.NDArray[np.int64]) -> Approach:
    part = int(np.searchsorted(offsets, row, side="right") - 1)
    j = row - int(offsets[part])
    build = tab.build[part]
    kind = build[0]
    if kind == "fix":
        _, w, edge, st = build
        return Approach(
            t=int(w.t[j]),
            lat=int(w.lat_e7[j]) / 1e7,
            lon=int(w.lon_e7[j]) / 1e7,
            distance_m=round(max(float(edge[j]), 0.0), 2),
            edge_m=round(float(edge[j]), 2),
            accuracy_m=float(w.acc_m[j]),
            source=_source(int(w.source[j])),
            status=_CODES[int(st[j])],
            evidence=[_fixref(w, j)],
        )
    if kind == "seg":
        _, f, i, lat, lon, seg_t, edge, acc, st = build
        a = int(i[j])
        return Approach(
            t=round(float(seg_t[j])),
            lat=round(float(lat[j]), 7),
            lon=round(float(lon[j]), 7),
            distance_m=round(max(float(edge[j]), 0.0), 2),
            edge_m=round(float(edge[j]), 2),
            accuracy_m=round(float(acc[j]), 2),
            source=INTERPOLATED,
            status=_CODES[int(st[j])],
            evidence=[_fixref(f, a), _fixref(f, a + 1)],
            gap_s=int(f.t[a + 1] - f.t[a]),
        )
    _, use, lo, edge, st, rng = build
    s = use[j]
    h = s.home
    assert h is not None  # _stay_approaches uses only stays at a known home
    return Approach(
        t=int(lo[j]),
        lat=h.lat,
        lon=h.lon,
        distance_m=round(max(float(edge[j]), 0.0), 2),
        edge_m=round(float(edge[j]), 2),
        accuracy_m=float(rng),
        source=HOME_PRESENCE,
        status=_CODES[int(st[j])],
        evidence=[_stay_ref(s, h)],
    )


def _stay_ref(s: ev.HomeStay, h: ev.Home) -> dict[str, Any]:
    return {
        "home_from": s.start,
        "home_until": s.closed_t,
        "tag": s.tag,
        "home_unit": s.home_unit,
        "home_zone": h.zone_id,
        "home": [h.lon, h.lat],
    }


# ---- queries ------------------------------------------------------------------------------


def _path(f: ev.Fixes, sid: int, t0: int, t1: int, p: Params) -> list[list[float]]:
    """The subject's path through the window: its fixes in the window, with the ends
    interpolated at t0 and t1 when a fix before/after is close enough in time."""
    (idx,) = np.nonzero(f.subject == sid)
    if len(idx) == 0:
        return []
    t = f.t[idx]
    lat, lon = f.lat_e7[idx] / 1e7, f.lon_e7[idx] / 1e7
    out: list[list[float]] = []
    inside = np.flatnonzero((t >= t0) & (t <= t1))
    first = int(inside[0]) if len(inside) else int(np.searchsorted(t, t0))
    last = int(inside[-1]) if len(inside) else first - 1

    def at(a: int, b: int, tt: int) -> list[float]:
        g = (tt - t[a]) / (t[b] - t[a])
        return [
            round(float(lon[a] + (lon[b] - lon[a]) * g), 7),
            round(float(lat[a] + (lat[b] - lat[a]) * g), 7),
            float(tt),
        ]

    if 0 < first < len(t) and t[first - 1] < t0 and t[first] - t[first - 1] <= p.max_gap_s:
        out.append(at(first - 1, first, t0))
    pts = inside
    if len(pts) > MAX_PATH_POINTS:
        pts = pts[np.linspace(0, len(pts) - 1, MAX_PATH_POINTS).round().astype(np.int64)]
    out += [[float(lon[j]), float(lat[j]), float(t[j])] for j in pts]
    if 0 <= last < len(t) - 1 and t[last + 1] > t1 and t[last + 1] - t[last] <= p.max_gap_s:
        out.append(at(last, last + 1, t1))
    elif not len(inside) and 0 < first < len(t) and t[first] - t[first - 1] <= p.max_gap_s:
        out.append(at(first - 1, first, t1))
    return out


def correlate(
    conn: Connection,
    area: Area,
    t0: int,
    t1: int,
    p: Params | None = None,
    visible: Select[Any] | None = None,
) -> list[SubjectHit]:
    """Every subject (of those `visible` selects; None: all) whose trail puts them within or
    possibly within the area during [t0, t1], nearest first."""
    p = p or Params()
    check_window(t0, t1)
    lo, hi = t0 - p.max_gap_s, t1 + p.max_gap_s
    fixes, tenures = ev.nearby_fixes(conn, area, lo, hi, p.margin_m, visible)
    # Home presence: subjects whose home is near the place, whatever their fixes say (in RF
    # mode a tag at home sends no GNSS fixes at all).
    homes = ev.load_homes(conn, visible=visible)
    near_home = _homes_near(area, homes, p)
    stays: list[ev.HomeStay] = []
    if near_home:
        home_tenures = ev.tenures(conn, t0, t1, subject_ids=near_home, visible=visible)
        stays = ev.load_stays(conn, home_tenures, t0, t1, homes)
    found = analyse(area, t0, t1, fixes, stays, p)
    hits = {s: v for s, v in found.items() if v[0] in (WITHIN, POSSIBLY)}
    names = ev.subject_names(conn, hits)
    out = []
    for sid, (status, closest, inside_s, first, last, nfix) in hits.items():
        ref, name, _unit = names.get(sid, ("", "", 0))
        devs = sorted({tn.device for tn in tenures if tn.subject == sid})
        out.append(
            SubjectHit(sid, ref, name, status, closest, inside_s, first, last, nfix, devs,
                       _path(fixes, sid, t0, t1, p))
        )  # fmt: skip
    out.sort(key=lambda h: (_RANK[h.status], h.closest.distance_m, h.subject_id))
    return out


def _homes_near(area: Area, homes: dict[int, tuple[ev.Home, ...]], p: Params) -> list[int]:
    every = [h for hs in homes.values() for h in hs]
    if not every:
        return []
    lat = np.array([h.lat for h in every]) * 1e7
    lon = np.array([h.lon for h in every]) * 1e7
    x, y = area.xy(lat, lon)
    edge = area.signed_distance(x, y)
    return sorted(
        {h.subject for h, e in zip(every, edge, strict=True) if e <= p.k * p.home_range_m}
    )


@dataclass
class Whereabouts:
    """The exculpatory answer for one subject: their status relative to the area, and where
    they were instead, with the evidence."""

    subject_id: int
    status: str  # within, possibly_within, not_within, no_data
    summary: str
    closest: Approach | None
    inside_s: int
    coverage: float  # fraction of the window covered by evidence
    complete: bool  # the evidence covers the whole window (no gaps)
    gaps: list[list[int]]  # [start, end] of stretches without evidence in the window
    before: dict[str, Any] | None  # the last fix at or before the window start
    after: dict[str, Any] | None  # the first fix at or after the window end
    fixes: list[dict[str, Any]]  # fixes in the window, with their distance to the area
    home_stays: list[dict[str, Any]]
    home_distance_m: float | None
    fixes_in_window: int

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["closest"] = None if self.closest is None else self.closest.as_dict()
        return d


def whereabouts(
    conn: Connection, subject_id: int, area: Area, t0: int, t1: int, p: Params | None = None
) -> Whereabouts:
    p = p or Params()
    check_window(t0, t1)
    lo, hi = t0 - p.max_gap_s, t1 + p.max_gap_s
    tenures = ev.tenures(conn, lo, hi, subject_ids=[subject_id])
    fixes = ev.load_fixes(conn, tenures, lo, hi)
    homes = ev.load_homes(conn, subject_ids=[subject_id])
    stays = ev.load_stays(conn, [tn for tn in tenures if tn.clip(t0, t1)], t0, t1, homes)
    found = analyse(area, t0, t1, fixes, stays, p).get(subject_id)
    covered = _coverage(fixes, stays, t0, t1, p)
    gaps = [list(g) for g in subtract([(t0, t1)], covered)]
    span = t1 - t0
    cov = 1.0 - sum(b - a for a, b in gaps) / span
    all_t = ev.tenures(conn, 0, 2**62, subject_ids=[subject_id])
    before = ev.nearest_fix(conn, all_t, t0, before=True)
    after = ev.nearest_fix(conn, all_t, t1, before=False)
    mine = homes.get(subject_id, ())
    hx, hy = area.xy(np.array([h.lat * 1e7 for h in mine]), np.array([h.lon * 1e7 for h in mine]))
    edge_of = {
        h.zone_id: round(float(e), 2)
        for h, e in zip(mine, area.signed_distance(hx, hy), strict=True)
    }
    home_d = min(edge_of.values(), default=None)  # the nearest of the subject's homes
    in_w = (fixes.t >= t0) & (fixes.t <= t1)
    w = fixes.take(np.flatnonzero(in_w))
    wx, wy = area.xy(w.lat_e7, w.lon_e7)
    wedge = area.signed_distance(wx, wy)
    pts = np.arange(len(w))
    if len(pts) > MAX_PATH_POINTS:
        pts = pts[np.linspace(0, len(pts) - 1, MAX_PATH_POINTS).round().astype(np.int64)]
    fix_list = [{**_fixref(w, int(j)), "edge_m": round(float(wedge[j]), 2)} for j in pts]
    stays_out = [
        {**_stay_ref(s, s.home), "edge_m": edge_of[s.home.zone_id]} if s.home is not None else
        {"home_from": s.start, "home_until": s.closed_t, "tag": s.tag,
         "home_unit": s.home_unit, "home": None, "edge_m": None}
        for s in stays
    ]  # fmt: skip
    # Where the stays in the window were (a home unknown to the stays says nothing).
    stay_d = min((edge_of[s.home.zone_id] for s in stays if s.home is not None), default=None)
    if found is None:
        status, closest, inside_s = NO_DATA, None, 0
    else:
        # not_within speaks only for the stretches the evidence covers: `coverage` and
        # `gaps` say how much of the window that is (the summary says it in words).
        status, closest, inside_s = found[0], found[1], found[2]
    summary = _summary(status, closest, cov, gaps, stays, stay_d, span)
    return Whereabouts(
        subject_id, status, summary, closest, inside_s, round(cov, 4), not gaps, gaps,
        _bracket(area, before), _bracket(area, after), fix_list, stays_out, home_d, len(w),
    )  # fmt: skip


def _bracket(
    area: Area, fix: tuple[int, int, int, int, float, int] | None
) -> dict[str, Any] | None:
    if fix is None:
        return None
    dev, t, lat, lon, acc, src = fix
    x, y = area.xy(np.array([lat]), np.array([lon]))
    edge = float(area.signed_distance(x, y)[0])
    return {
        **asdict(ev.FixRef(t, lat / 1e7, lon / 1e7, acc, dev, _source(src))),
        "edge_m": round(edge, 2),
    }


def _coverage(
    f: ev.Fixes, stays: list[ev.HomeStay], t0: int, t1: int, p: Params
) -> list[tuple[int, int]]:
    """Stretches of [t0, t1] the evidence covers: between fixes at most max_gap_s apart,
    and home stays. A lone fix covers its own second."""
    spans: list[tuple[int, int]] = []
    if len(f):
        dt = f.t[1:] - f.t[:-1]
        (i,) = np.nonzero((f.subject[1:] == f.subject[:-1]) & (dt <= p.max_gap_s))
        spans += [(int(a), int(b)) for a, b in zip(f.t[i], f.t[i + 1], strict=True)]
        spans += [(int(a), int(a) + 1) for a in f.t]
    spans += [(s.start, s.end) for s in stays]
    return merge((max(a, t0), min(b, t1)) for a, b in spans)


def _summary(
    status: str,
    closest: Approach | None,
    cov: float,
    gaps: list[list[int]],
    stays: list[ev.HomeStay],
    home_d: float | None,
    span: int,
) -> str:
    parts = []
    if closest is None:
        parts.append("No fix or home presence in or around the window")
    else:
        where = "inside the area" if closest.edge_m <= 0 else f"{closest.distance_m:,.0f} m from it"
        parts.append(
            f"{status.replace('_', ' ').capitalize()}: closest approach {where} at "
            f"t={closest.t} ({closest.source}, accuracy {closest.accuracy_m:,.0f} m)"
        )
    if stays:
        home_where = "location unknown" if home_d is None else f"{home_d:,.0f} m from the area"
        parts.append(f"at home for part of the window (home {home_where})")
    parts.append(f"evidence covers {cov * 100:.0f} % of the window")
    if gaps:
        longest = max(b - a for a, b in gaps)
        parts.append(f"{len(gaps)} gap(s) without data, the longest {longest // 60} min")
    return "; ".join(parts) + "."
