"""Wearers at the edge of an exclusion zone and in it, judged by the zone rule: how often
someone lingering outside raises a false entry, and how surely and how soon a real entry
is caught, with the fixes their tag would record.

Nothing here is tuned to the rule: the error is the simulator's GNSS model (sim.gnss, its
environments in sim.params, Gauss-Markov in time as in fleet runs), the epochs become fixes
through the tag's own fix filter (firmware.fixfilter: HDOP limit, jump test, the accuracy
it records from HDOP), at the tag's own fix intervals (firmware.config: fast near a pushed
zone, once a minute otherwise). Each wearer approaches the zone on foot along a bearing of
its own. `python -m tests.backend.rules.zone_edge` prints the tables of docs/rules.md
("Zone edges: what buffer to give")."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import beta

from backend.rules.engine import Engine
from backend.rules.model import TAG, Obs
from backend.rules.zones import ENTRY, Zones
from firmware import frame as fr
from firmware.config import DEFAULTS
from firmware.fixfilter import FixFilter
from firmware.nmea import Fix
from sim import gnss
from sim.params import (
    CORRELATED_MULTIPATH,
    NEAR_BUILDINGS,
    OPEN_SKY,
    URBAN_CANYON,
    GnssParams,
)
from tests.backend.rules.scenario import TAG_ID, circle, config, local, offset

F64 = NDArray[np.float64]

RADIUS_M = 150.0  # the zone: a 150 m circle
WALK_MPS = 1.3
APPROACH_M = 300.0  # wearers walk in from this far outside the edge
FAST_S = int(DEFAULTS["fix_fast_s"])  # type: ignore[call-overload]  # within zone_near_m
SLOW_S = int(DEFAULTS["fix_moving_s"])  # type: ignore[call-overload]  # moving elsewhere
T0 = local("2026-05-12 14:00")
CONFIG = config(zones=[circle(7, "exclusion", 0, 0, RADIUS_M)])


@dataclass(frozen=True)
class Model:
    """A GNSS error model: the simulator's parameters and the environment to use."""

    name: str
    params: GnssParams
    env: int


URBAN = Model("urban canyon", GnssParams(), URBAN_CANYON)
MULTIPATH = Model(
    "correlated multipath", GnssParams().replacing(URBAN_CANYON, CORRELATED_MULTIPATH), URBAN_CANYON
)
BUILDINGS = Model("near buildings", GnssParams(), NEAR_BUILDINGS)
OPEN = Model("open sky", GnssParams(), OPEN_SKY)


@dataclass(frozen=True)
class Track:
    """A true path: at t_s[i] the wearer is at (x, y) metres from the zone's centre, before
    rotating to the wearer's bearing. `inside` is the span spent inside the zone (None:
    never inside)."""

    t_s: F64
    x: F64
    y: F64
    inside: tuple[float, float] | None


def _radial(d: Sequence[float], every: int) -> Track:
    """Along a ray from the centre, distances `d` one fix interval apart."""
    dist = np.asarray(d, float)
    t = np.arange(len(dist), dtype=float) * every
    inside = np.flatnonzero(dist < RADIUS_M)
    span = None
    if len(inside):
        i, j = int(inside[0]), int(inside[-1])
        # The crossings, interpolated on the walk in and the walk out.
        t_in = t[i - 1] + (dist[i - 1] - RADIUS_M) / (dist[i - 1] - dist[i]) * every
        t_out = t[j] + (RADIUS_M - dist[j]) / (dist[j + 1] - dist[j]) * every
        span = (float(t_in), float(t_out))
    return Track(t, dist, np.zeros(len(dist)), span)


def _walk(start: float, end: float, every: int) -> list[float]:
    n = max(1, math.ceil(abs(end - start) / (WALK_MPS * every)))
    return [start + (end - start) * k / n for k in range(n)]


def linger(outside_m: float, minutes: float = 30, every: int = FAST_S) -> Track:
    """Walk up to `outside_m` outside the edge, stand there `minutes`, walk away."""
    spot = RADIUS_M + outside_m
    stay = [spot] * int(minutes * 60 // every)
    far = RADIUS_M + APPROACH_M
    return _radial(_walk(far, spot, every) + stay + _walk(spot, far, every) + [far], every)


def visit(inside_m: float, minutes: float, every: int = FAST_S) -> Track:
    """Walk in to `inside_m` inside the edge, stay `minutes`, walk out again."""
    spot = RADIUS_M - inside_m
    stay = [spot] * int(minutes * 60 // every)
    far = RADIUS_M + APPROACH_M
    return _radial(_walk(far, spot, every) + stay + _walk(spot, far, every) + [far], every)


def crossing(chord_m: float, mps: float, every: int) -> Track:
    """A straight walk (or ride) across the zone along a chord `chord_m` long."""
    off = math.sqrt(RADIUS_M**2 - (chord_m / 2) ** 2)
    half = chord_m / 2 + APPROACH_M
    n = math.ceil(2 * half / (mps * every)) + 1
    t = np.arange(n, dtype=float) * every
    x = -half + mps * t
    span = ((half - chord_m / 2) / mps, (half + chord_m / 2) / mps)
    return Track(t, x, np.full(n, off), span)


def observe(track: Track, n: int, model: Model, seed: int) -> list[list[Obs]]:
    """The fixes n wearers' tags record walking `track`, each on a bearing of its own."""
    rng = np.random.default_rng([seed, 0x2E])
    bearing = rng.uniform(0, 2 * np.pi, n)
    c, s = np.cos(bearing), np.sin(bearing)
    receivers = gnss.GnssFleet(n, seed, model.params)
    filters = [FixFilter(hdop_max_d=int(DEFAULTS["hdop_max_d"])) for _ in range(n)]  # type: ignore[call-overload]
    out: list[list[Obs]] = [[] for _ in range(n)]
    env = np.full(n, model.env)
    for k, t in enumerate(track.t_s):
        x = c * track.x[k] - s * track.y[k]
        y = s * track.x[k] + c * track.y[k]
        f = receivers.epoch(int(t * 1000), x, y, env)
        unix = T0 + int(t)
        for i in np.flatnonzero(f.valid).tolist():
            lat, lon = offset(float(f.x[i]), float(f.y[i]))
            fix = Fix()
            fix.days, fix.tod_ms = divmod(unix, 86400)
            fix.tod_ms *= 1000
            fix.lat_e7, fix.lon_e7 = round(lat * 1e7), round(lon * 1e7)
            fix.quality, fix.fix_type, fix.valid = 1, fr.FIX_3D, True
            fix.sats = int(f.sats[i])
            fix.hdop_d = int(f.hdop[i] * 10 + 1e-6)  # NMEA's 2 decimals, read to 0.1
            acc, reason = filters[i].check(fix, unix, int(t * 1000))
            if reason:
                continue
            values = {"lat_e7": fix.lat_e7, "lon_e7": fix.lon_e7, "acc_dm": acc}
            values.update(fix_type=fr.FIX_3D, source=fr.SOURCE_GNSS, sats=fix.sats)
            out[i].append(Obs(unix, TAG_ID, TAG, "fix", f"{TAG_ID}/1/{k}/0", values))
    return out


@dataclass(frozen=True)
class Outcome:
    wearers: int
    alerted: int
    latencies_s: list[float]  # per alerted wearer: confirmed - (entered + dwell), >= 0

    @property
    def rate(self) -> float:
        return self.alerted / self.wearers

    def upper(self, confidence: float = 0.9) -> float:
        """One-sided Clopper-Pearson upper bound of the rate at `confidence`."""
        if self.alerted == self.wearers:
            return 1.0
        return float(beta.ppf(confidence, self.alerted + 1, self.wearers - self.alerted))

    def p95_s(self) -> float:
        return float(np.percentile(self.latencies_s, 95)) if self.latencies_s else math.nan


def judge(track: Track, model: Model, n: int, seed: int, engine: Engine | None = None) -> Outcome:
    """n wearers walking `track` under `model`: how many got an exclusion entry, and for a
    track that does enter, how late after it became due (entry + the rule's dwell)."""
    engine = engine or Engine([Zones()])
    rule = next(r for r in engine.rules if r.name == Zones.name)
    dwell = rule.p.exclusion_dwell_s
    horizon = T0 + int(track.t_s[-1]) + 3600
    alerted, late = 0, []
    for obs in observe(track, n, model, seed):
        eps = [e for e in engine.evaluate(CONFIG, obs, horizon) if e.type == ENTRY]
        if not eps:
            continue
        alerted += 1
        if track.inside is not None:
            due = T0 + track.inside[0] + dwell
            late.append(max(0.0, min(e.confirmed_t for e in eps) - due))
    return Outcome(n, alerted, late)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def tables(n: int = 400, seed: int = 11) -> str:
    """docs/rules.md's tables: false entries per 100 thirty-minute lingers by distance
    outside the edge and error model; detection and latency p95 of real entries."""
    models = (OPEN, BUILDINGS, URBAN, MULTIPATH)
    out = ["| outside the edge | fixes every | " + " | ".join(m.name for m in models) + " |"]
    out.append("|---" * (2 + len(models)) + "|")
    for every in (FAST_S, SLOW_S):
        for m_out in (10, 20, 30, 50, 75, 100):
            cells = [f"{m_out} m", f"{every} s"]
            for model in models:
                o = judge(linger(m_out, every=every), model, n, seed)
                cells.append(f"{100 * o.rate:.1f}")
            out.append(_row(cells))
    out.append("")
    out.append(
        "| inside the edge, for | fixes every | "
        + " | ".join(f"{m.name}: detected, p95" for m in models)
        + " |"
    )
    out.append("|---" * (2 + len(models)) + "|")
    for every in (FAST_S, SLOW_S):
        for depth, minutes in ((20, 2), (50, 1), (50, 2), (50, 5), (100, 2)):
            cells = [f"{depth} m, {minutes} min", f"{every} s"]
            for model in models:
                o = judge(visit(depth, minutes, every), model, n, seed)
                cells.append(f"{100 * o.rate:.1f} %, {o.p95_s():.0f} s")
            out.append(_row(cells))
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(tables() + "\n")
