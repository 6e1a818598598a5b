"""GNSS receiver model, vectorized over a fleet (numpy).

Per epoch and tag: whether there is a fix, the measured position, satellites used and HDOP.
The error depends on the environment (sim.params.ENVIRONMENTS): a circular Gaussian core
(Rayleigh radius) plus multipath outliers, with availability below 1 where the sky is blocked.
HDOP and satellite count follow the core error (a fix that is bad for geometry reasons looks
bad), but an outlier keeps a plausible HDOP - multipath does not show in the DOP, which is
why the firmware and the rules must use more than HDOP. In a time series the core error is
a first-order Gauss-Markov process (real GNSS error drifts; it is not white), whose
stationary distribution is the same Rayleigh, so the error statistics hold either way.

`sample_one` is the same model for one tag in plain Python (random module), used for a single
HIL tag and as the benchmark's scalar baseline.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.params import GnssParams

F64 = NDArray[np.float64]

COLD, WARM, HOT = 0, 1, 2
START_KINDS = ("cold", "warm", "hot")
_CEP_PER_SIGMA = math.sqrt(2 * math.log(2))  # 1.1774


@dataclass
class Fixes:
    """One epoch for n tags. Invalid entries have NaN position and error."""

    valid: NDArray[np.bool_]
    x: F64
    y: F64
    err_m: F64
    sats: NDArray[np.int64]
    hdop: F64

    def __len__(self) -> int:
        return len(self.valid)


def _tables(p: GnssParams) -> dict[str, F64]:
    e = p.environments
    return {
        "sigma": np.array([v.sigma_m for v in e]),
        "out_p": np.array([v.outlier_p for v in e]),
        "out_lo": np.array([v.outlier_m[0] for v in e]),
        "out_hi": np.array([v.outlier_m[1] for v in e]),
        "avail": np.array([v.availability for v in e]),
        "hdop": np.array([v.hdop_median for v in e]),
        "ttff": np.array([v.ttff_factor for v in e]),
        "tau": np.array([v.correlation_s for v in e]),
    }


def fixes(
    x: F64,
    y: F64,
    env: NDArray[np.integer],
    rng: np.random.Generator,
    p: GnssParams | None = None,
    core: F64 | None = None,
) -> Fixes:
    """Measured fixes for true positions (x, y) in environments `env` (all arrays of n).

    `core` is an optional (n, 2) array of standard-normal core errors (a correlated series
    from `GnssFleet`); by default independent draws.
    """
    p = p or GnssParams()
    tb = _tables(p)
    env = np.asarray(env, np.int64)
    n = len(env)
    sigma = tb["sigma"][env]
    z = rng.standard_normal((n, 2)) if core is None else core
    ex, ey = z[:, 0] * sigma, z[:, 1] * sigma
    core_r = np.hypot(ex, ey)
    outlier = rng.random(n) < tb["out_p"][env]
    r_out = rng.uniform(tb["out_lo"][env], tb["out_hi"][env])
    ang = rng.uniform(0.0, 2 * np.pi, n)
    ex = np.where(outlier, r_out * np.cos(ang), ex)
    ey = np.where(outlier, r_out * np.sin(ang), ey)
    valid = rng.random(n) < tb["avail"][env]
    # HDOP from the core error's size relative to its median, with some independent spread.
    median_r = np.maximum(sigma * _CEP_PER_SIGMA, 1e-9)
    hdop = tb["hdop"][env] * np.sqrt(np.maximum(core_r / median_r, 0.05))
    hdop = np.clip(hdop * np.exp(rng.normal(0.0, p.hdop_spread, n)), 0.5, 25.0)
    sats = np.clip(np.rint(3 + (p.hdop_k / hdop) ** 2), 4, p.sats_max).astype(np.int64)
    nan = np.full(n, np.nan)
    return Fixes(
        valid=valid,
        x=np.where(valid, np.asarray(x) + ex, nan),
        y=np.where(valid, np.asarray(y) + ey, nan),
        err_m=np.where(valid, np.hypot(ex, ey), nan),
        sats=np.where(valid, sats, 0),
        hdop=np.where(valid, np.round(hdop, 2), 99.99),
    )


def start_kind(
    since_last_fix_s: F64, backup_ok: NDArray[np.bool_] | None = None, p: GnssParams | None = None
) -> NDArray[np.int64]:
    """Cold, warm or hot start from the time since the receiver last had a fix (inf: never)
    and whether its backup domain kept ephemeris/almanac (False after a flat battery)."""
    p = p or GnssParams()
    s = np.asarray(since_last_fix_s, np.float64)
    kind = np.where(s <= p.hot_within_s, HOT, np.where(s <= p.warm_within_s, WARM, COLD))
    if backup_ok is not None:
        kind = np.where(backup_ok, kind, COLD)
    return kind.astype(np.int64)


def ttff_s(
    kind: NDArray[np.integer],
    env: NDArray[np.integer],
    rng: np.random.Generator,
    p: GnssParams | None = None,
) -> F64:
    """Time to first fix in seconds; inf where the attempt gets no fix before the timeout."""
    p = p or GnssParams()
    tb = _tables(p)
    env = np.asarray(env, np.int64)
    base = np.array([p.ttff_cold_s, p.ttff_warm_s, p.ttff_hot_s])[np.asarray(kind, np.int64)]
    t = base * tb["ttff"][env] * np.exp(rng.normal(0.0, p.ttff_spread, len(env)))
    gets = rng.random(len(env)) < tb["avail"][env]
    return np.where(gets & (t <= p.ttff_timeout_s), t, np.inf)


class GnssFleet:
    """Correlated GNSS error for n tags across epochs (lock-step fleet runs)."""

    def __init__(self, n: int, seed: int, p: GnssParams | None = None) -> None:
        self.p = p or GnssParams()
        self.rng = np.random.default_rng([seed, 0x6E55])
        self.core = self.rng.standard_normal((n, 2))
        self.last_ms: int | None = None
        self._tau = _tables(self.p)["tau"]

    def epoch(self, t_ms: int, x: F64, y: F64, env: NDArray[np.integer]) -> Fixes:
        env = np.asarray(env, np.int64)
        if self.last_ms is not None:
            dt = max(t_ms - self.last_ms, 0) / 1000.0
            a = np.exp(-dt / self._tau[env])[:, None]
            self.core = a * self.core + np.sqrt(1 - a * a) * self.rng.standard_normal(
                self.core.shape
            )
        self.last_ms = t_ms
        return fixes(x, y, env, self.rng, self.p, core=self.core)


def sample_one(
    x: float, y: float, env: int, rnd: random.Random, p: GnssParams | None = None
) -> tuple[bool, float, float, float, int, float]:
    """One fix in plain Python: (valid, x, y, err_m, sats, hdop). Same model as `fixes`."""
    p = p or GnssParams()
    e = p.environments[env]
    zx, zy = rnd.gauss(0.0, 1.0), rnd.gauss(0.0, 1.0)
    ex, ey = zx * e.sigma_m, zy * e.sigma_m
    core_r = math.hypot(ex, ey)
    if rnd.random() < e.outlier_p:
        r = rnd.uniform(*e.outlier_m)
        a = rnd.uniform(0.0, 2 * math.pi)
        ex, ey = r * math.cos(a), r * math.sin(a)
    valid = rnd.random() < e.availability
    median_r = max(e.sigma_m * _CEP_PER_SIGMA, 1e-9)
    hdop = e.hdop_median * math.sqrt(max(core_r / median_r, 0.05))
    hdop = min(25.0, max(0.5, hdop * math.exp(rnd.gauss(0.0, p.hdop_spread))))
    sats = int(min(p.sats_max, max(4, round(3 + (p.hdop_k / hdop) ** 2))))
    if not valid:
        return False, math.nan, math.nan, math.nan, 0, 99.99
    return True, x + ex, y + ey, math.hypot(ex, ey), sats, round(hdop, 2)
