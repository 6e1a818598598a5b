"""People: who they are, where they live, and their daily movements along the road network.

Each subject is planned day by day with their own random stream (`seed, subject, day`), so a
subject's days do not change when the fleet grows or another subject's plan changes. A day:
at home overnight (curfew), out after the curfew ends, fixed appointments (work, probation,
injected events) with free outings fitted around them, home before the evening curfew (late,
or out again at night, for the less compliant), and charging the tag at home in the evening.
The output is one piecewise-linear track per subject (vertices at stays and road nodes) plus
the stays and charging intervals the truth log and energy model read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
from numpy.typing import NDArray

from sim import clock
from sim.params import MovementParams
from sim.world import HOME, PARK, PROBATION, SHOP, SOCIAL, TOWN, VICTIM, WORKPLACE, World, Zone

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

STAY, WALK, WAIT, BUS = 0, 1, 2, 3
MODES = ("stay", "walk", "wait", "bus")


@dataclass(frozen=True)
class Subject:
    index: int
    tag_id: int
    home_unit_id: int
    profile: str
    home: int  # place index
    workplace: int  # place index or -1
    haunts: tuple[int, ...]  # shops, parks, friends, town spots they are allowed in
    exclusion: tuple[str, ...]  # zone names (town centres and victim's address)
    appointment_weekday: int  # probation appointment, Monday = 0
    home_walls: int  # interior walls between home unit and the tag's usual spot indoors
    initial_battery: float  # fraction of capacity at the start of the run


@dataclass(frozen=True)
class Injection:
    """A resolved injected event: absolute UTC ms."""

    type: str
    subject: int  # -1 for area-wide (cellular outage)
    day: int
    start_ms: int
    end_ms: int | None  # None: lasts to the end of the run (an uncut strap stays cut)
    zone: str | None = None
    source: str = "scenario"  # "scenario" or "random"
    kind: str = ""  # curfew_breach: "late_return" (start_ms = arrival) or "night_out"
    metres: float = 0.0  # zone_edge_linger: how far outside the zone's edge


@dataclass
class Movements:
    """All subjects' tracks, concatenated; subject i owns vertices offsets[i]:offsets[i+1]."""

    t: I64
    x: F64
    y: F64
    place: NDArray[np.int32]  # place index while staying, -1 while travelling
    mode: NDArray[np.int8]  # mode of the segment that starts at this vertex
    offsets: I64
    stays: list[list[tuple[int, int, int]]]  # per subject: (place, start_ms, end_ms)
    charging: list[list[tuple[int, int]]]  # per subject: (start_ms, end_ms)
    start_ms: int
    end_ms: int
    _span: int = field(init=False)
    _keys: I64 = field(init=False)

    def __post_init__(self) -> None:
        self._span = self.end_ms - self.start_ms + 1
        subj = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))
        self._keys = subj * self._span + (self.t - self.start_ms)

    @property
    def subjects(self) -> int:
        return len(self.offsets) - 1

    def sample(self, subjects: I64, times: I64) -> tuple[F64, F64, NDArray[np.int32]]:
        """Positions (x, y) and place (-1 travelling) of subjects[k] at times[k], vectorized."""
        s = np.asarray(subjects, np.int64)
        tt = np.clip(np.asarray(times, np.int64), self.start_ms, self.end_ms)
        s, tt = np.broadcast_arrays(s, tt)
        q = s * self._span + (tt - self.start_ms)
        j = np.searchsorted(self._keys, q, side="right") - 1
        lo, hi = self.offsets[s], self.offsets[s + 1] - 1
        j = np.clip(j, lo, hi)
        k = np.minimum(j + 1, hi)
        t0, t1 = self.t[j], self.t[k]
        dt = np.where(t1 > t0, t1 - t0, 1)
        f = np.clip((tt - t0) / dt, 0.0, 1.0)
        f = np.where(k == j, 0.0, f)
        x = self.x[j] + f * (self.x[k] - self.x[j])
        y = self.y[j] + f * (self.y[k] - self.y[j])
        place = np.where((self.place[j] >= 0) & (self.place[j] == self.place[k]), self.place[j], -1)
        return x, y, place.astype(np.int32)

    def positions_at(self, t_ms: int) -> tuple[F64, F64, NDArray[np.int32]]:
        """Every subject's position at one instant (the fleet step of a lock-step run)."""
        n = self.subjects
        return self.sample(np.arange(n), np.full(n, t_ms, np.int64))

    def track(self, subject: int) -> tuple[I64, F64, F64, NDArray[np.int32]]:
        a, b = self.offsets[subject], self.offsets[subject + 1]
        return self.t[a:b], self.x[a:b], self.y[a:b], self.place[a:b]


def make_subjects(
    world: World,
    count: int,
    profiles: dict[str, float],
    exclusion_zones: int,
    victim_share: float,
    initial_battery: tuple[float, float],
    seed: int,
    p: MovementParams | None = None,
) -> list[Subject]:
    p = p or MovementParams()
    rng = np.random.default_rng([seed, 0x5B])
    names = list(profiles)
    shares = np.array([profiles[n] for n in names], dtype=float)
    shares /= shares.sum()
    # Exact shares (largest remainder), shuffled: a 50-subject scenario gets its 5 breachers.
    raw = shares * count
    n_each = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - n_each))[: count - int(n_each.sum())]:
        n_each[i] += 1
    prof = rng.permutation(np.repeat(np.arange(len(names)), n_each))
    homes = world.places_of(HOME)[:count]
    if len(homes) < count:
        raise ValueError(f"world has {len(homes)} homes for {count} subjects")
    works = world.places_of(WORKPLACE)
    shops, parks, social = world.places_of(SHOP), world.places_of(PARK), world.places_of(SOCIAL)
    towns = world.places_of(TOWN)
    excl_all = world.zones_of("exclusion")

    def nearest_zone(place: int) -> str:
        px, py = world.place_xy[place]
        return min(excl_all, key=lambda z: (z.x - px) ** 2 + (z.y - py) ** 2).name

    town_zone = [nearest_zone(int(p)) for p in towns]
    victims = world.zones_of("victim")
    excl_zones = world.zones_of("exclusion")
    out = []
    for i in range(count):
        home = int(homes[i])
        hx, hy = world.place_xy[home]
        # Exclusion zones: town centres, nearest first but never the one the home is in.
        by_dist = sorted(excl_zones, key=lambda z: (z.x - hx) ** 2 + (z.y - hy) ** 2)
        allowed = [
            z for z in by_dist if (z.x - hx) ** 2 + (z.y - hy) ** 2 > (z.radius_m + 200) ** 2
        ]
        excl = [z.name for z in allowed[:exclusion_zones]]
        if victims and rng.random() < victim_share:
            far = [v for v in victims if np.hypot(v.x - hx, v.y - hy) > v.radius_m + 1500]
            if far:
                excl.append(far[int(rng.integers(len(far)))].name)
        ok_towns = [int(p) for p, z in zip(towns, town_zone, strict=True) if z not in excl]

        def near(
            cands: I64, k: int, hx: float = hx, hy: float = hy, excl: list[str] = excl
        ) -> list[int]:
            """k of the candidates, favouring those within a few km of home."""
            d = np.hypot(world.place_xy[cands, 0] - hx, world.place_xy[cands, 1] - hy)
            w = np.exp(-d / 3000.0)
            if world.zones_of("victim"):
                for zn in excl:
                    if zn.startswith("victim"):
                        z = world.zone(zn)
                        d2 = np.hypot(
                            world.place_xy[cands, 0] - z.x, world.place_xy[cands, 1] - z.y
                        )
                        w = np.where(d2 < z.radius_m + 100, 0.0, w)
            if not np.any(w > 0):
                w = np.ones(len(cands))
            pick = rng.choice(
                len(cands), size=min(k, int(np.count_nonzero(w))), replace=False, p=w / w.sum()
            )
            return [int(cands[j]) for j in pick]

        haunts = near(shops, 3) + near(parks, 1) + near(social, 2)
        if ok_towns:
            haunts += near(np.array(ok_towns, np.int64), 1)
        workplace = near(works, 1)[0] if rng.random() < p.work_p else -1
        lo, hi = initial_battery
        out.append(
            Subject(
                index=i,
                tag_id=100_001 + i,
                home_unit_id=500_001 + i,
                profile=names[int(prof[i])],
                home=home,
                workplace=workplace,
                haunts=tuple(haunts),
                exclusion=tuple(excl),
                appointment_weekday=int(rng.integers(0, 5)),
                home_walls=int(rng.integers(0, 3)),
                initial_battery=float(rng.uniform(lo, hi)),
            )
        )
    return out


class _Track:
    def __init__(self) -> None:
        self.t: list[I64] = []
        self.x: list[F64] = []
        self.y: list[F64] = []
        self.place: list[NDArray[np.int32]] = []
        self.mode: list[NDArray[np.int8]] = []

    def add(self, t: I64, xy: F64, place: int, mode: int) -> None:
        self.t.append(np.asarray(t, np.int64))
        self.x.append(xy[:, 0])
        self.y.append(xy[:, 1])
        self.place.append(np.full(len(t), place, np.int32))
        self.mode.append(np.full(len(t), mode, np.int8))


class _Planner:
    """Plans one subject's days and writes their track."""

    def __init__(
        self,
        world: World,
        subject: Subject,
        p: MovementParams,
        tz: str,
        curfew: tuple[str, str],
        seed: int,
    ) -> None:
        self.w, self.s, self.p, self.tz, self.seed = world, subject, p, tz, seed
        self.cur_start, self.cur_end = (clock.parse_hhmm(c) for c in curfew)
        self.routes: dict[tuple[int, int], tuple[F64, F64]] = {}
        self.track = _Track()
        self.stays: list[tuple[int, int, int]] = []
        self.here = subject.home
        self.since = 0  # when the subject arrived at `here`
        self.walk_speed = 1.3

    def _route(self, a: int, b: int) -> tuple[F64, F64]:
        key = (a, b)
        if key not in self.routes:
            pts = self.w.route(a, b)
            seg = np.hypot(*np.diff(pts, axis=0).T)
            self.routes[key] = (pts, np.concatenate(([0.0], np.cumsum(seg))))
        return self.routes[key]

    def travel_ms(self, a: int, b: int) -> int:
        if a == b:
            return 0
        _, cum = self._route(a, b)
        if cum[-1] <= self.p.bus_over_m:
            return int(cum[-1] / self.walk_speed * 1000)
        walk = cum[1] / self.walk_speed
        wait = sum(self.p.bus_wait_s) / 2
        return int((walk + wait + (cum[-1] - cum[1]) / self.p.bus_speed_mps) * 1000)

    def go(self, dest: int, depart: int, rng: np.random.Generator) -> int:
        """Stay where we are until `depart`, then travel to `dest`; returns arrival time."""
        if dest == self.here:
            return depart
        depart = max(depart, self.since)
        self._stay_until(depart)
        pts, cum = self._route(self.here, dest)
        if cum[-1] <= self.p.bus_over_m:
            t = depart + (cum / self.walk_speed * 1000).astype(np.int64)
            self.track.add(t[:-1], pts[:-1], -1, WALK)
            arrive = int(t[-1])
        else:
            t_stop = depart + int(cum[1] / self.walk_speed * 1000)
            self.track.add(np.array([depart]), pts[:1], -1, WALK)
            bus_at = t_stop + int(rng.uniform(*self.p.bus_wait_s) * 1000)
            self.track.add(np.array([t_stop]), pts[1:2], -1, WAIT)
            t = bus_at + ((cum[1:] - cum[1]) / self.p.bus_speed_mps * 1000).astype(np.int64)
            self.track.add(t[:-1], pts[1:-1], -1, BUS)
            arrive = int(t[-1])
        self.here, self.since = dest, arrive
        return arrive

    def _stay_until(self, t: int) -> None:
        if t <= self.since:
            return
        xy = self.w.place_xy[self.here][None, :].repeat(2, axis=0)
        self.track.add(np.array([self.since, t]), xy, self.here, STAY)
        self.stays.append((self.here, self.since, t))
        self.since = t

    def day(self, day: date, injections: list[Injection], rng: np.random.Generator) -> None:
        p, s, tz = self.p, self.s, self.tz
        ms = clock.MS_PER_MIN
        morning_end = clock.window_ms(day - timedelta(days=1), self.cur_start, self.cur_end, tz)[1]
        evening_start = clock.window_ms(day, self.cur_start, self.cur_end, tz)[0]
        self.walk_speed = float(rng.uniform(*p.walk_speed_mps))
        leave = morning_end + int(rng.uniform(*p.leave_after_min) * ms)
        margin = int(rng.uniform(*p.home_margin_min) * ms)
        target_home = evening_start - margin

        fixed: list[tuple[int, int, int]] = []  # (start, end, place)
        late = [i for i in injections if i.type == "curfew_breach" and i.kind == "late_return"]
        nights = [i for i in injections if i.type == "curfew_breach" and i.kind == "night_out"]
        if late:
            target_home = late[0].start_ms
        weekday = day.weekday()
        if s.workplace >= 0 and weekday < 5:
            ws = clock.local_to_ms(day, clock.parse_hhmm("09:00"), tz) + int(rng.normal(0, 20) * ms)
            we = clock.local_to_ms(day, clock.parse_hhmm("17:00"), tz) + int(rng.normal(0, 30) * ms)
            fixed.append((ws, min(we, target_home - 30 * ms), s.workplace))
        if weekday == s.appointment_weekday:
            probation = int(self.w.places_of(PROBATION)[0])
            at = (
                clock.local_to_ms(day, clock.parse_hhmm("10:00"), tz)
                + int(rng.integers(0, 8)) * 30 * ms
            )
            fixed.append((at, at + int(rng.uniform(20, 45) * ms), probation))
        # Lingering at a zone's edge: from a place outside it, out to a spot `metres` from
        # the edge and back (keyed by the stay's start).
        spots: dict[int, F64] = {}
        for inj in injections:
            if inj.type == "exclusion_zone_entry" and inj.end_ms is not None:
                fixed.append((inj.start_ms, inj.end_ms, self._zone_place(inj.zone, rng)))
            if inj.type == "zone_edge_linger" and inj.end_ms is not None:
                base, spots[inj.start_ms] = self._edge_spot(inj.zone, inj.metres)
                fixed.append((inj.start_ms, inj.end_ms, base))
        fixed.sort()
        # Drop fixed stays that collide with an earlier one (work vs probation: probation wins
        # by being kept first only if earlier; the later is shortened to start after).
        plan: list[tuple[int, int, int]] = []
        for st, en, pl in fixed:
            if plan and st < plan[-1][1]:
                prev = plan[-1]
                plan[-1] = (prev[0], st, prev[2]) if prev[0] < st else prev
                if prev[0] >= st:
                    continue
            plan.append((st, en, pl))
        lo, hi = p.outings
        flex = [
            (int(rng.choice(s.haunts)), int(rng.uniform(*p.stay_minutes) * ms))
            for _ in range(int(rng.integers(lo, hi + 1)))
        ]
        if late and not flex:
            flex.append((int(rng.choice(s.haunts)), int(rng.uniform(*p.stay_minutes) * ms)))

        # Walk through the day: free outings fitted before each fixed stay, then home. People
        # linger at home, work or a free outing, never in a zone they were injected into.
        outings = {f for f, _ in flex}
        linger = {s.home, s.workplace, *outings}
        for st, en, pl in [*plan, (target_home, target_home, s.home)]:
            while flex:
                f, dur = flex[0]
                start_f = max(self.since, leave) if self.here == s.home else self.since
                arrive_f = start_f + self.travel_ms(self.here, f)
                if arrive_f + dur + self.travel_ms(f, pl) > st:
                    break
                flex.pop(0)
                self.go(f, start_f, rng)
                self._stay_until(arrive_f + dur)
            if (
                self.here not in linger
                and st - self.travel_ms(self.here, pl) > self.since + 30 * ms
            ):
                self.go(s.home, self.since, rng)
            if pl == s.home:
                if late and self.here not in outings:
                    # Out late: from home, work or a zone, on to somewhere to stay out.
                    f = flex.pop(0)[0] if flex else int(rng.choice(s.haunts))
                    self.go(f, max(self.since, leave) if self.here == s.home else self.since, rng)
                elif not late and self.here not in linger:
                    st = self.since + self.travel_ms(self.here, s.home)
                self.go(s.home, st - self.travel_ms(self.here, s.home), rng)
                break
            spot = spots.get(st)
            walk = 0 if spot is None else self._walk_ms(self.w.place_xy[pl], spot)
            arrive = self.go(pl, st - self.travel_ms(self.here, pl) - walk, rng)
            if spot is None:
                self._stay_until(max(en, arrive + 5 * ms))
            else:
                self._linger(spot, max(en, arrive + walk + 5 * ms))
        for inj in nights:
            dest = int(
                rng.choice(
                    [h for h in s.haunts if self.w.place_kind[h] in (SOCIAL, TOWN)] or s.haunts
                )
            )
            self.go(dest, inj.start_ms, rng)
            self._stay_until(max(inj.end_ms or 0, self.since + 5 * ms))
            self.go(s.home, self.since, rng)

    def _zone(self, zone: str | None) -> Zone:
        """An event's zone: named, or the subject's first ("victim": their victim's)."""
        name = zone or (self.s.exclusion[0] if self.s.exclusion else "bournemouth-centre")
        if name == "victim":
            name = next((z for z in self.s.exclusion if z.startswith("victim")), "victim-0")
        return self.w.zone(name)

    def _zone_place(self, zone: str | None, rng: np.random.Generator) -> int:
        z = self._zone(zone)
        if z.name.startswith("victim"):
            cands = self.w.places_of(VICTIM)
            d = np.hypot(self.w.place_xy[cands, 0] - z.x, self.w.place_xy[cands, 1] - z.y)
            return int(cands[int(np.argmin(d))])
        towns = self.w.places_of(TOWN)
        d = np.hypot(self.w.place_xy[towns, 0] - z.x, self.w.place_xy[towns, 1] - z.y)
        inside = towns[d < z.radius_m]
        return (
            int(inside[int(rng.integers(len(inside)))]) if len(inside) else int(towns[np.argmin(d)])
        )

    def _edge_spot(self, zone: str | None, metres: float) -> tuple[int, F64]:
        """Where to linger `metres` outside the zone's edge: on the ray from its centre
        towards the nearest place beyond that (not a home, outside all of the subject's
        zones), so the walk out from that place and back never comes closer."""
        z = self._zone(zone)
        xy = self.w.place_xy
        centre = np.array([z.x, z.y])
        d = np.hypot(xy[:, 0] - z.x, xy[:, 1] - z.y)
        ok = (self.w.sources >= 0) & (d > z.radius_m + metres + 10)
        for name in self.s.exclusion:
            other = self.w.zone(name)
            ok &= np.hypot(xy[:, 0] - other.x, xy[:, 1] - other.y) > other.radius_m + metres
        base = int(np.flatnonzero(ok)[np.argmin(d[ok])])
        ray = (xy[base] - centre) / d[base]
        return base, centre + ray * (z.radius_m + metres)

    def _walk_ms(self, a: F64, b: F64) -> int:
        return int(float(np.hypot(*(b - a))) / self.walk_speed * 1000)

    def _linger(self, spot: F64, until: int) -> None:
        """From the place we are at, walk straight to `spot`, stand there until `until` (not
        at a place: outdoors, shifting about) and walk back."""
        here = self.w.place_xy[self.here]
        there = self.since + self._walk_ms(here, spot)
        self.track.add(np.array([self.since]), here[None, :], -1, WALK)
        self.track.add(np.array([there, until]), np.vstack((spot, spot)), -1, STAY)
        self.since = until + self._walk_ms(spot, here)

    def charging(
        self, days: list[date], skip_days: set[int], rng: np.random.Generator
    ) -> list[tuple[int, int]]:
        """Evening charging at home, clipped to the times the subject is actually at home."""
        home = [(a, b) for pl, a, b in self.stays if pl == self.s.home]
        out: list[tuple[int, int]] = []
        for d, day in enumerate(days):
            if d in skip_days:
                continue
            ev = clock.window_ms(day, self.cur_start, self.cur_end, self.tz)[0]
            # Plugged in a little after getting home in the evening (or at curfew time).
            arrivals = [
                a for a, _ in home if ev - 6 * clock.MS_PER_H <= a <= ev + 8 * clock.MS_PER_H
            ]
            start = (arrivals[0] if arrivals else ev) + int(rng.uniform(5, 30) * clock.MS_PER_MIN)
            end = start + int(rng.uniform(*self.p.evening_charge_min) * clock.MS_PER_MIN)
            for a, b in home:
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    out.append((lo, hi))
        return out


def plan_movements(
    world: World,
    subjects: list[Subject],
    first_day: date,
    days: int,
    tz: str,
    curfew: tuple[str, str],
    injections: list[Injection],
    seed: int,
    p: MovementParams | None = None,
) -> Movements:
    p = p or MovementParams()
    start_ms = clock.local_midnight(first_day, tz)
    end_ms = clock.local_midnight(first_day + timedelta(days=days), tz)
    by_subject: dict[int, list[Injection]] = {}
    for inj in injections:
        by_subject.setdefault(inj.subject, []).append(inj)
    dates = [first_day + timedelta(days=d) for d in range(days)]
    ts, xs, ys, pls, mds, offsets = [], [], [], [], [], [0]
    stays, charging = [], []
    for s in subjects:
        pl = _Planner(world, s, p, tz, curfew, seed)
        pl.since = start_ms
        mine = by_subject.get(s.index, [])
        for d, day in enumerate(dates):
            rng = np.random.default_rng([seed, 0xDA7, s.index, d])
            pl.day(day, [i for i in mine if i.day == d], rng)
        pl._stay_until(max(end_ms, pl.since))
        skip = {
            d
            for d in range(days)
            for i in mine
            if i.type in ("not_charging", "flat_battery") and d >= i.day
        }
        charging.append(pl.charging(dates, skip, np.random.default_rng([seed, 0xC4A, s.index])))
        tr = pl.track
        t = np.concatenate(tr.t)
        keep = t <= end_ms  # the run ends at the last local midnight
        ts.append(t[keep])
        xs.append(np.concatenate(tr.x)[keep])
        ys.append(np.concatenate(tr.y)[keep])
        pls.append(np.concatenate(tr.place)[keep])
        mds.append(np.concatenate(tr.mode)[keep])
        offsets.append(offsets[-1] + int(keep.sum()))
        stays.append(
            [(a, max(b0, start_ms), min(c, end_ms)) for a, b0, c in pl.stays if b0 < end_ms]
        )
    return Movements(
        t=np.concatenate(ts),
        x=np.concatenate(xs),
        y=np.concatenate(ys),
        place=np.concatenate(pls),
        mode=np.concatenate(mds),
        offsets=np.array(offsets, np.int64),
        stays=stays,
        charging=charging,
        start_ms=start_ms,
        end_ms=end_ms,
    )
