"""Cellular uplink model: coverage holes, outages and latency (LTE-M).

Coverage at a point and time is lost inside a dead zone (a circle of the world, e.g. a dip
behind a heath or a basement car park) or during an outage (area-wide, from the scenario or
drawn at random per tag). Once attached, each uplink takes a log-normal latency; after a gap
in coverage the modem first re-attaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.params import CellularParams
from sim.world import Zone

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Outage:
    start_ms: int
    end_ms: int
    subject: int = -1  # -1: the whole area


class Cellular:
    def __init__(
        self,
        dead_zones: Sequence[Zone],
        outages: Sequence[Outage] = (),
        p: CellularParams | None = None,
    ) -> None:
        self.p = p or CellularParams()
        self.dead = [z for z in dead_zones if z.kind == "dead"]
        self.outages = list(outages)
        self._dz = np.array([[z.x, z.y, z.radius_m] for z in self.dead]).reshape(-1, 3)

    def in_dead_zone(self, x: F64, y: F64) -> NDArray[np.bool_]:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if not len(self._dz):
            return np.zeros(x.shape, bool)
        d2 = (x[..., None] - self._dz[:, 0]) ** 2 + (y[..., None] - self._dz[:, 1]) ** 2
        return np.asarray((d2 <= self._dz[:, 2] ** 2).any(axis=-1))

    def covered(
        self, t_ms: int, x: F64, y: F64, subjects: NDArray[np.integer] | None = None
    ) -> NDArray[np.bool_]:
        """Whether each tag (at x, y) has coverage at t_ms."""
        ok = ~self.in_dead_zone(x, y)
        for o in self.outages:
            if o.start_ms <= t_ms < o.end_ms:
                if o.subject < 0:
                    ok[:] = False
                elif subjects is not None:
                    ok &= np.asarray(subjects) != o.subject
        return ok

    def latency_ms(self, n: int, rng: np.random.Generator) -> NDArray[np.int64]:
        lat = self.p.latency_median_ms * np.exp(rng.normal(0.0, self.p.latency_sigma, n))
        return np.rint(lat).astype(np.int64)


def random_outages(
    subjects: int, start_ms: int, end_ms: int, seed: int, p: CellularParams | None = None
) -> list[Outage]:
    """Short per-tag outages at the configured daily rate (Poisson), deterministic for a seed."""
    p = p or CellularParams()
    rng = np.random.default_rng([seed, 0xCE11])
    days = (end_ms - start_ms) / 86_400_000
    n = rng.poisson(p.outage_rate_per_day * days, subjects)
    out = []
    for s in np.flatnonzero(n):
        for _ in range(int(n[s])):
            a = int(rng.integers(start_ms, end_ms))
            b = a + int(rng.uniform(*p.outage_minutes) * 60_000)
            out.append(Outage(a, min(b, end_ms), int(s)))
    return out
