"""Drive a tag's firmware, running under the real `micropython` binary on the simulator board,
in lock-step: this is the CPython peer of the simulator board protocol (docs/firmware.md).

`HilTag` spawns the firmware (sim/micropython.py), owns the GNSS pty it writes NMEA into and
the socket that carries the clock, sensors and modem, injects sensor events and advances
simulated time. The firmware never reads the wall clock: it runs at the times this class sends
it. Killing the process is a power cut; start() again is a reboot. Its modem is bridged to a
real MQTT broker (`tag.modem`, sim/hil_modem.py) and its BLE radio to a home unit
(`tag.radio`, sim/hil_home.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware import sampling, ticks
from home_unit.sim_radio_peer import SimRadioPeer, TagSide
from sim import nmea
from sim.hil_error import HilError
from sim.hil_home import Hearing, HomeBridge
from sim.hil_modem import ModemBridge

TICK_MASK = ticks.PERIOD - 1
# A position source: Unix seconds -> (lat_e7, lon_e7) or the GNSS model's nmea.Position (with
# its satellites and HDOP), or None when the sky is hidden.
Route = Callable[[int], "tuple[int, int] | nmea.Position | None"]


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
    def __init__(
        self, cfg: HilConfig, route: Route | None = None, modem: ModemBridge | None = None
    ) -> None:
        """modem: the modem bridge (default: one with the config's connect delay)."""
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
        self.gnss_on = False
        self.gnss_on_ms = 0
        self.gnss_off_ms = -(10**12)
        self.ever_fixed = False
        self.ttff_ms = 0
        self.last_epoch_s = -1
        self.modem = modem or ModemBridge(cfg.connect_delay_ms)
        self.vibrations: list[tuple[int, int, int]] = []
        self.watchdog_ms = 0
        self.last_feed_ms = 0
        self.boots = 0
        self.stderr = b""
        self.adverts: list[tuple[int, bytes]] = []  # (now_ms, advertisement) the tag sent
        self.radio = HomeBridge(
            self.address,
            cfg.timeout_s,
            exchange=self._exchange_any,
            powered=lambda: self.proc is not None,
            wake=self._wake_soon,
        )

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
        self.radio.attach(peer, unit, hearing)

    def tag_side(self) -> TagSide:
        """The TagSide to build the SimRadioPeer with (SimRadioPeer(tag.tag_side()))."""
        return self.radio.tag_side()

    def set_rssi(self, rssi: int | None) -> None:
        """Every beacon is heard at this RSSI from now on (None: out of range)."""
        self.radio.set_rssi(rssi)

    def write_ack(self, ack: bytes) -> None:
        """A home ack written to the tag by any BLE central in range (HomeBridge.write_ack)."""
        self.radio.write_ack(ack)

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
        self.modem.power(False)
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
        self.modem.disconnect()
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
        """The cellular network comes or goes (losing it fails the modem's session)."""
        self._modem_status(self.modem.set_coverage(on))

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
        wake_only: bool = False,
    ) -> None:
        """Advance simulated time to until_ms, waking the firmware when it asks and at each
        event (as an interrupt would). moving: the accelerometer reports motion every 20 s.
        wake_only: no turn at until_ms itself unless the firmware, an input or the home
        unit's tick is due then (`sleeps_through`): the time moves on with the MCU asleep, as a
        fleet tag's does between the wakes its firmware asks for; otherwise the firmware
        also gets a turn at until_ms (a caller stepping in slices sees it polled at each
        slice's end)."""
        evs = sorted(events or [], key=lambda e: e[0])
        next_motion = self.now_ms if moving else None
        while self.now_ms < until_ms:
            nxt = min(self.wake_ms, until_ms)
            if (
                wake_only
                and not (evs and evs[0][0] <= until_ms)
                and not (next_motion is not None and next_motion <= until_ms)
                and self.sleeps_through(until_ms)
            ):
                self.now_ms = until_ms
                return
            if evs and evs[0][0] < nxt:
                nxt = evs[0][0]
            if next_motion is not None and next_motion < nxt:
                nxt = next_motion
            due = self.modem.due_ms()
            if due is not None and due < nxt:
                nxt = max(due, self.now_ms + 1)
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
            self.radio.air(self.now_ms, self.unix_at(self.now_ms), self.adverts[sent:])
            if self.watchdog_ms and self.now_ms - self.last_feed_ms > self.watchdog_ms:
                raise HilError(f"watchdog: no feed for {self.now_ms - self.last_feed_ms} ms")

    def sleeps_through(self, t_ms: int) -> bool:
        """Whether the firmware sleeps through t_ms: it asked to wake later, and a turn at
        t_ms would give it nothing it must have then: no sensor event or modem state to tell,
        no downlink waiting, no session's outcome due and no home-unit tick due (its GATT
        requests run on the firmware at its last turn's time). The receiver's seconds
        meanwhile are not lost: the next turn writes every whole second since the last one
        (`_gnss_bytes`)."""
        if self.wake_ms <= t_ms or self.pending_lines or self.modem.has_downlink():
            return False
        due = self.modem.due_ms()
        if due is not None and due <= t_ms:
            return False
        return not self.radio.tick_due(t_ms)

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

    # -- the modem ---------------------------------------------------------------------------
    def _modem_status(self, state: int | None) -> bool:
        """Raise the modem's new state to the firmware at its next turn (None: nothing new)."""
        if state is None:
            return False
        self.pending_lines.append(f"L {state}")
        return True

    def _modem_progress(self) -> bool:
        """The connecting session's outcome when it is due; whether there was one to raise."""
        return self._modem_status(self.modem.progress(self.now_ms))

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
            self.modem.power(rest == "1")
        elif op == "C":
            client_id, down_topic, broker, password = rest.split()
            self.modem.connect(self.now_ms, client_id, down_topic, broker, password)
        elif op == "P":
            topic, hexdata = rest.split()
            self.modem.publish(self.now_ms, topic, bytes.fromhex(hexdata))
        elif op == "V":
            pattern, repeats = rest.split()
            self.vibrations.append((self.now_ms, int(pattern), int(repeats)))
        else:
            return False
        return True

    def _inputs(self) -> list[str]:
        """What the firmware is told at its next turn, before the time: sensor events, modem
        states and the downlinks received (taken: they are told once)."""
        lines = self.pending_lines
        self.pending_lines = []
        lines += [f"R {topic} {data.hex()}" for topic, data in self.modem.downlinks()]
        return lines

    def _turn(self, gnss_bytes: int) -> None:
        """One lock-step turn: deliver inputs and the time, handle outputs until W."""
        lines = self._inputs()
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
            self.modem.wait_downlink(self.cfg.reply_wait_s)

    def _wake_soon(self) -> None:
        """An interrupt (the BLE IRQ): the MCU wakes at the next simulated instant."""
        self.wake_ms = min(self.wake_ms, self.now_ms + 1)
