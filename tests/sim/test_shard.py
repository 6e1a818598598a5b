"""The sharded fleet-only run (sim/shard.py) gives exactly the frames of the one-process
run: the same bytes, sealed and still held, for the same seed; a full-stack run with its
fleet sharded (RunOptions.shards) stores every frame once and raises the alerts one process
raises."""

from __future__ import annotations

import threading
from multiprocessing import Pipe
from multiprocessing.connection import Connection

import pytest

from firmware import frame as fr
from sim import scenario, score
from sim import truth as tr
from sim.fleet import Fleet, RunOptions, RunResult
from sim.run import clip_truth, run_window
from sim.shard import ShardError, run_sharded, serve_drain, shares


def test_subjects_are_dealt_round_robin() -> None:
    assert shares([5, 0, 3, 1, 2], 2) == [[0, 2, 5], [1, 3]]
    assert shares([0, 1], 4) == [[0], [1]]


def test_a_sharded_run_publishes_the_same_bytes_as_one_process() -> None:
    # edge-cases across its clock change: a strap cut, a case opened, shielding, a flat
    # battery and a tag not charged among 6 subjects, so the shards hold unlike tags; the
    # drain decides where both runs end (the shards are lock-stepped through it).
    sc = scenario.load("edge-cases")
    opts = RunOptions(seed=7, subjects=6, days=1, backend=False, drain_s=1800)
    with Fleet(sc, opts) as f:
        one = f.run()
    many = run_sharded(sc, opts, workers=3)
    assert many.workers == 3
    assert many.frames == one.frames
    assert many.pending == one.pending
    assert many.sealed == one.sealed
    assert many.sim_ms == one.sim_ms
    assert many.counters["polls"] == one.counters["polls"]
    kinds = {r.type for p in many.frames.values() for r in fr.parse(p).records}
    assert {fr.FIX, fr.TAMPER, fr.BATTERY} <= kinds
    assert len({k[0] for k in many.frames}) == 6


def test_only_a_fleet_only_run_is_sharded() -> None:
    sc = scenario.load("edge-cases")
    with pytest.raises(ShardError):
        run_sharded(sc, RunOptions(subjects=2, backend=True))


class _Worker(threading.Thread):
    """A stand-in worker: drained after its own number of slices, then its result."""

    def __init__(self, conn: Connection, drained_after: int) -> None:
        super().__init__(daemon=True)
        self.conn = conn
        self.drained_after = drained_after
        self.slices = 0
        self.pid = 0
        self.exitcode = None

    def run(self) -> None:
        while True:
            self.slices += 1
            self.conn.send(("drained", self.slices >= self.drained_after))
            if self.conn.recv():
                break
        self.conn.send(("ok", self.slices))


def test_in_the_drain_every_worker_goes_on_until_all_have_drained() -> None:
    # One process would drain until its last tag had; a worker whose own tags drained
    # early must go on with the others, or its tags would be polled less than in one run.
    procs = []
    workers = []
    for n in (1, 4, 2):
        mine, theirs = Pipe()
        w = _Worker(theirs, n)
        w.start()
        workers.append(w)
        procs.append((w, mine))
    assert serve_drain(procs) == [("ok", 4), ("ok", 4), ("ok", 4)]


def _stack_day(
    shards: int,
) -> tuple[RunResult, score.Completeness, list[score.Alert], dict[str, int]]:
    # edge-cases' first four subjects from 16:30 for an hour: subject 3 cuts the strap at
    # 16:45; the others at home or out, beaconing to their home units, relaying at home.
    # The ingest worker and the units on threads: the shards are what is under test, and
    # two interpreters fewer to start.
    sc = scenario.load("edge-cases")
    opts = RunOptions(
        seed=0,
        subjects=4,
        days=1,
        from_hour=16.5,
        hours=1,
        drain_s=600,
        shards=shards,
        ingest_processes=False,
        home_unit_process=False,
    )
    with Fleet(sc, opts) as f:
        r = f.run()
        assert f.backend is not None
        done = score.completeness(r, f.backend.engine)
        source = score.TableAlertSource(f.backend.engine, f.subject_of)
        return r, done, source.alerts(), dict(source.unmapped)


@pytest.mark.broker
def test_a_sharded_stack_run_stores_every_frame_once_and_raises_the_same_alerts() -> None:
    one, one_done, one_alerts, one_other = _stack_day(1)
    many, done, alerts, other = _stack_day(2)
    assert many.counters["shards"] == 2 and "shards" not in one.counters
    # Every frame a tag sealed was stored once or is still on its tag, from both shards'
    # tags, relayed by home units too; the stack is not repeatable to the frame (which
    # frames a unit relays depends on real-time order), so the counts are not compared.
    assert done.ok and one_done.ok, (done.to_json(), one_done.to_json())
    assert done.frames_stored == done.frames_sealed - done.frames_on_tags > 10
    assert done.positions_stored == done.positions_generated - done.positions_on_tags > 20
    assert done.positions_doubled == 0 and done.frames_unknown == 0
    assert {k[0] for k in many.frames} == {s.tag_id for s in many.sim.subjects}
    assert many.counters["home_unit_relay_queued"] > 0
    # The units' own reports, due on their clocks, which the shards' minute ticks move while
    # no beacon is heard: as many as in one process (a beacon more or less at the edges).
    own = one.counters["home_unit_own_freed"]
    assert own > 20 and abs(many.counters["home_unit_own_freed"] - own) <= own // 5
    assert many.counters["barrier_timeouts"] == 0
    assert many.counters.get("ingest_records_refused", 0) == 0, many.counters

    # The same alerts: types, subjects, raised within a rules tick and a slice of each other
    # (whether a frame reaches the rules in its slice or at the next minute's tick depends on
    # real-time order under load, in one process as in shards).
    def key(a: score.Alert) -> tuple[str, int, int]:
        return a.type, a.subject, a.raised_ms

    alerts, one_alerts = sorted(alerts, key=key), sorted(one_alerts, key=key)
    apart_ms = (RunOptions().rules_tick_s + RunOptions().slice_s) * 1000
    assert [(a.type, a.subject) for a in alerts] == [(a.type, a.subject) for a in one_alerts]
    assert (tr.STRAP_CUT, 3) in [(a.type, a.subject) for a in alerts]
    for a, b in zip(alerts, one_alerts, strict=True):
        assert abs(a.raised_ms - b.raised_ms) <= apart_ms, (a, b)
    assert other == one_other
    # Scored against the window's truth alike.
    window = run_window(many)
    assert window is not None and window == run_window(one)
    truth = clip_truth(many.sim.truth, *window)

    def scored(got: list[score.Alert]) -> dict[str, tuple[int, int, int]]:
        return {
            k: (s.episodes, s.detected, s.false_alerts)
            for k, s in score.score_alerts(truth, got).items()
        }

    assert scored(alerts) == scored(one_alerts)
    assert scored(alerts)[tr.STRAP_CUT] == (1, 1, 0)
