"""Ground truth: what really happened, as episodes (type, subject, start, end).

Scoring later compares the backend's alerts with these. Movement-derived truth is computed
from the movements themselves, not copied from the injection list: a curfew breach is time
away from home inside a curfew window, however it came about; a zone entry is time the true
track spent inside the zone, exactly (segment-circle intersection, not sampling). Device
events (tamper, shielding, unplugged home unit, outages) come from the injections, and flat
battery / not charged from the energy trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sim.population import Injection, Movements, Subject
from sim.world import Zone

MIN_MS = 60_000
# The cell at or below this level and not on the charger: the state the rules' critical
# battery alert names (backend.rules.battery, critical_pct 5), whether or not it then ran flat.
CRITICAL_LEVEL = 0.05

CURFEW_BREACH = "curfew_breach"
EXCLUSION_ZONE_ENTRY = "exclusion_zone_entry"
STRAP_CUT = "strap_cut"
CASE_OPEN = "case_open"
FOIL_SHIELDING = "foil_shielding"
FLAT_BATTERY = "flat_battery"
NOT_CHARGED = "not_charged"
HOME_UNIT_UNPLUGGED = "home_unit_unplugged"
CELLULAR_DEAD_ZONE = "cellular_dead_zone"
CELLULAR_OUTAGE = "cellular_outage"
BATTERY_CRITICAL = "battery_critical"
COMMS_LOSS = "comms_loss"
TYPES = (
    CURFEW_BREACH,
    EXCLUSION_ZONE_ENTRY,
    STRAP_CUT,
    CASE_OPEN,
    FOIL_SHIELDING,
    FLAT_BATTERY,
    NOT_CHARGED,
    HOME_UNIT_UNPLUGGED,
    CELLULAR_DEAD_ZONE,
    CELLULAR_OUTAGE,
    BATTERY_CRITICAL,
    COMMS_LOSS,
)
ALL_SUBJECTS = -1  # area-wide episodes (a network outage)


@dataclass(frozen=True, order=True)
class Episode:
    start_ms: int
    end_ms: int
    type: str
    subject: int
    detail: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass
class TruthLog:
    episodes: list[Episode]
    start_ms: int
    end_ms: int

    def of_type(self, kind: str) -> list[Episode]:
        return [e for e in self.episodes if e.type == kind]

    def of_subject(self, subject: int) -> list[Episode]:
        return [e for e in self.episodes if e.subject in (subject, ALL_SUBJECTS)]

    def counts(self) -> dict[str, int]:
        return {t: len(self.of_type(t)) for t in TYPES}

    def to_json(self) -> dict[str, Any]:
        return {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "episodes": [asdict(e) for e in self.episodes],
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TruthLog:
        d = json.loads(path.read_text(encoding="utf-8"))
        return cls([Episode(**e) for e in d["episodes"]], d["start_ms"], d["end_ms"])


def subtract(
    windows: Sequence[tuple[int, int]], covered: Sequence[tuple[int, int]]
) -> list[tuple[int, int, tuple[int, int]]]:
    """Parts of each window not covered by `covered` (sorted, disjoint): (start, end, window)."""
    out = []
    for ws, we in windows:
        t = ws
        for a, b in covered:
            if b <= t or a >= we:
                continue
            if a > t:
                out.append((t, a, (ws, we)))
            t = max(t, b)
        if t < we:
            out.append((t, we, (ws, we)))
    return out


# Home is the premises, not the point the house stands on: a house and its garden, the
# front door and the pavement outside it. Someone waiting at a bus stop 15 m from the door
# is not yet out (and no tag could tell: the home unit's range through a wall is ~28 m, REF
# bracelet range 23-30 m); a curfew breach starts when they are farther than this.
PREMISES_M = 25.0


def curfew_breaches(
    movements: Movements,
    subjects: Sequence[Subject],
    windows: Sequence[tuple[int, int]],
    min_ms: int = 1000,
    premises_m: float = PREMISES_M,
) -> list[Episode]:
    """Time away from home (beyond `premises_m` of it) inside a curfew window (any length
    over `min_ms`; grace is the scorer's business, which reads `duration_ms`)."""
    out = []
    full = {(max(a, movements.start_ms), min(b, movements.end_ms)): (a, b) for a, b in windows}
    clip = [c for c in full if c[1] > c[0]]
    n = movements.subjects
    cx, cy = np.full(n, np.nan), np.full(n, np.nan)
    for s in subjects:
        _, x, y, place = movements.track(s.index)
        at = np.flatnonzero(place == s.home)
        if len(at):
            cx[s.index], cy[s.index] = x[at[0]], y[at[0]]
    mask = np.zeros(n, bool)
    mask[[s.index for s in subjects]] = True
    mask &= ~np.isnan(cx)
    near: dict[int, list[tuple[int, int]]] = {}
    for i, a, b in disc_intervals(movements, cx, cy, premises_m, mask):
        near.setdefault(i, []).append((a, b))
    for s in subjects:
        home = sorted((a, b) for pl, a, b in movements.stays[s.index] if pl == s.home)
        home = sorted(home + near.get(s.index, []))
        merged: list[tuple[int, int]] = []
        for a, b in home:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        for a, b, (ws, we) in subtract(clip, merged):
            if b - a >= min_ms:
                ows, owe = full[(ws, we)]
                kind = "late_return" if a == ows else ("left_early" if b == owe else "out_at_night")
                detail = {
                    "window": [ows, owe],
                    "kind": kind,
                    "ongoing_at_end": b == movements.end_ms,
                }
                out.append(Episode(a, b, CURFEW_BREACH, s.index, detail))
    return out


def circle_intervals(
    movements: Movements, zone: Zone, subject_mask: NDArray[np.bool_]
) -> list[tuple[int, int, int]]:
    """Exact (subject, enter_ms, exit_ms) of tracks inside a circle, for masked subjects."""
    n = movements.subjects
    return disc_intervals(
        movements, np.full(n, zone.x), np.full(n, zone.y), zone.radius_m, subject_mask
    )


def disc_intervals(
    movements: Movements,
    cx: NDArray[np.float64],
    cy: NDArray[np.float64],
    radius_m: float,
    subject_mask: NDArray[np.bool_],
) -> list[tuple[int, int, int]]:
    """Exact (subject, enter_ms, exit_ms) of tracks inside each masked subject's own circle
    (centre cx[i], cy[i])."""
    off = movements.offsets
    n = movements.subjects
    counts = np.diff(off)
    subj = np.repeat(np.arange(n), counts)
    seg = np.ones(len(movements.t), bool)
    seg[off[1:] - 1] = False  # last vertex of each subject starts no segment
    seg &= subject_mask[subj]
    j = np.flatnonzero(seg)
    if len(j) == 0:
        return []
    ax, ay, bx, by = movements.x[j], movements.y[j], movements.x[j + 1], movements.y[j + 1]
    dx, dy = bx - ax, by - ay
    fx, fy = ax - cx[subj[j]], ay - cy[subj[j]]
    a = dx * dx + dy * dy
    b = 2 * (dx * fx + dy * fy)
    c = fx * fx + fy * fy - radius_m**2
    with np.errstate(invalid="ignore", divide="ignore"):
        disc = b * b - 4 * a * c
        sq = np.sqrt(np.maximum(disc, 0))
        s1 = np.where(a > 0, (-b - sq) / (2 * a), np.where(c <= 0, 0.0, 2.0))
        s2 = np.where(a > 0, (-b + sq) / (2 * a), np.where(c <= 0, 1.0, -1.0))
    s1 = np.where((a > 0) & (disc < 0), 2.0, s1)
    lo, hi = np.clip(s1, 0, 1), np.clip(s2, 0, 1)
    hit = (hi > lo) | ((a == 0) & (c <= 0))
    j, lo, hi = j[hit], lo[hit], hi[hit]
    t0 = movements.t[j].astype(np.float64)
    t1 = movements.t[j + 1].astype(np.float64)
    enter = np.round(t0 + lo * (t1 - t0)).astype(np.int64)
    leave = np.round(t0 + hi * (t1 - t0)).astype(np.int64)
    who = subj[j]
    out: list[tuple[int, int, int]] = []
    for s, e0, e1 in zip(who.tolist(), enter.tolist(), leave.tolist(), strict=True):
        if out and out[-1][0] == s and e0 <= out[-1][2] + 1:
            out[-1] = (s, out[-1][1], max(out[-1][2], e1))
        else:
            out.append((s, e0, e1))
    return [o for o in out if o[2] > o[1]]


def zone_entries(
    movements: Movements, subjects: Sequence[Subject], zones: Iterable[Zone]
) -> list[Episode]:
    out = []
    for z in zones:
        if z.kind == "dead":
            mask = np.ones(movements.subjects, bool)
            kind = CELLULAR_DEAD_ZONE
        else:
            mask = np.array([z.name in s.exclusion for s in subjects], bool)
            kind = EXCLUSION_ZONE_ENTRY
        if not mask.any():
            continue
        for s, a, b in circle_intervals(movements, z, mask):
            out.append(Episode(a, b, kind, s, {"zone": z.name, "zone_kind": z.kind}))
    return out


def from_injections(injections: Iterable[Injection], end_ms: int) -> list[Episode]:
    """Device-side truth straight from the injected events."""
    kinds = {
        "strap_cut": STRAP_CUT,
        "case_open": CASE_OPEN,
        "foil_shielding": FOIL_SHIELDING,
        "home_unit_unplugged": HOME_UNIT_UNPLUGGED,
        "cellular_outage": CELLULAR_OUTAGE,
    }
    out = []
    for inj in injections:
        if inj.type in kinds and inj.start_ms < end_ms:
            e = end_ms if inj.end_ms is None else min(inj.end_ms, end_ms)
            out.append(
                Episode(inj.start_ms, e, kinds[inj.type], inj.subject, {"source": inj.source})
            )
    return out


def level_episodes(
    times: NDArray[np.int64], flat: NDArray[np.bool_], kind: str, subject: int
) -> list[Episode]:
    """Runs of True in a sampled boolean series as episodes [first True, first False after)."""
    if not flat.any():
        return []
    f = flat.astype(np.int8)
    edges = np.diff(np.concatenate(([0], f, [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    last = len(times) - 1
    return [
        Episode(int(times[a]), int(times[min(b, last)]), kind, subject, {})
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        if times[min(b, last)] > times[a]
    ]


def travel_spans(movements: Movements, subject: int) -> list[tuple[int, int]]:
    """When the subject was on the move: every track segment that is not a stay."""
    t, _, _, place = movements.track(subject)
    tl, pl = t.tolist(), place.tolist()
    out: list[tuple[int, int]] = []
    for j in range(len(tl) - 1):
        if pl[j] >= 0 and pl[j] == pl[j + 1]:
            continue
        if out and out[-1][1] >= tl[j]:
            out[-1] = (out[-1][0], max(out[-1][1], tl[j + 1]))
        elif tl[j + 1] > tl[j]:
            out.append((tl[j], tl[j + 1]))
    return out


def with_motion(movements: Movements, episodes: Sequence[Episode]) -> list[Episode]:
    """Shielding episodes with the minutes the wearer moved during them (`moving_min`: the
    start of each clock minute with any travel in it). The tag counts motion the same way,
    minute by minute, and only motion without a fix alerts (docs/simulator.md, Scoring)."""
    out = []
    spans: dict[int, list[tuple[int, int]]] = {}
    for e in episodes:
        if e.type != FOIL_SHIELDING:
            out.append(e)
            continue
        if e.subject not in spans:
            spans[e.subject] = travel_spans(movements, e.subject)
        minutes: set[int] = set()
        for a, b in spans[e.subject]:
            lo, hi = max(a, e.start_ms), min(b, e.end_ms)
            if hi > lo:
                minutes.update(range(lo // MIN_MS * MIN_MS, hi, MIN_MS))
        out.append(Episode(e.start_ms, e.end_ms, e.type, e.subject,
                           {**e.detail, "moving_min": sorted(minutes)}))  # fmt: skip
    return out


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        elif b > a:
            out.append((a, b))
    return out


def intersect_spans(
    xs: Sequence[tuple[int, int]], ys: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Both sorted and disjoint."""
    out = []
    i = j = 0
    while i < len(xs) and j < len(ys):
        a, b = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        if b > a:
            out.append((a, b))
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return out


def comms_gaps(
    movements: Movements,
    subjects: Sequence[Subject],
    episodes: Sequence[Episode],
    min_ms: int = 1000,
) -> list[Episode]:
    """Time a tag had no way to reach the backend: flat, or away from home (its home unit
    relays for it only there) without cellular coverage (a dead zone, an outage). Any
    length: the comms rule's threshold is the scorer's business."""
    out = []
    for s in subjects:
        mine = [e for e in episodes if e.subject in (s.index, ALL_SUBJECTS)]
        home = merge_spans((a, b) for pl, a, b in movements.stays[s.index] if pl == s.home)
        away = subtract([(movements.start_ms, movements.end_ms)], home)
        no_cover = merge_spans(
            (e.start_ms, e.end_ms) for e in mine if e.type in (CELLULAR_DEAD_ZONE, CELLULAR_OUTAGE)
        )
        gaps = intersect_spans([(a, b) for a, b, _ in away], no_cover)
        flat = [(e.start_ms, e.end_ms) for e in mine if e.type == FLAT_BATTERY]
        for a, b in merge_spans(gaps + flat):
            if b - a >= min_ms:
                out.append(Episode(a, b, COMMS_LOSS, s.index, {}))
    return out
