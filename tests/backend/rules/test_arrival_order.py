"""The property the whole design rests on: permuting and duplicating the arrival order of a
scenario's frames gives the same set of alerts as evaluating the data from scratch — also
when evaluation works through the data in chunks of a few hours (evaluator.py)."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.rules.engine import Engine
from backend.rules.evaluator import MAX_RUN_S, Changes, Evaluator, MemoryRepository
from backend.rules.model import Obs
from tests.backend.rules.scenario import Builder, circle, config, curfew, home_zone, local

ENGINE = Engine()


def scenario() -> tuple[list[list[Obs]], int]:
    """A day: home overnight, out in the morning through an exclusion zone, a strap
    opened, battery running low, a home-unit outage, back late for curfew. Frames as the
    devices would batch them (a tag frame every few fixes, a unit frame per transition)."""
    b = Builder()
    frames: list[list[Obs]] = []
    t = local("2026-03-28 17:00")
    frames.append([b.presence(t, 1), b.status(t, device=5001)])
    for h in range(1, 33):  # heartbeats every 30 min while the tag is home
        frames.append([b.status(t + 1800 * h, device=5001)])
    out = local("2026-03-29 09:00")
    frames.append([b.presence(out - 60, 0)])
    path = [(100 + 40 * i, 0) for i in range(30)] + [(1300 + 40 * i, 300) for i in range(30)]
    fixes = [b.fix(out + 30 * i, dx, dy, acc_m=6) for i, (dx, dy) in enumerate(path)]
    extra = [b.tamper(out + 400, 1, 1), b.tamper(out + 700, 1, 0), b.battery(out + 900, 18)]
    frames += [fixes[i : i + 6] for i in range(0, len(fixes), 6)] + [extra]
    frames.append([b.link(out + 2000, 0)])
    frames.append([b.link(out + 4000, 1)])
    frames.append(
        [b.presence(local("2026-03-29 19:40"), 1), b.battery(local("2026-03-29 19:41"), 90, 1)]
    )
    return frames, local("2026-03-30 12:00")


CFG = config(
    curfews=[curfew()],
    zones=[home_zone(), circle(7, "exclusion", 1000, 0, 100, name="precinct")],
    comms_loss_s=4 * 3600,
)
FRAMES, HORIZON = scenario()
EXPECTED = {
    (e.key, e.end, e.confirmed_t)
    for e in ENGINE.evaluate(CFG, [o for f in FRAMES for o in f], HORIZON)
}


def test_the_scenario_raises_what_it_should() -> None:
    kinds = sorted(k.split(":")[2] for k, _, _ in EXPECTED)
    # comms loss twice: nothing all afternoon (4 h threshold), and nothing after the return
    # (the unit sends no heartbeats after it) up to the horizon.
    assert kinds == [
        "battery_low",
        "comms_loss",
        "comms_loss",
        "curfew_late_return",
        "exclusion_entry",
        "home_unit_offline",
        "strap_tamper",
    ]


def caught_up(ev: Evaluator, changes: Changes, horizon: int) -> int:
    """Tick until the evaluation has worked through every chunk; returns how many ticks."""
    ticks = 0
    while changes.behind:
        ticks += 1
        assert ticks <= 100, "the catch-up does not end"
        changes = ev.tick(CFG, horizon)
    return ticks


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.permutations(range(len(FRAMES))),
    dups=st.lists(st.integers(0, len(FRAMES) - 1), max_size=8),
    where=st.lists(st.integers(0, 10_000), min_size=8, max_size=8),
    chunk=st.sampled_from([MAX_RUN_S, 4 * 3600, 3 * 3600 + 17]),
)
def test_any_arrival_order_with_duplicates_gives_the_same_alerts(
    order: list[int], dups: list[int], where: list[int], chunk: int
) -> None:
    arrivals = list(order)
    for i, d in enumerate(dups):
        arrivals.insert(where[i] % (len(arrivals) + 1), d)
    repo = MemoryRepository()
    ev = Evaluator(repo, ENGINE, max_run_s=chunk)
    clock = local("2026-03-28 17:00")
    for n, i in enumerate(arrivals):
        clock = max(clock, max(o.t for o in FRAMES[i])) + 5  # backend now moves on
        ev.observe(CFG, repo.store(FRAMES[i]), clock if n % 3 else clock + 7200)
    caught_up(ev, ev.tick(CFG, HORIZON), HORIZON)
    got = {(e.key, e.end, e.confirmed_t) for e in repo.episodes.values()}
    assert got == EXPECTED


def test_a_long_run_is_worked_through_in_bounded_chunks() -> None:
    """Every frame at once, evaluated in 4-hour chunks: each evaluation moves the state on
    by at most a chunk, and the chunks together find what one run finds."""
    repo = MemoryRepository()
    ev = Evaluator(repo, ENGINE, max_run_s=4 * 3600)
    changes = ev.observe(CFG, repo.store([o for f in FRAMES for o in f]), HORIZON)
    start = local("2026-03-28 17:00")
    covers = [repo.states[CFG.subject].covers]
    while changes.behind:
        changes = ev.tick(CFG, HORIZON)
        covers.append(repo.states[CFG.subject].covers)
    assert covers[0] == start + 4 * 3600
    # Chunks of exactly 4 h; the last run (within a chunk of the horizon) settles no further
    # than its data.
    steps = [b - a for a, b in pairwise(covers)]
    assert steps[:-1] == [4 * 3600] * (len(steps) - 1) and 0 <= steps[-1] <= 4 * 3600
    assert HORIZON - covers[-1] <= 4 * 3600 and len(covers) >= 9
    got = {(e.key, e.end, e.confirmed_t) for e in repo.episodes.values()}
    assert got == EXPECTED
