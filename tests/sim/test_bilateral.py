"""The bilateral scenario in small: its truth is what it injects, and one pair-day with several
approaches of each kind through the proximity rule scores as the issue asks (the full figures
come from `tagwatch sim bilateral`, docs/simulator.md)."""

from __future__ import annotations

import numpy as np

from sim import bilateral as bl

PRM = bl.BilateralParams(pairs=1, days=1, seed=3, pursuits=3, encounters=3, near_misses=3)


def test_near_misses_stay_600_m_away_and_pursuits_come_within_the_alert_distance() -> None:
    rng = np.random.default_rng(5)
    people = bl.routine(rng, 1, (-4000, 0)), bl.routine(rng, 1, (4000, 0))
    pair = bl.Pair(0, *people)
    bl.inject(rng, pair, "near_miss", 0)
    miss = pair.injected[-1]
    d = np.hypot(pair.perpetrator.x - pair.victim.x, pair.perpetrator.y - pair.victim.y)
    # Following: from 1500 m in to 600 m (on foot), held there, then out again.
    i = (miss["t"] - bl.START) // bl.STEP_S
    held = int((900 / bl.WALK + miss["hold_min"] * 60 + 300 / bl.WALK) / bl.STEP_S)
    assert d[i : i + held].min() >= 599 and abs(d[i + held // 2] - 600) < 1
    bl.inject(rng, pair, "pursuit", 0)
    d = np.hypot(pair.perpetrator.x - pair.victim.x, pair.perpetrator.y - pair.victim.y)
    assert d.min() <= pair.injected[-1]["near_m"] + 1
    log = bl.truth([pair], bl.BilateralParams())
    start = bl.START + int(np.argmax(d <= 200)) * bl.STEP_S
    assert bl.PROXIMITY in {e.type for e in log.episodes}
    assert start * 1000 in {e.start_ms for e in log.episodes}


def test_one_pair_day_of_approaches_is_detected_in_time_without_false_alerts() -> None:
    report = bl.score(PRM)
    assert report["injected"] == {"pursuit": 1, "encounter": 2, "near_miss": 3}
    alerts = report["proximity_alert"]
    assert alerts["episodes"] >= 3
    assert alerts["recall"] == 1.0, alerts["missed"]
    assert alerts["false_alerts"] == 0
    assert alerts["late"] == [] and alerts["latency_p95_s"] < 120
