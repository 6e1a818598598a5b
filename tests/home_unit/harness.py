"""Running a home unit for integration tests: in-process on its own thread (fast, and its
counters can be read), or as a separate `python -m home_unit run` process that a test can
kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from backend.broker import Mosquitto
from home_unit.clock import Clock, SimClock
from home_unit.daemon import HomeUnit
from home_unit.settings import HomeUnitSettings
from home_unit.sim_radio import SimRadio
from home_unit.sim_radio_peer import SimRadioPeer


def settings_dict(
    unit: int, key: bytes, db: Path, broker: Mosquitto, peer: SimRadioPeer, **over: Any
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "unit": unit,
        "key_hex": key.hex(),
        "state_db": str(db),
        "broker_host": broker.host,
        "broker_port": broker.port,
        "radio": "sim",
        "sim_radio": f"{peer.host}:{peer.port}",
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "poll_s": 0.05,
        "heartbeat_s": 3600,
        "log_level": "warning",
    }
    d.update(over)
    return d


class ThreadUnit:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = HomeUnitSettings.model_validate(settings)
        clock: Clock = SimClock() if self.settings.clock == "sim" else Clock()
        host, port = self.settings.sim_address()
        self.unit = HomeUnit(self.settings, SimRadio(self.settings.unit, host, port, clock), clock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        async def go() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self.unit.run(self._stop)

        try:
            asyncio.run(go())
        except BaseException as e:  # surfaced by stop()
            self.error = e

    def start(self) -> ThreadUnit:
        self._thread.start()
        self._ready.wait(5)
        return self

    def call(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        if self.error is not None:
            raise self.error


class ProcessUnit:
    """The daemon as its own process, started from a JSON settings file."""

    def __init__(self, settings: dict[str, Any], workdir: Path) -> None:
        self.path = workdir / "home-unit.json"
        self.path.write_text(json.dumps(settings))
        self.log = workdir / "home-unit.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessUnit:
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": str(root)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "home_unit", "run", "--config", str(self.path)],
                stdout=log, stderr=log, cwd=root, env=env,
            )  # fmt: skip
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(10)
