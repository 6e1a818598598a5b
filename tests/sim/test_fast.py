"""The fast path (RunOptions.fast: a tag whose receiver searches sleeps to its alarm or the
receiver's first fix instead of being polled every second) gives exactly the frames of the
step-by-step run, polled at every wake its firmware asks for: the same bytes, sealed and
still held, for the same seed, with fewer polls."""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from firmware import frame as fr
from sim import fleet as fleet_module
from sim import scenario
from sim.fleet import Fleet, RunOptions, SubjectWorld
from sim.generate import generate


def test_a_fast_run_publishes_the_same_bytes_as_the_step_by_step_run() -> None:
    # edge-cases' first day from 06:00 to 18:00: foil shielding at 13:00 and a strap cut at
    # 16:45 among 6 subjects, each indoors for hours (the receiver searching at every
    # hourly fix), going out and coming back.
    sc = scenario.load("edge-cases")
    runs = {}
    for fast in (False, True):
        opts = RunOptions(
            seed=7, subjects=6, days=1, from_hour=6, hours=12, backend=False, fast=fast
        )
        with Fleet(sc, opts) as f:
            runs[fast] = f.run()
    step, fast_run = runs[False], runs[True]
    assert fast_run.frames == step.frames
    assert fast_run.pending == step.pending
    assert fast_run.sealed == step.sealed
    assert fast_run.sim_ms == step.sim_ms
    assert fast_run.counters["polls"] < 0.9 * step.counters["polls"]
    kinds = {r.type for p in step.frames.values() for r in fr.parse(p).records}
    assert {fr.FIX, fr.TAMPER, fr.BATTERY} <= kinds


@pytest.fixture(scope="module")
def worlds() -> list[SubjectWorld]:
    sim = generate(scenario.load("edge-cases"), seed=3, days=1)
    return [SubjectWorld(sim, i) for i in range(4)]


def test_still_until_is_the_last_instant_at_rest(worlds: list[SubjectWorld]) -> None:
    # Against the position the board reads: at rest from t through still_until, moving
    # (or flat) just after it.
    checked = 0
    for w in worlds:
        for t in range(w.t[0], w.t[-1], 397_000):
            until = w.still_until(t)
            if w.position(t)[3]:
                assert until == t
                continue
            assert until > t or w.position(t + 1)[3]
            if math.isinf(until):
                continue
            end = int(until)
            for u in (t, (t + end) // 2, end):
                assert not w.position(u)[3]
            assert w.position(end + 1)[3] or w.battery(end) <= 0
            checked += 1
    assert checked > 20


class _Inline(ThreadPoolExecutor):
    """Runs each job at once on the caller's thread: the HIL tags one after another."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        done: Future[Any] = Future()
        done.set_result(fn(*args, **kwargs))
        return done


@pytest.mark.micropython
def test_hil_tags_run_side_by_side_seal_what_they_seal_one_after_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The runner hands the HIL tags that must wake in a slice to threads of their own
    # (Fleet._hil_slices): the same bytes as running them in turn on the runner's thread,
    # and each slice's sleepers get no turn at all. No broker (fleet only): every frame
    # stays in its tag's flash log, deterministically.
    sc = scenario.load("edge-cases")
    opts = RunOptions(seed=7, subjects=3, days=1, from_hour=6, hours=2, backend=False, hil=3)
    jobs: list[int] = []

    class Counted(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
            jobs.append(1)
            return super().submit(fn, *args, **kwargs)

    runs = {}
    for name, pool in (("threads", Counted), ("inline", _Inline)):
        monkeypatch.setattr(fleet_module, "ThreadPoolExecutor", pool)
        with Fleet(sc, opts) as f:
            runs[name] = f.run()
            turns = sum(int(h.tag.report()["polls"]) for h in f.hil)
    threads, inline = runs["threads"], runs["inline"]
    assert len(threads.hil) == 3 and jobs
    assert threads.pending == inline.pending and threads.sealed == inline.sealed
    kinds = {r.type for p in inline.pending.values() for r in fr.parse(p).records}
    assert fr.FIX in kinds
    slices = 2 * 3600 // opts.slice_s
    assert turns < 3 * slices  # most slices' ends are no turn (the firmware sleeps)
