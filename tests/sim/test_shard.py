"""The sharded fleet-only run (sim/shard.py) gives exactly the frames of the one-process
run: the same bytes, sealed and still held, for the same seed."""

from __future__ import annotations

import threading
from multiprocessing import Pipe
from multiprocessing.connection import Connection

import pytest

from firmware import frame as fr
from sim import scenario
from sim.fleet import Fleet, RunOptions
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
