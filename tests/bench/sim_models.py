"""Simulator model speed: the GNSS model vectorized over a 1,000-tag fleet beside the
same model as a scalar Python loop in the same run, and movement generation in tag-days/s."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np

from sim import gnss, scenario
from sim.generate import generate
from sim.params import GnssParams

FLEET = 1000


def gnss_rates(epochs: int = 200) -> dict[str, float]:
    p = GnssParams()
    rng = np.random.default_rng(1)
    env = rng.integers(0, 4, FLEET)
    x = rng.uniform(-5000, 5000, FLEET)
    y = rng.uniform(-3000, 3000, FLEET)
    fleet = gnss.GnssFleet(FLEET, seed=1, p=p)
    t = time.perf_counter()
    for k in range(epochs):
        fleet.epoch(k * 1000, x, y, env)
    vec = time.perf_counter() - t
    rnd = random.Random(1)
    envs, xs, ys = env.tolist(), x.tolist(), y.tolist()
    n_scalar = max(1, epochs // 10)
    t = time.perf_counter()
    for _ in range(n_scalar):
        for i in range(FLEET):
            gnss.sample_one(xs[i], ys[i], envs[i], rnd, p)
    scalar = time.perf_counter() - t
    return {"vector": epochs * FLEET / vec, "scalar": n_scalar * FLEET / scalar}


def movement_rate(subjects: int = 1000, days: int = 1) -> dict[str, Any]:
    base = scenario.load("fleet-10k")
    sc = base.model_copy(
        update={"population": base.population.model_copy(update={"subjects": subjects})}
    )
    t = time.perf_counter()
    sim = generate(sc, seed=1, days=days)
    total = time.perf_counter() - t
    return {"tag_days": subjects * days, "seconds": total, "episodes": len(sim.truth.episodes)}


def rows() -> list[tuple[str, str, str, str]]:
    g = gnss_rates()
    m = movement_rate()
    return [
        (
            "sim models",
            f"GNSS fixes, {FLEET}-tag fleet, numpy",
            f"{g['vector'] / 1e6:.2f} M fixes/s",
            f"{g['vector'] / g['scalar']:.0f}x the scalar loop ({g['scalar'] / 1e3:.0f} k/s)",
        ),
        (
            "sim models",
            f"world+movements+truth, {m['tag_days']} tag-days",
            f"{m['tag_days'] / m['seconds']:.0f} tag-days/s",
            f"{m['seconds']:.1f} s total, {m['episodes']} truth episodes",
        ),
    ]


if __name__ == "__main__":
    for r in rows():
        print(*r, sep=" | ")
