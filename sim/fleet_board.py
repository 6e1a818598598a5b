"""The fleet board: a CPython implementation of the firmware's board (HAL) interface, so the
real tag application (firmware.app.App) runs in-process, thousands at once, fed by the
simulated world.

Every input comes from the world at the board's current simulated time:

- GNSS: while the receiver is powered, each whole second becomes that second's NMEA (epochs
  written by sim.nmea.Receiver in the tag's receiver profile: u-blox, MTK, SiRF, ...) of a fix
  from the sim.gnss error model at the subject's true position and environment (indoors often
  none, foil-shielded never), after a time to first fix drawn from the cold/warm/hot start
  model. The firmware's own NMEA parser reads them.
- Sensors: strap and case from the scenario's injections; the cell voltage from the
  simulated battery level; the charger from the charging intervals; the accelerometer
  counts motion while the subject travels.
- Modem: coverage from sim.cellular; publishes go through one shared MQTT connection for
  the whole fleet (sim.fleet_uplink); the broker's persistent session is modelled by keeping
  each tag's downlinks until its modem is online.
- Radio: BLE beacons the home unit hears (sim.fleet_radio.TagRadio).
- Flash: an in-memory filesystem with the firmware's Files interface.

Nothing here sleeps or reads the wall clock; the fleet runner (sim.fleet) sets `now`.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from firmware import board as hal
from firmware import frame as fr
from firmware import ticks
from firmware.battery import CURVE
from firmware.files import Files
from sim import gnss, nmea
from sim.params import GnssParams

BOARD_DEF = Path(__file__).resolve().parent.parent / "hw" / "boards" / "virtual.json"
CONNECT_DELAY_MS = 5000  # network registration + MQTT connect (as sim/hil.py)


class MemFiles(Files):
    """The firmware's Files interface over a dict: a flash partition that costs no disk I/O.
    Appends and replaces are atomic here, as littlefs makes them on the device."""

    def __init__(self, root: str = "/flash/tw") -> None:
        self.root = root
        self.data: dict[str, bytearray] = {}

    def listdir(self) -> list[str]:
        return list(self.data)

    def size(self, name: str) -> int:
        d = self.data.get(name)
        return -1 if d is None else len(d)

    def read(self, name: str, offset: int = 0, n: int = -1) -> bytes:
        d = self.data.get(name)
        if d is None:
            raise OSError(2, "no such file", name)
        return bytes(d[offset:] if n < 0 else d[offset : offset + n])

    def append(self, name: str, data: bytes) -> None:
        self.data.setdefault(name, bytearray()).extend(data)

    def replace(self, name: str, data: bytes) -> None:
        self.data[name] = bytearray(data)

    def remove(self, name: str) -> None:
        self.data.pop(name, None)


def mv_from_level(level: float) -> int:
    """Cell voltage for a state of charge (the inverse of firmware.battery's curve)."""
    pct = max(0.0, min(100.0, level * 100.0))
    for (v0, p0), (v1, p1) in itertools.pairwise(CURVE):
        if pct <= p1:
            return int(v0 + (pct - p0) * (v1 - v0) / max(p1 - p0, 1))
    return CURVE[-1][0]


@dataclass
class WorldView:
    """What one tag's board can ask the world (the fleet runner supplies these)."""

    position: Callable[[int], tuple[float, float, int, bool]]  # t_ms -> (x, y, env, moving)
    to_latlon: Callable[[float, float], tuple[float, float]]
    strap_open: Callable[[int], bool]
    case_open: Callable[[int], bool]
    battery: Callable[[int], float]  # level fraction
    charging: Callable[[int], bool]
    covered: Callable[[int], bool]


class DownlinkBox:
    """A tag's downlinks held by the broker's persistent session until its modem is online."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []


class Uplink(Protocol):
    """What the fleet modem publishes through (sim.fleet_uplink.SharedUplink)."""

    def publish(self, device: int, topic: str, payload: bytes) -> bool: ...


class FleetModem:
    def __init__(self, board: FleetBoard, uplink: Uplink, box: DownlinkBox) -> None:
        self.board = board
        self.uplink = uplink
        self.box = box
        self.state = hal.MODEM_OFF
        self.ready_ms = 0
        self.on = False
        self.published = 0
        self.sessions = 0

    def power(self, on: bool) -> None:
        self.on = on
        if not on:
            self.state = hal.MODEM_OFF

    def connect(self, broker: str, client_id: str, password: str, down_topic: str) -> None:
        # The fleet's one shared connection stands in for every tag's session, whichever
        # broker the firmware names (sim.fleet_uplink fails over for all of them).
        self.state = hal.MODEM_CONNECTING
        self.ready_ms = self.board.sim_ms + CONNECT_DELAY_MS

    def _update(self) -> None:
        b = self.board
        if self.state == hal.MODEM_CONNECTING and b.sim_ms >= self.ready_ms:
            ok = b.world.covered(b.sim_ms)
            self.state = hal.MODEM_ONLINE if ok else hal.MODEM_FAILED
            self.sessions += int(ok)
        elif self.state == hal.MODEM_ONLINE and not b.world.covered(b.sim_ms):
            self.state = hal.MODEM_FAILED  # coverage lost mid-session

    def status(self) -> int:
        self._update()
        return self.state

    def publish(self, topic: str, payload: bytes) -> bool:
        self._update()
        if self.state != hal.MODEM_ONLINE:
            return False
        if not self.uplink.publish(self.board.device, topic, payload):
            return False
        self.published += 1
        return True

    def receive(self) -> tuple[str, bytes] | None:
        self._update()
        if self.state != hal.MODEM_ONLINE or not self.box.items:
            return None
        return self.box.items.pop(0)

    def step(self, now_ms: int) -> int:
        if self.state == hal.MODEM_CONNECTING:
            return max(0, self.ready_ms - self.board.sim_ms)
        return -1


class FleetRadio:
    """The tag's BLE radio (firmware.board Radio): advertisements are collected for the runner,
    which decides with the RF model whether the home unit hears them; the home unit's GATT
    operations (sim.fleet_radio.TagRadio) call the service the firmware registered."""

    def __init__(self, board: FleetBoard) -> None:
        self.board = board
        self.service: Any = None  # firmware.homelink.HomeLink
        self.out: list[tuple[int, bytes]] = []  # (sim ms, advertising data)

    def serve(self, service: object) -> None:
        self.service = service

    def advertise(self, adv: bytes) -> None:
        self.out.append((self.board.sim_ms, adv))


class FleetBoard:
    """One simulated tag's hardware. `sim_ms` is simulated Unix ms; ticks wrap as on a device."""

    name = "fleet"

    def __init__(
        self,
        device: int,
        world: WorldView,
        uplink: Uplink,
        box: DownlinkBox,
        rng: np.random.Generator,
        files: MemFiles | None = None,
        start_ticks: int = 0,
        gnss_params: GnssParams | None = None,
        receiver: str = nmea.DEFAULT_PROFILE,
    ) -> None:
        d = json.loads(BOARD_DEF.read_text())
        self.device = device
        self.capacity_mah: int = d["battery_mah"]
        self.currents: dict[str, dict[str, int]] = d["currents_ua"]
        self.bursts: dict[str, int] = d["bursts_uas"]
        self.world = world
        self.rng = rng
        self.gp = gnss_params or GnssParams()
        self.flash = files or MemFiles()
        self.modem = FleetModem(self, uplink, box)
        self.radio = FleetRadio(self)
        self.sim_ms = 0
        self.t0_ms = 0  # sim_ms at tick start_ticks
        self.start_ticks = start_ticks
        self.reset = fr.RESET_POWER_ON
        self.watchdog_ms = 0
        self.last_feed_ms = 0
        # GNSS receiver
        self.gnss_on = False
        self.gnss_on_ms = 0
        self.gnss_off_ms: int | None = None
        self.last_fix_ms: int | None = None
        self.ttff_ms = math.inf
        self.last_epoch_s = -1
        self.receiver = nmea.Receiver(receiver, device)  # (its own seed: rng's draws stay)
        self.core = rng.standard_normal(2)  # Gauss-Markov core error (sim.gnss)
        self.core_ms = 0
        self.epochs = 0
        self.last_motion_ms = -1
        self.vibrations: list[tuple[int, int, int]] = []

    def boot(self, sim_ms: int, reset: int) -> None:
        """Power on at sim_ms (first boot, or again after a flat battery): RAM is gone."""
        self.sim_ms = self.t0_ms = sim_ms
        self.reset = reset
        self.gnss_on = False
        self.modem.power(False)
        self.last_motion_ms = sim_ms

    # clock and power ----------------------------------------------------------------------
    def ticks_ms(self) -> int:
        return ticks.add(self.start_ticks, self.sim_ms - self.t0_ms)

    def to_sim_ms(self, wake_ticks: int) -> int:
        return self.sim_ms + ticks.diff(wake_ticks, self.ticks_ms())

    def sleep_until(self, wake_ticks: int) -> None:
        return None  # the runner owns time

    def reset_cause(self) -> int:
        return self.reset

    def watchdog_start(self, timeout_ms: int) -> None:
        self.watchdog_ms = timeout_ms
        self.last_feed_ms = self.sim_ms

    def watchdog_feed(self) -> None:
        self.last_feed_ms = self.sim_ms

    def files(self) -> Files:
        return self.flash

    # GNSS ---------------------------------------------------------------------------------
    def gnss_power(self, on: bool) -> None:
        if on and not self.gnss_on:
            now = self.sim_ms
            since = math.inf if self.last_fix_ms is None else (now - self.last_fix_ms) / 1000
            backup = self.gnss_off_ms is not None or self.last_fix_ms is None
            kind = gnss.start_kind(np.array([since]), np.array([backup]), self.gp)
            env = self.world.position(now)[2]
            t = gnss.ttff_s(kind, np.array([env]), self.rng, self.gp)[0]
            self.ttff_ms = t * 1000.0
            self.receiver.power_on(now, kind[0] == gnss.COLD)
            self.gnss_on_ms = now
            self.last_epoch_s = now // 1000
        elif not on and self.gnss_on:
            self.gnss_off_ms = self.sim_ms
        self.gnss_on = on

    def gnss_read(self) -> bytes | None:
        if not self.gnss_on:
            return None
        first = self.last_epoch_s + 1
        last = self.sim_ms // 1000
        if last < first:
            return None
        first = max(first, last - 30)  # a UART buffer holds a few seconds, not a day
        out: list[bytes] = []
        for s in range(first, last + 1):
            t_ms = s * 1000
            self.epochs += 1
            if t_ms - self.gnss_on_ms < self.ttff_ms:
                out.append(self.receiver.second(s, None))
                continue
            x, y, env, _ = self.world.position(t_ms)
            dt = max(t_ms - self.core_ms, 0) / 1000.0
            tau = self.gp.environments[env].correlation_s
            a = math.exp(-dt / tau)
            self.core = a * self.core + math.sqrt(1 - a * a) * self.rng.standard_normal(2)
            self.core_ms = t_ms
            f = gnss.fixes(
                np.array([x]), np.array([y]), np.array([env]), self.rng, self.gp, self.core[None]
            )
            if not f.valid[0]:
                out.append(self.receiver.second(s, None))
                continue
            lat, lon = self.world.to_latlon(float(f.x[0]), float(f.y[0]))
            self.last_fix_ms = t_ms
            pos = nmea.Position(lat, lon, int(f.sats[0]), float(f.hdop[0]))
            out.append(self.receiver.second(s, pos))
        self.last_epoch_s = last
        return b"".join(out)

    # sensors and wearer -------------------------------------------------------------------
    def strap_open(self) -> bool:
        return self.world.strap_open(self.sim_ms)

    def case_open(self) -> bool:
        return self.world.case_open(self.sim_ms)

    def battery_mv(self) -> int:
        return mv_from_level(self.world.battery(self.sim_ms))

    def charger(self) -> tuple[bool, bool]:
        c = self.world.charging(self.sim_ms)
        return c, c and self.world.battery(self.sim_ms) < 1.0

    def motion(self) -> int:
        _, _, _, moving = self.world.position(self.sim_ms)
        return 1 if moving else 0

    def vibrate(self, pattern: int, repeats: int) -> None:
        self.vibrations.append((self.sim_ms, pattern, repeats))
