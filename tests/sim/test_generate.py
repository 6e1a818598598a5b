"""generate(): deterministic movements and truth; routines; injected events in the truth log."""

from __future__ import annotations

from datetime import date, time, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import tagwatch_cli
from sim import clock, scenario, truth
from sim.generate import Simulation, generate
from sim.params import SHIELDED, MovementParams

EDGE = scenario.load("edge-cases")


@pytest.fixture(scope="module")
def edge() -> Simulation:
    return generate(EDGE, seed=7)


@pytest.fixture(scope="module")
def dorset() -> Simulation:
    return generate(scenario.load("dorset-iom-50"), seed=3, days=2)


def test_same_seed_same_everything(edge: Simulation) -> None:
    again = generate(EDGE, seed=7)
    mv, mv2 = edge.movements, again.movements
    for a in ("t", "x", "y", "place", "mode", "offsets"):
        assert np.array_equal(getattr(mv, a), getattr(mv2, a)), a
    assert edge.truth.episodes == again.truth.episodes
    assert np.array_equal(edge.battery, again.battery)
    other = generate(EDGE, seed=8)
    assert not np.array_equal(other.movements.x[:50], mv.x[:50])


def test_people_are_home_at_night(dorset: Simulation) -> None:
    breaches = {e.subject for e in dorset.truth.of_type(truth.CURFEW_BREACH)}
    for d in range(dorset.days):
        day = dorset.scenario.start + timedelta(days=d)
        for hh in (1, 3, 5):
            st = dorset.state(clock.local_to_ms(day, time(hh, 0)))
            for s in dorset.subjects:
                if s.index not in breaches:
                    assert st.at_home[s.index], (s.index, d, hh)
    # ... and most are out at midday.
    noon = dorset.state(clock.local_to_ms(dorset.scenario.start, time(13, 0)))
    assert np.mean(noon.at_home) < 0.6


def test_tracks_are_continuous_at_walking_and_bus_speeds(dorset: Simulation) -> None:
    mv = dorset.movements
    mp = MovementParams()
    for i in range(mv.subjects):
        t, x, y, _ = mv.track(i)
        assert np.all(np.diff(t) >= 0)
        dt = np.diff(t) / 1000
        dd = np.hypot(np.diff(x), np.diff(y))
        moving = dt > 0
        assert np.all(dd[~moving] < 1e-6)  # no teleporting
        assert np.all(dd[moving] / dt[moving] <= mp.bus_speed_mps * 1.001)  # whole-ms times
    assert t[0] == mv.start_ms and t[-1] == mv.end_ms


def test_curfew_breaches_match_the_injections(edge: Simulation) -> None:
    tz = EDGE.timezone
    by = {(e.subject, e.detail["kind"]): e for e in edge.truth.of_type(truth.CURFEW_BREACH)}
    late = by[(0, "late_return")]
    assert clock.to_local(late.start_ms, tz).time() == time(19, 0)
    # Planned to walk in 45 minutes late; the bus wait drawn on the way home moves it a bit.
    assert 35 * 60_000 <= late.duration_ms < 60 * 60_000
    night = by[(1, "out_at_night")]
    # Out at 23:40: the breach starts once they are off the premises (sim.truth.PREMISES_M),
    # seconds later on foot, or when the bus leaves a stop by the door.
    left = clock.to_local(night.start_ms, tz)
    assert time(23, 40) <= left.time() <= time(23, 53)
    assert night.duration_ms >= 150 * 60_000
    # The window of the night of the clock change is 11 hours.
    w = night.detail["window"]
    assert w[1] - w[0] == 11 * clock.MS_PER_H
    assert {s for s, _ in by} == {0, 1}  # everyone else (compliant, no injection) was home


def test_zone_entries_in_the_truth_log(edge: Simulation) -> None:
    entries = edge.truth.of_type(truth.EXCLUSION_ZONE_ENTRY)
    mine = [e for e in entries if e.subject == 2]
    inj = next(i for i in edge.injections if i.type == "exclusion_zone_entry" and i.subject == 2)
    long = max(mine, key=lambda e: e.duration_ms)
    # Planned to arrive at the injected time (give or take the bus wait) and dwell 25 min.
    overlap = min(long.end_ms, inj.end_ms or 0) - max(long.start_ms, inj.start_ms)
    assert overlap >= 0.8 * 25 * 60_000
    assert long.detail["zone"] == edge.subjects[2].exclusion[0]
    # The truth is geometric: the track really is inside the zone then, and outside after.
    z = edge.world.zone(long.detail["zone"])
    x, y, _ = edge.movements.sample(
        np.array([2, 2, 2]),
        np.array([long.start_ms + 1000, long.end_ms - 1000, long.end_ms + 60_000]),
    )
    assert z.contains(x, y).tolist() == [True, True, False]
    brief = [e for e in entries if e.subject == 9]
    assert brief and min(e.duration_ms for e in brief) < 20 * 60_000


def test_a_lingerer_stands_outside_the_zone_edge_and_never_enters(edge: Simulation) -> None:
    inj = next(i for i in edge.injections if i.type == "zone_edge_linger")
    z = edge.world.zone(edge.subjects[inj.subject].exclusion[0])
    assert inj.end_ms is not None
    t = np.arange(inj.start_ms - 3_600_000, inj.end_ms + 3_600_000, 5_000)
    x, y, place = edge.movements.sample(np.full(len(t), inj.subject), t)
    d = np.hypot(x - z.x, y - z.y) - z.radius_m
    # Out to the spot (a few minutes either way: the trip there is planned with an average
    # bus wait), standing there outdoors to the end, and never closer to the edge.
    at = (t >= inj.start_ms + 10 * 60_000) & (t < inj.end_ms)
    assert np.allclose(d[at], inj.metres, atol=0.01) and (place[at] == -1).all()
    assert d.min() >= inj.metres - 0.01
    mine = [e for e in edge.truth.of_type(truth.EXCLUSION_ZONE_ENTRY) if e.subject == inj.subject]
    assert not [e for e in mine if e.start_ms < inj.end_ms + 3_600_000]


def test_device_events_and_battery_in_the_truth_log(edge: Simulation) -> None:
    t = edge.truth
    (strap,) = t.of_type(truth.STRAP_CUT)
    assert strap.subject == 3 and strap.end_ms == edge.end_ms  # never refitted
    (case,) = t.of_type(truth.CASE_OPEN)
    assert case.subject == 4 and case.duration_ms == 5 * 60_000
    (foil,) = t.of_type(truth.FOIL_SHIELDING)
    assert foil.subject == 5
    assert edge.state(foil.start_ms + 60_000).env[5] == SHIELDED
    (unplugged,) = t.of_type(truth.HOME_UNIT_UNPLUGGED)
    assert unplugged.subject == 8
    assert not edge.state(unplugged.start_ms + 1).home_unit_powered[8]
    outages = [e for e in t.of_type(truth.CELLULAR_OUTAGE) if e.subject == truth.ALL_SUBJECTS]
    assert len(outages) == 1 and not edge.state(outages[0].start_ms + 1).cellular.any()
    flat = t.of_type(truth.FLAT_BATTERY)
    assert [e.subject for e in flat] == [6]
    assert not edge.state(flat[0].start_ms + 60_000).tag_alive[6]
    not_charged = {
        (e.subject, clock.to_local(e.start_ms, EDGE.timezone).date())
        for e in t.of_type(truth.NOT_CHARGED)
    }
    assert not_charged == {(6, date(2025, 3, 29)), (6, date(2025, 3, 30)), (7, date(2025, 3, 30))}


def test_shielding_records_the_minutes_the_wearer_moved(edge: Simulation) -> None:
    # edge-cases' foil is put on at a friend's (a stay): no minute of motion, nothing a tag
    # could detect. Over one of the subject's trips every minute with travel is listed.
    (foil,) = edge.truth.of_type(truth.FOIL_SHIELDING)
    assert foil.detail["moving_min"] == []
    a, b = truth.travel_spans(edge.movements, foil.subject)[0]
    probe = truth.Episode(a - 600_000, b + 600_000, truth.FOIL_SHIELDING, foil.subject, {})
    (walk,) = truth.with_motion(edge.movements, [probe])
    minutes = walk.detail["moving_min"]
    assert minutes == list(range(a // 60_000 * 60_000, b, 60_000))
    t = np.array(minutes) + 30_000
    _, _, place = edge.movements.sample(np.full(len(t), foil.subject), t[(t > a) & (t < b)])
    assert (place == -1).all()


def test_a_critical_battery_precedes_every_flat_one(edge: Simulation) -> None:
    critical = edge.truth.of_type(truth.BATTERY_CRITICAL)
    for f in edge.truth.of_type(truth.FLAT_BATTERY):
        assert any(
            c.subject == f.subject and c.start_ms < f.start_ms and c.end_ms >= f.end_ms
            for c in critical
        ), f
    k = np.searchsorted(edge.battery_t, critical[0].start_ms)
    assert edge.battery[critical[0].subject, k] <= truth.CRITICAL_LEVEL


def test_comms_loss_is_flat_or_away_without_coverage(edge: Simulation) -> None:
    gaps = edge.truth.of_type(truth.COMMS_LOSS)
    (flat,) = edge.truth.of_type(truth.FLAT_BATTERY)
    assert any(g.subject == flat.subject and g.start_ms <= flat.start_ms and
               g.end_ms >= flat.end_ms for g in gaps)  # fmt: skip
    for g in gaps:
        mid = (g.start_ms + g.end_ms) // 2
        st = edge.state(mid)
        home = edge.subjects[g.subject].home
        _, _, place = edge.movements.sample(np.array([g.subject]), np.array([mid]))
        assert not st.tag_alive[g.subject] or (place[0] != home and not st.cellular[g.subject]), g


def test_dead_zone_truth_is_where_coverage_is_lost(dorset: Simulation) -> None:
    eps = dorset.truth.of_type(truth.CELLULAR_DEAD_ZONE)
    assert eps
    e = max(eps, key=lambda e: e.duration_ms)
    mid = (e.start_ms + e.end_ms) // 2
    x, y, _ = dorset.movements.sample(np.array([e.subject]), np.array([mid]))
    assert dorset.cellular.in_dead_zone(x, y).all()


def test_truth_log_round_trips_through_json(edge: Simulation, tmp_path: Path) -> None:
    p = tmp_path / "truth.json"
    edge.truth.save(p)
    back = truth.TruthLog.load(p)
    assert back.episodes == edge.truth.episodes and back.counts() == edge.truth.counts()


def test_cli_world_writes_summary_truth_and_map(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        tagwatch_cli.app,
        ["sim", "world", "edge-cases", "--seed", "2", "--days", "1", "--out", str(tmp_path)],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"subjects": 12' in (tmp_path / "summary.json").read_text()
    assert truth.TruthLog.load(tmp_path / "truth.json").episodes
    bad = CliRunner().invoke(tagwatch_cli.app, ["sim", "world", "no-such-scenario"])
    assert bad.exit_code == 2 and "no scenario 'no-such-scenario'" in bad.output


def test_a_world_with_no_victims_and_no_dead_zones() -> None:
    # The scenario format allows none of either; a town without them still runs.
    bare = EDGE.model_copy(
        update={"world": EDGE.world.model_copy(update={"victims": 0, "dead_zones": 0})}
    )
    sim = generate(bare, seed=7)
    assert sim.world.zones_of("victim") == [] and sim.world.zones_of("dead") == []
    assert len(sim.subjects) == len(generate(EDGE, seed=7).subjects)
