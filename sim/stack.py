"""The backend half of a simulated run: storage, device registry and ingest workers on the
real brokers, with backend "now" on a clock the simulator drives (backend.clock.ManualClock).

Each ingest worker is backend.ingest_worker.IngestWorker itself — paho, shared subscription
on every broker, batches, manual PUBACKs — run on a thread of this process so the simulator
can both set its clock and see its counters (the lock-step barrier waits until they have
processed everything published in a slice of simulated time). The workers log in on the
brokers' backend listeners with the backend's account, as in production; the simulator
publishes what the backend would push (home units' configuration, zones) with that account
too (`publish`).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
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


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class Keys:
    """Device keys as the registry generated them (the simulator provisions devices)."""

    tags: dict[int, bytes]
    home_units: dict[int, bytes]


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
    ) -> None:
        self.monitoring = monitoring and rules is None
        self.clock = ManualClock(start_s)
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

    def start(self, timeout: float = 10.0) -> None:
        for i in range(self.n_workers):
            self.start_worker(i, timeout)

    def start_worker(self, i: int, timeout: float = 30.0) -> None:
        """Start worker slot i (again, after kill_worker: it resumes its broker sessions)."""
        worker = IngestWorker(self.settings, f"tagwatch-sim-ingest-{i}", self.clock, self.rules)
        if self.monitoring:
            from backend.rules.sink import MonitoringSink

            directory = worker.ingest.directory

            def key_for(device: int) -> bytes | None:
                dev = directory.get(device)
                return None if dev is None else dev.key

            # As backend.rules.sink.attach wires it, minus the wall-clock timer: the
            # simulator moves the rules' horizon itself, in lock-step (tick()).
            self.sinks[i] = MonitoringSink(
                worker.engine, self.clock, worker.ingest.publish, key_for
            )
            worker.ingest.rules = self.sinks[i]
        thread = threading.Thread(target=worker.run, name=f"sim-ingest-{i}", daemon=True)
        self.workers[i], self._threads[i] = worker, thread
        thread.start()
        if not worker.connected.wait(timeout):
            raise StackError(f"ingest worker {i} did not connect to a broker")

    def kill_worker(self, i: int) -> None:
        """Worker i dies as a killed process does (IngestWorker.abandon)."""
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

    def stop(self) -> None:
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
        return True

    def counts(self) -> Counter[str]:
        """Every worker's ingest counters added up (those killed included)."""
        total = Counter(self.retired)
        for w in self.workers:
            if w is not None:
                total.update(w.ingest.counts)
        return total
