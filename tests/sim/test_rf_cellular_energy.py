"""RF path loss and packet loss, the cellular model, and the battery from an energy ledger."""

from __future__ import annotations

import numpy as np
import pytest

from sim import energy, rf
from sim.cellular import Cellular, Outage, random_outages
from sim.params import EnergyParams, RfParams
from sim.world import Zone


def test_rssi_falls_with_distance_and_walls() -> None:
    d = np.array([1.0, 2.0, 5.0, 10.0, 20.0, 40.0])
    m = rf.mean_rssi(d)
    assert np.all(np.diff(m) < 0)
    assert m[0] == RfParams().rssi_1m_dbm and abs((m[1] - m[3]) - 10 * 2.0 * np.log10(5)) < 1e-9
    one_wall = rf.mean_rssi(d, exterior_walls=1)
    two = rf.mean_rssi(d, interior_walls=2, exterior_walls=1)
    assert np.all(one_wall < m) and np.all(two < one_wall)
    assert np.all(rf.mean_rssi(d[1:], indoor=True) < m[1:])


def test_range_through_an_outside_wall_is_like_a_commercial_tag() -> None:
    r = rf.range_m(RfParams().exterior_wall_db)
    assert 23 <= r <= 35  # REF: bracelet RF range ~23-30 m


def test_packet_loss_rises_with_distance_and_shadowing_sigma() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    heard_rate = []
    for d in (3.0, 15.0, 30.0, 60.0):
        heard, _ = rf.receive(np.full(n, d), rng, exterior_walls=1)
        heard_rate.append(float(heard.mean()))
    assert heard_rate == sorted(heard_rate, reverse=True)
    assert heard_rate[0] > 0.95 and heard_rate[-1] < 0.05
    _, rssi = rf.receive(np.full(n, 5.0), rng)
    assert abs(float(np.std(rssi)) - RfParams().shadowing_sigma_db) < 0.2
    interior, exterior, indoor = rf.walls_between(np.array([True, False]), np.array([2, 2]))
    assert (
        interior.tolist() == [2, 2]
        and exterior.tolist() == [0, 1]
        and indoor.tolist() == [True, False]
    )


def test_cellular_dead_zones_outages_latency() -> None:
    dz = Zone("dead-0", "dead", 0.0, 0.0, 300.0)
    cell = Cellular([dz], [Outage(1000, 2000), Outage(5000, 6000, subject=1)])
    x, y = np.array([0.0, 500.0, 500.0]), np.array([0.0, 0.0, 0.0])
    subj = np.arange(3)
    assert cell.covered(0, x, y, subj).tolist() == [False, True, True]
    assert cell.covered(1500, x, y, subj).tolist() == [False, False, False]
    assert cell.covered(5500, x, y, subj).tolist() == [False, False, True]
    lat = cell.latency_ms(10_000, np.random.default_rng(2))
    assert 370 < float(np.median(lat)) < 430 and lat.min() > 0
    outs = random_outages(1000, 0, 86_400_000, seed=4)
    assert 150 < len(outs) < 250  # 0.2 a tag-day
    assert outs == random_outages(1000, 0, 86_400_000, seed=4)


def test_battery_takes_a_dict_or_a_callable_ledger() -> None:
    b = energy.Battery(100.0, level=0.5, charge_ma=60.0)
    assert b.step(0, 3_600_000, {"gnss": 10.0, "modem": 5.0}) == pytest.approx(0.35)
    calls: list[tuple[int, int]] = []

    def ledger(t: int, dt: int) -> dict[str, float]:
        calls.append((t, dt))
        return {"mcu": 40.0}

    b.step(3_600_000, 3_600_000, ledger)
    assert b.flat and b.flat_since_ms == 7_200_000 and calls == [(3_600_000, 3_600_000)]
    b.step(7_200_000, 3_600_000, ledger)  # a flat tag draws nothing
    assert len(calls) == 1
    assert b.step(10_800_000, 1_800_000, {"mcu": 1.0}, charging=True) == pytest.approx(0.3)
    assert not b.flat and b.flat_since_ms is None
    with pytest.raises(energy.EnergyError, match="gnss"):
        b.step(0, 1000, {"gnss": -1.0})
    with pytest.raises(energy.EnergyError):
        energy.Battery(0.0)


def test_fleet_levels_match_the_single_battery() -> None:
    rng = np.random.default_rng(3)
    n, steps, dt = 20, 600, 60_000
    p = EnergyParams()
    state = rng.integers(0, 3, (n, steps)).astype(np.int8)
    drain = energy.default_drain(state, dt, p)
    charging = rng.random((n, steps)) < 0.003
    init = rng.uniform(0.0, 0.05, n)
    fleet = energy.fleet_levels(drain, charging, dt, p.capacity_mah, init, p.charge_ma)
    for i in range(n):
        b = energy.Battery(p.capacity_mah, float(init[i]), p.charge_ma)
        for k in range(steps):
            b.step(k * dt, dt, energy.default_ledger(int(state[i, k]), dt, p), bool(charging[i, k]))
            assert abs(b.level - fleet[i, k + 1]) < 1e-9
    assert (fleet == 0).any()  # some of these low batteries went flat
    # The default model: moving in GPS mode costs more than resting, which costs more than home.
    per_h = [sum(energy.default_ledger(s, 3_600_000, p).values()) for s in range(3)]
    assert per_h[energy.AWAY_MOVING] > per_h[energy.AWAY_REST] > per_h[energy.AT_HOME]
