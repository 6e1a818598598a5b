"""The backend half of a simulated run: storage, device registry and an ingest worker on the
real broker, with backend "now" on a clock the simulator drives (backend.clock.ManualClock).

The ingest worker is backend.ingest_worker.IngestWorker itself — paho, shared subscription,
batches, manual PUBACKs — run on a thread of this process so the simulator can set its
clock and read its counters. The lock-step barrier (sim/fleet.py) waits for the end-to-end
ACKs of everything published in a slice of simulated time.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from backend.clock import ManualClock
from backend.ingest import RuleSink
from backend.ingest_worker import IngestWorker
from backend.registry import KeyVault, Registry
from backend.settings import Settings
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import HOME_UNIT, TAG


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
        broker_host: str,
        broker_port: int,
        start_s: float,
        database_url: str = "",
        rules: RuleSink | None = None,
        monitoring: bool = True,
    ) -> None:
        self.monitoring = monitoring and rules is None
        self.clock = ManualClock(start_s)
        self.settings = Settings(
            data_dir=data_dir,
            database_url=database_url,
            server_key=secrets.token_hex(32),
            mqtt_host=broker_host,
            mqtt_port=broker_port,
            ingest_group="sim",
            ingest_batch_ms=2,
        )
        self.engine: Engine = make_engine(self.settings.resolved_database_url())
        upgrade(self.engine)
        self.registry = Registry(
            self.engine, KeyVault(bytes.fromhex(self.settings.server_key)), self.clock
        )
        self.rules = rules
        self.sink: Any = None  # backend.rules.sink.MonitoringSink once monitoring is on
        self.worker: IngestWorker | None = None
        self._thread: threading.Thread | None = None

    def register(self, pairs: list[tuple[int, int]]) -> Keys:
        """Register every (tag, home unit) pair with generated keys, paired."""
        tags: dict[int, bytes] = {}
        units: dict[int, bytes] = {}
        for tag, unit in pairs:
            units[unit] = self.registry.register(unit, HOME_UNIT).key
            tags[tag] = self.registry.register(tag, TAG, home_unit=unit).key
        return Keys(tags, units)

    def start(self, timeout: float = 10.0) -> None:
        self.worker = IngestWorker(self.settings, "tagwatch-sim-ingest", self.clock, self.rules)
        if self.monitoring:
            from backend.rules.sink import MonitoringSink

            w = self.worker
            directory = w.ingest.directory

            def key_for(device: int) -> bytes | None:
                dev = directory.get(device)
                return None if dev is None else dev.key

            # As backend.rules.sink.attach wires it, minus the wall-clock timer: the
            # simulator moves the rules' horizon itself, in lock-step (tick()).
            self.sink = MonitoringSink(w.engine, self.clock, w.ingest.publish, key_for)
            w.ingest.rules = self.sink
        self._thread = threading.Thread(target=self.worker.run, name="sim-ingest", daemon=True)
        self._thread.start()
        if not self.worker.connected.wait(timeout):
            raise StackError("the ingest worker did not connect to the broker")

    def tick(self, now: float) -> None:
        """Move the rules' horizon to simulated now (comms loss, grace run out)."""
        if self.sink is not None:
            self.sink.tick(now)

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        self.engine.dispose()
