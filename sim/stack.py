"""The backend half of a simulated run: storage, device registry and ingest workers on the
real brokers, with backend "now" on a clock the simulator drives (backend.clock.ManualClock).

Each ingest worker is backend.ingest_worker.IngestWorker itself — paho, shared subscription
on every broker, batches, manual PUBACKs — with the rules engine behind it, run either on a
thread of this process or (`processes`) in a process of its own, as in production, so that
ingest and rules use the second core instead of sharing one interpreter lock with the fleet
and the home units. Either way the simulator sets the workers' clock (a process reads it from
shared memory: SharedClock), moves the rules' horizon (tick) and sees their counters (the
lock-step barrier waits until they have processed everything published in a slice of
simulated time). The workers log in on the brokers' backend listeners with the backend's
account, as in production; the simulator publishes what the backend would push (home units'
configuration, zones) with that account too (`publish`).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import secrets
import threading
import time
from collections import Counter
from ctypes import c_double
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine

from backend.clock import ManualClock
from backend.ingest import RuleSink
from backend.ingest_worker import IngestWorker
from backend.registry import KeyVault, Registry
from backend.settings import Settings
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import HOME_UNIT, TAG
from firmware import topics

log = structlog.get_logger("sim.stack")

# How long an ingest worker tries to reach a broker once it runs.
CONNECT_S = 30.0
# How long a worker may take to come up before the run is given up: a spawned worker first
# imports the backend, a second or two alone but half a minute with every core busy (a 10-s
# bound failed one start in eight beside six CPU hogs), then tries for CONNECT_S. A worker
# that exits is reported at once, whatever this bound.
START_S = 120.0


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class Keys:
    """Device keys as the registry generated them (the simulator provisions devices)."""

    tags: dict[int, bytes]
    home_units: dict[int, bytes]


class SharedClock(ManualClock):
    """backend.clock.ManualClock whose time is one double in shared memory: the simulator
    sets it, ingest workers in other processes read it (an aligned 8-byte store is atomic)."""

    def __init__(self, start: float, value: Synchronized[float] | None = None) -> None:
        super().__init__(start)
        if value is None:
            value = mp.get_context("spawn").RawValue(c_double, start)  # type: ignore[assignment]
        assert value is not None
        self.value = value

    def now(self) -> float:
        return float(self.value.value)

    def set(self, t: float) -> None:
        self.value.value = t

    def advance(self, seconds: float) -> float:
        with self._lock:
            self.value.value += seconds
            return float(self.value.value)


def monitor(worker: IngestWorker, clock: ManualClock) -> Any:
    """The worker's rules (backend.rules.sink.MonitoringSink), wired as
    backend.rules.sink.attach wires them minus the wall-clock timer: the simulator moves the
    rules' horizon itself, in lock-step (Backend.tick)."""
    from backend.rules.sink import MonitoringSink

    directory = worker.ingest.directory

    def key_for(device: int) -> bytes | None:
        dev = directory.get(device)
        return None if dev is None else dev.key

    sink = MonitoringSink(worker.engine, clock, worker.ingest.publish, key_for)
    worker.ingest.rules = sink
    return sink


def _worker_process(
    settings_json: str,
    client_id: str,
    now: Synchronized[float],
    monitoring: bool,
    conn: Connection,
) -> None:
    """An ingest worker process: the worker runs on a thread; this one answers the
    simulator's requests (tick, state, stop) on `conn` until told to stop."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    settings = Settings.model_validate_json(settings_json)
    clock = SharedClock(float(now.value), now)
    worker = IngestWorker(settings, client_id, clock)
    sink = monitor(worker, clock) if monitoring else None
    thread = threading.Thread(target=worker.run, name="ingest", daemon=True)
    thread.start()
    conn.send(worker.connected.wait(CONNECT_S))
    while True:
        op, arg = conn.recv()
        if op == "tick":
            try:
                if sink is not None:
                    sink.tick(arg)
                conn.send(True)
            except Exception:
                log.exception("rules tick failed", now=arg)
                conn.send(False)
        elif op == "state":
            conn.send((worker.handled, dict(worker.ingest.counts)))
        elif op == "rules":
            conn.send(dict(sink.counts) if sink is not None else {})
        else:  # stop
            worker.stopping.set()
            thread.join(10)
            conn.send((worker.handled, dict(worker.ingest.counts)))
            return


class WorkerProcess:
    """The simulator's handle on an ingest worker run in a process of its own."""

    def __init__(
        self, settings: Settings, client_id: str, clock: SharedClock, monitoring: bool
    ) -> None:
        ctx = mp.get_context("spawn")  # the simulator's threads hold locks a fork would copy
        self.conn, theirs = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_process,
            args=(settings.model_dump_json(), client_id, clock.value, monitoring, theirs),
            name=client_id,
            daemon=True,
        )
        self.proc.start()
        theirs.close()
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()  # as of the last request

    def ask(self, op: str, arg: Any = None, timeout: float = 60.0) -> Any:
        with self._lock:
            self.conn.send((op, arg))
            if not self.conn.poll(timeout):
                raise StackError(f"ingest worker {self.proc.name} did not answer {op!r}")
            return self.conn.recv()

    def ready(self, timeout: float) -> None:
        """Until the worker says it reached a broker. StackError when it says it could not,
        when its process ends (with how it ended), or when it says nothing for timeout."""
        deadline = time.monotonic() + timeout
        while not self.conn.poll(0.5):
            if not self.proc.is_alive():
                break
            if time.monotonic() > deadline:
                raise StackError(f"ingest worker {self.proc.name} did not start in {timeout:.0f} s")
        try:
            connected = self.conn.recv()
        except EOFError:  # its end of the pipe closed: the process is gone
            self.proc.join(5)
            raise StackError(
                f"ingest worker {self.proc.name} exited while starting "
                f"(exit code {self.proc.exitcode})"
            ) from None
        if not connected:
            raise StackError(f"ingest worker {self.proc.name} did not connect to a broker")

    def state(self) -> tuple[int, Counter[str]]:
        handled, counts = self.ask("state")
        self.counts = Counter(counts)
        return int(handled), self.counts

    def rule_counts(self) -> Counter[str]:
        return Counter(self.ask("rules"))

    def stop(self) -> None:
        if self.proc.is_alive():
            try:
                _handled, counts = self.ask("stop", timeout=20.0)
                self.counts = Counter(counts)
            except (StackError, OSError, EOFError):
                self.proc.kill()
        self.proc.join(10)
        self.conn.close()

    def kill(self) -> None:
        """Dies as a killed process does: the brokers keep its sessions and their queues."""
        self.state()
        self.proc.kill()
        self.proc.join(10)
        self.conn.close()


class Backend:
    def __init__(
        self,
        data_dir: Path,
        brokers: list[str],
        start_s: float,
        database_url: str = "",
        rules: RuleSink | None = None,
        monitoring: bool = True,
        workers: int = 1,
        processes: bool = False,
    ) -> None:
        self.monitoring = monitoring and rules is None
        if processes and rules is not None:
            raise StackError("a rule sink object cannot be handed to a worker process")
        self.processes = processes
        self.clock: ManualClock = SharedClock(start_s) if processes else ManualClock(start_s)
        self.settings = Settings(
            data_dir=data_dir,
            database_url=database_url,
            server_key=secrets.token_hex(32),
            mqtt_brokers=brokers,
            mqtt_password=secrets.token_hex(16),
            ingest_group="sim",
            ingest_batch_ms=2,
        )
        self.n_workers = workers
        self.engine: Engine = make_engine(self.settings.resolved_database_url())
        upgrade(self.engine)
        self.registry = Registry(
            self.engine, KeyVault(bytes.fromhex(self.settings.server_key)), self.clock
        )
        self.rules = rules
        self.workers: list[IngestWorker | None] = [None] * workers
        self.sinks: list[Any] = [None] * workers  # MonitoringSink per worker, with monitoring
        self._threads: list[threading.Thread | None] = [None] * workers
        self.procs: list[WorkerProcess | None] = [None] * workers  # with processes
        # Counts of workers stopped by kill_worker(), so that processed stays a total.
        self.retired: Counter[str] = Counter()
        self.ticks_failed = 0

    def register(self, pairs: list[tuple[int, int]]) -> Keys:
        """Register every (tag, home unit) pair with generated keys, paired."""
        tags: dict[int, bytes] = {}
        units: dict[int, bytes] = {}
        for tag, unit in pairs:
            units[unit] = self.registry.register(unit, HOME_UNIT).key
            tags[tag] = self.registry.register(tag, TAG, home_unit=unit).key
        return Keys(tags, units)

    def devices(self) -> list[Any]:
        return self.registry.all()

    def start(self, timeout: float = START_S) -> None:
        for i in range(self.n_workers):
            self.start_worker(i, timeout)

    def start_worker(self, i: int, timeout: float = START_S) -> None:
        """Start worker slot i (again, after kill_worker: it resumes its broker sessions)."""
        client_id = f"tagwatch-sim-ingest-{i}"
        if isinstance(self.clock, SharedClock):
            proc = WorkerProcess(self.settings, client_id, self.clock, self.monitoring)
            self.procs[i] = proc
            proc.ready(timeout)
            return
        worker = IngestWorker(self.settings, client_id, self.clock, self.rules)
        if self.monitoring:
            self.sinks[i] = monitor(worker, self.clock)
        thread = threading.Thread(target=worker.run, name=f"sim-ingest-{i}", daemon=True)
        self.workers[i], self._threads[i] = worker, thread
        thread.start()
        if not worker.connected.wait(min(timeout, CONNECT_S)):
            raise StackError(f"ingest worker {i} did not connect to a broker")

    def kill_worker(self, i: int) -> None:
        """Worker i dies as a killed process does (IngestWorker.abandon on a thread)."""
        proc = self.procs[i]
        if proc is not None:
            proc.kill()
            self.retired.update(proc.counts)
            self.procs[i] = None
            return
        worker, thread = self.workers[i], self._threads[i]
        if worker is None or thread is None:
            return
        worker.abandon()
        thread.join(30)
        self.retired.update(worker.ingest.counts)
        self.workers[i] = self._threads[i] = None

    @property
    def worker(self) -> IngestWorker | None:
        """The first running worker."""
        return next((w for w in self.workers if w is not None), None)

    @property
    def sink(self) -> Any:
        """The first running worker's rule sink (None without monitoring)."""
        return next((s for w, s in zip(self.workers, self.sinks, strict=True) if w), None)

    def tick(self, now: float) -> None:
        """Move the rules' horizon to simulated now (comms loss, grace run out). A tick that
        fails (no database primary for a while) is counted and the next one catches up, as
        backend.rules.sink.RuleTimer does."""
        proc = next((p for p in self.procs if p is not None), None)
        if proc is not None:
            if self.monitoring and not proc.ask("tick", now):
                self.ticks_failed += 1
            return
        sink = self.sink
        if sink is None:
            return
        try:
            sink.tick(now)
        except Exception:
            log.exception("rules tick failed", now=now)
            self.ticks_failed += 1

    def publish(self, items: list[tuple[str, bytes, bool]], timeout: float = 10.0) -> None:
        """Publish (topic, payload, retain) on every broker with the backend's account, as
        the backend pushes configuration and commands: a device on any broker gets them."""
        s = self.settings
        for host, port in s.broker_list():
            c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            c.username_pw_set(s.mqtt_username, s.mqtt_password)
            try:
                c.connect(host, port)
            except OSError:
                continue  # a broker that is down: it has no device to deliver to
            c.loop_start()
            try:
                infos = [c.publish(t, p, qos=topics.QOS, retain=r) for t, p, r in items]
                for info in infos:
                    info.wait_for_publish(timeout)
            finally:
                c.disconnect()
                c.loop_stop()

    def rule_counts(self) -> Counter[str]:
        """The running workers' rules' counters (MonitoringSink.counts) added up."""
        total: Counter[str] = Counter()
        for p in self.procs:
            if p is not None:
                total.update(p.rule_counts())
        for w, sink in zip(self.workers, self.sinks, strict=True):
            if w is not None and sink is not None:
                total.update(sink.counts)
        return total

    @property
    def running(self) -> int:
        """Ingest workers running (on threads or in processes)."""
        return sum(w is not None for w in self.workers) + sum(p is not None for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p is not None:
                p.stop()
        for w in self.workers:
            if w is not None:
                w.stopping.set()
        for t in self._threads:
            if t is not None:
                t.join(10)
        self.engine.dispose()

    def wait_handed_over(self, timeout: float) -> bool:
        """Until every message taken from the broker has been through the rules too (the
        lock-step barrier waits for acknowledgements, which come before the rules run)."""
        deadline = time.monotonic() + timeout
        for w in self.workers:
            while w is not None and w.handled < w.ingest.counts["received"]:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.0005)
        for p in self.procs:
            while p is not None:
                handled, counts = p.state()
                if handled >= counts["received"]:
                    break
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.0005)
        return True

    def counts(self) -> Counter[str]:
        """Every worker's ingest counters added up (those killed included)."""
        total = Counter(self.retired)
        for w in self.workers:
            if w is not None:
                total.update(w.ingest.counts)
        for p in self.procs:
            if p is not None:
                total.update(p.state()[1] if p.proc.is_alive() else p.counts)
        return total
