"""Curfew: breach, near miss, late return, late data, and the nights the clocks change."""

from __future__ import annotations

from dataclasses import replace

from backend.rules.curfew import Curfew
from backend.rules.engine import Engine
from backend.rules.evaluator import Evaluator, MemoryRepository
from backend.rules.home_unit import HomeUnit
from backend.rules.model import TAG
from backend.rules.schedule import Exception_, Weekly
from firmware import frame as fr
from tests.backend.rules.scenario import (
    TAG_ID,
    Builder,
    config,
    curfew,
    home_zone,
    local,
    offset,
    types,
)

# Curfew with the home unit rule beside it (its offline alert is checked together); the
# other rules (comms loss in particular) would alert on these sparse scenarios too.
ENGINE = Engine([Curfew(), HomeUnit()])


def curfew_config(**kw: object):  # type: ignore[no-untyped-def]
    return config(curfews=[curfew()], zones=[home_zone()], **kw)


def test_leaving_during_curfew_beyond_grace_is_a_breach() -> None:
    b = Builder()
    b.presence(local("2026-05-12 18:00"), 1)
    left = b.presence(local("2026-05-12 22:00"), 0)
    back = b.presence(local("2026-05-12 23:10"), 1)
    eps = ENGINE.evaluate(curfew_config(), b.obs, local("2026-05-13 08:00"))
    assert types(eps) == ["curfew_breach"]
    ep = eps[0]
    assert (ep.start, ep.end) == (left.t, back.t)
    assert ep.confirmed_t == left.t + 600
    assert ep.subkey == "2026-05-12" and ep.version == 2
    assert [e["ref"] for e in ep.evidence] == [left.ref, back.ref]


def test_short_absence_within_grace_raises_nothing() -> None:
    b = Builder()
    b.presence(local("2026-05-12 18:00"), 1)
    b.presence(local("2026-05-12 22:00"), 0)
    b.presence(local("2026-05-12 22:09"), 1)  # bins out: 9 minutes < 10 minutes grace
    assert ENGINE.evaluate(curfew_config(), b.obs, local("2026-05-13 08:00")) == []


def test_absence_outside_the_window_raises_nothing() -> None:
    b = Builder()
    b.presence(local("2026-05-12 08:00"), 0)
    b.presence(local("2026-05-12 18:30"), 1)
    assert ENGINE.evaluate(curfew_config(), b.obs, local("2026-05-13 08:00")) == []


def test_late_return_starts_at_the_window_and_ends_at_the_return() -> None:
    b = Builder()
    b.presence(local("2026-05-12 17:00"), 0)
    back = b.presence(local("2026-05-12 19:45"), 1)
    eps = ENGINE.evaluate(curfew_config(), b.obs, local("2026-05-13 08:00"))
    assert types(eps) == ["curfew_late_return"]
    assert (eps[0].start, eps[0].end) == (local("2026-05-12 19:00"), back.t)


def test_a_tag_silent_for_hours_before_the_window_is_no_late_return() -> None:
    # Out in the morning, the tag goes flat at 09:00 (its last record); the home unit never
    # hears it again. At 19:00 the last evidence of "away" is ten hours old: where the
    # subject is is unknown (comms loss says so), not a late return.
    b = Builder()
    b.presence(local("2026-05-12 08:00"), 0)
    b.fix(local("2026-05-12 08:30"), 2000, 0)
    b.battery(local("2026-05-12 09:00"), 0)
    cfg = curfew_config()
    assert ENGINE.evaluate(cfg, b.obs, local("2026-05-13 08:00")) == []
    # A tag still heard from an hour before the window: away stands, late return.
    b2 = Builder()
    b2.presence(local("2026-05-12 08:00"), 0)
    b2.fix(local("2026-05-12 18:00"), 2000, 0)
    back = b2.presence(local("2026-05-12 19:40"), 1)
    eps = ENGINE.evaluate(cfg, b2.obs, local("2026-05-13 08:00"))
    assert types(eps) == ["curfew_late_return"]
    assert (eps[0].start, eps[0].end) == (local("2026-05-12 19:00"), back.t)
    # The threshold is the order's comms-loss threshold when it has one.
    assert ENGINE.evaluate(replace(cfg, comms_loss_s=12 * 3600), b.obs, local("2026-05-13 08:00"))


def test_no_data_after_leaving_alerts_by_the_backend_clock() -> None:
    b = Builder()
    b.presence(local("2026-05-12 18:00"), 1)
    left = b.presence(local("2026-05-12 21:00"), 0)
    cfg = curfew_config()
    # Before the grace runs out, nothing; after it, an open breach with no further data.
    assert ENGINE.evaluate(cfg, b.obs, left.t + 599) == []
    eps = ENGINE.evaluate(cfg, b.obs, left.t + 601)
    assert types(eps) == ["curfew_breach"] and eps[0].end is None
    # The window's end closes it at 07:00 even though nothing else arrived.
    eps = ENGINE.evaluate(cfg, b.obs, local("2026-05-13 09:00"))
    assert eps[0].end == local("2026-05-13 07:00")


def test_gps_outside_home_zone_is_absence_but_drift_at_the_edge_is_not() -> None:
    b = Builder()
    b.presence(local("2026-05-12 18:00"), 1)
    # Drift: fixes 55-75 m from a 60 m home circle, accuracy 15 m: never clearly outside.
    for i in range(30):
        b.fix(local("2026-05-12 20:00") + 60 * i, dx_m=55 + (i % 3) * 10, acc_m=15)
    assert ENGINE.evaluate(curfew_config(), b.obs, local("2026-05-13 08:00")) == []
    # Clearly outside (400 m, accuracy 8 m) for 20 minutes: a breach.
    for i in range(21):
        b.fix(local("2026-05-12 22:00") + 60 * i, dx_m=400, acc_m=8)
    b.fix(local("2026-05-12 22:30"), dx_m=5, acc_m=8)
    eps = ENGINE.evaluate(curfew_config(), b.obs, local("2026-05-13 08:00"))
    assert types(eps) == ["curfew_breach"]
    assert eps[0].start == local("2026-05-12 22:00")
    assert eps[0].end == local("2026-05-12 22:30")


def test_one_confident_fix_away_at_night_is_not_a_breach() -> None:
    # At home overnight in GPS mode, a fix an hour; one indoor multipath fix lands 150 m off
    # with a good HDOP (accuracy 5 m), the next is back inside the home zone an hour later.
    b = Builder()
    b.fix(local("2026-05-12 23:00"), dx_m=10, acc_m=5)
    b.fix(local("2026-05-13 00:00"), dx_m=150, acc_m=5)
    b.fix(local("2026-05-13 01:00"), dx_m=5, acc_m=5)
    assert ENGINE.evaluate(curfew_config(), b.obs, local("2026-05-13 08:00")) == []
    # Two in a row away before the window opens: a late return from the window's start.
    b2 = Builder()
    b2.fix(local("2026-05-12 18:40"), dx_m=900, acc_m=5)
    b2.fix(local("2026-05-12 18:41"), dx_m=950, acc_m=5)
    back = b2.fix(local("2026-05-12 19:30"), dx_m=5, acc_m=5)
    eps = ENGINE.evaluate(curfew_config(), b2.obs, local("2026-05-13 08:00"))
    assert types(eps) == ["curfew_late_return"]
    assert (eps[0].start, eps[0].end) == (local("2026-05-12 19:00"), back.t)


def test_an_rf_home_fix_as_the_firmware_sends_it_is_home() -> None:
    # In RF mode a tag provisioned with its home's position reports it as a fix with source
    # RF-home and fix type 0 (firmware/rfmode.py): not a GNSS fix, but the tag's own word
    # that its home unit answers it.
    b = Builder()
    b.fix(local("2026-05-12 18:40"), dx_m=900, acc_m=5)
    b.fix(local("2026-05-12 18:41"), dx_m=950, acc_m=5)
    lat, lon = offset(0, 0)
    back = b.add(
        local("2026-05-12 19:30"),
        TAG_ID,
        TAG,
        "fix",
        lat_e7=round(lat * 1e7),
        lon_e7=round(lon * 1e7),
        acc_dm=300,
        fix_type=0,
        source=fr.SOURCE_RF_HOME,
        sats=0,
    )
    eps = ENGINE.evaluate(curfew_config(), b.obs, local("2026-05-13 08:00"))
    assert types(eps) == ["curfew_late_return"]
    assert (eps[0].start, eps[0].end) == (local("2026-05-12 19:00"), back.t)


def test_home_unit_offline_during_curfew() -> None:
    b = Builder()
    b.presence(local("2026-05-12 18:00"), 1)
    b.link(local("2026-05-12 23:00"), 0)
    online = b.link(local("2026-05-13 01:00"), 1)
    eps = ENGINE.evaluate(curfew_config(), b.obs, local("2026-05-13 08:00"))
    offline = [e for e in eps if e.type == "curfew_home_unit_offline"]
    assert len(offline) == 1 and offline[0].end == online.t
    assert "home_unit_offline" in types(eps)  # the home unit rule raises its own too


def test_excused_exception_lifts_the_curfew() -> None:
    b = Builder()
    b.presence(local("2026-05-12 18:00"), 1)
    b.presence(local("2026-05-12 20:00"), 0)
    b.presence(local("2026-05-12 23:00"), 1)
    excused = Exception_(local("2026-05-12 19:30"), local("2026-05-12 23:30"), "excused")
    cfg = curfew_config(exceptions=[excused])
    assert ENGINE.evaluate(cfg, b.obs, local("2026-05-13 08:00")) == []


def test_dst_spring_forward_night_is_eleven_hours() -> None:
    # 28-29 March 2026: clocks go forward at 01:00 GMT. 19:00 GMT -> 07:00 BST = 11 h.
    w = Weekly(("sat",), "19:00", "07:00")
    ((s, e, night),) = w.windows(local("2026-03-28 12:00"), local("2026-03-29 12:00"))
    assert e - s == 11 * 3600 and night == "2026-03-28"
    b = Builder()
    b.presence(local("2026-03-28 18:00"), 1)
    left = b.presence(local("2026-03-29 06:30"), 0)  # BST: 05:30 UTC, still in curfew
    b.presence(local("2026-03-29 07:30"), 1)
    eps = ENGINE.evaluate(curfew_config(), b.obs, local("2026-03-29 12:00"))
    assert types(eps) == ["curfew_breach"]
    assert eps[0].start == left.t and eps[0].end == local("2026-03-29 07:00")
    assert eps[0].end - eps[0].start == 1800


def test_dst_fall_back_night_is_thirteen_hours() -> None:
    w = Weekly(("sat",), "19:00", "07:00")
    ((s, e, _),) = w.windows(local("2026-10-24 12:00"), local("2026-10-25 12:00"))
    assert e - s == 13 * 3600
    b = Builder()
    b.presence(local("2026-10-24 18:00"), 1)
    # 06:45 GMT on the 25th is 06:45 local after the change: in curfew. In UTC terms
    # it is an hour later than a naive 12-hour window would allow.
    b.presence(local("2026-10-25 06:45"), 0)
    eps = ENGINE.evaluate(curfew_config(), b.obs, local("2026-10-25 12:00"))
    assert types(eps) == ["curfew_breach"]  # absent 15 min > 10 min grace before 07:00
    assert eps[0].end == local("2026-10-25 07:00")


def test_presence_backlog_arriving_hours_late_raises_a_late_alert() -> None:
    repo = MemoryRepository()
    ev = Evaluator(repo, ENGINE)
    cfg = curfew_config()
    b = Builder()
    home = b.presence(local("2026-05-12 18:00"), 1)
    left = b.presence(local("2026-05-12 21:00"), 0)
    back = b.presence(local("2026-05-12 22:00"), 1)
    hb = [b.status(local("2026-05-13 03:00") + 300 * i, device=5001) for i in range(3)]
    # Live: the unit's heartbeats arrive; the presence records were stuck in its queue.
    ev.observe(cfg, repo.store([home]), home.t + 5)
    ev.observe(cfg, repo.store(hb), hb[-1].t + 5)
    assert repo.episodes == {}
    changes = ev.observe(cfg, repo.store([left, back]), local("2026-05-13 04:00"))
    assert changes.late and [e.type for e in changes.raised] == ["curfew_breach"]
    (ep,) = repo.episodes.values()
    assert ep.late and (ep.start, ep.end) == (left.t, back.t)


def test_late_data_clears_an_alert_raised_by_the_clock() -> None:
    repo = MemoryRepository()
    ev = Evaluator(repo, ENGINE)
    cfg = curfew_config()
    b = Builder()
    home = b.presence(local("2026-05-12 18:00"), 1)
    left = b.presence(local("2026-05-12 21:00"), 0)
    ev.observe(cfg, repo.store([home, left]), left.t + 5)
    ev.tick(cfg, left.t + 1200)
    assert [e.type for e in repo.episodes.values()] == ["curfew_breach"]
    # The return came back at 21:05 (within grace), it just arrived late.
    back = replace(b.presence(local("2026-05-12 21:05"), 1), late=True)
    changes = ev.observe(cfg, repo.store([back]), left.t + 3600)
    assert changes.late and [e.type for e in changes.cleared] == ["curfew_breach"]
    assert repo.episodes == {}
