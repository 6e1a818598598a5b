"""The BLE air between a HIL tag and its home unit.

The home unit runs as it does in the field, its radio a simulator radio
(`home_unit.sim_radio_peer.SimRadioPeer`, docs/home-unit.md "Simulator radio protocol").
`HomeBridge` carries the tag's beacons to the unit when the unit hears them, ticks the unit's
clock in lock-step with simulated time, and performs the unit's GATT requests (ack, offload,
downlink) on the firmware. It knows the tag only through what it is given: a protocol exchange
with the firmware, whether the tag is powered, and a way to wake the tag's MCU."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from firmware import homelink
from home_unit.sim_radio_peer import SimRadioPeer, TagSide
from sim import rf
from sim.hil_error import HilError

# What the home unit hears of one beacon: Unix seconds -> RSSI in dBm, or None (not heard).
Hearing = Callable[[int], "int | None"]
# One lock-step exchange with the firmware: send these lines, read up to a line starting with
# one of these prefixes; every line read.
Exchange = Callable[[list[str], tuple[str, ...]], list[str]]


def rf_hearing(
    distance_m: Callable[[int], float],
    rng: np.random.Generator,
    interior_walls: int = 0,
    exterior_walls: int = 0,
    indoor: bool = True,
) -> Hearing:
    """A Hearing from the simulator's RF model (sim/rf.py): log-distance path loss with
    shadowing and a soft sensitivity edge, for a tag `distance_m(t)` from its home unit."""

    def hear(t: int) -> int | None:
        heard, rssi = rf.receive(
            np.array([distance_m(t)]), rng, interior_walls, exterior_walls, indoor
        )
        return int(rssi[0]) if bool(heard[0]) else None

    return hear


@dataclass
class _GattRequest:
    op: str  # "ack", "offload", "downlink"
    data: bytes
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None


class _TagRadioSide(TagSide):
    """The simulator end of the home unit's radio requests for one HIL tag: each request is
    handed to the thread running the tag's lock-step loop, which performs it on the firmware
    (as GATT operations over the simulator board protocol) and answers."""

    def __init__(self, address: str, timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.requests: queue.Queue[_GattRequest] = queue.Queue()
        self.in_range = False

    def _ask(self, address: str, op: str, data: bytes = b"") -> Any:
        if address != self.address:
            return "no_tag"
        if not self.in_range:
            return "out_of_range"
        req = _GattRequest(op, data)
        self.requests.put(req)
        if not req.done.wait(self.timeout_s):
            return "timeout"
        return req.result

    def on_ack(self, unit: int, address: str, data: bytes) -> str | None:
        return self._ask(address, "ack", data)  # type: ignore[no-any-return]

    def on_offload(self, unit: int, address: str) -> list[bytes] | str:
        return self._ask(address, "offload")  # type: ignore[no-any-return]

    def on_downlink(self, unit: int, address: str, data: bytes) -> str | None:
        return self._ask(address, "downlink", data)  # type: ignore[no-any-return]


@dataclass
class HomeRadio:
    """The air between a HIL tag and one home unit (the unit connects to `peer`)."""

    peer: SimRadioPeer
    unit: int
    hearing: Hearing
    side: _TagRadioSide


class HomeBridge:
    def __init__(
        self,
        address: str,
        timeout_s: float,
        exchange: Exchange,
        powered: Callable[[], bool],
        wake: Callable[[], None],
    ) -> None:
        """address: the tag's BLE address; timeout_s: real time the unit and the firmware may
        take for one request; exchange: a lock-step exchange with the firmware; powered:
        whether the tag is on; wake: the BLE IRQ wakes the tag's MCU at its next instant."""
        self.address = address
        self.timeout_s = timeout_s
        self.exchange = exchange
        self.powered = powered
        self.wake = wake
        self.home: HomeRadio | None = None
        self.gatt_connected = False
        self.acks_written: list[bytes] = []  # every home ack written to the tag (a recording)
        self.offloaded: list[bytes] = []  # every frame handed to the home unit (accounting)
        self.last_unit_tick_ms = -(10**12)
        self.unit_tick_ms = 1000  # how often the home unit's clock follows simulated time

    def tag_side(self) -> TagSide:
        """The TagSide to build the SimRadioPeer with."""
        return _TagRadioSide(self.address, self.timeout_s)

    def attach(self, peer: SimRadioPeer, unit: int, hearing: Hearing | None = None) -> None:
        """Put the tag within reach of a home unit that is (or will be) connected to `peer`
        (built with `tag_side()`): see HilTag.attach_home."""
        side = peer.tags
        if not isinstance(side, _TagRadioSide):
            raise HilError("the peer must be built with HilTag.tag_side()")
        self.home = HomeRadio(peer, unit, hearing or (lambda _t: None), side)

    def set_rssi(self, rssi: int | None) -> None:
        """Every beacon is heard at this RSSI from now on (None: out of range)."""
        if self.home is None:
            raise HilError("no home unit attached")
        self.home.hearing = lambda _t: rssi

    def air(self, now_ms: int, t: float, adverts: list[tuple[int, bytes]]) -> None:
        """Deliver this turn's beacons (sent at simulated `now_ms`, Unix time `t`) the home
        unit hears, then tick the unit in lock-step, performing the GATT requests it makes
        meanwhile on the firmware. Nothing without a home unit attached."""
        h = self.home
        if h is None:
            return
        heard = False
        rssi = h.hearing(int(t))
        h.side.in_range = rssi is not None
        if not h.peer.connected(h.unit):
            return  # the unit is down (or not up yet): nobody hears
        for _ms, adv in adverts:
            if rssi is not None:
                h.peer.send_beacon(h.unit, self.address, adv, rssi, t)
                heard = True
        if heard or self.tick_due(now_ms):
            self.last_unit_tick_ms = now_ms
            self._unit_lockstep(h, t)

    def tick_due(self, now_ms: int) -> bool:
        """Whether a turn at now_ms would tick the home unit (one attached and up)."""
        h = self.home
        return (
            h is not None
            and now_ms - self.last_unit_tick_ms >= self.unit_tick_ms
            and h.peer.connected(h.unit)
        )

    def _unit_lockstep(self, h: HomeRadio, t: float) -> None:
        try:
            h.peer.send_tick(h.unit, t)
        except (ConnectionError, OSError):
            return  # the unit went down meanwhile
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                req = h.side.requests.get(timeout=0.001)
            except queue.Empty:
                if h.peer.tocked(h.unit, t):
                    break
                if not h.peer.connected(h.unit):
                    self._drop_requests(h)  # the unit died mid-contact: nobody waits for them
                    break
                if time.monotonic() > deadline:
                    raise HilError(f"home unit {h.unit} did not answer tick {t}") from None
                continue
            req.result = self._gatt(req)
            req.done.set()
        if self.gatt_connected:
            self._gatt_disconnect()

    def _drop_requests(self, h: HomeRadio) -> None:
        while True:
            try:
                req = h.side.requests.get_nowait()
            except queue.Empty:
                return
            req.result = "link_down"
            req.done.set()

    def _gatt(self, req: _GattRequest) -> Any:
        """One GATT operation on the firmware (docs/home-unit.md, "GATT contract")."""
        if not self.powered():
            return "out_of_range"  # the tag is off
        if not self.gatt_connected:
            self.exchange(["N 1"], ("n", "e"))
            self.gatt_connected = True
        if req.op == "ack":
            self.acks_written.append(req.data)
            self.exchange([f"A {req.data.hex()}"], ("a", "e"))
            return None
        if req.op == "downlink":
            for i in range(0, max(len(req.data), 1), homelink.CHUNK):
                part = req.data[i : i + homelink.CHUNK]
                flags = homelink.FINAL if i + homelink.CHUNK >= len(req.data) else 0
                self.exchange([f"K {bytes((flags,)).hex()}{part.hex()}"], ("k", "e"))
            return None
        frames: list[bytes] = []
        cur = b""
        while True:
            line = self.exchange(["O"], ("o", "e"))[-1]
            chunk = bytes.fromhex(line[2:]) if line.startswith("o ") else b""
            if not chunk:
                self.offloaded += frames
                return frames
            cur += chunk[1:]
            if chunk[0] & homelink.FINAL:
                frames.append(cur)
                cur = b""

    def _gatt_disconnect(self) -> None:
        self.exchange(["N 0"], ("n", "e"))
        self.gatt_connected = False
        self.wake()  # the BLE IRQ wakes the MCU

    def write_ack(self, ack: bytes) -> None:
        """Connect and write a home ack as any BLE central in range could (a replayed
        recording, a forgery); the firmware takes it at its next poll."""
        self._gatt(_GattRequest("ack", ack))
        self._gatt_disconnect()
