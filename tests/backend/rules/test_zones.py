"""Zones: exclusion entry and inclusion exit with dwell and accuracy hysteresis, segment
crossing between sparse fixes, schedules across a clock change, fast sampling, late data."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.rules.engine import Engine
from backend.rules.evaluator import Evaluator, MemoryRepository
from backend.rules.model import Obs
from backend.rules.schedule import Weekly
from backend.rules.zones import Zones
from firmware import frame as fr
from tests.backend.rules import zone_edge
from tests.backend.rules.scenario import Builder, circle, config, curfew, local, types
from tests.backend.rules.zone_edge import observe

ENGINE = Engine([Zones()])
T = local("2026-05-12 14:00")
# An exclusion zone: a 100 m circle 1 km east of home.
EXCL = circle(7, "exclusion", 1000, 0, 100, name="town centre")


def zone_config(*zones, **kw):  # type: ignore[no-untyped-def]
    return config(zones=list(zones) or [EXCL], **kw)


def walk(b: Builder, t0: int, points: list[tuple[float, float]], every: int = 15, acc: float = 5):
    return [b.fix(t0 + every * i, dx, dy, acc) for i, (dx, dy) in enumerate(points)]


def test_entering_an_exclusion_zone_beyond_dwell_alerts_at_the_crossing() -> None:
    b = Builder()
    # From 200 m west of the centre walk east at ~2 m/s, stay inside 2 minutes, walk out.
    path = [(800 + 30 * i, 0) for i in range(7)] + [(1000, 0)] * 8
    path += [(1000 + 40 * i, 0) for i in range(1, 6)]
    fixes = walk(b, T, path)
    eps = ENGINE.evaluate(zone_config(), b.obs, T + 3600)
    assert types(eps) == ["exclusion_entry"]
    ep = eps[0]
    # The boundary is at x=900: crossed between the fix at 890 (i=3) and 920 (i=4).
    assert fixes[3].t < ep.start < fixes[4].t
    assert ep.confirmed_t >= ep.start + 60 and ep.end is not None
    assert ep.details["zone"] == 7 and ep.evidence


def test_gps_drift_at_the_zone_edge_does_not_alert() -> None:
    b = Builder()
    # Standing 10 m outside the edge for an hour; fixes scatter +-15 m with 12 m accuracy.
    scatter = [-15, 8, -3, 14, -12, 2, 11, -9, 5, -14]
    walk(b, T, [(890 + scatter[i % 10], 0) for i in range(240)], acc=12)
    assert ENGINE.evaluate(zone_config(), b.obs, T + 7200) == []


def test_a_single_outlier_inside_does_not_alert() -> None:
    b = Builder()
    walk(b, T, [(700, 0)] * 5 + [(1000, 0)] + [(700, 0)] * 5, every=60, acc=8)
    assert ENGINE.evaluate(zone_config(), b.obs, T + 7200) == []


def test_brief_entry_shorter_than_dwell_is_a_near_miss() -> None:
    b = Builder()
    walk(b, T, [(880, 0), (920, 0), (880, 0), (850, 0)], every=10, acc=4)
    assert ENGINE.evaluate(zone_config(), b.obs, T + 3600) == []


def test_sparse_fixes_either_side_of_a_zone_give_a_pass_through() -> None:
    b = Builder()
    # Two fixes 600 m west of the centre, then 600 m east: the straight line crosses the
    # 200 m wide zone. At a 400 s gap that is ~ 67 s inside, beyond the 60 s dwell: alert.
    walk(b, T, [(400, 0), (1600, 0)], every=400, acc=5)
    eps = ENGINE.evaluate(zone_config(), b.obs, T + 3600)
    assert types(eps) == ["exclusion_entry"] and eps[0].details["pass_through"]
    assert T < eps[0].start < eps[0].end < T + 400  # type: ignore[operator]
    b2 = Builder()
    walk(b2, T, [(400, 0), (1600, 0)], every=20, acc=5)  # a car: 3 s inside, under dwell
    assert ENGINE.evaluate(zone_config(), b2.obs, T + 3600) == []


def test_a_dropped_jump_between_two_fixes_still_leaves_their_segment_checked() -> None:
    # Two fixes 400 s apart either side of the zone (a pass-through on their own, as
    # above), with a multipath jump 20 km away between them: the jump is dropped, so the
    # fold's previous fix for the second one is the first — and that segment, which the
    # batch's precomputation (fix to next fix in the batch) never judged, crosses the zone.
    b = Builder()
    b.fix(T, 400, 0, 5)
    b.fix(T + 200, 20_000, 0, 5)
    b.fix(T + 400, 1600, 0, 5)
    eps = ENGINE.evaluate(zone_config(), b.obs, T + 3600)
    assert types(eps) == ["exclusion_entry"] and eps[0].details["pass_through"]
    assert T < eps[0].start < eps[0].end < T + 400  # type: ignore[operator]


def test_leaving_an_inclusion_zone() -> None:
    county = circle(9, "inclusion", 0, 0, 500, name="county")
    b = Builder()
    back = [(700 - 60 * i, 0) for i in range(1, 6)]  # and back in at 2 m/s
    walk(b, T, [(300, 0), (450, 0), (560, 0), (600, 0), (650, 0), (700, 0), *back], every=30)
    eps = ENGINE.evaluate(zone_config(county), b.obs, T + 3600)
    assert types(eps) == ["inclusion_exit"]
    assert T + 30 < eps[0].start < T + 60 and eps[0].end is not None


def test_zone_schedule_applies_in_local_time_across_the_clock_change() -> None:
    # The zone applies 19:00-07:00 only. On 29 March 2026 06:30 BST is 05:30 UTC.
    night = replace(EXCL, schedule=(Weekly(("sat",), "19:00", "07:00"),))
    b = Builder()
    walk(b, local("2026-03-29 06:30"), [(1000, 0)] * 6)
    assert types(ENGINE.evaluate(zone_config(night), b.obs, local("2026-03-29 09:00"))) == [
        "exclusion_entry"
    ]
    b2 = Builder()
    walk(b2, local("2026-03-29 07:30"), [(1000, 0)] * 6)  # after the window (BST)
    assert ENGINE.evaluate(zone_config(night), b2.obs, local("2026-03-29 09:00")) == []


def test_near_an_exclusion_zone_asks_the_tag_to_sample_fast_once() -> None:
    b = Builder()
    walk(b, T, [(600 + 10 * i, 0) for i in range(20)], every=30)
    cfg = zone_config()
    res = ENGINE.run(cfg, ENGINE.initial(cfg, T), b.obs, T + 3600, live=True)
    # Within 300 m (+ accuracy) of the zone from the first fix; renewed once half the fast
    # period has gone, not at every fix.
    assert [(c.key, c.value) for c in res.commands] == [
        (fr.CFG_FAST_UNTIL, T + 900),
        (fr.CFG_FAST_UNTIL, T + 480 + 900),
    ]
    # Stored data being re-evaluated never commands a tag.
    assert ENGINE.run(cfg, ENGINE.initial(cfg, T), b.obs, T + 3600, live=False).commands == []


def test_a_backlog_of_fixes_inside_arriving_late_raises_a_late_alert() -> None:
    repo = MemoryRepository()
    ev = Evaluator(repo, ENGINE)
    cfg = zone_config()
    b = Builder()
    before = walk(b, T, [(500, 0)] * 4, every=60)
    # Flagged late as ingest flags them (older than the device's newest stored event).
    inside = [replace(o, late=True) for o in walk(b, T + 240, [(1000, 0)] * 5, every=60)]
    after = walk(b, T + 540, [(500, 0)] * 4, every=60)
    ev.observe(cfg, repo.store(before), before[-1].t + 5)
    ev.observe(cfg, repo.store(after), after[-1].t + 5)  # the middle was in a dead zone
    assert repo.episodes == {}
    changes = ev.observe(cfg, repo.store(inside), T + 4 * 3600)
    assert changes.late and types(changes.raised) == ["exclusion_entry"]
    assert next(iter(repo.episodes.values())).late


def test_a_curfew_config_alongside_zones_changes_nothing_for_zones() -> None:
    b = Builder()
    walk(b, T, [(1000, 0)] * 6)
    eps = ENGINE.evaluate(zone_config(curfews=[curfew()]), b.obs, T + 3600)
    assert types(eps) == ["exclusion_entry"]


def test_stray_fixes_minutes_apart_never_confirm_an_entry() -> None:
    # Someone lingering 12 m outside the edge (x = 888; the edge is at x = 900), fixes every
    # 15 s with 12 m accuracy: geometrically outside, inside the no-change band. Two stray
    # multipath fixes land confidently inside, four minutes apart. Each alone is a near
    # miss; neither the band fixes between them (all outside the zone) nor the time between
    # them may let the second confirm what the first opened.
    b = Builder()
    path = [(888.0, 0.0)] * 40
    path[10] = (950.0, 0.0)
    path[26] = (955.0, 0.0)
    walk(b, T, path, acc=12)
    assert ENGINE.evaluate(zone_config(), b.obs, T + 3600) == []


def test_a_confident_fix_inside_never_removes_a_pass_through() -> None:
    # A straight walk at 1.3 m/s across a 100 m chord of the zone (y = 86.6 m off its
    # centre line), one fix a minute: 77 s inside. The two outside fixes alone prove a
    # pass-through; the same track with the fix between them, confidently inside, proves
    # at least as much, so it must alert too.
    y = 86.6
    chord = [(1000 - 78.0, y), (1000.0, y), (1000 + 78.0, y)]
    without = Builder()
    walk(without, T, [chord[0], chord[2]], every=120, acc=5)
    eps = ENGINE.evaluate(zone_config(), without.obs, T + 3600)
    assert types(eps) == ["exclusion_entry"] and eps[0].details["pass_through"]
    with_inside = Builder()
    walk(with_inside, T, chord, every=60, acc=5)
    eps2 = ENGINE.evaluate(zone_config(), with_inside.obs, T + 3600)
    assert types(eps2) == ["exclusion_entry"]
    assert abs(eps2[0].start - eps[0].start) <= 1 and abs(eps2[0].end - eps[0].end) <= 1  # type: ignore[operator]


def test_a_multipath_jump_out_of_a_real_visit_does_not_end_it() -> None:
    # Walking in and standing 60 m inside, 15 s apart; the fix after the first one inside
    # with confidence is thrown 90 m back, out of the zone, with a good reported accuracy
    # (multipath). The track cannot explain it (90 m in 15 s on foot), so it counts for
    # nothing: the visit is confirmed from its real crossing, not from a fresh start after
    # the jump.
    b = Builder()
    path = [(810.0 + 20 * i, 0.0) for i in range(8)] + [(960.0, 0.0)] * 8
    path[6] = (820.0, 0.0)
    fixes = walk(b, T, path, acc=5)
    eps = ENGINE.evaluate(zone_config(), b.obs, T + 3600)
    assert types(eps) == ["exclusion_entry"]
    # The crossing at x = 900 lies between the fixes at 890 (i=4) and 910 (i=5).
    assert fixes[4].t < eps[0].start < fixes[5].t
    assert eps[0].confirmed_t <= eps[0].start + 60 + 15


def test_a_visit_confirmed_under_version_1_continues() -> None:
    # A state saved by version 1 (no support balance, no fix before the visit) is carried on
    # by this version: the visit it holds is still ended by a fix outside.
    b = Builder()
    walk(b, T, [(1000, 0)] * 6)
    cfg = zone_config()
    state = ENGINE.run(cfg, ENGINE.initial(cfg, T), b.obs).state
    zone = state.rules["zones"]["zone"]["0"]
    state.rules["zones"]["zone"]["0"] = {"since": zone["since"], "n": zone["n"]}
    state.rules["zones"]["last"] = state.rules["zones"]["last"][:5]
    state.rules["zones"].pop("anchor")
    out = Builder()
    out.seq = dict(b.seq)
    walk(out, T + 90, [(1000, 0), (880, 0), (700, 0), (600, 0)], every=30)
    res = ENGINE.run(cfg, state, out.obs, T + 3600)
    assert types(res.closed) == ["exclusion_entry"] and res.closed[0].end is not None


def _noisy_day() -> list[list[Obs]]:
    """A wearer's noisy fixes (the simulator's urban-canyon error, tests/backend/rules/
    zone_edge.py): a real 3-minute visit 50 m in, then 15 minutes lingering 20 m outside,
    as frames of six fixes."""
    visit = observe(zone_edge.visit(50, 3), 1, zone_edge.URBAN, seed=5)[0]
    linger = observe(zone_edge.linger(20, minutes=15), 8, zone_edge.URBAN, seed=5)
    # The lingerer with the most fixes thrown into the zone, moved two hours on.
    proj = zone_edge.CONFIG.zone_index.proj

    def strays(obs: list[Obs]) -> int:
        return sum(
            math.hypot(*proj.xy(o.v("lat_e7") / 1e7, o.v("lon_e7") / 1e7)) < zone_edge.RADIUS_M
            for o in obs
        )

    most = max(linger, key=strays)
    later = [replace(o, t=o.t + 7200, ref=o.ref.replace("/1/", "/2/", 1)) for o in most]
    fixes = visit + later
    return [fixes[i : i + 6] for i in range(0, len(fixes), 6)]


NOISY = _noisy_day()
NOISY_CFG = zone_edge.CONFIG
NOISY_HORIZON = NOISY[-1][-1].t + 3600
NOISY_EXPECTED = {
    (e.key, e.end, e.confirmed_t)
    for e in ENGINE.evaluate(NOISY_CFG, [o for f in NOISY for o in f], NOISY_HORIZON)
}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(range(len(NOISY))), dups=st.lists(st.integers(0, 40), max_size=4))
def test_noisy_fixes_at_the_edge_in_any_arrival_order_give_the_same_entries(
    order: list[int], dups: list[int]
) -> None:
    assert any(k.split(":")[2] == "exclusion_entry" for k, _, _ in NOISY_EXPECTED)
    arrivals = list(order) + [d % len(NOISY) for d in dups]
    repo = MemoryRepository()
    ev = Evaluator(repo, ENGINE)
    clock = NOISY[0][0].t
    for i in arrivals:
        clock = max(clock, NOISY[i][-1].t) + 5
        ev.observe(NOISY_CFG, repo.store(NOISY[i]), clock)
    ev.tick(NOISY_CFG, NOISY_HORIZON)
    assert {(e.key, e.end, e.confirmed_t) for e in repo.episodes.values()} == NOISY_EXPECTED


def test_driven_in_and_out_between_two_fixes_a_minute_apart_the_visit_keeps_its_length() -> None:
    # Standing 1.5 km away, then (a car, one fix a minute) ten minutes at the zone's centre,
    # then 1.5 km away again. Each jump is more than walking explains, so the first fixes
    # after it are doubted; the track then has moved on (re-anchored, believed), and the
    # visit is dated from the crossings either side of its fixes inside, not from when the
    # doubt cleared.
    b = Builder()
    away = [(1000.0, -1500.0)] * 10
    walk(b, T, [*away, *[(1000.0, 0.0)] * 10, *away], every=60, acc=5)
    eps = ENGINE.evaluate(zone_config(), b.obs, T + 7200)
    assert types(eps) == ["exclusion_entry"]
    ep = eps[0]
    # Inside from just before the first fix there (T + 600) to just after the last (T + 1140).
    assert T + 540 < ep.start <= T + 600 and T + 1140 <= ep.end < T + 1200  # type: ignore[operator]
    assert ep.confirmed_t <= T + 600 + 3 * 60
