"""Tamper, battery, charging, motion without fix, overflow, comms loss, home unit and
security events: a breach, a near miss and a late-data case each, and a clock-change day."""

from __future__ import annotations

from dataclasses import replace

from backend.rules.battery import Battery
from backend.rules.charging import Charging
from backend.rules.comms import CommsLoss
from backend.rules.engine import Engine
from backend.rules.evaluator import Evaluator, MemoryRepository
from backend.rules.home_unit import HomeUnit
from backend.rules.motion import MotionNoFix
from backend.rules.overflow import Overflow
from backend.rules.security import Security
from backend.rules.tamper import Tamper
from tests.backend.rules.scenario import TAG_ID, UNIT_ID, Builder, config, local, types

T = local("2026-05-12 10:00")
H = T + 86400


def run(rule, b: Builder, horizon: int = H, **kw):  # type: ignore[no-untyped-def]
    return Engine([rule]).evaluate(config(**kw), b.obs, horizon)


def test_strap_cut_alerts_at_once_and_ends_when_closed() -> None:
    b = Builder()
    cut = b.tamper(T, 1, 1)
    closed = b.tamper(T + 600, 1, 0)
    (ep,) = run(Tamper(), b)
    assert ep.type == "strap_tamper" and (ep.start, ep.end, ep.confirmed_t) == (
        cut.t,
        closed.t,
        cut.t,
    )
    b2 = Builder()
    b2.tamper(T, 2, 1)
    assert types(run(Tamper(), b2)) == ["case_tamper"]


def test_tamper_near_miss_with_grace() -> None:
    b = Builder()
    b.tamper(T, 2, 1)
    b.tamper(T + 3, 2, 0)  # a 3 s bounce with a 10 s grace configured
    assert run(Tamper(Tamper.Params(grace_s=10)), b) == []


def test_battery_low_and_critical_with_hysteresis() -> None:
    b = Builder()
    for i, lvl in enumerate([30, 21, 20, 22, 19, 21, 23, 5, 4]):
        b.battery(T + 600 * i, lvl)
    b.battery(T + 6000, 4, flags=1)  # on charge
    eps = run(Battery(), b)
    assert types(eps) == ["battery_critical", "battery_low"]  # one low episode, no flapping
    low = next(e for e in eps if e.type == "battery_low")
    assert low.start == T + 1200 and low.end == T + 6000


def test_battery_near_miss_while_charging() -> None:
    b = Builder()
    b.battery(T, 19, flags=1)
    b.battery(T + 600, 30, flags=1)
    assert run(Battery(), b) == []


def test_motion_without_fix_escalated_only() -> None:
    b = Builder()
    b.add(T, TAG_ID, "tag", "motion_no_fix", stage=1, minutes=10)
    b.add(T + 600, TAG_ID, "tag", "motion_no_fix", stage=0, minutes=0)
    assert run(MotionNoFix(), b) == []  # wearer notified, then a fix came: near miss
    b.add(T + 3600, TAG_ID, "tag", "motion_no_fix", stage=2, minutes=20)
    fix = b.fix(T + 4000)
    (ep,) = run(MotionNoFix(), b)
    assert ep.type == "motion_no_fix" and ep.end == fix.t


def test_overflow_is_an_instant_episode_per_report() -> None:
    b = Builder()
    b.add(T, TAG_ID, "tag", "overflow", lost=12)
    b.add(T + 60, UNIT_ID, "home_unit", "overflow", lost=3)
    b.add(T + 120, TAG_ID, "tag", "overflow", lost=0)
    eps = run(Overflow(), b)
    assert sorted(e.details["lost"] for e in eps) == [3, 12]
    assert all(e.start == e.end for e in eps)


def test_comms_loss_per_order_threshold_and_near_miss() -> None:
    b = Builder()
    b.status(T)
    b.status(T + 3000)  # 50 min gap: under the 1 h order threshold
    back = b.status(T + 3000 + 4000)  # 66 min gap: over it
    (ep,) = run(CommsLoss(), b, horizon=back.t + 60, comms_loss_s=3600)
    assert (ep.start, ep.end, ep.confirmed_t) == (T + 3000, back.t, T + 3000 + 3600)
    assert run(CommsLoss(), b, horizon=back.t + 60) == []  # the 2 h default threshold


def test_nothing_is_judged_after_the_order_ends() -> None:
    # The order ends at 11:00; the tag, handed back, is silent from 10:50: no comms loss an
    # hour later, and no charging day judged after the last whole day before the end (no
    # battery record at all: every day judged is one).
    b = Builder()
    b.status(T - 86400 * 3)
    b.status(T - 600)
    b.status(T + 3000)
    end = T + 3600
    kw = {"start": T - 86400 * 3, "end": end, "comms_loss_s": 3600, "charge_min_minutes": 60}
    (gap,) = run(CommsLoss(), b, horizon=T + 5 * 86400, **kw)  # the silence before the end
    assert (gap.start, gap.end) == (T - 86400 * 3, T - 600)
    days = run(Charging(), b, horizon=T + 5 * 86400, **kw)
    assert [e.start for e in days] == [local("2026-05-10 00:00"), local("2026-05-11 00:00")]


def test_comms_loss_counts_home_unit_heartbeats_while_the_tag_is_home() -> None:
    b = Builder()
    b.presence(T, 1)
    for i in range(1, 20):
        b.status(T + 300 * i, device=UNIT_ID)
    assert run(CommsLoss(), b, horizon=T + 300 * 19 + 60) == []
    b.presence(T + 6000, 0)
    for i in range(1, 40):
        b.status(T + 6000 + 300 * i, device=UNIT_ID)  # tag away: the unit's life is not its
    assert types(run(CommsLoss(), b, horizon=T + 6000 + 300 * 39)) == ["comms_loss"]


def test_comms_loss_raised_by_the_clock_is_cleared_by_a_late_backlog() -> None:
    repo = MemoryRepository()
    ev = Evaluator(repo, Engine([CommsLoss()]))
    cfg = config(comms_loss_s=3600)
    b = Builder()
    first = b.status(T)
    ev.observe(cfg, repo.store([first]), T + 5)
    ev.tick(cfg, T + 3700)
    assert types(list(repo.episodes.values())) == ["comms_loss"]
    backlog = [replace(b.status(T + 600 * i), late=True) for i in range(1, 10)]
    changes = ev.observe(cfg, repo.store(backlog), T + 5500)
    assert changes.late and types(changes.cleared) == ["comms_loss"]
    assert repo.episodes == {}


def test_home_unit_power_tamper_and_offline() -> None:
    b = Builder()
    b.power(T, 0)
    b.power(T + 100, 1)  # near miss: 100 s < 300 s grace
    b.power(T + 1000, 0)
    b.power(T + 2000, 1)
    b.add(T + 3000, UNIT_ID, "home_unit", "home_tamper", kind=2, state=1)
    b.add(T + 3100, UNIT_ID, "home_unit", "home_tamper", kind=2, state=0)
    b.link(T + 4000, 0)
    b.link(T + 4500, 1)  # near miss: 500 s < 900 s
    b.link(T + 5000, 0)
    eps = run(HomeUnit(), b, horizon=T + 7000)
    assert types(eps) == ["home_power_loss", "home_unit_case", "home_unit_offline"]
    offline = next(e for e in eps if e.type == "home_unit_offline")
    assert offline.start == T + 5000 and offline.end is None


def test_charging_schedule_per_local_day_including_a_23_hour_day() -> None:
    b = Builder()
    # 28 March (GMT) to 30 March (BST): charges 90 min on the 28th, 30 min on the 29th
    # (the 23-hour day), 65 min on the 30th.
    for day, minutes in (("2026-03-28", 90), ("2026-03-29", 30), ("2026-03-30", 65)):
        start = local(f"{day} 20:00")
        b.battery(start, 50, flags=1)
        b.battery(start + 60 * minutes, 95, flags=0)
    b.battery(local("2026-03-27 12:00"), 60)  # monitoring starts the day before
    eps = run(Charging(), b, horizon=local("2026-03-31 12:00"), charge_min_minutes=60)
    assert types(eps) == ["not_charged"]
    (ep,) = eps
    assert ep.subkey == "2026-03-29" and ep.details["charged_minutes"] == 30
    assert ep.end - ep.start == 23 * 3600  # type: ignore[operator]


def test_security_events_burst_is_one_episode() -> None:
    b = Builder()
    for i in range(5):
        b.security(T + 10 * i, "mac")
    b.security(T + 7200, "mac")
    b.security(T + 7300, "unknown_device")  # not an alerting reason
    eps = run(Security(), b)
    assert [e.details["count"] for e in sorted(eps, key=lambda e: e.start)] == [5, 1]
