"""The clock's deadline index (Rule.due, Engine.deadline) is never late: from any state, every
horizon before the deadline concludes exactly what the horizon it was computed at did. The
sink's tick skips a subject until its deadline, so a late deadline would be a missed or late
alert (comms loss, a curfew grace run out)."""

from __future__ import annotations

import random
from typing import Any

from backend.rules.base import Context, Rule
from backend.rules.config import Assignment, SubjectConfig, VictimLink
from backend.rules.engine import NEVER, Engine, State
from backend.rules.model import VICTIM, Episode, Obs
from tests.backend.rules.scenario import Builder, config, local
from tests.backend.rules.test_arrival_order import CFG, FRAMES
from tests.backend.rules.test_device_rules import T as DEVICE_T
from tests.backend.rules.test_proximity import VICTIM_ID, victim_fix

ENGINE = Engine()
SPAN_S = 3 * 86400  # how far past each state's data the horizons are walked


def _seen(closed: list[Episode], open_: list[Episode]) -> list[tuple[Any, ...]]:
    return sorted(
        (e.key, e.end, e.closed_t, e.confirmed_t, repr(e.evidence), repr(sorted(e.details)))
        for e in closed + open_
    )


def _walk(cfg: SubjectConfig, state: State, rng: random.Random) -> int:
    """Walk horizons from the state's covers through SPAN_S, deadline to deadline, checking
    that nothing changes before each deadline. Returns how many deadlines were passed."""
    h = state.covers
    end = state.covers + SPAN_S
    passed = 0
    while h < end:
        closed, open_, deadline = ENGINE.horizon(cfg, state, h)
        before = _seen(closed, open_)
        last_quiet = min(deadline - 2, end)  # the last horizon whose h + 1 < deadline
        probes = {last_quiet, h + 1, (h + last_quiet) // 2}
        probes |= {rng.randint(h, last_quiet) for _ in range(2)} if last_quiet > h else set()
        for p in sorted(x for x in probes if h < x <= last_quiet):
            c, o, _ = ENGINE.horizon(cfg, state, p)
            assert _seen(c, o) == before, f"changed at {p}, before the deadline {deadline}"
        if deadline >= NEVER:
            break
        h = max(deadline - 1, h + 1)  # the first horizon at which something may happen
        passed += 1
    return passed


def test_no_horizon_before_the_deadline_concludes_anything_new() -> None:
    """Every prefix of the arrival-order scenario (curfew windows and graces, comms loss,
    battery, tamper, home-unit outage, zones, charging days) in event-time order."""
    rng = random.Random(7)
    obs = sorted((o for f in FRAMES for o in f), key=Obs.sort_key)
    t0 = local("2026-03-28 17:00") - 60
    passed = 0
    for n in range(0, len(obs) + 1, 4):
        state = ENGINE.run(CFG, ENGINE.initial(CFG, t0), obs[:n]).state
        passed += _walk(CFG, state, rng)
    assert passed > 100  # the walk really went from deadline to deadline


def test_security_bursts_and_charging_days_are_never_late() -> None:
    b = Builder()
    t = local("2026-10-24 20:00")  # the night before the clocks go back: a 25-hour day
    obs = [b.security(t + 600 * k, "mac") for k in range(3)] + [b.security(t + 9000, "replay")]
    obs += [b.battery(t + 3600 * k, 50, flags=1 if k % 5 == 0 else 0) for k in range(40)]
    cfg = config(charge_min_minutes=90, comms_loss_s=3 * 3600, start=t - 3600)
    rng = random.Random(3)
    ordered_obs = sorted(obs, key=Obs.sort_key)
    passed = 0
    for n in range(0, len(ordered_obs) + 1, 3):
        state = ENGINE.run(cfg, ENGINE.initial(cfg, t - 3600), ordered_obs[:n]).state
        passed += _walk(cfg, state, rng)
    assert passed > 50


def test_a_rule_without_a_deadline_is_always_due() -> None:
    class Ticking(Rule):
        name = "ticking"
        version = 1
        Params = dict

        def advance(self, st: dict[str, Any], ctx: Context, to: int) -> None:
            st["t"] = to

        def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
            return None

    engine = Engine([Ticking({})])
    cfg = SubjectConfig(1)
    state = engine.initial(cfg, DEVICE_T)
    assert engine.deadline(cfg, state) == DEVICE_T + 1
    # Rules that say nothing is pending give no deadline at all.
    assert Engine([]).deadline(cfg, state) == NEVER


def test_a_victim_devices_silence_is_never_late() -> None:
    b = Builder()
    t = local("2026-05-12 14:00")
    # Heard now and then, silent for longer than the link's 20 minutes twice; the link ends.
    for dt in (0, 600, 3000, 3300, 9000):
        victim_fix(b, t + dt, 0)
    link = VictimLink(VICTIM_ID, start=t - 60, end=t + 20_000, silent_s=1200)
    cfg = config(
        assignments=[*config().assignments, Assignment(VICTIM_ID, VICTIM, t - 60)],
        victims=[link],
    )
    rng = random.Random(5)
    passed = 0
    for n in range(len(b.obs) + 1):
        state = ENGINE.run(cfg, ENGINE.initial(cfg, t - 60), b.obs[:n]).state
        passed += _walk(cfg, state, rng)
    assert passed >= 8
