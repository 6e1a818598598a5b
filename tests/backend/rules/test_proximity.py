"""Proximity: the victim's own device as a moving exclusion zone (warning and alert distances
with dwell and hysteresis, accuracy-aware), the victim device's own silence, and the
properties: more evidence of separation never raises an alert, and either side's late data
gives the alerts live data would have."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backend.rules import proximity as px
from backend.rules.config import Assignment, VictimLink
from backend.rules.engine import Engine, State
from backend.rules.evaluator import Evaluator, MemoryRepository
from backend.rules.model import HOME_UNIT, TAG, VICTIM, Command, Episode, Obs, sent
from firmware import frame as fr
from firmware.fixfilter import accuracy_dm
from sim.bilateral import BORDERLINE_M
from sim.gnss import GnssFleet
from sim.params import INDOORS, URBAN_CANYON, GnssParams
from tests.backend.rules.scenario import (
    TAG_ID,
    UNIT_ID,
    Builder,
    circle,
    config,
    home_zone,
    local,
    offset,
)

VICTIM_ID = 7001
ENGINE = Engine([px.Proximity(), px.VictimSilent()])
T = local("2026-05-12 14:00")
LINK = VictimLink(VICTIM_ID, warn_m=500, alert_m=200, start=T - 86400)
LINK_DWELL_S = px.ProximityParams().dwell_s


def cfg(**kw: object):  # type: ignore[no-untyped-def]
    base = {
        "assignments": [
            Assignment(TAG_ID, TAG, 0),
            Assignment(UNIT_ID, HOME_UNIT, 0),
            Assignment(VICTIM_ID, VICTIM, T - 86400),
        ],
        "victims": [LINK],
    }
    base.update(kw)
    return config(**base)


def victim_fix(b: Builder, t: int, dx: float, dy: float = 0, acc: float = 5) -> Obs:
    lat, lon = offset(dx, dy)
    return b.add(
        t,
        VICTIM_ID,
        VICTIM,
        "fix",
        lat_e7=round(lat * 1e7),
        lon_e7=round(lon * 1e7),
        acc_dm=round(acc * 10),
        fix_type=2,
        source=fr.SOURCE_GNSS,
        sats=9,
    )


def meet(
    b: Builder, tag_x: list[float], victim_x: float = 0, every: int = 15, acc: float = 5
) -> None:
    """The victim stands at victim_x; the tag passes through tag_x, one fix of each every
    `every` seconds (the victim's a few seconds after the tag's)."""
    for i, x in enumerate(tag_x):
        b.fix(T + every * i, x, 0, acc)
        victim_fix(b, T + every * i + 4, victim_x, 0, acc)


def of(eps: list[Episode], type_: str) -> list[Episode]:
    return [e for e in eps if e.type == type_]


def near(eps: list[Episode]) -> list[Episode]:
    return [e for e in eps if e.type != px.SILENT]


def approach(stay_m: float, stay_n: int) -> list[float]:
    """From 900 m away walking in at 2 m/s, standing `stay_n` fixes at stay_m, walking out."""
    inward = [900 - 30 * i for i in range(int((900 - stay_m) / 30))]
    return inward + [stay_m] * stay_n + inward[::-1]


def test_an_approach_held_beyond_the_dwell_warns_and_alerts_at_the_crossing() -> None:
    b = Builder()
    meet(b, approach(60, 12))
    eps = ENGINE.evaluate(cfg(), b.obs, T + 7200)
    alerts, warnings = of(eps, px.ALERT), of(eps, px.WARNING)
    assert len(alerts) == 1 and len(warnings) == 1
    a = alerts[0]
    # 200 m is crossed between the tag's fixes at 210 m (i=23) and 180 m (i=24).
    assert T + 15 * 23 < a.start <= T + 15 * 24 + 4
    assert a.confirmed_t >= a.start + 60 and a.end is not None
    assert a.severity == "high" and warnings[0].severity == "medium"
    assert warnings[0].start < a.start and a.details["victim_device"] == VICTIM_ID


def test_the_victim_device_is_warned_once_per_episode_on_live_data() -> None:
    b = Builder()
    meet(b, approach(60, 12))
    res = ENGINE.run(cfg(), ENGINE.initial(cfg(), T), b.obs, T + 7200, live=True)
    notes = [c for c in res.commands if c.cmd == fr.CMD_NOTIFY]
    assert [(c.device, c.key) for c in notes] == [
        (VICTIM_ID, px.NOTIFY_WARNING),
        (VICTIM_ID, px.NOTIFY_ALERT),
    ]
    # ... and the tag is asked to sample fast while within the warning distance.
    fast = [c for c in res.commands if c.key == fr.CFG_FAST_UNTIL and c.device == TAG_ID]
    assert fast
    # ... and to upload every minute, once; each fix as it is taken from the first pair that
    # may be within the warning distance (the scene ends before its fast sampling does).
    assert {c.device for c in batches(res.commands)} == {TAG_ID}
    assert asks(batches(res.commands)) == [ORDER, FIRMWARE_SIZE, NEAR]
    replay = ENGINE.run(cfg(), ENGINE.initial(cfg(), T), b.obs, T + 7200, live=False)
    assert replay.commands == []


def test_within_the_warning_distance_the_victim_device_is_asked_to_sample_fast_too() -> None:
    # Before the warning is confirmed (the victim's phone fixes every 30 s by itself, and a
    # sparse side is what makes an approach's confirmation late), for a bounded time.
    b = Builder()
    meet(b, approach(60, 12))
    res = ENGINE.run(cfg(), ENGINE.initial(cfg(), T), b.obs, T + 7200, live=True)
    cmds = res.commands
    asked = [i for i, c in enumerate(cmds) if c.device == VICTIM_ID and c.key == fr.CFG_FAST_UNTIL]
    warned = next(i for i, c in enumerate(cmds) if c.cmd == fr.CMD_NOTIFY)
    assert asked and asked[0] < warned
    first = cmds[asked[0]]
    assert first.cmd == fr.CMD_CONFIG
    seen = {o.ref: o.t for o in b.obs}
    assert first.value == seen[first.ref] + px.ProximityParams().fast_for_s
    # Not again while the last request still covers half its time; a fresh one after.
    values = [cmds[i].value for i in asked]
    assert all(b - a >= px.ProximityParams().fast_for_s // 2 for a, b in itertools.pairwise(values))


def approach_then_away(b: Builder) -> None:
    """An approach, then both sides fixing every minute for 40 minutes 900 m apart."""
    meet(b, approach(60, 12))
    end = max(o.t for o in b.obs)
    for i in range(1, 41):
        b.fix(end + 60 * i, 900, 0, 5)
        victim_fix(b, end + 60 * i + 4, 0, 0, 5)


# The tag's batch settings as (key, value): the order's period, the firmware's batch size
# and each fix at once near the victim.
ORDER = (fr.CFG_BATCH_S, px.ProximityParams().tag_batch_s)
FIRMWARE_SIZE = (fr.CFG_BATCH_FIXES, px.FIRMWARE_BATCH_FIXES)
NEAR = (fr.CFG_BATCH_FIXES, px.ProximityParams().near_batch_fixes)


def batches(cmds: list[Command]) -> list[Command]:
    """The batch settings (CFG_BATCH_S, CFG_BATCH_FIXES) among `cmds`."""
    keys = (fr.CFG_BATCH_S, fr.CFG_BATCH_FIXES)
    return [c for c in cmds if c.cmd == fr.CMD_CONFIG and c.key in keys]


def asks(cmds: list[Command]) -> list[tuple[int, int]]:
    return [(c.key, c.value) for c in cmds]


def sent_batches(cmds: list[Command], last: dict[tuple[int, int, int], int]) -> list[Command]:
    """The batch settings the sink sends of `cmds`: those that do not repeat the last one it
    recorded for their device and key (`last`, updated)."""
    return batches(sent(cmds, last))


def test_near_the_victim_the_tag_uploads_each_fix_until_its_fast_sampling_ends() -> None:
    # Its fixes reach the backend within seconds instead of with the next minute's batch,
    # from the moment and for as long as it samples fast; then the firmware's batch size.
    b = Builder()
    approach_then_away(b)
    res = ENGINE.run(cfg(), ENGINE.initial(cfg(), T), b.obs, T + 7200, live=True)
    batch = batches(res.commands)
    assert asks(batch) == [ORDER, FIRMWARE_SIZE, NEAR, FIRMWARE_SIZE]
    seen = {o.ref: o.t for o in b.obs}
    fast = [c for c in res.commands if c.key == fr.CFG_FAST_UNTIL and c.device == TAG_ID]
    assert batch[2].ref == fast[0].ref and batch[2].device == TAG_ID
    # Back at the tag's first fix once the last fast-sampling request has run out.
    tag_ts = sorted(o.t for o in b.obs if o.device == TAG_ID)
    assert seen[batch[3].ref] == next(t for t in tag_ts if t >= fast[-1].value)


def test_the_short_batch_goes_once_per_approach_however_often_the_tail_is_folded() -> None:
    # Fed one observation at a time (each evaluation folds the unsettled tail afresh and
    # asks again), the sink sends a fix at a time after the firmware's 10 (a setting, not a
    # moment: a smaller value is no repeat) once, never again while the pair stays near,
    # and 10 back once.
    b = Builder()
    approach_then_away(b)
    repo = MemoryRepository()
    ev = Evaluator(repo, ENGINE)
    last: dict[tuple[int, int, int], int] = {}
    sent: list[Command] = []
    for o in sorted(b.obs, key=lambda o: o.t):
        sent += sent_batches(ev.observe(cfg(), repo.store([o]), o.t + 2).commands, last)
    assert asks(sent) == [ORDER, FIRMWARE_SIZE, NEAR, FIRMWARE_SIZE]


def test_a_state_stored_before_the_short_batch_still_loads_and_asks_for_it() -> None:
    state = ENGINE.initial(cfg(), T)
    del state.rules["proximity"]["near_batched"]
    b = Builder()
    approach_then_away(b)
    res = ENGINE.run(cfg(), State.from_json(state.to_json()), b.obs, T + 7200, live=True)
    assert asks(batches(res.commands)) == [ORDER, FIRMWARE_SIZE, NEAR, FIRMWARE_SIZE]


def test_a_tail_whose_first_tag_fix_is_fresh_does_not_ask_the_batch_size_back_while_near() -> None:
    # The settled state is folded from stored data (no commands, so it lists no tag as asked
    # for the order's period) while the tag is near the victim uploading each fix; the live
    # tail's first tag fix, still within its fast sampling, must not ask for the firmware's
    # batch size (the sink would send it: 10 after 1 is no repeat) and leave the tag
    # uploading every minute.
    b = Builder()
    meet(b, approach(60, 12))
    stored = [o for o in b.obs if o.t < T + 15 * 40]
    settled = ENGINE.run(cfg(), ENGINE.initial(cfg(), T), stored, live=False).state
    assert TAG_ID in settled.rules["proximity"]["near_batched"]
    fresh = b.fix(T + 15 * 40 + 8, 60, 0, 5)
    res = ENGINE.run(cfg(), settled, [fresh], T + 15 * 41, live=True)
    assert FIRMWARE_SIZE not in asks(batches(res.commands))


def unlinked_scene(other: VictimLink | None) -> list[tuple[int, int]]:
    """An approach (the tag uploading each fix), its victim link ended 30 s after, then
    the tag fixing 900 m away every minute for 40 minutes; fed one observation at a time as the
    backend would, the configuration changing (version 2) at the unlink. The batch settings
    the sink sends, each with its time from the unlink."""
    b = Builder()
    meet(b, approach(60, 12))
    cut = max(o.t for o in b.obs) + 30
    for i in range(1, 41):
        b.fix(cut + 60 * i - 30, 900, 0, 5)
    ended = VictimLink(VICTIM_ID, 500, 200, LINK.start, cut)
    assignments = [
        Assignment(TAG_ID, TAG, 0),
        Assignment(UNIT_ID, HOME_UNIT, 0),
        Assignment(VICTIM_ID, VICTIM, LINK.start, cut),
    ]
    if other is not None:
        assignments.append(Assignment(other.device, VICTIM, other.start))
    after = cfg(victims=[ended] + ([other] if other else []), assignments=assignments, version=2)
    repo = MemoryRepository()
    ev = Evaluator(repo, ENGINE)
    last: dict[tuple[int, int, int], int] = {}
    sent: list[tuple[tuple[int, int], int]] = []
    for o in sorted(b.obs, key=lambda o: o.t):
        c = cfg() if o.t < cut else after
        got = sent_batches(ev.observe(c, repo.store([o]), o.t + 2).commands, last)
        sent += [((x.key, x.value), o.t - cut) for x in got]
    return sent


def test_a_tag_uploading_each_fix_gets_the_firmwares_batches_back_when_its_link_ends() -> None:
    # Unlinking restarts the rules over stored data (no commands from those folds): the
    # tag's first fix after the link ended gives it its firmware's period and batch size (no
    # order with a victim remains), not each fix at once until its fast sampling runs out.
    sent = unlinked_scene(None)
    firmware_period = (fr.CFG_BATCH_S, px.FIRMWARE_BATCH_S)
    assert [v for v, _ in sent] == [ORDER, FIRMWARE_SIZE, NEAR, firmware_period, FIRMWARE_SIZE]
    assert px.FIRMWARE_BATCH_S == 600
    assert 0 < sent[-1][1] <= 60 and sent[-2][1] == sent[-1][1]  # the first fix after


def test_with_another_victim_link_left_the_tag_gets_the_orders_period_back() -> None:
    # The other victim is far away (no fix of it here): the order's 60 s at the tag's first
    # fix after the first link ended.
    other = VictimLink(VICTIM_ID + 1, 500, 200, LINK.start)
    sent = unlinked_scene(other)
    assert [v for v, _ in sent] == [ORDER, FIRMWARE_SIZE, NEAR, FIRMWARE_SIZE]
    assert 0 < sent[-1][1] <= 60


def test_a_setting_repeats_only_its_own_value_a_moment_also_an_earlier_one() -> None:
    batch = Command(TAG_ID, fr.CFG_BATCH_S, 15, "near victim", min_gap=1)
    assert not batch.repeats(None) and not batch.repeats(60) and batch.repeats(15)
    assert not Command(TAG_ID, fr.CFG_BATCH_S, 60, "away", min_gap=1).repeats(15)
    fast = Command(TAG_ID, fr.CFG_FAST_UNTIL, T + 900, "near victim", min_gap=450)
    assert fast.repeats(T + 900) and fast.repeats(T + 600) and fast.repeats(T + 2000)
    assert not fast.repeats(T + 400)
    assert not Command(TAG_ID, fr.CFG_BATCH_S, 15, "always").repeats(15)


def test_a_near_miss_at_600_m_neither_warns_nor_alerts() -> None:
    b = Builder()
    meet(b, approach(600, 40), acc=12)
    assert near(ENGINE.evaluate(cfg(), b.obs, T + 7200)) == []


def test_a_brief_approach_shorter_than_the_dwell_is_a_near_miss() -> None:
    b = Builder()
    meet(b, [400, 250, 120, 60, 150, 260, 400], every=10)
    assert of(ENGINE.evaluate(cfg(), b.obs, T + 7200), px.ALERT) == []


def test_drift_around_the_alert_distance_does_not_flap() -> None:
    b = Builder()
    # Walk in to 150 m, then stand for an hour ~200 m away while fixes scatter +-20 m.
    rnd = random.Random(4)
    path = approach(150, 8)[: len(approach(150, 8)) // 2 + 8]
    path += [200 + rnd.uniform(-20, 20) for _ in range(240)]
    meet(b, path, acc=10)
    eps = ENGINE.evaluate(cfg(), b.obs, T + 7200)
    assert len(of(eps, px.ALERT)) <= 1


def test_a_confirmed_approach_is_not_ended_by_a_pair_the_tracks_doubt() -> None:
    # The tag stands 150 m from the victim; once the alert is confirmed, one pair measures
    # them 305 m apart with confidence (the tag's fix 100 m out at 60 m accuracy, which its
    # track explains; the victim's 55 m the other way, 7.5 m more than its track explains
    # in 15 s): a doubted pair says nothing, as against a pending approach. The alert stays
    # one alert, and ends when the tag walks away.
    b = Builder()
    inward = [600 - 30 * i for i in range(15)]  # to 180 m
    stay = [150.0] * 12
    for i, x in enumerate(inward + stay):
        b.fix(T + 15 * i, x, 0, 5)
        victim_fix(b, T + 15 * i + 4, 0, 0, 5)
    odd = T + 15 * (len(inward) + 12)
    b.fix(odd, 250, 0, 60)
    victim_fix(b, odd + 4, -55, 0, 5)
    for i in range(len(inward) + 13, len(inward) + 20):
        b.fix(T + 15 * i, 150, 0, 5)
        victim_fix(b, T + 15 * i + 4, 0, 0, 5)
    out = T + 15 * (len(inward) + 20)
    for i, x in enumerate(inward[::-1]):
        b.fix(out + 15 * i, x, 0, 5)
        victim_fix(b, out + 15 * i + 4, 0, 0, 5)
    (alert,) = of(ENGINE.evaluate(cfg(), b.obs, T + 3600), px.ALERT)
    assert alert.confirmed_t < odd and alert.end is not None and alert.end > out


def test_a_multipath_fix_near_the_victim_does_not_alert() -> None:
    b = Builder()
    path = [800.0] * 20
    path[10] = 50  # one jump of 750 m reported at 5 m accuracy
    meet(b, path)
    assert near(ENGINE.evaluate(cfg(), b.obs, T + 7200)) == []


def test_the_victims_position_is_never_evidence() -> None:
    b = Builder()
    meet(b, approach(60, 12))
    eps = near(ENGINE.evaluate(cfg(), b.obs, T + 7200))
    assert eps
    for e in eps:
        victims = [i for i in e.evidence if str(i["ref"]).startswith(f"{VICTIM_ID}/")]
        tags = [i for i in e.evidence if i.get("device") == TAG_ID]
        assert victims and tags
        for item in victims:
            assert set(item) == {"t", "ref", "name"}
        # No distance beside a tag position (several would place the victim): one number.
        assert all("distance_m" not in i for i in e.evidence)
        assert 40 <= e.details["closest_m"] <= 80


def test_standing_just_beyond_the_alert_distance_multipath_fixes_do_not_add_up() -> None:
    # Both stand in a town centre 220 m apart for ten minutes, fixes every 15 s at 12 m.
    # Twice, 75 s apart, the tag's fix lands 50 m nearer (within what the track explains
    # in 15 s on foot), within 200 m with confidence; every other pair is beyond 200 m.
    b = Builder()
    path = [220.0] * 40
    path[10] = path[15] = 170
    meet(b, path, acc=12)
    eps = ENGINE.evaluate(cfg(), b.obs, T + 3600)
    assert of(eps, px.ALERT) == []


def test_standing_just_beyond_the_alert_distance_a_few_nearer_pairs_do_not_confirm() -> None:
    # Both stand 210 m apart, fixes every 15 s at 12 m: no pair is beyond 200 m by both
    # accuracies, so none argues against a pending approach. Three times in two minutes the
    # tag's fix lands 50 m nearer (what the track explains in 15 s on foot): within 200 m
    # with confidence, past the dwell, but most pairs around them are beyond the distance.
    b = Builder()
    path = [210.0] * 40
    path[10] = path[14] = path[18] = 160
    meet(b, path, acc=12)
    eps = ENGINE.evaluate(cfg(), b.obs, T + 3600)
    assert of(eps, px.ALERT) == []


def test_an_approach_seen_by_a_phone_indoors_still_confirms_on_the_dwell() -> None:
    # The tag 120 m from the victim for two minutes; the victim's phone indoors reports 40 m
    # accuracy and every third of its fixes lands 90 m further (beyond 200 m): most pairs
    # are within the distance, so the alert confirms once the dwell has passed.
    b = Builder()
    stay = 120.0
    inward = [600 - 30 * i for i in range(int((600 - stay) / 30))]
    for i, x in enumerate(inward + [stay] * 12):
        b.fix(T + 15 * i, x, 0, 8)
        off = -90 if i % 3 == 2 else 0
        victim_fix(b, T + 15 * i + 4, off, 0, 40)
    (alert,) = of(ENGINE.evaluate(cfg(), b.obs, T + 3600), px.ALERT)
    assert alert.confirmed_t - alert.start <= 90


def test_an_approach_held_within_by_both_accuracies_confirms_at_its_one_confident_pair() -> None:
    # The tag stands 150 m from a victim whose phone (indoors) reports 35 m: every pair is
    # within 200 m by both fixes' accuracies, but each victim fix comes 8 s after a tag fix
    # (and 7 s before the next), so with the movement allowance none is within with
    # confidence, but one (a victim fix 1 s after the tag's). That one confirms the alert
    # once the dwell has passed: the pairs before it are the second reading.
    b = Builder()
    tag_x = [600 - 30 * i for i in range(15)] + [150.0] * 16  # in to 180 m, 4 min at 150 m
    for i, x in enumerate(tag_x):
        b.fix(T + 15 * i, x, 0, 5)
    for k in range(len(tag_x) // 2):
        victim_fix(b, T + 30 * k + 8, 0, 0, 35)
    aligned = T + 15 * 22 + 1
    victim_fix(b, aligned, 0, 0, 35)
    (alert,) = of(ENGINE.evaluate(cfg(), b.obs, T + 3600), px.ALERT)
    assert T + 15 * 13 < alert.start <= T + 15 * 14
    assert alert.confirmed_t == aligned


def test_an_approach_deep_while_her_phone_was_silent_confirms_at_a_held_pair_after_the_dwell() -> (
    None
):
    # A bus passes a victim indoors within metres while her phone gets no fix; he gets off
    # and walks away at 1 m/s, within 200 m for 95 s. Her last fix before pairs with two of
    # his at 75 and 45 m (within R with confidence: the readings); after the dwell her next
    # fixes, 20-50 s apart and 20-38 m accurate, measure him 150-165 m away: within R by
    # both accuracies at most 10 s apart (held), never with the movement allowance, and
    # the pairs since the crossing hold it only with the allowance's gaps among them, so no
    # majority. The median of those pairs is within R: it confirms at the first held pair
    # after the dwell (before, it ended unalerted: simulator seed 15, pair 31).
    b = Builder()
    for t, acc in ((-25, 21), (-15, 25), (-5, 30)):
        victim_fix(b, T + t, 0, 0, acc)
    tag = [(-50, -560), (-35, -440), (-20, -320), (-5, -195), (10, -75), (25, 45), (40, 150)]
    tag += [(40 + 15 * i, 150 + 15 * i) for i in range(1, 8)]
    for t, x in tag:
        b.fix(T + t, x, 0, 5)
    victim_fix(b, T + 45, 0, 0, 38)
    held = T + 65
    victim_fix(b, held, 0, 0, 20)  # with his fix at +55 (165 m): within by 20.6 m, 10 s apart
    victim_fix(b, T + 145, 0, 0, 20)
    (alert,) = of(ENGINE.evaluate(cfg(), b.obs, T + 3600), px.ALERT)
    assert T - 10 < alert.start <= T - 5
    assert alert.start + LINK_DWELL_S < alert.confirmed_t == held


def test_an_approach_every_pair_measures_within_by_its_accuracies_confirms_after_the_dwell() -> (
    None
):
    # Both in a town centre: the tag walks in (fixes at 5 m) to 147 m of the victim and
    # stays; from the crossing on both report urban accuracies (tag 20 m, victim 25 m) and
    # multipath measures them 165 m apart. Every pair is within 200 m by both accuracies
    # (165 + 32 m), none with the movement allowance too (the victim's fixes every 10 s
    # come 2-8 s from the tag's, every 15 s), but the first one, at the crossing, and one
    # aligned pair three minutes on. The pairs since the crossing say the approach is within
    # R as confidently as one pair would: it confirms at the first pair after the dwell
    # (it waited for the aligned pair: three minutes late).
    b = Builder()
    inward = [600 - 30 * i for i in range(14)]  # to 210 m
    for i, x in enumerate(inward):
        b.fix(T + 15 * i, x, 0, 5)
        victim_fix(b, T + 15 * i + 4, 0, 0, 5)
    cross = T + 15 * len(inward)
    b.fix(cross, 150, 0, 5)
    victim_fix(b, cross + 1, 0, 0, 5)  # within 200 m with confidence: pending
    for i in range(1, 20):
        b.fix(cross + 15 * i, 165, 0, 20)
    for j in range(1, 30):
        victim_fix(b, cross + 10 * j + 3, 0, 0, 25)
    aligned = cross + 180 + 1
    victim_fix(b, aligned, 0, 0, 25)
    (alert,) = of(ENGINE.evaluate(cfg(), b.obs, T + 3600), px.ALERT)
    assert cross - 15 < alert.start <= cross
    assert alert.confirmed_t <= alert.start + LINK_DWELL_S + 15 < aligned


def standing(env: int, apart_m: float, hours: float, seed: int, outliers: bool = True) -> Builder:
    """The tag and the victim standing still `apart_m` apart, both sampling fast (the tag
    every 15 s, the victim's device every 10 s) for `hours`, their fixes and accuracies from
    the simulator's GNSS model of environment `env` (sim.gnss: the core error drifts with
    the environment's correlation time, plus outliers unless left out, and missing fixes;
    the accuracy each reports is the firmware's from its HDOP)."""
    p = GnssParams()
    if not outliers:
        p = p.replacing(env, replace(p.environments[env], outlier_p=0.0))
    gnss = GnssFleet(2, seed * 101 + env, p)
    b = Builder()
    for s in range(0, int(hours * 3600), 5):
        f = gnss.epoch(s * 1000, np.array([apart_m, 0.0]), np.zeros(2), np.array([env, env]))
        for i, every in enumerate((15, 10)):
            if s % every or not f.valid[i]:
                continue
            hdop_d = min(255, round(float(f.hdop[i]) * 10))
            acc = accuracy_dm(hdop_d, 3, int(f.sats[i])) / 10
            x, y = float(f.x[i]), float(f.y[i])
            if i == 0:
                b.fix(T + s, x, y, acc)
            else:
                victim_fix(b, T + s, x, y, acc)
    return b


BEYOND_BAND_M = LINK.alert_m + BORDERLINE_M + 1


@pytest.mark.parametrize("env", [URBAN_CANYON, INDOORS])
def test_standing_still_beyond_the_band_with_drifting_errors_for_hours_raises_nothing(
    env: int,
) -> None:
    # Neighbours, or a long wait in a town centre: the pair stands just beyond the alert
    # distance plus the borderline band (what the rule promises never to alert on) for
    # four hours, with the simulator's drifting urban or indoor core error on both devices.
    b = standing(env, BEYOND_BAND_M, 4, seed=1, outliers=False)
    assert of(ENGINE.evaluate(cfg(), b.obs, T + 5 * 3600), px.ALERT) == []


class ConfidentPairsOnly(px.Proximity):
    """The rule without the pairs' own confirmation (_held_within)."""

    def _held_within(self, st: dict[str, Any], link: VictimLink, radius: float, since: int) -> bool:
        return False


@pytest.mark.parametrize("env", [URBAN_CANYON, INDOORS])
def test_what_the_pairs_hold_together_adds_no_alert_standing_beyond_the_band(env: int) -> None:
    # As above with the model's multipath outliers too (urban 15 % of fixes at 50-150 m,
    # indoors 10 % at 60-200 m), an hour each for ten draws. A few outliers toward the other
    # side within a minute can confirm an alert through one confident pair: the rule raises
    # about one such in ten hours either way (docs/rules.md, "What the rule promises"). The
    # pairs' own confirmation must not add any: an outlier is in every pair until the other
    # side's next fix, and indoors that can be a minute of pairs.
    only = Engine([ConfidentPairsOnly(), px.VictimSilent()])
    for seed in range(10):
        b = standing(env, BEYOND_BAND_M, 1, seed)
        with_held = of(ENGINE.evaluate(cfg(), b.obs, T + 2 * 3600), px.ALERT)
        without = of(only.evaluate(cfg(), b.obs, T + 2 * 3600), px.ALERT)
        assert [(e.start, e.confirmed_t) for e in with_held] == [
            (e.start, e.confirmed_t) for e in without
        ]


def bus_past(b: Builder, at: int = T) -> None:
    """A perpetrator on a bus at 8 m/s (a fix every 15 s) stops 80 m from the victim for
    15 s and pulls away past her: within 200 m from `at` + 30 to + 95. His first two fixes
    after it pulls away are more than the stop explains; the third re-anchors his track."""
    xs = [-440.0 + 120 * i for i in range(4)] + [-80.0] + [40.0 + 120 * i for i in range(6)]
    for i, x in enumerate(xs):
        b.fix(at + 15 * i, x, 0, 5)
        victim_fix(b, at + 15 * i + 4, 0, 0, 5)


def test_a_bus_pulling_away_past_the_victim_confirms_once_its_track_re_anchors() -> None:
    # At the dwell (T + 90) his fix 160 m past her is doubted, so no pair supports the
    # approach then; when the track re-anchors (T + 105) those fixes are vindicated (a
    # straight run) and the pair at T + 94, within 200 m with confidence, confirms it.
    b = Builder()
    bus_past(b)
    (alert,) = of(ENGINE.evaluate(cfg(), b.obs, T + 3600), px.ALERT)
    assert T + 25 <= alert.start <= T + 34 and alert.confirmed_t == T + 105
    assert {e["t"] for e in alert.evidence} >= {T + 75, T + 90}  # his vindicated fixes


def test_a_fix_the_track_doubts_is_no_reading() -> None:
    # Indoors, standing still just beyond the band (the model's errors with outliers, one
    # draw): a tag fix lands 170 m toward the victim 45 s after the last one, and its track
    # doubts it (inflating its 20 m accuracy to 55 m). Paired with the victim fixes before
    # and after it, it made the two readings the dwell asks for, and with one of them within
    # R with confidence and the median of those two pairs, an alert.
    b = standing(INDOORS, BEYOND_BAND_M, 0.65, seed=8)
    assert of(ENGINE.evaluate(cfg(), b.obs, T + 3600), px.ALERT) == []


def test_a_supporting_pair_is_a_reading_once_its_fixes_are_followed() -> None:
    # Urban, standing still just beyond the band (the model's errors with outliers, one
    # draw): a tag fix 53 m toward the victim that its track explains, then a victim fix
    # 79 m toward the tag, make two pairs within R with confidence, both on that one tag
    # fix, and with the pairs since the crossing they made an alert before either side's
    # next fix (both back near 235 m) could say anything.
    b = standing(URBAN_CANYON, BEYOND_BAND_M, 0.5, seed=3)
    assert of(ENGINE.evaluate(cfg(), b.obs, T + 3600), px.ALERT) == []


def test_an_explained_outlier_found_to_be_a_spike_is_no_reading() -> None:
    # Urban, standing still just beyond the band (one draw): a victim fix 111 m toward the
    # tag, 40 s after the last one its track believed, is explained and becomes its anchor,
    # and the true fix after it (20 s later, 5 m from where the victim stands) is doubted
    # from there: the spike's pairs were readings and the true fix's pairs could not argue
    # against them. The track's spike test finds it (track.believed).
    b = standing(URBAN_CANYON, BEYOND_BAND_M, 2.05, seed=27)
    assert of(ENGINE.evaluate(cfg(), b.obs, T + 3 * 3600), px.ALERT) == []


def test_a_pending_approach_outlasts_the_victims_phone_getting_no_fix() -> None:
    # The tag walks in to 170 m of the victim and stays; two pairs within 200 m with
    # confidence, then the victim's phone (indoors) gets no fix for four minutes while the
    # tag's fixes, paired with its last one, say nothing (the victim may have moved). Nothing
    # argued against the approach meanwhile: it is still pending when the phone fixes again,
    # and confirms then, dated at the crossing, instead of ending as a near miss and waiting
    # out a new dwell.
    b = Builder()
    inward = [900 - 30 * i for i in range(24)]  # to 210 m
    tag_x = inward + [170.0] * 40
    silent = range(len(inward) + 2, len(inward) + 18)  # victim fixes missing: 240 s
    for i, x in enumerate(tag_x):
        b.fix(T + 15 * i, x, 0, 5)
        if i not in silent:
            victim_fix(b, T + 15 * i + 4, 0, 0, 5)
    back = T + 15 * silent.stop + 4
    (alert,) = of(ENGINE.evaluate(cfg(), b.obs, T + 7200), px.ALERT)
    assert T + 15 * 23 < alert.start <= T + 15 * 24 + 4
    assert alert.confirmed_t == back


def test_an_approach_a_silent_phone_first_sees_late_is_dated_where_his_fixes_crossed() -> None:
    # The victim indoors: her phone's last fix was minutes ago; he walks in at 1.4 m/s
    # (a fix every 15 s), stands at 150 m and walks out, within 200 m for 105 s. Her phone
    # fixes again only 50 s after he crossed 200 m. Measured from her new fix, his own fixes
    # show when he crossed: the dwell runs from there, not from her first fix (then it was
    # due after he had turned away, and no pair within R came after it).
    b = Builder()
    victim_fix(b, T - 600, 0)
    inward = [361 - 21 * i for i in range(10)]  # 361 m to 172 m
    tag_x = inward + [150.0] * 3 + inward[::-1]
    for i, x in enumerate(tag_x):
        b.fix(T + 15 * i, x, 0, 5)
    crossed = T + 15 * 7 + round(15 * (214 - 200) / (214 - 193))  # between 214 m and 193 m
    for t in range(crossed + 50, T + 15 * len(tag_x), 10):
        victim_fix(b, t, 0)
    (alert,) = of(ENGINE.evaluate(cfg(), b.obs, T + 3600), px.ALERT)
    assert abs(alert.start - crossed) <= 2
    assert alert.confirmed_t <= crossed + LINK_DWELL_S + 15


def test_a_silent_victim_device_has_its_own_alert_and_no_proximity_judgement() -> None:
    b = Builder()
    victim_fix(b, T, 0)
    # The tag stands next to where the victim last was, for two hours: nothing to pair with.
    for i in range(480):
        b.fix(T + 300 + 15 * i, 30, 0)
    eps = ENGINE.evaluate(cfg(), b.obs, T + 3 * 3600)
    assert [e.type for e in eps] == [px.SILENT]
    assert eps[0].start == T and eps[0].confirmed_t == T + 1800
    assert eps[0].details["victim_device"] == VICTIM_ID


def test_a_victim_device_silent_only_once_the_order_has_ended_raises_nothing() -> None:
    b = Builder()
    victim_fix(b, T, 0)
    assert [e.type for e in ENGINE.evaluate(cfg(end=T + 1801), b.obs, T + 7200)] == [px.SILENT]
    assert ENGINE.evaluate(cfg(end=T + 1800), b.obs, T + 7200) == []


def test_a_silence_ends_when_the_victim_device_speaks_again() -> None:
    b = Builder()
    victim_fix(b, T, 0)
    victim_fix(b, T + 4000, 0)
    eps = ENGINE.evaluate(cfg(), b.obs, T + 5000)
    assert [(e.type, e.start, e.end) for e in eps] == [(px.SILENT, T, T + 4000)]


def test_per_link_distances_and_silence() -> None:
    b = Builder()
    meet(b, approach(150, 12))
    tight = VictimLink(VICTIM_ID, warn_m=300, alert_m=100, start=T - 86400, silent_s=600)
    eps = ENGINE.evaluate(cfg(victims=[tight]), b.obs, T + 7200)
    assert of(eps, px.ALERT) == [] and len(of(eps, px.WARNING)) == 1
    assert of(eps, px.SILENT) and of(eps, px.SILENT)[0].details["threshold_s"] == 600


def test_no_victim_link_no_proximity() -> None:
    b = Builder()
    meet(b, approach(60, 12))
    assert near(ENGINE.evaluate(cfg(victims=[]), b.obs, T + 7200)) == []


# ---- the tag at home: where its home unit hears it ------------------------------------------


def victim_near_home(b: Builder, stay_m: float, stay_s: int = 300, every: int = 10) -> int:
    """The tag walks home (fixes every 60 s) and its home unit reports it home at T; from
    T + 600 the victim visits (`victim_visits`). Returns when she first is within 200 m."""
    for i in range(5):
        b.fix(T - 300 + 60 * i, 400 - 90 * i, 0, 5)
    b.presence(T, 1)
    return victim_visits(b, T + 600, stay_m, stay_s, every)


def victim_visits(b: Builder, at: int, stay_m: float, stay_s: int, every: int = 10) -> int:
    """From `at` the victim (phone fixing every `every` s) walks in from 900 m to `stay_m`
    from the home, stays `stay_s` and walks away. Returns when she first is within 200 m."""
    t, x, crossed = at, 900.0, 0
    while x > stay_m:
        victim_fix(b, t, x)
        crossed = crossed or (t if x <= 200 else 0)
        t, x = t + every, x - 1.5 * every
    crossed = crossed or t
    for _ in range(stay_s // every):
        victim_fix(b, t, stay_m)
        t += every
    while x < 900:
        victim_fix(b, t, x)
        t, x = t + every, x + 1.5 * every
    return crossed


def test_a_victim_near_the_subjects_home_while_he_is_in_is_an_approach() -> None:
    # In RF mode at home the tag takes no GNSS fix: the home unit's presence report puts it
    # within HOME_RANGE_M of the home's point, and each of her fixes pairs with that.
    b = Builder()
    crossed = victim_near_home(b, 120)
    home = b.obs[5]
    eps = ENGINE.evaluate(cfg(zones=[home_zone()]), b.obs, T + 3600)
    (alert,) = of(eps, px.ALERT)
    assert crossed - 10 <= alert.start <= crossed
    assert alert.start + LINK_DWELL_S <= alert.confirmed_t <= alert.start + LINK_DWELL_S + 30
    assert home.ref in [e["ref"] for e in alert.evidence]  # the tag's side: the presence report
    assert len(of(eps, px.WARNING)) == 1


def test_two_outlying_fixes_of_a_victim_near_his_home_are_no_approach() -> None:
    # She is indoors 241 m from his home (fixes every 30 s at 45 m); two of them, a minute
    # apart, land 100 m and 176 m toward it. With his side at home (no noise of its own)
    # her fixes are all the pairs measure: each is a reading only once her next fix has
    # followed it (the spike test's look), and the one after them is back at 241 m.
    b = Builder()
    b.presence(T, 1)
    for k in range(40):
        t = T + 30 * k
        x = {20: 138.0, 22: 65.0}.get(k, 241.0)
        if k != 21:
            victim_fix(b, t, x, acc=45)
    eps = ENGINE.evaluate(cfg(zones=[home_zone()]), b.obs, T + 3600)
    assert of(eps, px.ALERT) == []


def test_near_his_home_but_beyond_the_alert_distance_is_only_a_warning() -> None:
    # 200 m + the home range + her accuracy: never within 200 m with confidence.
    b = Builder()
    victim_near_home(b, 260, stay_s=1200)
    eps = ENGINE.evaluate(cfg(zones=[home_zone()]), b.obs, T + 7200)
    assert of(eps, px.ALERT) == [] and len(of(eps, px.WARNING)) == 1


def test_reported_away_the_tag_is_not_at_home_any_more() -> None:
    # He left before she came: his last fix is older than the pair window, nothing to pair.
    b = Builder()
    victim_near_home(b, 120)
    b.presence(T + 300, 0)
    assert near(ENGINE.evaluate(cfg(zones=[home_zone()]), b.obs, T + 3600)) == []


def test_while_the_home_unit_is_offline_its_presence_says_nothing() -> None:
    b = Builder()
    victim_near_home(b, 120)
    b.link(T + 300, 0)
    assert near(ENGINE.evaluate(cfg(zones=[home_zone()]), b.obs, T + 3600)) == []
    b.link(T + 400, 1)  # back before she came, nothing reported meanwhile: still home
    assert len(of(ENGINE.evaluate(cfg(zones=[home_zone()]), b.obs, T + 3600), px.ALERT)) == 1


def test_without_a_home_zone_presence_places_the_tag_nowhere() -> None:
    b = Builder()
    victim_near_home(b, 120)
    assert near(ENGINE.evaluate(cfg(zones=[]), b.obs, T + 3600)) == []


def test_with_two_homes_the_tag_is_at_the_one_its_last_fix_was_near() -> None:
    # Two addresses 3 km apart: he walked home to the first (his last fix 40 m from it)
    # before its unit reported him in, so she near the first is an approach, near the
    # second nothing.
    other = circle(2, "home", 3000, 0, 60)
    for zones in ([home_zone(), other], [other, home_zone()]):
        b = Builder()
        victim_near_home(b, 120)
        assert len(of(ENGINE.evaluate(cfg(zones=zones), b.obs, T + 3600), px.ALERT)) == 1
        b = Builder()
        for i in range(5):
            b.fix(T - 300 + 60 * i, 400 - 90 * i, 0, 5)
        b.presence(T, 1)
        victim_visits(b, T + 600, 3000 - 120, 300)  # she stays 120 m from the other home
        assert near(ENGINE.evaluate(cfg(zones=zones), b.obs, T + 3600)) == []


def test_with_two_homes_and_no_tag_fix_near_either_which_one_is_unknown() -> None:
    b = Builder()
    b.fix(T - 1200, 6000, 0, 5)  # 3 km beyond the second home
    b.presence(T, 1)
    victim_visits(b, T + 600, 120, 300)
    zones = [home_zone(), circle(2, "home", 3000, 0, 60)]
    assert near(ENGINE.evaluate(cfg(zones=zones), b.obs, T + 3600)) == []
    b = Builder()
    b.presence(T, 1)  # no fix at all: fitted at home
    victim_visits(b, T + 600, 120, 300)
    assert near(ENGINE.evaluate(cfg(zones=zones), b.obs, T + 3600)) == []
    assert len(of(ENGINE.evaluate(cfg(zones=[home_zone()]), b.obs, T + 3600), px.ALERT)) == 1


def test_the_tag_at_home_and_the_victim_arriving_late_alerts_as_live_data_would() -> None:
    # Her phone was offline and uploads the approach afterwards: the evaluator re-evaluates
    # from before it, with the tag still at home then.
    b = Builder()
    victim_near_home(b, 120)
    early = [o for o in b.obs if o.role != VICTIM]
    late = [o for o in b.obs if o.role == VICTIM]
    repo = MemoryRepository()
    ev = Evaluator(repo, ENGINE)
    c = cfg(zones=[home_zone()])
    ev.observe(c, repo.store(early), T + 60)
    ev.observe(c, repo.store(late), T + 3600)
    whole = ENGINE.evaluate(c, b.obs, T + 3600)
    assert [(e.type, e.start) for e in repo.episodes.values() if e.type == px.ALERT] == [
        (e.type, e.start) for e in of(whole, px.ALERT)
    ]
    assert of(whole, px.ALERT)


# ---- properties ------------------------------------------------------------------------


def covered(eps: list[Episode], times: list[int]) -> set[int]:
    """The instants among `times` at which a confirmed alert was standing."""
    return {
        t
        for t in times
        for e in of(eps, px.ALERT)
        if e.confirmed_t <= t and (e.end is None or t < e.end)
    }


# The tag's track believing every fix at its reported accuracy (each fix its own anchor): the
# property below is about what the rule makes of separation, and an extra fix also moves the
# track's anchor and speed, which changes which later fixes the track explains, either way
# (backend/rules/track.py). Hypothesis found a walker accelerating back in at 4 m/s whose
# fixes the default track doubted by a few metres, except after an extra fix 8 s from its
# neighbour had reset the anchor's speed; explained, they held the return within R for the
# dwell (the @example below, which fails with the default track).
TRUSTING = Engine([px.Proximity(replace(px.ProximityParams(), reanchor_fixes=1))])
WALKER_BACK = [0.0] * 20 + [7, 0, 2, 23, 23, 32, 40, 43, 43, 45, 48, 49, 35, -47, -56, -42]
WALKER_BACK += [-60, -35, 0, 25, -1]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.floats(-60, 60), min_size=20, max_size=60),
    start=st.floats(0, 600),
    extra=st.lists(st.tuples(st.integers(0, 59), st.floats(0, 400)), max_size=15),
)
@example(steps=[float(s) for s in WALKER_BACK], start=18.0, extra=[(33, 0.0)])
def test_more_evidence_of_separation_never_raises_an_alert(
    steps: list[float], start: float, extra: list[tuple[int, float]]
) -> None:
    """Adding tag fixes further from the victim than the tag's neighbouring fixes and than
    the alert distance (a second reading showing them apart) never adds alert time. A fix
    further than its neighbours but confidently within the distance is a reading of
    proximity, not of separation: it may confirm sooner (the next test)."""
    xs = [start]
    for s in steps:
        xs.append(min(1000.0, max(0.0, xs[-1] + s)))
    base = Builder()
    meet(base, xs)
    more = Builder()
    meet(more, xs)
    for i, further in extra:
        if i + 1 < len(xs):
            more.fix(T + 15 * i + 8, max(xs[i], xs[i + 1], LINK.alert_m) + further, 0)
    times = list(range(T, T + 15 * len(xs) + 600, 5))
    horizon = T + 15 * len(xs) + 600
    was = covered(TRUSTING.evaluate(cfg(), base.obs, horizon), times)
    now = covered(TRUSTING.evaluate(cfg(), more.obs, horizon), times)
    assert now <= was


def test_a_reading_further_than_its_neighbours_but_within_the_distance_is_proximity() -> None:
    # Walking in to 166 m (two fixes), a second tag fix between them at 182 m, 4 s after the
    # victim's: within 200 m with confidence (182 + 7 + 10 m of allowance), it confirms the
    # alert 11 s sooner than the next pair would. The property above once added such fixes
    # (hypothesis found this); they are readings of proximity, not of separation.
    xs = [354.0] * 19 + [414, 419, 449, 449, 440, 380, 320, 260, 205, 190, 185, 185, 166, 166]
    base = Builder()
    meet(base, xs)
    more = Builder()
    meet(more, xs)
    more.fix(T + 15 * 31 + 8, 182, 0)
    horizon = T + 15 * len(xs) + 600
    (was,) = of(ENGINE.evaluate(cfg(), base.obs, horizon), px.ALERT)
    (now,) = of(ENGINE.evaluate(cfg(), more.obs, horizon), px.ALERT)
    assert now.start == was.start and now.confirmed_t == T + 15 * 31 + 8 < was.confirmed_t


def frames_of(b: Builder, every: int) -> list[list[Obs]]:
    """Each device's observations grouped as it would upload them, `every` at a time."""
    out: list[list[Obs]] = []
    for dev in (TAG_ID, VICTIM_ID, UNIT_ID):
        mine = [o for o in b.obs if o.device == dev]
        out += [mine[i : i + every] for i in range(0, len(mine), every)]
    return out


SCENE = Builder()
meet(SCENE, approach(80, 16) + [900.0] * 10 + approach(40, 10))
bus_past(SCENE, T + 3600)  # confirmed only once his doubted fixes are vindicated
FRAMES = frames_of(SCENE, 4)
HORIZON = T + 4 * 3600
EXPECTED = {(e.key, e.end, e.confirmed_t) for e in ENGINE.evaluate(cfg(), SCENE.obs, HORIZON)}


def test_the_late_data_scene_raises_what_it_should() -> None:
    kinds = sorted(k.split(":")[2] for k, _, _ in EXPECTED)
    assert kinds == [px.ALERT] * 3 + [px.WARNING] * 3 + [px.SILENT]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(range(len(FRAMES))), late=st.sampled_from([TAG_ID, VICTIM_ID]))
def test_either_sides_late_data_is_re_evaluated_to_the_same_alerts(
    order: list[int], late: int
) -> None:
    """Frames arrive in any order, and one side's frames all after the other's (its device
    was offline): the alerts are those of evaluating everything at once."""
    arrivals = [i for i in order if FRAMES[i][0].device != late]
    arrivals += [i for i in order if FRAMES[i][0].device == late]
    repo = MemoryRepository()
    ev = Evaluator(repo, ENGINE)
    clock = T
    for i in arrivals:
        clock = max(clock, max(o.t for o in FRAMES[i])) + 5
        ev.observe(cfg(), repo.store(FRAMES[i]), clock)
    changes = ev.tick(cfg(), HORIZON)
    while changes.behind:
        changes = ev.tick(cfg(), HORIZON)
    got = {(e.key, e.end, e.confirmed_t) for e in repo.episodes.values()}
    assert got == EXPECTED


HOME_SCENE = Builder()
victim_near_home(HOME_SCENE, 120)  # she stays within 200 m of his home for 5 minutes...
victim_visits(HOME_SCENE, T + 3600, 150, 900)  # ... and again from 01:00; he leaves in it
HOME_SCENE.presence(T + 3600 + 900, 0)
for _i in range(20):
    HOME_SCENE.fix(T + 3600 + 930 + 30 * _i, 60 + 40 * _i, 0)
HOME_FRAMES = frames_of(HOME_SCENE, 3)
HOME_CFG = cfg(zones=[home_zone()])
HOME_EXPECTED = {
    (e.key, e.end, e.confirmed_t) for e in ENGINE.evaluate(HOME_CFG, HOME_SCENE.obs, HORIZON)
}


def test_the_home_scene_raises_what_it_should() -> None:
    alerts = sorted((c, end) for k, end, c in HOME_EXPECTED if px.ALERT in k)
    assert len(alerts) == 2 and alerts[0][1] is not None


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.permutations(range(len(HOME_FRAMES))),
    late=st.sampled_from([TAG_ID, VICTIM_ID, UNIT_ID]),
)
def test_the_home_units_presence_late_or_out_of_order_gives_the_same_alerts(
    order: list[int], late: int
) -> None:
    """The tag at home as its home unit reports it: presence reports, the victim's fixes
    and the tag's arriving in any order, one device's all after the others': the alerts of
    evaluating everything at once."""
    arrivals = [i for i in order if HOME_FRAMES[i][0].device != late]
    arrivals += [i for i in order if HOME_FRAMES[i][0].device == late]
    repo = MemoryRepository()
    ev = Evaluator(repo, ENGINE)
    clock = T - 600
    for i in arrivals:
        clock = max(clock, max(o.t for o in HOME_FRAMES[i])) + 5
        ev.observe(HOME_CFG, repo.store(HOME_FRAMES[i]), clock)
    changes = ev.tick(HOME_CFG, HORIZON)
    while changes.behind:
        changes = ev.tick(HOME_CFG, HORIZON)
    got = {(e.key, e.end, e.confirmed_t) for e in repo.episodes.values()}
    assert got == HOME_EXPECTED


def test_asks_that_arise_at_stored_data_when_a_batch_arrives_are_sent() -> None:
    # As the devices send: the victim's phone each fix 2 s after it, the tag in batches of
    # two fixes (every 30 s) arriving after the victim's later fixes. Each batch folds the
    # tail afresh and the approach is first seen near at a victim fix already stored: the
    # asks made there (upload every 15 s, sample fast) must go out, not only be remembered.
    b = Builder()
    approach_then_away(b)
    arrivals: list[tuple[int, list[Obs]]] = []
    tag_fixes = sorted((o for o in b.obs if o.device == TAG_ID), key=lambda o: o.t)
    for o in b.obs:
        if o.device == VICTIM_ID:
            arrivals.append((o.t + 2, [o]))
    for i in range(0, len(tag_fixes), 2):
        batch = tag_fixes[i : i + 2]
        arrivals.append((batch[-1].t + 17, batch))
    repo = MemoryRepository()
    ev = Evaluator(repo, ENGINE)
    last: dict[tuple[int, int, int], int] = {}
    sent: list[Command] = []
    fast: list[Command] = []
    for at, obs in sorted(arrivals, key=lambda a: a[0]):
        cmds = ev.observe(cfg(), repo.store(obs), at).commands
        sent += sent_batches(cmds, last)
        fast += [c for c in cmds if c.device == TAG_ID and c.key == fr.CFG_FAST_UNTIL]
    assert asks(sent) == [ORDER, FIRMWARE_SIZE, NEAR, FIRMWARE_SIZE]
    assert fast
