"""Simulation speed: tag-days of the real firmware per wall-clock minute, fleet only (frames
acknowledged in-process) in one process and sharded over worker processes (sim/shard.py),
and through the full stack (Mosquitto, ingest with the rules engine on and the home units,
each in a process of its own, beside the same run at 100 tags with both on threads of the
runner's process, beside the same run with the fleet's firmware sharded over worker
processes lock-stepped with the stack, and the CPU the home units' process takes per
unit-hour), for 100 and 1,000 tags; one tag under the micropython binary beside one CPython
fleet tag; and where a fleet-only run's CPU time goes (cProfile), which is what bounds it.
Most runs cover two hours of a morning from 07:00 (the curfew ends; people wake in RF mode
at home, then go out in GPS mode: the busiest hours), so the whole bench stays bounded; one
covers a whole day (nights at rest are cheaper). The fast path (a tag whose receiver
searches sleeps to its alarm, sim.fleet.Fleet._searching) is measured against the
step-by-step run, every wake polled, which gives the same frames. The baseline column is the
speed-up over real time (simulated seconds per wall second), over one process, or over the
step-by-step run.

One module alone: `.venv/bin/python -m tests.bench.sim_run`."""

from __future__ import annotations

import cProfile
import logging
import os
import pstats
from dataclasses import dataclass, field

import structlog

from sim import gate, scenario
from sim.fleet import Fleet, RunOptions
from sim.shard import run_sharded


@dataclass
class Speed:
    tags: int
    sim_s: float
    wall_s: float
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def tag_days_per_min(self) -> float:
        return self.tags * self.sim_s / 86_400 / self.wall_s * 60

    @property
    def realtime(self) -> float:
        return self.sim_s / self.wall_s


def options(
    tags: int,
    hours: float,
    backend: bool,
    hil: int = 0,
    units: bool = True,
    start: float = 7.0,
    fast: bool = True,
    processes: bool = True,
    shards: int = 1,
) -> RunOptions:
    """`tags` subjects of dorset-iom-50 from `start` o'clock for `hours`, seed 1; with
    `processes`, the stack's ingest worker and the home units each in a process of its own;
    the fleet's firmware over `shards` processes (full stack)."""
    return RunOptions(
        fast=fast,
        shards=shards,
        ingest_processes=processes,
        home_unit_process=processes,
        seed=1,
        subjects=tags,
        days=1,
        hil=hil,
        backend=backend,
        home_units=units,
        drain_s=0,
        from_hour=start,
        hours=hours,
    )


def measure(
    tags: int,
    hours: float,
    backend: bool,
    hil: int = 0,
    units: bool = True,
    start: float = 7.0,
    fast: bool = True,
    processes: bool = True,
    shards: int = 1,
) -> Speed:
    sc = scenario.load("dorset-iom-50")
    opts = options(tags, hours, backend, hil, units, start, fast, processes, shards)
    with Fleet(sc, opts) as f:
        f.setup()
        r = f.run()
    n = tags if hil == 0 else hil
    return Speed(n, r.sim_ms / 1000, r.wall_s, dict(r.counters))


def measure_sharded(tags: int, hours: float, workers: int, start: float = 7.0) -> Speed:
    sc = scenario.load("dorset-iom-50")
    r = run_sharded(sc, options(tags, hours, backend=False, start=start), workers)
    return Speed(tags, r.sim_ms / 1000, r.wall_s)


# Where a fleet tag's CPU time goes: the firmware's own step (everything under App.poll),
# within it the NMEA parser and the beacon (an HMAC each), and the simulated board's NMEA
# writer and world look-ups; the rest of the runner is the difference to the whole run.
PROFILE_PARTS = (
    ("App.poll with the board it calls", "firmware/app.py", "poll"),
    ("firmware NMEA parser", "firmware/nmea.py", "feed"),
    ("firmware beacon", "firmware/rfmode.py", "_beacon"),
    ("board NMEA writer + GNSS model", "sim/fleet_board.py", "gnss_read"),
    ("world look-ups", "sim/fleet.py", "position"),
)


def profile_split(tags: int = 20, hours: float = 2.0) -> tuple[float, float, dict[str, float]]:
    """Share of a fleet-only run's profiled time in each part (cumulative), polls per
    tag-day (each poll is one run of the real firmware's step) and beacons per tag-day (a
    fleet-only tag has no home unit, so it stays in GPS mode and beacons every 15 s while it
    moves and for rest_after_s after, at the relaxed interval at rest)."""
    sc = scenario.load("dorset-iom-50")
    with Fleet(sc, options(tags, hours, backend=False)) as f:
        f.setup()
        prof = cProfile.Profile()
        prof.enable()
        r = f.run()
        prof.disable()
    st = pstats.Stats(prof)
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    entries = st.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in entries.values())
    out: dict[str, float] = {}
    for label, path, fn in PROFILE_PARTS:
        cum = sum(
            v[3] for (file, _, name), v in entries.items() if file.endswith(path) and name == fn
        )
        out[label] = cum / total if total else 0.0
    tag_days = tags * r.sim_ms / 86_400_000
    beacons = sum(t.app.rf.beacons for t in r.tags if t.app is not None and t.app.rf is not None)
    return r.counters["polls"] / tag_days, beacons / tag_days, out


def gate_window(fast: bool) -> Speed:
    """An hour of the week's gate as `tagwatch sim gate` runs it (gate-week's 120 subjects,
    12 of them HIL tags with home units, the full stack with rules), from 07:00 of its
    first whole day, seed 1."""
    sc = scenario.load("gate-week")
    opts = RunOptions(seed=1, hil=gate.hil_tags(sc.population.subjects), fast=fast)
    opts.from_hour, opts.hours, opts.drain_s = 31.0, 1.0, 0
    with Fleet(sc, opts) as f:
        f.setup()
        r = f.run()
    return Speed(sc.population.subjects, r.sim_ms / 1000, r.wall_s, dict(r.counters))


def gate_rows() -> list[tuple[str, str, str, str]]:
    """The week's gate window, and the same window step by step: every fleet tag polled at
    every wake, and every HIL tag also at every slice's end (RunOptions.fast). Both run the
    HIL tags that wake in a slice side by side (sim.fleet.Fleet._hil_slices): by day, when
    they move and wake every second, that overlaps what the slice-end turns cost."""
    sc = scenario.load("gate-week")
    fast, step = gate_window(True), gate_window(False)
    week = sc.population.subjects * sc.days  # tag-days a seed of the gate runs
    return [
        (
            "sim run",
            "the week's gate: 1 h from 07:00 (gate-week, 120 tags, 12 HIL, full stack)",
            f"{fast.tag_days_per_min:.1f} tag-days/min ({fast.realtime:.0f}x real time)",
            f"a week's seed ~{week / fast.tag_days_per_min:.0f} min at this rate",
        ),
        (
            "sim run",
            "the week's gate step by step (every wake, HIL at every slice's end, side by side)",
            f"{step.tag_days_per_min:.1f} tag-days/min",
            f"fast path {fast.tag_days_per_min / step.tag_days_per_min:.2f}x this",
        ),
    ]


def rows() -> list[tuple[str, str, str, str]]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    out = []
    cores = os.cpu_count() or 1
    for tags, hours, start in ((100, 2.0, 7.0), (1000, 2.0, 7.0), (100, 24.0, 0.0)):
        one = measure(tags, hours, backend=False, start=start)
        many = measure_sharded(tags, hours, cores, start=start)
        span = f"{hours:g} h from {start:02.0f}:00"
        out.append(
            (
                "sim run",
                f"fleet only, {tags} tags ({span})",
                f"{one.tag_days_per_min:.1f} tag-days/min",
                f"{one.realtime:.0f}x real time",
            )
        )
        if tags <= 100:
            step = measure(tags, hours, backend=False, start=start, fast=False)
            out.append(
                (
                    "sim run",
                    f"fleet only step by step (every wake polled), {tags} tags ({span})",
                    f"{step.tag_days_per_min:.1f} tag-days/min",
                    f"fast path {one.tag_days_per_min / step.tag_days_per_min:.2f}x this",
                )
            )
        out.append(
            (
                "sim run",
                f"fleet only sharded over {cores} processes, {tags} tags ({span})",
                f"{many.tag_days_per_min:.1f} tag-days/min",
                f"{many.tag_days_per_min / one.tag_days_per_min:.2f}x one process",
            )
        )
    polls, beacons, split = profile_split()
    parts = ", ".join(f"{k} {100 * v:.0f} %" for k, v in split.items())
    out.append(
        (
            "sim run",
            "fleet only: profile (20 tags, 2 h)",
            f"{polls:.0f} polls/tag-day, {beacons:.0f} beacons/tag-day",
            parts,
        )
    )
    for tags, hours, units in ((100, 2.0, True), (1000, 2.0, True)):
        s = measure(tags, hours, backend=True, units=units)
        what = "+ home units" if units else "no home units"
        out.append(
            (
                "sim run",
                f"full stack + rules, {what}, {tags} tags ({hours:g} h from 07:00)",
                f"{s.tag_days_per_min:.1f} tag-days/min ({s.wall_s:.0f} s wall)",
                f"{s.realtime:.0f}x real time",
            )
        )
        # The units' own process (every daemon, its MQTT link and simulator radio): CPU per
        # simulated unit-hour once the units are built (connecting and configuring them
        # included), and the share of a core that kept busy over the run's wall time.
        cpu_s = s.counters.get("home_unit_process_cpu_ms", 0) / 1000
        out.append(
            (
                "sim run",
                f"full stack: the home units' process, {tags} units ({hours:g} h)",
                f"{1000 * cpu_s / (tags * s.sim_s / 3600):.1f} CPU-ms per unit-hour",
                f"{cpu_s / s.wall_s:.2f} of a core over the run",
            )
        )
        # The same run with the fleet's firmware sharded over the cores, each shard
        # lock-stepped with the stack (RunOptions.shards).
        many = measure(tags, hours, backend=True, units=units, shards=cores)
        out.append(
            (
                "sim run",
                f"full stack {what}, fleet sharded over {cores} processes, {tags} tags "
                f"({hours:g} h)",
                f"{many.tag_days_per_min:.1f} tag-days/min ({many.wall_s:.0f} s wall)",
                f"{many.tag_days_per_min / s.tag_days_per_min:.2f}x one process",
            )
        )
        if tags <= 100:
            # The same run with the ingest worker and the home units on threads of the
            # runner's process, sharing its interpreter lock: what the processes bring.
            one = measure(tags, hours, backend=True, units=units, processes=False)
            out.append(
                (
                    "sim run",
                    f"full stack {what} all in one process, {tags} tags ({hours:g} h)",
                    f"{one.tag_days_per_min:.1f} tag-days/min ({one.wall_s:.0f} s wall)",
                    f"processes {s.tag_days_per_min / one.tag_days_per_min:.2f}x this",
                )
            )
    out += gate_rows()
    fleet = measure(1, 3.0, backend=True, units=False)
    hil = measure(1, 3.0, backend=True, hil=1, units=False)
    out.append(
        (
            "sim run",
            "one tag: micropython HIL vs CPython fleet (3 h)",
            f"{hil.tag_days_per_min:.1f} vs {fleet.tag_days_per_min:.1f} tag-days/min",
            f"HIL {hil.tag_days_per_min / fleet.tag_days_per_min:.2f}x the fleet tag",
        )
    )
    return out


if __name__ == "__main__":
    for row in rows():
        print(" | ".join(row))
