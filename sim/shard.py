"""A fleet-only run sharded over worker processes: both cores for the same frames.

Without the stack (RunOptions.backend False) a fleet tag's inputs are its subject's world
and its own random stream, and its uplink acknowledges each frame as it is published
(sim.fleet_uplink.LoopbackUplink), so no tag's firmware depends on another's: the tags can
be polled in different processes and give exactly the frames one process gives (tested:
`tests/sim/test_shard.py`). The parent generates the world and builds every tag once
(sim.fleet.Fleet.setup), then forks the workers, so each starts with the same simulation and
keeps only its share of the tags (round robin by subject, so each shard has as many people
going out as at home); each runs the same slices of the same simulated span and sends back
what its tags published, sealed and still hold. Where a run ends depends on the whole
fleet (after the last day it drains until no tag holds a frame, sim.fleet.Fleet.run), so in
the drain the workers are lock-stepped: at each slice every worker says whether its tags
have drained and all go on until all have, as one process would.

The workers are forked, not spawned: the world (roads, routing tables, movements) is built
once, and a fork shares it copy-on-write. Fork is only safe in a process without threads
holding locks, which a fleet-only run is (no broker client, no backend, no home units).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from sim.fleet import Fleet, RunOptions
from sim.generate import Simulation
from sim.scenario import Scenario

Key = tuple[int, int, int]  # (device, boot, seq)


class ShardError(RuntimeError):
    pass


@dataclass
class ShardedResult:
    """What a sharded fleet-only run produced: the parts of sim.fleet.RunResult that are
    plain data (the tags' firmware objects stay in their workers)."""

    sim: Simulation
    options: RunOptions
    workers: int
    frames: dict[Key, bytes]
    pending: dict[Key, bytes]
    sealed: dict[int, set[tuple[int, int]]]
    sim_ms: int
    wall_s: float
    counters: dict[str, int] = field(default_factory=dict)


def shares(indices: list[int], workers: int) -> list[list[int]]:
    """Subjects dealt round robin: neighbours in the list (alike in nothing but index) go
    to different workers, so no worker gets all the busy ones."""
    out: list[list[int]] = [[] for _ in range(max(1, min(workers, len(indices))))]
    for n, i in enumerate(sorted(indices)):
        out[n % len(out)].append(i)
    return out


class ShardFleet(Fleet):
    """One worker's part of the fleet: its share of the tags, and the drain decided with
    the other workers (through the parent) rather than by its own tags alone."""

    conn: Connection | None = None

    def keep_only(self, indices: list[int], conn: Connection) -> None:
        keep = set(indices)
        self.tags = [t for t in self.tags if t.index in keep]
        self.conn = conn

    def _drained(self) -> bool:
        mine = super()._drained()
        if self.conn is None:
            return mine
        self.conn.send(("drained", mine))
        return bool(self.conn.recv())


def _work(fleet: ShardFleet, keep: list[int], conn: Connection) -> None:
    try:
        fleet.keep_only(keep, conn)
        r = fleet.run()
        counters = dict(r.counters)
        conn.send(("ok", r.frames, r.pending, r.sealed, r.sim_ms, counters))
    except BaseException as e:  # the parent reports it; a worker must not hang the run
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def serve_drain(procs: list[tuple[Any, Connection]]) -> list[tuple[Any, ...]]:
    """Answer the workers' drain questions (all drained, or one failed: stop) until each
    has sent its result; returns the results in worker order."""
    done: dict[int, tuple[Any, ...]] = {}
    while len(done) < len(procs):
        asked: dict[int, bool] = {}
        for k, (p, conn) in enumerate(procs):
            if k in done:
                continue
            try:
                msg = conn.recv()
            except EOFError:
                msg = ("error", f"worker {p.pid} died (exit code {p.exitcode})")
            if msg[0] == "drained":
                asked[k] = bool(msg[1])
            else:
                done[k] = msg
        failed = any(m[0] == "error" for m in done.values())
        verdict = failed or all(asked.values())
        for k in asked:
            procs[k][1].send(verdict)
    return [done[k] for k in range(len(procs))]


def run_sharded(scenario: Scenario, options: RunOptions, workers: int = 0) -> ShardedResult:
    """Run a fleet-only scenario over `workers` processes (0: one per core)."""
    if options.backend or options.hil:
        raise ShardError("only a fleet-only run without HIL tags can be sharded")
    workers = workers or os.cpu_count() or 1
    fleet = ShardFleet(scenario, options)
    try:
        fleet.setup()
        parts = shares([t.index for t in fleet.tags], workers)
        ctx = mp.get_context("fork")
        wall0 = time.monotonic()
        procs: list[tuple[Any, Connection]] = []
        for keep in parts:
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_work, args=(fleet, keep, theirs), daemon=True)
            p.start()
            theirs.close()
            procs.append((p, mine))
        answers = serve_drain(procs)
        for p, _ in procs:
            p.join()
        wall_s = time.monotonic() - wall0
    finally:
        fleet.close()
    errors = [a[1] for a in answers if a[0] != "ok"]
    if errors:
        raise ShardError("; ".join(errors))
    frames: dict[Key, bytes] = {}
    pending: dict[Key, bytes] = {}
    sealed: dict[int, set[tuple[int, int]]] = {}
    counters: dict[str, int] = {}
    sim_ms = 0
    for _ok, f, pend, s, ms, c in answers:
        frames.update(f)
        pending.update(pend)
        sealed.update(s)
        sim_ms = max(sim_ms, ms)
        for k, v in c.items():
            counters[k] = counters.get(k, 0) + v
    return ShardedResult(
        fleet.sim, options, len(parts), frames, pending, sealed, sim_ms, wall_s, counters
    )
