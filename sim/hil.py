"""Drive a tag's firmware, running under the real `micropython` binary on the simulator board,
in lock-step: this is the CPython peer of the simulator board protocol (docs/firmware.md).

`HilTag` spawns the firmware (sim/micropython.py), owns the GNSS pty it writes NMEA into and
the socket that carries the clock, sensors and modem, bridges the modem to a real MQTT broker
with paho-mqtt (MQTT v5, QoS 1, a persistent session as a modem would keep), injects sensor
events and advances simulated time. The firmware never reads the wall clock: it runs at the
times this class sends it. Killing the process is a power cut; start() again is a reboot.
"""

from __future__ import annotations

import json
import os
import queue
import select
import socket
import subprocess
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware import board as hal
from firmware import homelink, sampling, ticks
from home_unit.sim_radio_peer import SimRadioPeer, TagSide
from sim import nmea, rf

TICK_MASK = ticks.PERIOD - 1
# A position source: Unix seconds -> (lat_e7, lon_e7) or the GNSS model's nmea.Position (with
# its satellites and HDOP), or None when the sky is hidden.
Route = Callable[[int], "tuple[int, int] | nmea.Position | None"]


# What the home unit hears of one beacon: Unix seconds -> RSSI in dBm, or None (not heard).
Hearing = Callable[[int], "int | None"]


class HilError(RuntimeError):
    pass


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


def _position(where: tuple[int, int] | nmea.Position) -> nmea.Position:
    if isinstance(where, nmea.Position):
        return where
    return nmea.Position(where[0] / 1e7, where[1] / 1e7)


@dataclass
class HilConfig:
    device: int
    key: bytes
    workdir: Path
    # The tag's provisioned broker list ("host:port", in order): the firmware chooses among
    # them and the modem bridge connects where it says, with the credentials it sends.
    brokers: list[str] = field(default_factory=lambda: ["127.0.0.1:1883"])
    heap: str = "64k"
    t0_unix: int = 1_795_737_600  # simulated Unix time at now_ms = 0
    start_ticks: int = 0  # the tag's tick counter at now_ms = 0 (set near 2**30 to test a wrap)
    settings: dict[str, Any] = field(default_factory=dict)  # firmware config overrides
    reply_wait_s: float = 1.0  # real time to wait for the backend's answer to a publish
    connect_delay_ms: int = 5000  # simulated network registration + MQTT connect
    timeout_s: float = 20.0  # real time the firmware may take for one turn
    receiver: str = nmea.DEFAULT_PROFILE  # the GNSS receiver's profile (sim.nmea.PROFILES)


class HilTag:
    def __init__(self, cfg: HilConfig, route: Route | None = None) -> None:
        self.cfg = cfg
        self.route: Route = route or (lambda _t: (507161700, -18753500))
        self.receiver = nmea.Receiver(cfg.receiver, cfg.device)
        self.now_ms = 0
        self.wake_ms = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: socket.socket | None = None
        self.rfile: Any = None
        self.master = -1
        self.sensors: dict[str, int] = {"strap": 0, "case": 0, "mv": 4100, "charger": 0}
        self.pending_lines: list[str] = []
        self.coverage = True
        self.gnss_on = False
        self.gnss_on_ms = 0
        self.gnss_off_ms = -(10**12)
        self.ever_fixed = False
        self.ttff_ms = 0
        self.last_epoch_s = -1
        self.modem_on = False
        self.modem_state = hal.MODEM_OFF
        self.modem_ready_ms = 0
        self.mqtt: mqtt.Client | None = None
        self.mqtt_ready = False
        self.down: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.published: list[tuple[int, str, bytes]] = []  # (now_ms, topic, payload)
        self.sessions: list[tuple[str, str]] = []  # (broker, client id) the modem opened
        self.vibrations: list[tuple[int, int, int]] = []
        self.watchdog_ms = 0
        self.last_feed_ms = 0
        self.boots = 0
        self.stderr = b""
        self.adverts: list[tuple[int, bytes]] = []  # (now_ms, advertisement) the tag sent
        self.home: HomeRadio | None = None
        self.gatt_connected = False
        self.acks_written: list[bytes] = []  # every home ack written to the tag (a recording)
        self.offloaded: list[bytes] = []  # every frame handed to the home unit (accounting)
        self.last_unit_tick_ms = -(10**12)
        self.unit_tick_ms = 1000  # how often the home unit's clock follows simulated time

    @property
    def address(self) -> str:
        return f"tag-{self.cfg.device}"

    def unix_at(self, now_ms: int) -> float:
        return self.cfg.t0_unix + now_ms / 1000

    def attach_home(self, peer: SimRadioPeer, unit: int, hearing: Hearing | None = None) -> None:
        """Put the tag within reach of a home unit that is (or will be) connected to `peer`:
        its beacons go to the unit when `hearing(t)` gives an RSSI, the unit's GATT requests
        come back to the firmware, and the unit's clock follows simulated time (ticks).
        `peer` must have been created with `tag_side()` of this tag."""
        side = peer.tags
        if not isinstance(side, _TagRadioSide):
            raise HilError("the peer must be built with HilTag.tag_side()")
        self.home = HomeRadio(peer, unit, hearing or (lambda _t: None), side)

    def tag_side(self) -> TagSide:
        """The TagSide to build the SimRadioPeer with (SimRadioPeer(tag.tag_side()))."""
        return _TagRadioSide(self.address, self.cfg.timeout_s)

    def set_rssi(self, rssi: int | None) -> None:
        """Every beacon is heard at this RSSI from now on (None: out of range)."""
        if self.home is None:
            raise HilError("no home unit attached")
        self.home.hearing = lambda _t: rssi

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def flash_path(self) -> Path:
        return self.cfg.workdir / f"flash-{self.cfg.device}.img"

    def start(self, reset_cause: int = 0) -> None:
        """Power the tag on (first boot, or a reboot after stop()/kill())."""
        from sim import micropython

        if self.proc is not None:
            raise HilError("already running")
        c = self.cfg
        c.workdir.mkdir(parents=True, exist_ok=True)
        self.master, slave = os.openpty()
        tty.setraw(slave)  # a UART: no echo, no line editing, bytes as they are
        gnss_path = os.ttyname(slave)
        self._slave = slave
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        conf = {
            "board": "sim",
            "device": c.device,
            "key": c.key.hex(),
            "brokers": list(c.brokers),
            "board_socket": f"127.0.0.1:{port}",
            "board_gnss": gnss_path,
            "board_flash": str(self.flash_path),
            "board_def": str(micropython.repo_root() / "hw" / "boards" / "virtual.json"),
            "board_reset_cause": reset_cause,
            "board_start_ticks": self._ticks(),
        }
        conf.update(c.settings)
        path = c.workdir / f"config-{c.device}.json"
        path.write_text(json.dumps(conf))
        self.proc = subprocess.Popen(
            micropython.command(["-m", "firmware.main", str(path)], c.heap),
            # `-m` puts the working directory first on sys.path: from the repository root the
            # firmware would be compiled from its .py source in the tag's own heap; from the
            # compiled tree it loads the precompiled .mpy, as a device loads its image.
            cwd=micropython.compiled_root(),
            env=micropython.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        listener.settimeout(c.timeout_s)
        try:
            self.conn, _ = listener.accept()
        except TimeoutError as e:
            raise HilError(f"firmware did not connect: {self._drain_stderr()}") from e
        finally:
            listener.close()
        self.conn.settimeout(c.timeout_s)
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.conn.makefile("rb")
        self.gnss_on = False
        self.modem_on = False
        self.modem_state = hal.MODEM_OFF
        self.boots += 1
        self.last_feed_ms = self.now_ms
        self.wake_ms = self.now_ms
        self._turn(0)

    def stop(self) -> None:
        """Clean shutdown (tests): the firmware exits between polls."""
        if self.proc is None:
            return
        try:
            self._send(["Q"])
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self._closed()

    def kill(self) -> None:
        """Power cut: the process dies wherever it is; the flash image keeps what was written."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self._closed()

    def _closed(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.stderr += self.proc.stderr.read()
        self._disconnect_modem()
        for closable in (self.rfile, self.conn):
            if closable is not None:
                closable.close()
        self.rfile = self.conn = None
        for fd in (self.master, self._slave):
            if fd >= 0:
                os.close(fd)
        self.master = self._slave = -1
        self.proc = None

    def __enter__(self) -> HilTag:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.kill()

    # -- inputs -------------------------------------------------------------------------------
    def set_sensor(self, name: str, value: int) -> None:
        """strap/case (1 open), mv, charger (bit 0 connected, bit 1 charging), motion (events)."""
        if name != "motion":
            self.sensors[name] = value
        self.pending_lines.append(f"S {name} {value}")

    def set_coverage(self, on: bool) -> None:
        self.coverage = on
        if not on and self.modem_state in (hal.MODEM_ONLINE, hal.MODEM_CONNECTING):
            self._disconnect_modem()
            self.modem_state = hal.MODEM_FAILED
            self.pending_lines.append(f"L {hal.MODEM_FAILED}")

    def report(self) -> dict[str, Any]:
        """The firmware's own counters (pending frames, heap high-water, energy...)."""
        lines = self._exchange(["?"], until="X")
        return json.loads(lines[-1][2:])  # type: ignore[no-any-return]

    def pending_frames(self) -> list[bytes]:
        """The sealed frames still in the firmware's flash log (not yet acknowledged)."""
        lines = self._exchange(["U"], until="Z")
        return [bytes.fromhex(x[2:]) for x in lines if x.startswith("Y ")]

    # -- time ---------------------------------------------------------------------------------
    def _ticks(self) -> int:
        return (self.cfg.start_ticks + self.now_ms) & TICK_MASK

    def run_until(
        self,
        until_ms: int,
        events: list[tuple[int, Callable[[HilTag], None]]] | None = None,
        moving: bool = False,
    ) -> None:
        """Advance simulated time to until_ms, waking the firmware when it asks and at each
        event (as an interrupt would). moving: the accelerometer reports motion every 20 s."""
        evs = sorted(events or [], key=lambda e: e[0])
        next_motion = self.now_ms if moving else None
        while self.now_ms < until_ms:
            nxt = min(self.wake_ms, until_ms)
            if evs and evs[0][0] < nxt:
                nxt = evs[0][0]
            if next_motion is not None and next_motion < nxt:
                nxt = next_motion
            if self.modem_state == hal.MODEM_CONNECTING and self.modem_ready_ms < nxt:
                nxt = max(self.modem_ready_ms, self.now_ms + 1)
            nxt = max(nxt, self.now_ms + 1)
            self.now_ms = nxt
            while evs and evs[0][0] <= self.now_ms:
                evs.pop(0)[1](self)
            if next_motion is not None and next_motion <= self.now_ms:
                self.set_sensor("motion", 1)
                next_motion = self.now_ms + 20000
            self._modem_progress()
            sent = len(self.adverts)
            self._turn(self._gnss_bytes())
            if self.home is not None:
                self._air(self.adverts[sent:])
            if self.watchdog_ms and self.now_ms - self.last_feed_ms > self.watchdog_ms:
                raise HilError(f"watchdog: no feed for {self.now_ms - self.last_feed_ms} ms")

    # -- GNSS ---------------------------------------------------------------------------------
    def _gnss_bytes(self) -> int:
        """Write the NMEA of every whole second the receiver was on since the last turn."""
        if not self.gnss_on:
            return 0
        out = bytearray()
        first = max(self.last_epoch_s + 1, (self.gnss_on_ms + 999) // 1000)
        for s in range(first, self.now_ms // 1000 + 1):
            pos = self.route(self.cfg.t0_unix + s)
            fixed = pos is not None and s * 1000 - self.gnss_on_ms >= self.ttff_ms
            out += self.receiver.second(
                self.cfg.t0_unix + s, _position(pos) if pos is not None and fixed else None
            )
            self.ever_fixed = self.ever_fixed or fixed
            self.last_epoch_s = s
        if out:
            os.write(self.master, bytes(out))
        return len(out)

    def _gnss_power(self, on: bool) -> None:
        if on and not self.gnss_on:
            off_s = (self.now_ms - self.gnss_off_ms) // 1000
            kind = sampling.start_kind(off_s, self.ever_fixed)
            self.ttff_ms = sampling.TTFF_S[kind] * 1000 - 1000
            self.receiver.power_on(self.cfg.t0_unix * 1000 + self.now_ms, kind == sampling.COLD)
            self.gnss_on_ms = self.now_ms
            self.last_epoch_s = self.now_ms // 1000
        elif not on and self.gnss_on:
            self.gnss_off_ms = self.now_ms
        self.gnss_on = on

    # -- modem bridge -------------------------------------------------------------------------
    def _connect_modem(self, client_id: str, down_topic: str, broker: str, password: str) -> None:
        """The modem's session as the firmware asked for it: on its broker, logged in as its
        client id with its password (the broker's device listener checks both)."""
        self.modem_ready_ms = self.now_ms + self.cfg.connect_delay_ms
        self.modem_state = hal.MODEM_CONNECTING
        self.sessions.append((broker, client_id))
        if not self.coverage:
            return
        host, _, port = broker.rpartition(":")
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        c.username_pw_set(client_id, password)
        self.mqtt_ready = False

        def on_connect(cl: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
            if not rc.is_failure:
                cl.subscribe(down_topic, qos=1)

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
            self.mqtt_ready = True

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            self.down.put((msg.topic, bytes(msg.payload)))

        c.on_connect = on_connect
        c.on_subscribe = on_subscribe
        c.on_message = on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 7 * 86400  # the broker keeps the tag's downlinks
        try:
            rc = c.connect(host, int(port), clean_start=False, properties=props)
        except (OSError, ValueError):  # no broker there (down, or "-"): the session fails
            rc = mqtt.MQTT_ERR_NO_CONN
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self.modem_ready_ms = self.now_ms
            return
        c.loop_start()
        self.mqtt = c

    def _disconnect_modem(self) -> None:
        if self.mqtt is not None:
            self.mqtt.disconnect()
            self.mqtt.loop_stop()
            self.mqtt = None
        self.mqtt_ready = False

    def _modem_progress(self) -> None:
        if self.modem_state != hal.MODEM_CONNECTING or self.now_ms < self.modem_ready_ms:
            return
        if self.coverage and self.mqtt is not None:
            deadline = time.monotonic() + 5.0
            while not self.mqtt_ready and time.monotonic() < deadline:
                time.sleep(0.002)
        ok = self.coverage and self.mqtt_ready
        self.modem_state = hal.MODEM_ONLINE if ok else hal.MODEM_FAILED
        self.pending_lines.append(f"L {self.modem_state}")

    def _publish(self, topic: str, payload: bytes) -> None:
        self.published.append((self.now_ms, topic, payload))
        if self.mqtt is None or not self.coverage:
            return
        info = self.mqtt.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise HilError(f"publish failed: {mqtt.error_string(info.rc)}")

    # -- the protocol -------------------------------------------------------------------------
    def _send(self, lines: list[str]) -> None:
        if self.conn is None:
            raise HilError("the tag is not running")
        self.conn.sendall("".join(x + "\n" for x in lines).encode())

    def _readline(self) -> str:
        try:
            raw = self.rfile.readline()
        except TimeoutError as e:
            raise HilError(f"firmware stalled: {self._drain_stderr()}") from e
        if not raw:
            raise HilError(f"firmware exited: {self._drain_stderr()}")
        return str(raw.decode().rstrip("\n"))

    def _drain_stderr(self) -> str:
        if self.proc is None or self.proc.stderr is None:
            return ""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr += self.proc.stderr.read()
        return self.stderr.decode(errors="replace")[-3000:]

    def _exchange(self, lines: list[str], until: str) -> list[str]:
        return self._exchange_any(lines, (until,))

    def _exchange_any(self, lines: list[str], until: tuple[str, ...]) -> list[str]:
        self._send(lines)
        got = []
        while True:
            line = self._readline()
            got.append(line)
            if line.startswith(until):
                return got

    def _device_line(self, op: str, rest: str) -> bool:
        """Apply one firmware output line for the watchdog, modem, uplink or vibration motor, the
        operations every board model handles alike; False when `op` is none of them."""
        if op == "F":
            self.last_feed_ms = self.now_ms
        elif op == "D":
            self.watchdog_ms = int(rest)
        elif op == "M":
            self.modem_on = rest == "1"
            if not self.modem_on:
                self._disconnect_modem()
                self.modem_state = hal.MODEM_OFF
        elif op == "C":
            client_id, down_topic, broker, password = rest.split()
            self._connect_modem(client_id, down_topic, broker, password)
        elif op == "P":
            topic, hexdata = rest.split()
            self._publish(topic, bytes.fromhex(hexdata))
        elif op == "V":
            pattern, repeats = rest.split()
            self.vibrations.append((self.now_ms, int(pattern), int(repeats)))
        else:
            return False
        return True

    def _turn(self, gnss_bytes: int) -> None:
        """One lock-step turn: deliver inputs and the time, handle outputs until W."""
        lines = self.pending_lines
        self.pending_lines = []
        while not self.down.empty():
            topic, data = self.down.get()
            lines.append(f"R {topic} {data.hex()}")
        lines.append(f"T {self._ticks()} {gnss_bytes}")
        published = False
        for line in self._exchange(lines, until="W"):
            op, _, rest = line.partition(" ")
            if op == "W":
                wake = int(rest)
                self.wake_ms = self.now_ms + ticks.diff(wake, self._ticks())
            elif op == "G":
                self._gnss_power(rest == "1")
            elif op == "B":
                self.adverts.append((self.now_ms, bytes.fromhex(rest)))
            elif self._device_line(op, rest):
                published = published or op == "P"
            else:
                raise HilError(f"unknown line from firmware: {line!r}")
        if published and self.cfg.reply_wait_s > 0:
            # Lock-step with a real broker: give the backend a moment of real time to answer
            # before simulated time moves on, so an ACK is not "late" by accident of CPU load.
            deadline = time.monotonic() + self.cfg.reply_wait_s
            while self.down.empty() and time.monotonic() < deadline:
                select.select([], [], [], 0.002)

    # -- the BLE radio and the home unit --------------------------------------------------------
    def _air(self, adverts: list[tuple[int, bytes]]) -> None:
        """Deliver this turn's beacons the home unit hears, then tick the unit in lock-step,
        performing the GATT requests it makes meanwhile on the firmware."""
        h = self.home
        assert h is not None
        t = self.unix_at(self.now_ms)
        heard = False
        rssi = h.hearing(int(t))
        h.side.in_range = rssi is not None
        if not h.peer.connected(h.unit):
            return  # the unit is down (or not up yet): nobody hears
        for _ms, adv in adverts:
            if rssi is not None:
                h.peer.send_beacon(h.unit, self.address, adv, rssi, t)
                heard = True
        if heard or self.now_ms - self.last_unit_tick_ms >= self.unit_tick_ms:
            self.last_unit_tick_ms = self.now_ms
            self._unit_lockstep(t)

    def _unit_lockstep(self, t: float) -> None:
        h = self.home
        assert h is not None
        try:
            h.peer.send_tick(h.unit, t)
        except (ConnectionError, OSError):
            return  # the unit went down meanwhile
        deadline = time.monotonic() + self.cfg.timeout_s
        while True:
            try:
                req = h.side.requests.get(timeout=0.001)
            except queue.Empty:
                if h.peer.tocked(h.unit, t):
                    break
                if not h.peer.connected(h.unit):
                    self._drop_requests()  # the unit died mid-contact: nobody waits for them
                    break
                if time.monotonic() > deadline:
                    raise HilError(f"home unit {h.unit} did not answer tick {t}") from None
                continue
            req.result = self._gatt(req)
            req.done.set()
        if self.gatt_connected:
            self._exchange_any(["N 0"], ("n", "e"))
            self.gatt_connected = False
            self.wake_ms = min(self.wake_ms, self.now_ms + 1)  # the BLE IRQ wakes the MCU

    def _drop_requests(self) -> None:
        assert self.home is not None
        while True:
            try:
                req = self.home.side.requests.get_nowait()
            except queue.Empty:
                return
            req.result = "link_down"
            req.done.set()

    def _gatt(self, req: _GattRequest) -> Any:
        """One GATT operation on the firmware (docs/home-unit.md, "GATT contract")."""
        if self.proc is None:
            return "out_of_range"  # the tag is off
        if not self.gatt_connected:
            self._exchange_any(["N 1"], ("n", "e"))
            self.gatt_connected = True
        if req.op == "ack":
            self.acks_written.append(req.data)
            self._exchange_any([f"A {req.data.hex()}"], ("a", "e"))
            return None
        if req.op == "downlink":
            for i in range(0, max(len(req.data), 1), homelink.CHUNK):
                part = req.data[i : i + homelink.CHUNK]
                flags = homelink.FINAL if i + homelink.CHUNK >= len(req.data) else 0
                self._exchange_any([f"K {bytes((flags,)).hex()}{part.hex()}"], ("k", "e"))
            return None
        frames: list[bytes] = []
        cur = b""
        while True:
            line = self._exchange_any(["O"], ("o", "e"))[-1]
            chunk = bytes.fromhex(line[2:]) if line.startswith("o ") else b""
            if not chunk:
                self.offloaded += frames
                return frames
            cur += chunk[1:]
            if chunk[0] & homelink.FINAL:
                frames.append(cur)
                cur = b""

    def write_ack(self, ack: bytes) -> None:
        """Connect and write a home ack as any BLE central in range could (a replayed
        recording, a forgery); the firmware takes it at its next poll."""
        self._gatt(_GattRequest("ack", ack))
        self._exchange_any(["N 0"], ("n", "e"))
        self.gatt_connected = False
        self.wake_ms = min(self.wake_ms, self.now_ms + 1)
