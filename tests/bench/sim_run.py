"""Simulation speed: tag-days of the real firmware per wall-clock minute, fleet only
(frames acknowledged in-process) and through the full stack (Mosquitto, in-process ingest
with the rules engine on; home units at 100 tags), for 100 and 1,000 tags; and one tag under the
micropython binary beside one CPython fleet tag. Each run covers two hours of a morning
from 07:00 (the curfew ends; people wake in RF mode at home, then go out in GPS mode), so
the whole bench stays bounded; the baseline column is the speed-up over real time
(simulated seconds per wall second).

One module alone: `.venv/bin/python -m tests.bench.sim_run`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import structlog

from sim import scenario
from sim.fleet import Fleet, RunOptions


@dataclass
class Speed:
    tags: int
    sim_s: float
    wall_s: float

    @property
    def tag_days_per_min(self) -> float:
        return self.tags * self.sim_s / 86_400 / self.wall_s * 60

    @property
    def realtime(self) -> float:
        return self.sim_s / self.wall_s


def measure(
    tags: int, hours: float, backend: bool, hil: int = 0, units: bool = True, start: float = 7.0
) -> Speed:
    """Run `tags` subjects of dorset-iom-50 from `start` o'clock for `hours`."""
    sc = scenario.load("dorset-iom-50")
    opts = RunOptions(
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
    with Fleet(sc, opts) as f:
        f.setup()
        r = f.run()
    n = tags if hil == 0 else hil
    return Speed(n, r.sim_ms / 1000, r.wall_s)


def rows() -> list[tuple[str, str, str, str]]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    out = []
    for tags, hours in ((100, 2.0), (1000, 2.0)):
        s = measure(tags, hours, backend=False)
        out.append(
            (
                "sim run",
                f"fleet only, {tags} tags ({hours:g} h from 07:00)",
                f"{s.tag_days_per_min:.1f} tag-days/min",
                f"{s.realtime:.0f}x real time",
            )
        )
    # 1,000 home-unit daemons (each its own MQTT session) do not all get their configuration
    # within sim.home_units' 30 s start-up on a loaded 2-core machine: at 1,000 tags the
    # full stack is broker, ingest and rules, every tag in GPS mode.
    for tags, hours, units in ((100, 2.0, True), (1000, 2.0, False)):
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
