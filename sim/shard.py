"""The fleet sharded over worker processes: both cores for the firmware.

Fleet only (`run_sharded`): without the stack (RunOptions.backend False) a fleet tag's
inputs are its subject's world and its own random stream, and its uplink acknowledges each
frame as it is published (sim.fleet_uplink.LoopbackUplink), so no tag's firmware depends on
another's: the tags can be polled in different processes and give exactly the frames one
process gives (tested: `tests/sim/test_shard.py`). The parent generates the world and builds
every tag once (sim.fleet.Fleet.setup), then forks the workers, so each starts with the same
simulation and keeps only its share of the tags (round robin by subject, so each shard has
as many people going out as at home); each runs the same slices of the same simulated span
and sends back what its tags published, sealed and still hold. Where a run ends depends on
the whole fleet (after the last day it drains until no tag holds a frame,
sim.fleet.Fleet.run), so in the drain the workers are lock-stepped: at each slice every
worker says whether its tags have drained and all go on until all have, as one process
would.

The workers are forked, not spawned: the world (roads, routing tables, movements) is built
once, and a fork shares it copy-on-write. Fork is only safe in a process without threads
holding locks, which a fleet-only run is (no broker client, no backend, no home units).

Through the stack (`RunOptions.shards`, `StackShards`): the runner forks the workers first
thing in its set-up, before it starts a thread, the broker or the backend; each worker then
builds its share of the fleet's tags as the runner would (sim.fleet.Fleet.fleet_tag), with a
broker connection of its own (sim.fleet_uplink.SharedUplink under an account of its own,
reading only its tags' down topics) and a simulator radio of its own (a
sim.home_units.HomeUnitFarm used for its air only: its tags' home units, still in the home
units' process, connect to it). The runner keeps the backend, the home units' process, the
mains, the HIL tags and the clock, and lock-steps the workers with one request a slice (each
message to a worker costs a wake-up, which on a busy machine is what a slice waits for):
each worker polls its tags for the slice and waits until the backend has acknowledged every
frame they published (the HIL tags run meanwhile); then, with the backend's clock at the
slice's end, the workers whose tags' beacons began a relay tick those units, and the runner
waits for the relays; every unit tick goes to the workers too. So the barrier waits for each
shard's frames in parallel, and a tag's firmware sees what it saw in one process, but for
one thing: the fleet's frames are acknowledged before the backend's clock moves to the
slice's end, as those ingest takes during a one-process run's polls are (dated up to a slice
earlier; a tag takes no time from an ACK once its clock is set). The frames are those of one
process where the stack is deterministic (the full stack is not to the position: see
docs/simulator.md, Determinism); `tests/sim/test_shard.py` runs a small day both ways and
compares what was stored and the alerts raised.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from sim.fleet import GATEWAY, Fleet, RunOptions, TagParts
from sim.fleet_uplink import SharedUplink
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


# How long the runner waits for a worker's answer to one request: a slice's polls of a
# thousand tags on a loaded machine take seconds; a worker that takes this long has hung.
ANSWER_S = 300.0


def _step(fleet: Fleet, t: int, t1: int) -> tuple[dict[str, int], bool]:
    """A slice's polls and the wait for their frames' ACKs; whether a unit's relay is to be
    settled at the slice's end (then the runner asks, once the backend's clock is there)."""
    fleet.poll_until(t, t1)
    fleet.wait_acked()
    assert fleet.uplink is not None
    seen = {"published": fleet.uplink.published, "beacons": fleet.counters["beacons"]}
    return seen, bool(fleet.farm is not None and fleet.farm.to_settle)


def _units(fleet: Fleet, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for u in fleet.farm.on_air if fleet.farm is not None else []:
        if not fleet.farm.air.wait_unit(u, max(0.1, deadline - time.monotonic())):
            raise TimeoutError(f"home unit {u} did not connect to its shard's radio")


def _tick(fleet: Fleet, t: float) -> None:
    if fleet.farm is not None:
        fleet.farm.tick(t)


# What a full-stack worker does for the runner, by request.
_OPS: dict[str, Callable[..., Any]] = {
    "units": _units,
    "start": Fleet.start_polls,
    "step": _step,
    "settle": lambda fleet, t: fleet.settle(t, []),
    "tick": _tick,
    "drained": Fleet.tags_drained,
    "result": Fleet.tag_parts,
}


def _build(fleet: Fleet, keep: list[int], args: tuple[Any, ...]) -> int | None:
    """The worker's tags, broker connection and air; the air's port (None: no units)."""
    from sim.home_units import HomeUnitFarm

    fleet.keys, fleet.unit_keys, fleet.endpoints, name, password = args
    devices = [fleet.sim.subjects[i].tag_id for i in keep]
    up = fleet.uplink = fleet.shared_uplink(name, password, devices)
    fleet.tags = [fleet.fleet_tag(i) for i in keep]
    up.start()  # subscribed once every tag has its box
    if not fleet.o.home_units:
        return None
    # The farm for its air and its tags' side of the radio; its own power-supply files are
    # scratch (the runner's farm switches the units' mains).
    shm = Path("/dev/shm")
    scratch = tempfile.mkdtemp(prefix="tagwatch-shard-", dir=shm if shm.is_dir() else None)
    fleet.farm = HomeUnitFarm(Path(scratch), fleet.endpoints)
    for tag in fleet.tags:
        fleet.farm.add(fleet.unit_spec(tag.index), tag.radio)
    fleet.farm.air.start()
    return int(fleet.farm.air.port)


def _stack_work(fleet: Fleet, keep: list[int], conn: Connection) -> None:
    """A full-stack worker: builds its share of the fleet when told, then answers the
    runner's requests (_OPS) until told to stop."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    try:
        _op, args = conn.recv()
        conn.send(("ok", _build(fleet, keep, args)))
        while True:
            op, args = conn.recv()
            if op == "stop":
                break
            conn.send(("ok", _OPS[op](fleet, *args)))
    except BaseException as e:  # the runner reports it; a worker must not hang the run
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        if isinstance(fleet.uplink, SharedUplink):
            fleet.uplink.stop()
        if fleet.farm is not None:
            fleet.farm.air.close()
            shutil.rmtree(fleet.farm.workdir, ignore_errors=True)
        conn.close()


class StackShards:
    """The runner's handle on a full-stack run's fleet workers (see the module's doc)."""

    def __init__(self, parts: list[list[int]], procs: list[tuple[Any, Connection]]) -> None:
        self.parts = parts
        self.procs = procs
        self.ports: dict[int, int] = {}  # subject -> the simulator radio its unit joins
        self.seen: list[dict[str, int]] = []  # each worker's counts after its last slice
        self.relaying: list[int] = []  # workers whose tags began a relay this slice
        self.stopped = False

    @classmethod
    def fork(cls, fleet: Fleet, indices: list[int], workers: int) -> StackShards:
        parts = shares(indices, workers)
        ctx = mp.get_context("fork")
        procs: list[tuple[Any, Connection]] = []
        for k, keep in enumerate(parts):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(
                target=_stack_work, args=(fleet, keep, theirs), name=f"sim-shard-{k}", daemon=True
            )
            p.start()
            theirs.close()
            procs.append((p, mine))
        return cls(parts, procs)

    def gateways(self) -> list[str]:
        """Each worker's broker account (one client id each)."""
        return [f"{GATEWAY}-{k}" for k in range(len(self.parts))]

    def _send(self, op: str, *args: Any) -> None:
        for _p, conn in self.procs:
            conn.send((op, args))

    @staticmethod
    def _answer(p: Any, conn: Connection) -> Any:
        try:
            if not conn.poll(ANSWER_S):
                raise ShardError(f"{p.name} did not answer in {ANSWER_S:.0f} s")
            msg = conn.recv()
        except (EOFError, OSError):
            msg = ("error", f"died (exit code {p.exitcode})")
        if msg[0] != "ok":
            raise ShardError(f"{p.name}: {msg[1]}")
        return msg[1]

    def _gather(self) -> list[Any]:
        out: list[Any] = []
        errors: list[str] = []
        for p, conn in self.procs:
            try:
                out.append(self._answer(p, conn))
            except ShardError as e:
                errors.append(str(e))
        if errors:
            raise ShardError("; ".join(errors))
        return out

    def _all(self, op: str, *args: Any) -> list[Any]:
        self._send(op, *args)
        return self._gather()

    def build(self, fleet: Fleet) -> None:
        """Each worker builds its tags with the keys and brokers the runner set up."""
        for name, (_p, conn) in zip(self.gateways(), self.procs, strict=True):
            args = (fleet.keys, fleet.unit_keys, fleet.endpoints, name, fleet.gateways[name])
            conn.send(("build", args))
        for keep, port in zip(self.parts, self._gather(), strict=True):
            if port is not None:
                self.ports.update(dict.fromkeys(keep, port))

    def air_ports(self) -> dict[int, int]:
        return self.ports

    def wait_units(self, timeout: float = 60.0) -> None:
        self._all("units", timeout)

    def start_polls(self, start: int, stop: int) -> None:
        self._all("start", start, stop)

    def poll(self, t: int, t1: int) -> None:
        """Start the slice: each worker polls its tags and waits for their frames' ACKs
        (one request a slice: every message to a worker costs a wake-up, which on a busy
        machine is what bounds a slice); `polled` waits for them."""
        self._send("step", t, t1)

    def polled(self) -> None:
        answers = self._gather()
        self.seen = [seen for seen, _ in answers]
        self.relaying = [k for k, (_, relay) in enumerate(answers) if relay]

    def settle(self, t: float) -> list[int]:
        """The rest of the barrier (sim.fleet.Fleet.settle) in the workers whose tags began
        a relay this slice: their units ticked to t, now that the backend's clock is there;
        the units they ticked."""
        for k in self.relaying:
            self.procs[k][1].send(("settle", (t,)))
        units: list[int] = []
        for k in self.relaying:
            units += self._answer(*self.procs[k])
        return sorted(units)

    def tick(self, t: float) -> None:
        self._all("tick", t)

    def drained(self) -> bool:
        return all(self._all("drained"))

    def live(self) -> dict[str, int]:
        return {k: sum(s[k] for s in self.seen) for k in ("published", "beacons")}

    def results(self) -> list[TagParts]:
        return self._all("result")

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for p, conn in self.procs:
            with contextlib.suppress(OSError):
                conn.send(("stop", ()))
            p.join(20)
            if p.is_alive():
                p.kill()
                p.join(5)
            conn.close()
