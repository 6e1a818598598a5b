"""Home units in a simulated run: the real daemon (home_unit.daemon.HomeUnit) with the
simulator radio, many of them on one asyncio loop in a thread, and the simulator's end of
the radio socket (home_unit.sim_radio_peer.SimRadioPeer).

The simulator plays the air between tags and units: each tag's beacon goes to its unit only
if the RF model (sim.rf.receive, distance from the unit and the walls between) says it was
heard, with the RSSI the unit would measure. What the unit then asks of the tag (take this
acknowledgement, hand over your buffered frames, take this downlink) reaches the tag's radio
(sim.fleet_radio.TagRadio). Each unit gets its configuration as the backend would push it
(retained, signed with the unit's key) and its mains power from a power-supply directory the
simulator writes, so an unplugged unit is seen through the daemon's own sensor code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from firmware import beacon as bc
from firmware import topics
from firmware.frame import DecodeError
from home_unit import pushed_config
from home_unit.clock import SimClock
from home_unit.daemon import HomeUnit
from home_unit.settings import HomeUnitSettings
from home_unit.sim_radio import SimRadio
from home_unit.sim_radio_peer import SimRadioPeer, TagSide
from sim.fleet_radio import TagRadio

# In RF mode (and at rest, unanswered, in GPS mode) the simulated tags beacon every 60 s
# (firmware beacon_rf_s, relaxed from 30 s so that a simulated day stays minutes long); away
# timeout and lease are scaled to it.
AWAY_TIMEOUT_S = 300.0
LEASE_S = 300  # the lease in each home ack: five relaxed (60 s) beacons may go unheard
# A simulated unit reads its power supply once a simulated hour (the unit's SimClock):
# the farm tells it of every change at once (set_mains), so polling only re-reads unchanged
# files; polled every 50 ms of real time instead, each unit cost the run a read 20 times a
# wall second, more the more units and the longer the run.
SENSOR_POLL_S = 3600.0
# A unit's GATT request to a fleet tag waits for the runner's answer in real time, which
# says nothing of the simulated radio: the runner answers between polls and while its other
# threads and the units' loop get the processor, longer the more tags and units share the
# machine. The real radio's 5 s failed 292 of 89,000 contacts at 1,000 tags on a loaded
# machine (tags left unacknowledged at home); only a stalled runner fails one now.
REQUEST_STALL_S = 60.0


def wait_progress(missing: Callable[[], list[int]], timeout: float, what: str) -> None:
    """Wait until `missing()` (the units not yet there) is empty, failing only once it has
    not shrunk for `timeout` seconds: a thousand units take longer to start than ten, so a
    bound on the whole start-up fails a large farm that is merely busy, while a stall is
    still caught as soon in a large farm as in a small one."""
    left = missing()
    deadline = time.monotonic() + timeout
    while left:
        if time.monotonic() > deadline:
            raise TimeoutError(f"home units {left[:5]} ({len(left)} in all) did not {what}")
        time.sleep(0.02)
        now = missing()
        if len(now) < len(left):
            deadline = time.monotonic() + timeout
        left = now


class FleetTagSide(TagSide):
    """The tags as their home units reach them, by the address in their beacons."""

    def __init__(self) -> None:
        self.radios: dict[str, TagRadio] = {}

    def on_ack(self, unit: int, address: str, data: bytes) -> str | None:
        r = self.radios.get(address)
        if r is None:
            return "no_tag"
        return r.take_ack(unit, data)

    def on_offload(self, unit: int, address: str) -> list[bytes] | str:
        r = self.radios.get(address)
        if r is None:
            return "no_tag"
        return r.offload(unit)

    def on_downlink(self, unit: int, address: str, data: bytes) -> str | None:
        r = self.radios.get(address)
        if r is None:
            return "no_tag"
        return r.take_downlink(unit, data)


class Air(SimRadioPeer):
    """SimRadioPeer with a lock-step tick to every unit at once (send all, then wait)."""

    def tick_all(self, units: Iterable[int], t: float, timeout: float = 20.0) -> None:
        units = list(units)
        with self._cond:
            for u in units:
                self._tocks.pop(u, None)
        for u in units:
            self._conn(u).send({"op": "tick", "time": t})
        with self._cond:
            ok = self._cond.wait_for(lambda: all(self._tocks.get(u) == t for u in units), timeout)
        if not ok:
            late = [u for u in units if self._tocks.get(u) != t]
            raise TimeoutError(f"home units {late[:5]} did not answer tick {t}")


@dataclass
class UnitSpec:
    unit: int
    key: bytes
    tag: int
    tag_key: bytes
    curfew: tuple[str, str]
    tz: str
    # The simulator radio the unit connects to: None for the farm's own (Air, the fleet tags);
    # a HIL tag's peer otherwise (sim.hil.HilTag.attach_home: the tag ticks that unit itself).
    radio_port: int | None = None


class UnitHost:
    """The units' daemons (home_unit.daemon.HomeUnit) on one asyncio loop in a thread, and
    what the farm asks of them from other threads."""

    def __init__(self, workdir: Path, brokers: list[str], specs: list[UnitSpec], air: int):
        self.workdir = workdir
        self.brokers = brokers
        self.specs = specs
        self.air = air  # the port of the farm's air (units without a radio_port of their own)
        self.units: dict[int, HomeUnit] = {}
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._done: list[asyncio.Future[None]] = []

    def start(self, t0: float, timeout: float) -> None:
        ready = threading.Event()

        async def main() -> None:
            self._stop = asyncio.Event()
            for s in self.specs:
                port = s.radio_port or self.air
                settings = HomeUnitSettings(
                    unit=s.unit,
                    key_hex=s.key.hex(),
                    state_db=self.workdir / f"hu-{s.unit}" / "state.db",
                    brokers=self.brokers,
                    reconnect_min_s=0.2,
                    reconnect_max_s=2.0,
                    radio="sim",
                    sim_radio=f"127.0.0.1:{port}",
                    clock="sim",
                    power_supply_dir=supply(self.workdir, s.unit),
                    sensor_poll_s=SENSOR_POLL_S,
                    log_level="warning",
                )
                clock = SimClock(t0)
                radio = SimRadio(s.unit, "127.0.0.1", port, clock, REQUEST_STALL_S)
                unit = HomeUnit(settings, radio, clock)
                self.units[s.unit] = unit
                self._done.append(asyncio.ensure_future(unit.run(self._stop)))
            ready.set()
            await asyncio.gather(*self._done, return_exceptions=True)

        def on_error(loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
            # Once stopping, a unit that has closed its store may still get a message paho
            # queued just before (the daemon does not drop those); that is shutdown noise.
            if self._stop is not None and self._stop.is_set():
                return
            loop.default_exception_handler(ctx)

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.set_exception_handler(on_error)
            self.loop.run_until_complete(main())

        self._thread = threading.Thread(target=run, name="sim-home-units", daemon=True)
        self._thread.start()
        specs = [s.unit for s in self.specs]
        wait_progress(lambda: [] if ready.is_set() else specs[len(self.units) :], timeout, "start")

    @property
    def running(self) -> bool:
        return self._stop is not None and not self._stop.is_set()

    def unconfigured(self) -> list[int]:
        """Units without a configuration yet (it comes retained from the broker)."""
        return [s.unit for s in self.specs if self.units[s.unit].config is None]

    def sensors_changed(self, unit: int) -> None:
        self.loop.call_soon_threadsafe(self.units[unit].sensors_changed)

    def mains(self, unit: int) -> bool | None:
        """The unit's mains as it last read it."""
        known = self.units[unit].reports.known
        return None if known is None else known.mains

    def waiting(self, units: list[int]) -> list[int]:
        """Of these units, those online with frames queued that the backend has not yet
        acknowledged."""

        def relaying(u: int) -> bool:
            unit = self.units[u]
            online = unit.link is not None and unit.link.connected
            return online and unit.counters["relay_queued"] > unit.counters["relay_freed"]

        return [u for u in units if relaying(u)]

    def counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for u in self.units.values():
            for k, n in u.counters.items():
                out[k] = out.get(k, 0) + n
        return out

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(20)


def _host_process(
    workdir: Path,
    brokers: list[str],
    specs: list[UnitSpec],
    air: int,
    t0: float,
    timeout: float,
    conn: Connection,
) -> None:
    """A process of home units: a UnitHost, answering the farm's requests on `conn`."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    host = UnitHost(workdir, brokers, specs, air)
    host.start(t0, timeout)
    started = time.process_time()  # the interpreter's imports and the units built

    def with_cpu(counters: dict[str, int]) -> dict[str, int]:
        # The process's CPU time since: what the units cost the run (the bench's row).
        return counters | {"process_cpu_ms": round((time.process_time() - started) * 1000)}

    conn.send(True)
    while True:
        op, arg = conn.recv()
        if op == "stop":
            host.stop()
            conn.send(with_cpu(host.counters()))
            return
        res = getattr(host, op)(*arg)
        conn.send(with_cpu(res) if op == "counters" else res)


class UnitHostProcess:
    """A UnitHost in a process of its own, so that the units' daemons use the second core.
    The units reach the farm's air and the brokers over loopback sockets as they do from a
    thread; only the farm's requests cross the pipe."""

    def __init__(self, workdir: Path, brokers: list[str], specs: list[UnitSpec], air: int):
        self._args = (workdir, brokers, specs, air)
        self._ctx = mp.get_context("spawn")  # the simulator's threads hold locks a fork copies
        self.conn, self._theirs = self._ctx.Pipe()
        self.proc: Any = None
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self.running = False

    def start(self, t0: float, timeout: float) -> None:
        self.proc = self._ctx.Process(
            target=_host_process,
            args=(*self._args, t0, timeout, self._theirs),
            name="sim-home-units",
            daemon=True,
        )
        self.proc.start()
        self._theirs.close()
        # However long the interpreter's imports and the units' construction take: the
        # process bounds its own start-up by progress (wait_progress) and ends if it stalls.
        while not self.conn.poll(1.0):
            if not self.proc.is_alive():
                raise TimeoutError("the home units' process did not start")
        try:
            started = self.conn.recv()
        except EOFError:
            started = False
        if not started:
            raise TimeoutError("the home units' process did not start")
        self.running = True

    def _ask(self, op: str, *arg: Any) -> Any:
        with self._lock:
            self.conn.send((op, arg))
            if not self.conn.poll(60.0):
                raise TimeoutError(f"the home units' process did not answer {op!r}")
            return self.conn.recv()

    def unconfigured(self) -> list[int]:
        return list(self._ask("unconfigured"))

    def sensors_changed(self, unit: int) -> None:
        self._ask("sensors_changed", unit)

    def mains(self, unit: int) -> bool | None:
        known = self._ask("mains", unit)
        return None if known is None else bool(known)

    def waiting(self, units: list[int]) -> list[int]:
        return list(self._ask("waiting", units))

    def counters(self) -> dict[str, int]:
        if self.running:
            self._counters = dict(self._ask("counters"))
        return self._counters

    def stop(self) -> None:
        if self.running:
            self.running = False
            try:
                self._counters = dict(self._ask("stop"))
            except (TimeoutError, OSError, EOFError):
                self.proc.kill()
        if self.proc is not None:
            self.proc.join(20)


def supply(workdir: Path, unit: int) -> Path:
    """The power-supply directory the simulator writes for a unit (its sensors read it)."""
    return workdir / f"hu-{unit}" / "power_supply"


class HomeUnitFarm:
    """`process`: the units in a process of their own (UnitHostProcess), else on a thread
    of this one (UnitHost, whose units a test can reach: `units`)."""

    def __init__(self, workdir: Path, brokers: list[str], process: bool = False) -> None:
        self.workdir = workdir
        self.brokers = brokers  # device listeners, "host:port", in the order units try them
        self.process = process
        self.tags = FleetTagSide()
        self.air = Air(self.tags)
        self.host: UnitHost | UnitHostProcess | None = None
        self.specs: dict[int, UnitSpec] = {}
        # Units sent a beacon asking for an offload since the last settle(): their contacts
        # and relays are finished in lock-step at the slice end.
        self.to_settle: set[int] = set()
        self.settles = 0
        self.settle_timeouts = 0
        self.mains: dict[int, bool] = {}
        self.mains_timeouts = 0

    @property
    def units(self) -> dict[int, HomeUnit]:
        """The running units' daemons, when they run on a thread of this process."""
        return self.host.units if isinstance(self.host, UnitHost) else {}

    def set_mains(self, unit: int, on: bool, timeout: float = 10.0) -> None:
        """Switch a unit's mains and, once the units run, tell the unit that its sensors
        changed (as a udev power-supply event would) and wait (real time) until it has read
        the change through its own sensor code: the runner moves on only then, so an outage's
        start and end are stamped in the slices they happened in however busy the machine
        (a plug-in noticed late made a 3-minute outage look like more than the 5 minutes'
        grace: a false alert)."""
        if self.mains.get(unit) == on:
            return
        self.mains[unit] = on
        d = supply(self.workdir, unit) / "AC"
        d.mkdir(parents=True, exist_ok=True)
        (d / "type").write_text("Mains\n")
        tmp = d / "online.tmp"
        tmp.write_text("1\n" if on else "0\n")
        tmp.replace(d / "online")
        host = self.host
        if host is None or not host.running:
            return
        host.sensors_changed(unit)
        deadline = time.monotonic() + timeout
        while host.mains(unit) != on:
            if time.monotonic() > deadline:
                self.mains_timeouts += 1
                return
            time.sleep(0.0005)

    def add(self, spec: UnitSpec, radio: TagRadio | None = None) -> None:
        """A unit for a fleet tag (its TagRadio, on the farm's air) or, with
        spec.radio_port, for a HIL tag on that tag's own simulator radio."""
        self.specs[spec.unit] = spec
        if radio is not None:
            self.tags.radios[radio.address] = radio
        self.set_mains(spec.unit, True)

    @property
    def on_air(self) -> list[int]:
        """The units on the farm's own air (the fleet tags'), which the farm ticks."""
        return [u for u, s in self.specs.items() if s.radio_port is None]

    def push_configs(
        self, publish: Callable[[list[tuple[str, bytes, bool]]], None], issued: int
    ) -> None:
        """Publish each unit's configuration (retained, on every broker), as the backend does."""
        items: list[tuple[str, bytes, bool]] = []
        days: list[pushed_config.Day] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        for s in self.specs.values():
            cfg = pushed_config.UnitConfig(
                unit=s.unit,
                version=1,
                issued=issued,
                tags=[
                    pushed_config.PairedTag(tag=s.tag, beacon_key=bc.beacon_key(s.tag_key).hex())
                ],
                curfews=[
                    pushed_config.CurfewWindow(
                        tag=s.tag, days=days, start=s.curfew[0], end=s.curfew[1], tz=s.tz
                    )
                ],
                thresholds=pushed_config.ThresholdSettings(
                    away_timeout_s=AWAY_TIMEOUT_S, lease_s=LEASE_S
                ),
            )
            items.append((topics.home_config(s.unit), pushed_config.sign(cfg, s.key), True))
        publish(items)

    def start(self, t0: float, timeout: float = 30.0) -> None:
        """Start every unit with its clock at simulated time t0 (a unit signs its LINK
        online frame as it connects to the broker, before the first tick could reach it).
        `timeout`: how long start-up may go without one more unit started, connected or
        configured (wait_progress)."""
        self.air.start()
        specs = list(self.specs.values())
        kind = UnitHostProcess if self.process else UnitHost
        self.host = host = kind(self.workdir, self.brokers, specs, self.air.port)
        host.start(t0, timeout)
        on_air = self.on_air
        wait_progress(
            lambda: [u for u in on_air if not self.air.connected(u)],
            timeout,
            "connect to the simulator radio",
        )
        # Configured (from the retained message) before the run starts.
        wait_progress(host.unconfigured, timeout, "get their configuration")

    def tick(self, t: float) -> None:
        units = self.on_air
        if units:
            self.air.tick_all(units, t)

    def beacon(self, unit: int, address: str, adv: bytes, rssi: int, t: float) -> None:
        self.air.send_beacon(unit, address, adv, rssi, t)
        payload = bc.manufacturer_payload(adv)
        if payload is not None:
            with contextlib.suppress(DecodeError):
                b = bc.parse_beacon(payload)[0]
                if b.status & bc.ST_PENDING or b.pending:
                    self.to_settle.add(unit)

    def settle(self, t: float, ticked: Iterable[int] = (), timeout: float = 10.0) -> None:
        """Lock-step for the relay: the units sent a beacon with frames pending since the
        last call finish their contacts (a tick at t: the simulator answers their GATT
        requests meanwhile, from other threads, so the caller must not hold the fleet's lock)
        and wait until the backend has acknowledged every frame they queued, so a relayed
        frame (a tamper at home) is stored at the simulated time it was offloaded, not
        whenever real time lets the runner's slices stop outrunning the relay. `ticked`:
        units already ticked to t by their own tag (a HIL tag's), waited for the same way."""
        units = sorted(self.to_settle)
        self.to_settle.clear()
        if units:
            self.settles += 1
            self.air.tick_all(units, t)
        units += ticked
        deadline = time.monotonic() + timeout
        # Nothing relayed this slice: no question to the units' process (a round trip each
        # slice otherwise).
        while units and self.host is not None and self.host.waiting(units):
            if time.monotonic() > deadline:
                self.settle_timeouts += 1
                return
            time.sleep(0.0005)

    def counters(self) -> dict[str, int]:
        return self.host.counters() if self.host is not None else {}

    def stop(self) -> None:
        if self.host is not None:
            self.host.stop()
        self.air.close()
