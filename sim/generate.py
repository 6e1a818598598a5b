"""`generate(scenario, seed, days)`: world + population + movements + ground truth, for a seed.

Deterministic: every random stream is seeded from (seed, purpose, subject, day), so the same
call gives byte-identical outputs. The result is what a full run drives the stack with (true
positions, environments, device states over time) and what the scorer compares against (the
truth log).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sim import clock, energy, truth
from sim.cellular import Cellular, Outage, random_outages
from sim.params import CHARGE_MIN_MINUTES, DEFAULT, INDOORS, SHIELDED, Params
from sim.population import Injection, Movements, Subject, make_subjects, plan_movements
from sim.scenario import Scenario
from sim.world import HOME, PARK, World, WorldSpec, generate_world

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

ENERGY_STEP_MS = clock.MS_PER_MIN
_CHUNK = 1000
# A "flat_battery" injection starts the tag this low and never charges it: a few hours' use.
FLAT_START = 0.02  # subjects per block when sampling the fleet on the energy grid


@dataclass
class FleetState:
    """Every subject's true state at one instant."""

    t_ms: int
    x: F64
    y: F64
    lat: F64
    lon: F64
    place: NDArray[np.int32]
    at_home: NDArray[np.bool_]
    env: NDArray[np.int8]  # sim.params environment code, incl. indoors and shielded
    tag_alive: NDArray[np.bool_]  # battery not flat
    battery: F64  # fraction
    strap_ok: NDArray[np.bool_]
    case_ok: NDArray[np.bool_]
    home_unit_powered: NDArray[np.bool_]
    cellular: NDArray[np.bool_]


@dataclass
class Simulation:
    scenario: Scenario
    seed: int
    days: int
    params: Params
    world: World
    subjects: list[Subject]
    injections: list[Injection]
    movements: Movements
    curfew_windows: list[tuple[int, int]]
    cellular: Cellular
    battery_t: I64  # energy grid instants
    battery: NDArray[np.float32]  # (subjects, len(battery_t)) fraction of capacity
    truth: truth.TruthLog

    @property
    def start_ms(self) -> int:
        return self.movements.start_ms

    @property
    def end_ms(self) -> int:
        return self.movements.end_ms

    def _active(self, kind: str, t_ms: int) -> NDArray[np.bool_]:
        out = np.zeros(len(self.subjects), bool)
        for i in self.injections:
            live = i.start_ms <= t_ms and (i.end_ms is None or t_ms < i.end_ms)
            if i.type == kind and live and i.subject >= 0:
                out[i.subject] = True
        return out

    def environment(self, x: F64, y: F64, place: NDArray[np.int32]) -> NDArray[np.int8]:
        env = self.world.environment_at(x, y).copy()
        inside = (place >= 0) & (self.world.place_kind[np.maximum(place, 0)] != PARK)
        env[inside] = INDOORS
        return env

    def state(self, t_ms: int) -> FleetState:
        x, y, place = self.movements.positions_at(t_ms)
        lat, lon = self.world.to_latlon(x, y)
        homes = np.array([s.home for s in self.subjects])
        env = self.environment(x, y, place)
        env[self._active("foil_shielding", t_ms)] = SHIELDED
        k = int(np.clip(np.searchsorted(self.battery_t, t_ms, side="right") - 1, 0, None))
        level = self.battery[:, k].astype(np.float64)
        subj = np.arange(len(self.subjects))
        return FleetState(
            t_ms=t_ms,
            x=x,
            y=y,
            lat=lat,
            lon=lon,
            place=place,
            at_home=place == homes,
            env=env,
            tag_alive=level > 0,
            battery=level,
            strap_ok=~self._active("strap_cut", t_ms),
            case_ok=~self._active("case_open", t_ms),
            home_unit_powered=~self._active("home_unit_unplugged", t_ms),
            cellular=self.cellular.covered(t_ms, x, y, subj),
        )

    def summary(self) -> dict[str, Any]:
        profiles: dict[str, int] = {}
        for s in self.subjects:
            profiles[s.profile] = profiles.get(s.profile, 0) + 1
        mv = self.movements
        dist = 0.0
        for i in range(mv.subjects):
            _, x, y, _ = mv.track(i)
            dist += float(np.hypot(np.diff(x), np.diff(y)).sum())
        return {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "days": self.days,
            "start": clock.to_local(self.start_ms, self.scenario.timezone).isoformat(),
            "end": clock.to_local(self.end_ms, self.scenario.timezone).isoformat(),
            "timezone": self.scenario.timezone,
            "subjects": len(self.subjects),
            "profiles": profiles,
            "world": self.world.summary(),
            "track_vertices": len(mv.t),
            "km_travelled_per_subject_day": round(
                dist / 1000 / max(1, len(self.subjects) * self.days), 2
            ),
            "injections": {
                k: sum(1 for i in self.injections if i.type == k)
                for k in sorted({i.type for i in self.injections})
            },
            "truth": self.truth.counts(),
            "min_battery": round(float(self.battery.min()), 3),
        }


def resolve_events(
    scenario: Scenario, subjects: list[Subject], days: int, seed: int, p: Params
) -> list[Injection]:
    """Scenario events (on days < `days`) plus random ones by compliance profile."""
    tz = scenario.timezone
    cs = clock.parse_hhmm(scenario.population.curfew.start)
    ce = clock.parse_hhmm(scenario.population.curfew.end)
    out: list[Injection] = []
    for e in scenario.events:
        if e.day >= days:
            continue
        day = scenario.start + timedelta(days=e.day)
        evening = clock.window_ms(day, cs, ce, tz)[0]
        minutes = int((e.minutes or 0) * clock.MS_PER_MIN)
        subject = -1 if e.type == "cellular_outage" else e.subject
        if e.type == "curfew_breach":
            if e.at is None:
                out.append(
                    Injection(e.type, subject, e.day, evening + minutes, None, kind="late_return")
                )
                continue
            at = clock.parse_hhmm(e.at)
            # A night out "at 01:30" on day d is the night that starts on day d.
            night_day = day + timedelta(days=1) if at.hour < 12 else day
            a = clock.local_to_ms(night_day, at, tz)
            out.append(Injection(e.type, subject, e.day, a, a + minutes, kind="night_out"))
            continue
        if e.type in ("not_charging", "flat_battery"):
            out.append(Injection(e.type, subject, e.day, clock.local_midnight(day, tz), None))
            continue
        assert e.at is not None  # the scenario validator guarantees it
        a = clock.local_to_ms(day, clock.parse_hhmm(e.at), tz)
        end = a + minutes if e.minutes is not None else None
        out.append(Injection(e.type, subject, e.day, a, end, zone=e.zone, metres=e.metres or 0.0))
    if scenario.population.random_events:
        mp = p.movement
        for s in subjects:
            for d in range(days):
                rng = np.random.default_rng([seed, 0xE7, s.index, d])
                day = scenario.start + timedelta(days=d)
                evening = clock.window_ms(day, cs, ce, tz)[0]
                ms = clock.MS_PER_MIN
                if rng.random() < mp.late_p.get(s.profile, 0.0):
                    late = evening + int(rng.uniform(*mp.late_minutes) * ms)
                    out.append(
                        Injection(
                            "curfew_breach", s.index, d, late, None, None, "random", "late_return"
                        )
                    )
                if rng.random() < mp.night_out_p.get(s.profile, 0.0):
                    a = evening + int(rng.uniform(180, 270) * ms)
                    b = a + int(rng.uniform(30, 120) * ms)
                    out.append(
                        Injection("curfew_breach", s.index, d, a, b, None, "random", "night_out")
                    )
                if s.exclusion and rng.random() < mp.zone_entry_p.get(s.profile, 0.0):
                    noon = clock.local_to_ms(day, clock.parse_hhmm("11:00"), tz)
                    a = noon + int(rng.uniform(0, 300) * ms)
                    b = a + int(rng.uniform(10, 60) * ms)
                    zone = s.exclusion[int(rng.integers(len(s.exclusion)))]
                    out.append(Injection("exclusion_zone_entry", s.index, d, a, b, zone, "random"))
    return out


def _energy(
    subjects: list[Subject],
    mv: Movements,
    injections: list[Injection],
    p: Params,
) -> tuple[I64, NDArray[np.float32], list[truth.Episode]]:
    ep = p.energy
    grid = np.arange(mv.start_ms, mv.end_ms + 1, ENERGY_STEP_MS, dtype=np.int64)
    steps = len(grid) - 1
    n = len(subjects)
    levels = np.empty((n, len(grid)), np.float32)
    episodes: list[truth.Episode] = []
    low_start = {i.subject for i in injections if i.type == "flat_battery"}
    homes = np.array([s.home for s in subjects])
    for a in range(0, n, _CHUNK):
        idx = np.arange(a, min(n, a + _CHUNK))
        s_ids = np.repeat(idx, steps)
        times = np.tile(grid[:-1] + ENERGY_STEP_MS // 2, len(idx))
        _, _, place = mv.sample(s_ids, times)
        place = place.reshape(len(idx), steps)
        state = np.where(
            place == homes[idx, None],
            energy.AT_HOME,
            np.where(place < 0, energy.AWAY_MOVING, energy.AWAY_REST),
        ).astype(np.int8)
        drain = energy.default_drain(state, ENERGY_STEP_MS, ep)
        charging = np.zeros((len(idx), steps), bool)
        for r, s in enumerate(idx):
            for c0, c1 in mv.charging[s]:
                k0 = int(np.searchsorted(grid, c0))
                k1 = int(np.searchsorted(grid, c1))
                charging[r, k0:k1] = True
        init = np.array(
            [FLAT_START if s in low_start else subjects[s].initial_battery for s in idx], np.float64
        )
        lv = energy.fleet_levels(
            drain, charging, ENERGY_STEP_MS, ep.capacity_mah, init, ep.charge_ma
        )
        levels[idx] = lv.astype(np.float32)
        on_charger = np.concatenate((charging, np.zeros((len(idx), 1), bool)), axis=1)
        for r, s in enumerate(idx):
            episodes += truth.level_episodes(grid, lv[r] <= 0.0, truth.FLAT_BATTERY, int(s))
            critical = (lv[r] <= truth.CRITICAL_LEVEL) & ~on_charger[r]
            episodes += truth.level_episodes(grid, critical, truth.BATTERY_CRITICAL, int(s))
    return grid, levels, episodes


def _not_charged(
    subjects: list[Subject], mv: Movements, scenario: Scenario, days: int, required_min: float
) -> list[truth.Episode]:
    """Local days on which the tag was charged for less than the required minutes."""
    out = []
    for s in subjects:
        for d in range(days):
            a, b = clock.day_bounds(scenario.start + timedelta(days=d), scenario.timezone)
            got = sum(max(0, min(c1, b) - max(c0, a)) for c0, c1 in mv.charging[s.index])
            if got < required_min * clock.MS_PER_MIN:
                out.append(
                    truth.Episode(a, b, truth.NOT_CHARGED, s.index, {"charged_min": got / 60_000})
                )
    return out


def generate(
    scenario: Scenario, seed: int = 0, days: int | None = None, params: Params = DEFAULT
) -> Simulation:
    days = scenario.days if days is None else days
    if days < 1:
        raise ValueError("days must be at least 1")
    pop = scenario.population
    wc = scenario.world
    spec = WorldSpec(
        homes=pop.subjects + wc.extra_homes,
        workplaces=wc.workplaces,
        shops=wc.shops,
        social=wc.social,
        victims=wc.victims,
        dead_zones=wc.dead_zones,
    )
    world = generate_world(spec, seed, params.world)
    subjects = make_subjects(
        world,
        pop.subjects,
        pop.profiles,
        pop.exclusion_zones,
        pop.victim_share,
        pop.initial_battery,
        seed,
        params.movement,
    )
    injections = resolve_events(scenario, subjects, days, seed, params)
    curfew = (pop.curfew.start, pop.curfew.end)
    mv = plan_movements(
        world,
        subjects,
        scenario.start,
        days,
        scenario.timezone,
        curfew,
        injections,
        seed,
        params.movement,
    )
    windows = clock.windows_ms(
        scenario.start,
        days,
        clock.parse_hhmm(curfew[0]),
        clock.parse_hhmm(curfew[1]),
        scenario.timezone,
    )
    outages = [
        Outage(i.start_ms, i.end_ms or mv.end_ms) for i in injections if i.type == "cellular_outage"
    ]
    per_tag = random_outages(len(subjects), mv.start_ms, mv.end_ms, seed, params.cellular)
    cell = Cellular(world.zones_of("dead"), outages + per_tag, params.cellular)
    grid, levels, flat = _energy(subjects, mv, injections, params)

    episodes = truth.curfew_breaches(mv, subjects, windows)
    episodes += truth.zone_entries(mv, subjects, world.zones)
    episodes += truth.from_injections(injections, mv.end_ms)
    episodes += [
        truth.Episode(o.start_ms, o.end_ms, truth.CELLULAR_OUTAGE, o.subject, {"source": "random"})
        for o in per_tag
    ]
    episodes += flat
    episodes += _not_charged(subjects, mv, scenario, days, CHARGE_MIN_MINUTES)
    episodes += truth.comms_gaps(mv, subjects, episodes)
    episodes = truth.with_motion(mv, episodes)
    episodes.sort()
    return Simulation(
        scenario=scenario,
        seed=seed,
        days=days,
        params=params,
        world=world,
        subjects=subjects,
        injections=injections,
        movements=mv,
        curfew_windows=windows,
        cellular=cell,
        battery_t=grid,
        battery=levels,
        truth=truth.TruthLog(episodes, mv.start_ms, mv.end_ms),
    )


__all__ = ["HOME", "FleetState", "Simulation", "generate", "resolve_events"]
