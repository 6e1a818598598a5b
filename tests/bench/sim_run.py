"""Simulation speed (issue 8): tag-days of the real firmware per wall-clock minute, fleet only
(frames acknowledged in-process) and through the full stack (Mosquitto, in-process ingest,
home units), for 100 and 1,000 tags; and one tag under the micropython binary beside one
CPython fleet tag. Each run covers a slice of a day so the whole bench stays bounded; the
baseline column is the speed-up over real time (simulated seconds per wall second)."""

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


def measure(tags: int, hours: float, backend: bool, hil: int = 0, units: bool = True) -> Speed:
    """Run `tags` subjects of dorset-iom-50 from 06:00 (people get up and go out) for `hours`."""
    sc = scenario.load("dorset-iom-50")
    opts = RunOptions(
        seed=1,
        subjects=tags,
        days=1,
        hil=hil,
        backend=backend,
        home_units=units,
        drain_s=0,
        from_hour=6.0,
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
    for tags, hours in ((100, 2.0), (1000, 0.5)):
        s = measure(tags, hours, backend=False)
        out.append(
            (
                "sim run",
                f"fleet only, {tags} tags ({hours:g} h from 06:00)",
                f"{s.tag_days_per_min:.1f} tag-days/min",
                f"{s.realtime:.0f}x real time",
            )
        )
    for tags, hours, units in ((100, 1.0, True), (1000, 0.25, False)):
        s = measure(tags, hours, backend=True, units=units)
        what = "with home units" if units else "no home units"
        out.append(
            (
                "sim run",
                f"full stack, {tags} tags, {what} ({hours:g} h)",
                f"{s.tag_days_per_min:.1f} tag-days/min",
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
