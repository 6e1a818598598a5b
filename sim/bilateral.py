"""The bilateral scenario: a subject's tag and the victim's own device, both carried by
people with daily routines, with injected approaches and their ground truth, scored like the
other alert types (sim/score.py: recall, false alerts per 100 pair-days, latency).

Each pair is a perpetrator and a victim living kilometres apart in a shared town: at home
overnight, at work by day (indoors), some evenings in the town centre (an urban canyon), on
foot or by bus between. Injected, per pair-day at the scenario's rates:

- *pursuit*: the perpetrator travels to the victim, walks in from 800 m to 20-150 m and
  follows them there for 0.5-15 minutes, then walks away;
- *encounter*: both go to the town centre at about the same time and stand 5-150 m apart for
  0.5-20 minutes each (a chance encounter);
- *near miss*: the perpetrator walks to 600 m from the victim and stays there 3-20 minutes.

After each, people go back by bus to where their routine has them by then (`_chase`).

Truth (no dwell): every interval in which the true distance is within the order's alert
distance, whatever caused it. The scorer requires an alert for those held at least the
rule's dwell, within 2 minutes of becoming due; an alert matching none is false, unless it
is *borderline*: the true distance came within the alert distance plus `BORDERLINE_M` (the
truth's band episodes), or an approach inside it was shorter than the dwell or longer by
less than the tag's fast fix interval (`TAG_FAST_S`). Those are
neither required nor false, and counted apart (sim/score.py's excused alerts, the pattern
curfew's and comms loss's timing borderlines follow). An approach is due when the truth says
(dwell after it began), or later if the simulation knows both devices' evidence of it could
not reach the backend sooner: the victim's phone offline, or a device trying and getting no
fix (`evidence_ms`); the report lists those as held back, with the latency from the truth's
moment too.

The devices, as the stack has them: GNSS error from sim.gnss (the environment's core error,
outliers and availability, correlated in time) on both; the tag's reported accuracy is the
firmware's (firmware/fixfilter.py). The tag samples every 60 s while moving (hourly at rest,
none at home: RF mode, where the perpetrator's home unit reports it home at once and away
`AWAY_AFTER_S` after its last beacon, dated at that beacon; the subject's home zone is a
HOME_ZONE_M circle around the address), 15 s while the backend asks it to sample fast, and
uploads a batch when it has its batch size of fixes (10 as the firmware ships; one, each fix
at once, while the proximity rule's CFG_BATCH_FIXES asks for it near the victim) or its
batch time has passed: 600 s as the firmware ships, then the rule's CFG_BATCH_S
(`tag_batch_s`). Commands reach the tag `downlink_s` after the evaluation that asked for
them. The victim's phone
fixes every 30 s, every 10 s while the rule asks it to (CFG_FAST_UNTIL, bounded) and for 15
minutes after a warning reached it, as the reference client does (home_unit/
victim_device.py), and uploads every fix, but is offline for 10-40 minutes at a time at the
scenario's rate, and then uploads its backlog late (commands sent meanwhile are lost).
Every upload is evaluated by the rule engine's Evaluator (live continuation, late data
re-evaluated from snapshots) at its arrival: an alert's raised time is when the evaluation
that first found it ran.

Not through the broker or database: the scenario exercises the rules and the devices'
timing, not the transport (test_victim_devices.py covers the reference client through
ingest and the downlink)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from backend.rules import proximity as px
from backend.rules.config import Assignment, SubjectConfig, VictimLink
from backend.rules.engine import Engine
from backend.rules.evaluator import Evaluator, MemoryRepository
from backend.rules.geo import HOME, M_PER_DEG_LAT, ZoneSpec
from backend.rules.model import HOME_UNIT, TAG, VICTIM, Episode, Obs, sent
from firmware import config as fw_config
from firmware import frame as fr
from firmware.fixfilter import accuracy_dm
from home_unit import presence as hp
from home_unit import victim_device as vd
from sim import truth as tr
from sim.gnss import GnssFleet
from sim.params import HOME_ZONE_M, URBAN_CANYON, GnssParams
from sim.score import MIN_MS, NEVER_MS, Alert, Criterion, TypeScore, score_alerts

PROXIMITY = "proximity_approach"  # truth type
PROXIMITY_BAND = "proximity_borderline"  # truth: within the alert distance + BORDERLINE_M
PROXIMITY_INNER = "proximity_inner"  # truth: within the alert distance - BORDERLINE_M

# The borderline band beyond the alert distance (docs/rules.md, "Proximity"): two standard
# errors of a measured distance between two devices in an urban canyon. The distance's
# error along the line between them is the difference of both fixes' errors projected on
# it, each with the environment's per-axis sigma, so its sigma is the two combined. Derived
# from the noise model's stated accuracy, not from the scores: 2 x sqrt(12^2 + 12^2) = 34 m.
_URBAN_SIGMA_M = GnssParams().environments[URBAN_CANYON].sigma_m
BORDERLINE_M = 2.0 * math.hypot(_URBAN_SIGMA_M, _URBAN_SIGMA_M)
OPEN_SKY, STREET, URBAN, INDOORS = 0, 1, 2, 3
STEP_S = 5
TAG_FAST_S = int(str(fw_config.DEFAULTS["fix_fast_s"]))  # the tag's fix interval when asked
# The perpetrator's home unit: the tag beacons this often at home (RF mode), the unit reports
# it away this long after the last beacon it heard (dated at that beacon), as both ship.
BEACON_RF_S = int(str(fw_config.DEFAULTS["beacon_rf_s"]))
AWAY_AFTER_S = int(hp.Thresholds().away_timeout_s)
WALK, BUS = 1.4, 8.0
CHASE_LEGS = 50  # bus legs toward a moving target (`_chase`): a routine rests within hours
LAT0, LON0 = 50.7192, -1.8808  # the pairs' town (Bournemouth)
START = 1_788_220_800  # 2026-09-01 00:00 UTC


@dataclass(frozen=True)
class BilateralParams:
    pairs: int = 20
    days: int = 5
    seed: int = 0
    warn_m: int = 500
    alert_m: int = 200
    pursuits: float = 0.25  # injected per pair-day
    encounters: float = 0.25
    near_misses: float = 0.25
    victim_offline: float = 0.5  # phone outages per pair-day (late data)
    tag_batch_s: int = px.ProximityParams().tag_batch_s  # what the rule's command sets
    firmware_batch_s: int = 600  # the tag's batch time before that command arrives
    downlink_s: int = 5
    victim_fix_s: int = vd.FIX_S  # the victim app's fix interval (home_unit/victim_device.py)
    victim_fast_s: int = vd.FAST_FIX_S  # ... when asked to sample fast, or warned
    victim_fast_for_s: int = vd.WARNED_FAST_S  # ... for this long after a warning
    victim_obeys_fast: bool = True  # False: the app ignores the rule's CFG_FAST_UNTIL
    # Run and score only these pairs (indices): each keeps the truth and noise it has in the
    # whole scenario (every pair is generated; each run has its own seeded noise), so a late
    # approach is reproduced in seconds rather than 200 pair-days.
    only: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not all(0 <= i < self.pairs for i in self.only):
            raise ValueError(f"pairs to run must be among 0..{self.pairs - 1}: {self.only}")


@dataclass
class Person:
    """A true track on the STEP_S grid (metres east/north of the town centre), its GNSS
    environment, and whether the person is at home (a tag there is in RF mode)."""

    x: NDArray[np.float64]
    y: NDArray[np.float64]
    env: NDArray[np.int64]
    home: NDArray[np.bool_]
    address: tuple[float, float] = (0.0, 0.0)  # where home is (its home unit, its home zone)


@dataclass
class Pair:
    index: int
    perpetrator: Person
    victim: Person
    injected: list[dict[str, Any]] = field(default_factory=list)


def _route(person: Person, i0: int, x1: float, y1: float, speed: float, env: int = STREET) -> int:
    """Move from the track's position at grid index i0 straight to (x1, y1) at `speed`;
    returns the index of arrival."""
    x0, y0 = person.x[i0], person.y[i0]
    n = max(1, int(math.hypot(x1 - x0, y1 - y0) / speed / STEP_S))
    end = min(i0 + n, len(person.x) - 1)
    f = np.linspace(0.0, 1.0, end - i0 + 1)
    person.x[i0 : end + 1] = x0 + f * (x1 - x0)
    person.y[i0 : end + 1] = y0 + f * (y1 - y0)
    person.env[i0 : end + 1] = env
    person.home[i0 : end + 1] = False
    return end


def _stay(person: Person, i0: int, i1: int, env: int, home: bool = False) -> None:
    i1 = min(i1, len(person.x) - 1)
    person.x[i0 : i1 + 1] = person.x[i0]
    person.y[i0 : i1 + 1] = person.y[i0]
    person.env[i0 : i1 + 1] = env
    person.home[i0 : i1 + 1] = home


def _speed(d: float) -> float:
    return WALK if d < 1500 else BUS


def routine(rng: np.random.Generator, days: int, home: tuple[float, float]) -> Person:
    """Home overnight, work by day, the town centre some evenings."""
    n = days * 86400 // STEP_S + 1
    p = Person(
        np.full(n, home[0]), np.full(n, home[1]), np.full(n, INDOORS), np.ones(n, bool), home
    )
    work = (rng.uniform(-5000, 5000), rng.uniform(-5000, 5000))
    for d in range(days):
        i = (d * 86400 + int(rng.uniform(7.5, 9) * 3600)) // STEP_S
        i = _route(p, i, *work, _speed(math.dist(home, work)))
        j = (d * 86400 + int(rng.uniform(16.5, 18) * 3600)) // STEP_S
        _stay(p, i, j, INDOORS)
        if rng.random() < 0.5:
            spot = (rng.uniform(-300, 300), rng.uniform(-300, 300))
            j = _route(p, j, *spot, _speed(math.dist(work, spot)))
            k = j + int(rng.uniform(30, 90) * 60) // STEP_S
            _stay(p, j, k, URBAN)
            j = k
        j = _route(p, j, *home, _speed(math.dist((p.x[j], p.y[j]), home)))
        _stay(p, j, (d + 1) * 86400 // STEP_S, INDOORS, home=True)
    return p


def _chase(person: Person, i0: int, target: Callable[[int], tuple[float, float]]) -> int:
    """By bus from where the person is at i0 to a moving `target` (its position at each grid
    index): each leg heads for where the target is when it starts, until the person ends a
    leg within one bus step of the target (it rests somewhere in the end; at most
    CHASE_LEGS legs). Returns the index of arrival."""
    i = i0
    for _ in range(CHASE_LEGS):
        i = _route(person, i, *target(i), BUS)
        last = len(person.x) - 1
        gap = math.dist((person.x[i], person.y[i]), target(min(i + 1, last)))
        if i == last or gap <= BUS * STEP_S:
            break
    return i


def _rejoin(person: Person, plan: Person, i0: int) -> None:
    """After an injected detour ending at i0 - 1: from there back to where the routine has
    the person (by bus, `_chase`), then the routine."""
    person.x[i0], person.y[i0] = person.x[i0 - 1], person.y[i0 - 1]
    i = _chase(person, i0, lambda k: (plan.x[k], plan.y[k]))
    person.x[i + 1 :], person.y[i + 1 :] = plan.x[i + 1 :], plan.y[i + 1 :]
    person.env[i + 1 :], person.home[i + 1 :] = plan.env[i + 1 :], plan.home[i + 1 :]


def _follow(pair: Pair, i0: int, radii: NDArray[np.float64], angle: float) -> int:
    """The perpetrator at `radii[k]` metres from the victim, bearing `angle`, from i0 on."""
    p, v = pair.perpetrator, pair.victim
    i1 = min(i0 + len(radii), len(p.x)) - 1
    r = radii[: i1 - i0 + 1]
    p.x[i0 : i1 + 1] = v.x[i0 : i1 + 1] + r * math.cos(angle)
    p.y[i0 : i1 + 1] = v.y[i0 : i1 + 1] + r * math.sin(angle)
    p.env[i0 : i1 + 1] = np.where(v.env[i0 : i1 + 1] == URBAN, URBAN, STREET)
    p.home[i0 : i1 + 1] = False
    return i1


def _walk(a: float, b: float) -> NDArray[np.float64]:
    return np.linspace(a, b, max(2, int(abs(b - a) / WALK / STEP_S)))


def inject(rng: np.random.Generator, pair: Pair, kind: str, day: int) -> None:
    p, v = pair.perpetrator, pair.victim
    plan_p = Person(p.x.copy(), p.y.copy(), p.env.copy(), p.home.copy())
    i = (day * 86400 + int(rng.uniform(9, 20) * 3600)) // STEP_S
    angle = rng.uniform(0, 2 * math.pi)
    if kind == "encounter":
        plan_v = Person(v.x.copy(), v.y.copy(), v.env.copy(), v.home.copy())
        spot = (rng.uniform(-300, 300), rng.uniform(-300, 300))
        apart = rng.uniform(5, 150)
        j = _route(v, i, *spot, BUS)
        k = _route(p, i, spot[0] + apart * math.cos(angle), spot[1] + apart * math.sin(angle), BUS)
        j2 = j + int(rng.uniform(0.5, 20) * 60 / STEP_S)
        k2 = k + int(rng.uniform(0.5, 20) * 60 / STEP_S)
        _stay(v, j, j2, URBAN)
        _stay(p, k, k2, URBAN)
        _rejoin(v, plan_v, j2 + 1)
        _rejoin(p, plan_p, k2 + 1)
        pair.injected.append({"kind": kind, "t": START + i * STEP_S, "apart_m": round(apart)})
        return
    near, hold = (rng.uniform(20, 150), rng.uniform(0.5, 15)) if kind == "pursuit" else (600.0, 0)
    if kind == "near_miss":
        hold = rng.uniform(3, 20)
    far = 800.0 if kind == "pursuit" else 1500.0
    c, s = far * math.cos(angle), far * math.sin(angle)
    j = _chase(p, i, lambda k: (v.x[k] + c, v.y[k] + s))
    held = np.full(int(hold * 60 / STEP_S), near)
    radii = np.concatenate([_walk(far, near), held, _walk(near, 1200.0)])
    k = _follow(pair, j, radii, angle)
    _rejoin(p, plan_p, k + 1)
    pair.injected.append(
        {"kind": kind, "t": START + j * STEP_S, "near_m": round(near), "hold_min": round(hold, 1)}
    )


def make_pairs(prm: BilateralParams) -> list[Pair]:
    rng = np.random.default_rng([prm.seed, 0xB11])
    pairs = []
    for n in range(prm.pairs):
        homes: list[tuple[float, float]] = []
        while len(homes) < 2 or math.dist(*homes) < 3000:
            homes = [(rng.uniform(-6000, 6000), rng.uniform(-6000, 6000)) for _ in range(2)]
        pair = Pair(n, routine(rng, prm.days, homes[0]), routine(rng, prm.days, homes[1]))
        for day in range(prm.days):
            for kind, rate in (
                ("pursuit", prm.pursuits),
                ("encounter", prm.encounters),
                ("near_miss", prm.near_misses),
            ):
                for _ in range(rng.poisson(rate)):
                    inject(rng, pair, kind, day)
        pairs.append(pair)
    return pairs


def distance(pair: Pair) -> NDArray[np.float64]:
    """The pair's true distance on the STEP_S grid."""
    p, v = pair.perpetrator, pair.victim
    return np.hypot(p.x - v.x, p.y - v.y)


def truth(pairs: list[Pair], prm: BilateralParams) -> tr.TruthLog:
    """Approaches within the alert distance, and the band's edges: episodes within it plus
    and minus BORDERLINE_M."""
    eps = []
    for pair in pairs:
        d = distance(pair)
        for kind, radius in (
            (PROXIMITY, prm.alert_m),
            (PROXIMITY_BAND, prm.alert_m + BORDERLINE_M),
            (PROXIMITY_INNER, prm.alert_m - BORDERLINE_M),
        ):
            inside = (d <= radius).astype(np.int8)
            edges = np.flatnonzero(np.diff(np.concatenate([[0], inside, [0]])))
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                s, e = (START + int(a) * STEP_S) * 1000, (START + int(b) * STEP_S) * 1000
                eps.append(tr.Episode(s, e, kind, pair.index))
    return tr.TruthLog(sorted(eps), START * 1000, (START + prm.days * 86400) * 1000)


# ---- the devices and the backend, in lock step ----------------------------------------


TAG_BASE, VICTIM_BASE, UNIT_BASE = 100_000, 200_000, 300_000
# The rule's commands to the tag, as the report counts them.
_TAG_KEYS = {
    fr.CFG_FAST_UNTIL: "fast_until",
    fr.CFG_BATCH_S: "batch_s",
    fr.CFG_BATCH_FIXES: "batch_fixes",
}


def _latlon(x: float, y: float) -> tuple[float, float]:
    return LAT0 + y / M_PER_DEG_LAT, LON0 + x / (M_PER_DEG_LAT * math.cos(math.radians(LAT0)))


def _obs(dev: int, role: str, seq: int, t: int, x: float, y: float, hdop: float, sats: int) -> Obs:
    lat, lon = _latlon(x, y)
    hdop_d = min(255, round(hdop * 10))
    values = {
        "lat_e7": round(lat * 1e7),
        "lon_e7": round(lon * 1e7),
        "acc_dm": accuracy_dm(hdop_d, 3, sats),
        "fix_type": 3,
        "source": fr.SOURCE_GNSS,
        "sats": sats,
        "hdop_d": hdop_d,
    }
    return Obs(t, dev, role, "fix", f"{dev}/1/{seq}/0", values)


def _presence(unit: int, tag: int, seq: int, t: int, state: int) -> Obs:
    values = {"home_unit": unit, "tag": tag, "state": state, "rssi": -60}
    return Obs(t, unit, HOME_UNIT, "presence", f"{unit}/1/{seq}/0", values)


@dataclass
class Run:
    alerts: list[Alert]
    warnings: int
    silent: int
    commands: dict[str, int]
    late_evaluations: int
    # Every fix attempt per side ("tag", "victim"): (time, whether it got a fix); and the
    # victim phone's outages [start, end): what the backend could have known when.
    attempts: dict[str, list[tuple[int, bool]]] = field(default_factory=dict)
    offline: list[tuple[int, int]] = field(default_factory=list)

    def evidence_ms(self, due_ms: int, until_ms: int) -> int | None:
        """When the evidence that an approach was due could first reach the backend, if the
        devices were kept from it: each side from `due_ms` (to `until_ms`, the approach's end,
        the first moment the truth has the pair beyond R again: a fix then is none of the
        approach's) until its last
        failed attempt before its first fix (no fix possible; its sampling interval is the
        product's and not excused), then until the victim's phone was back online. None if
        a side made no attempt then (nothing known). NEVER_MS if no fix of the tag and fix of
        the victim's device before `until_ms` were at most a fast fix interval apart with
        the later one at or after `due_ms`: the confirming pair (its fixes at most that far
        apart, after the dwell) never existed, as for a victim's phone indoors through an
        approach just longer than the dwell. (Judged per side, her fix 10 s before due
        counted, though his first fix after due came 20 s after hers.)"""
        due, until = -(-due_ms // 1000), until_ms // 1000
        ready = due
        fixes: dict[str, list[int]] = {}
        for side in ("tag", "victim"):
            tries = [a for a in self.attempts.get(side, []) if due <= a[0] < until]
            if not tries:
                return None
            got = self.attempts.get(side, [])
            fixes[side] = [t for t, ok in got if ok and due - TAG_FAST_S <= t < until]
            failed = [t for t, ok in itertools.takewhile(lambda a: not a[1], tries)]
            ready = max(ready, failed[-1] if failed else due)
        if not any(
            abs(a - b) <= TAG_FAST_S and max(a, b) >= due
            for a in fixes["tag"]
            for b in fixes["victim"]
        ):
            return NEVER_MS
        ready = max([ready] + [b for a, b in self.offline if a <= ready < b])
        return ready * 1000


def run_pair(pair: Pair, prm: BilateralParams, engine: Engine) -> Run:
    """Drive one pair's devices and the Evaluator through the days."""
    tag, victim = TAG_BASE + pair.index, VICTIM_BASE + pair.index
    unit = UNIT_BASE + pair.index
    link = VictimLink(victim, prm.warn_m, prm.alert_m, START)
    lat, lon = _latlon(*pair.perpetrator.address)
    home = ZoneSpec(1, HOME, "circle", {"type": "Point", "coordinates": [lon, lat]}, HOME_ZONE_M)
    cfg = SubjectConfig(
        pair.index + 1,
        [
            Assignment(tag, TAG, START),
            Assignment(unit, HOME_UNIT, START),
            Assignment(victim, VICTIM, START),
        ],
        zones=[home],
        victims=[link],
        start=START,
    )
    repo = MemoryRepository()
    ev = Evaluator(repo, engine)
    gnss = GnssFleet(2, prm.seed * 7919 + pair.index)
    rng = np.random.default_rng([prm.seed, pair.index, 0x0FF])
    p, v = pair.perpetrator, pair.victim
    n = len(p.x)
    offline: list[tuple[int, int]] = []
    for _ in range(rng.poisson(prm.victim_offline * prm.days)):
        a = START + int(rng.uniform(0, prm.days * 86400))
        offline.append((a, a + int(rng.uniform(10, 40) * 60)))
    batch_s, fast_until, moved_at = prm.firmware_batch_s, 0, -(10**9)
    batch_fixes = px.FIRMWARE_BATCH_FIXES
    victim_fast_until = 0
    next_tag, last_tag, next_victim, seq = START, START - 3600, START, 0
    tag_batch: list[Obs] = []
    tag_batch_start = 0
    victim_batch: list[Obs] = []
    arrivals: list[tuple[int, list[Obs]]] = []
    pending: list[tuple[int, int, int]] = []  # (arrives at the tag, key, value)
    seen: dict[str, int] = {}
    counts = {"fast_until": 0, "batch_s": 0, "batch_fixes": 0, "notify": 0, "victim_fast_until": 0}
    late = 0
    last_sent: dict[tuple[int, int, int], int] = {}
    attempts: dict[str, list[tuple[int, bool]]] = {"tag": [], "victim": []}
    home_since = START
    for i in range(n):
        t = START + i * STEP_S
        if i and (p.x[i] != p.x[i - 1] or p.y[i] != p.y[i - 1]):
            moved_at = t
        if p.home[i] and (i == 0 or not p.home[i - 1]):
            # Heard at its first beacon home (reported at once), reported away when its
            # beacons have been missing for the unit's away timeout, dated at the last one.
            home_since, seq = t, seq + 1
            arrivals.append((t + 2, [_presence(unit, tag, seq, t, 1)]))
        elif i and p.home[i - 1] and not p.home[i]:
            last = t - (t - home_since) % BEACON_RF_S
            seq += 1
            arrivals.append((last + AWAY_AFTER_S + 2, [_presence(unit, tag, seq, last, 0)]))
        for at, key, value in [c for c in pending if c[0] <= t]:
            pending.remove((at, key, value))
            if key == fr.CFG_FAST_UNTIL:
                fast_until = max(fast_until, value)
            elif key == fr.CFG_BATCH_S:
                batch_s = value
            elif key == fr.CFG_BATCH_FIXES:
                batch_fixes = value
        fixes = gnss.epoch(t * 1000, np.array([p.x[i], v.x[i]]), np.array([p.y[i], v.y[i]]),
                           np.array([p.env[i], v.env[i]]))  # fmt: skip
        every = TAG_FAST_S if t < fast_until else 60 if t - moved_at < 600 else 3600
        if t >= min(next_tag, last_tag + every) and not p.home[i]:
            # Sampling follows motion at once (the firmware's sampler re-plans on motion); an
            # attempt without a fix is tried again 15 s later.
            next_tag = t + 15
            attempts["tag"].append((t, bool(fixes.valid[0])))
            if fixes.valid[0]:
                last_tag = t
                seq += 1
                o = _obs(tag, TAG, seq, t, fixes.x[0], fixes.y[0], fixes.hdop[0],
                         int(fixes.sats[0]))  # fmt: skip
                if not tag_batch:
                    tag_batch_start = t
                tag_batch.append(o)
        if tag_batch and (len(tag_batch) >= batch_fixes or t - tag_batch_start >= batch_s):
            arrivals.append((t + 2, tag_batch))
            tag_batch = []
        if t >= next_victim:
            next_victim = t + (prm.victim_fast_s if t < victim_fast_until else prm.victim_fix_s)
            attempts["victim"].append((t, bool(fixes.valid[1])))
            if fixes.valid[1]:
                seq += 1
                victim_batch.append(_obs(victim, VICTIM, seq, t, fixes.x[1], fixes.y[1],
                                         fixes.hdop[1], int(fixes.sats[1])))  # fmt: skip
            if victim_batch:
                back = max((b for a, b in offline if a <= t < b), default=t)
                arrivals.append((back + 2, victim_batch))
                victim_batch = []
        offline_at = {t for a, b in offline if a <= t < b}
        due = [a for a in arrivals if a[0] <= t]
        for arrival in due:
            arrivals.remove(arrival)
        for at, obs in sorted(due, key=lambda a: a[0]):
            late += any(o.t < at - 600 for o in obs)
            changes = ev.observe(cfg, repo.store(obs), at)
            for c in sent(changes.commands, last_sent):  # as the sink sends them
                if c.cmd == fr.CMD_NOTIFY:
                    counts["notify"] += 1
                    if at not in offline_at:
                        got = at + prm.downlink_s + prm.victim_fast_for_s
                        victim_fast_until = max(victim_fast_until, got)
                elif c.device == victim:
                    counts["victim_fast_until"] += 1
                    fast = c.key == fr.CFG_FAST_UNTIL and prm.victim_obeys_fast
                    if fast and at not in offline_at:
                        got = vd.fast_until(c.value, at + prm.downlink_s)
                        victim_fast_until = max(victim_fast_until, got)
                elif c.device == tag:
                    counts[_TAG_KEYS[c.key]] += 1
                    pending.append((at + prm.downlink_s, c.key, c.value))
            for ep in repo.episodes.values():
                seen.setdefault(ep.key, at)
    run = _result(pair, repo, seen, counts, late)
    run.attempts, run.offline = attempts, offline
    return run


def _result(
    pair: Pair, repo: MemoryRepository, seen: dict[str, int], counts: dict[str, int], late: int
) -> Run:
    """The pair's alerts as an officer would have seen them: an episode re-derived from late
    data under another key joins the alert it overlaps (the store's alert groups), so it was
    raised when the first of them was."""
    every = list(repo.episodes.values()) + list(repo.cleared.values())
    out = []
    for ep in (e for e in repo.episodes.values() if e.type == px.ALERT):
        raised = min(
            seen[o.key] for o in every if o.type == px.ALERT and o.key in seen and _overlap(o, ep)
        )
        end = None if ep.end is None else ep.end * 1000
        out.append(Alert(PROXIMITY, pair.index, ep.start * 1000, raised * 1000, end, ep.type))
    warnings = sum(1 for e in repo.episodes.values() if e.type == px.WARNING)
    silent = sum(1 for e in repo.episodes.values() if e.type == px.SILENT)
    return Run(out, warnings, silent, counts, late)


def _overlap(a: Episode, b: Episode) -> bool:
    big = 2**62
    return a.start <= (b.end if b.end is not None else big) and b.start <= (
        a.end if a.end is not None else big
    )


def score(prm: BilateralParams) -> dict[str, Any]:
    """Generate, run and score the scenario: the report (JSON-able)."""
    pairs = make_pairs(prm)
    if prm.only:
        pairs = [pairs[i] for i in sorted(set(prm.only))]
    log = truth(pairs, prm)
    engine = Engine([px.Proximity(), px.VictimSilent()])
    runs = [run_pair(pair, prm, engine) for pair in pairs]
    scored = score_runs(pairs, runs, prm)
    pair_days = len(pairs) * prm.days
    kinds: dict[str, int] = {}
    for pair in pairs:
        for inj in pair.injected:
            kinds[inj["kind"]] = kinds.get(inj["kind"], 0) + 1
    report = scored.to_json(pair_days)
    report["false_per_100_pair_days"] = report.pop("false_per_100_tag_days")
    commands: dict[str, int] = {}
    for r in runs:
        for k, c in r.commands.items():
            commands[k] = commands.get(k, 0) + c
    return {
        "params": asdict(prm),
        "pair_days": pair_days,
        "injected": kinds,
        "truth_episodes": len(log.of_type(PROXIMITY)),
        "borderline_m": round(BORDERLINE_M, 1),
        "truth_required": scored.episodes,
        "proximity_alert": report,
        "warnings": sum(r.warnings for r in runs),
        "victim_device_silent": sum(r.silent for r in runs),
        "commands": commands,
        "late_evaluations": sum(r.late_evaluations for r in runs),
    }


def score_runs(pairs: list[Pair], runs: list[Run], prm: BilateralParams) -> TypeScore:
    """The pairs' runs scored against their truth; each borderline or false alert with the
    closest the pair truly came around it."""
    alerts = [a for r in runs for a in r.alerts]
    crit = criterion({pair.index: run for pair, run in zip(pairs, runs, strict=True)})
    scored = score_alerts(truth(pairs, prm), alerts, {PROXIMITY: crit})[PROXIMITY]
    near = {pair.index: distance(pair) for pair in pairs}
    for row in scored.excused + scored.false:
        i = (row["start_ms"] // 1000 - START) // STEP_S
        span = near[row["subject"]][max(0, i - MIN_MS // 1000 // STEP_S) : i + 600 // STEP_S]
        row["closest_true_m"] = round(float(span.min()), 1)
    return scored


def criterion(runs: Mapping[int, Run]) -> Criterion:
    """The scorer's criterion for approaches: required when held for the rule's dwell, within
    2 minutes of becoming due (or of the evidence reaching the backend, `Run.evidence_ms`);
    borderline when shorter than the dwell or longer by less than the tag's fast fix
    interval (the confirming pair must come after the dwell: as a shielding removed just
    after its escalation may or may not beat the next fix), or within BORDERLINE_M beyond
    the distance. An approach that never came within the distance minus BORDERLINE_M is
    required all the same, but not in time (one that did, in time from when it came within
    that, if later than due): the same noise that makes 205 m look like 195 m
    makes 195 m look like 205 m, and a rule that waits for a confident pair (rather than
    alert on people standing beyond the distance) may wait long for one there."""
    dwell_ms = px.ProximityParams().dwell_s * 1000
    return Criterion(
        dwell_ms,
        2 * MIN_MS,
        tolerance_ms=MIN_MS,
        borderline_ms=(dwell_ms, TAG_FAST_S * 1000),
        excused_by=(PROXIMITY_BAND,),
        latency_within=(PROXIMITY_INNER,),
        evidence=lambda e, due: _evidence_ms(runs.get(e.subject), due, e.end_ms),
    )


def _evidence_ms(run: Run | None, due: int, end: int) -> int | None:
    """When a pair's evidence could reach the backend (Run.evidence_ms); None, due as it
    is, for a pair without a run (the scorer's tests score truth alone)."""
    return None if run is None else run.evidence_ms(due, end)


def main(prm: BilateralParams) -> str:
    return json.dumps(score(prm), indent=1)
