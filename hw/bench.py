"""Bench scenarios against a provisioned board, real or virtual, in real time.

The bench feeds the board's GNSS UART through a second serial port (pyserial) as a u-blox
receiver would — a scripted walk, then no fix (no sky), then an impossible jump — reads its
console, follows its uplink and the backend's acknowledgements on the broker (paho), asks for
the strap to be opened, and checks what the board sent:

    console       no traceback on the board's console
    uplink        frames arrived on the tag's up topic and parse
    boot          a boot record arrived
    fixes         fixes during the walk lie on the walk
    no fix        no fix while there was no sky
    jump          the impossible jump is not believed at once, and the tag re-anchors
    batching      fixes travel several to a frame
    tamper        the strap opening arrives as an urgent tamper record within 30 s
    acknowledged  the backend acknowledged every frame (ingest is running and verified them)

The bench never holds the device key: it learns the device id and sampling settings from the
board's config over the REPL (the key field is not read), checks structure only, and leaves
the MAC to the backend, whose acknowledgement proves it verified the frame."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import serial
from paho.mqtt.enums import CallbackAPIVersion

from firmware import frame as fr
from firmware import topics
from hw import image as img
from hw.link import Board, BoardError
from sim import nmea

START = (50.71617, -1.87535)  # Bournemouth: the walk begins here
WALK_MPS = 1.4
WALK_BEARING_DEG = 45.0
JUMP_DEG = 0.3  # ~33 km north: no wearer gets there in seconds
TAMPER_LIMIT_S = 30.0  # a strap opened on the bench must be reported within 30 s
BENCH_KEYS = ("device", "board", "fix_moving_s", "fix_rest_s", "batch_fixes", "batch_s")


class BenchError(BoardError):
    pass


@dataclass
class Plan:
    walk_s: float = 16.0
    nofix_s: float = 8.0
    jump_s: float = 10.0
    drain_s: float = 30.0
    receiver: str = nmea.DEFAULT_PROFILE  # whose NMEA the bench writes (sim.nmea.PROFILES)

    @staticmethod
    def for_board(
        settings: dict[str, Any], walk_s: float | None = None, receiver: str = nmea.DEFAULT_PROFILE
    ) -> Plan:
        """A plan the board's sampling can fill: the walk must hold a full batch and more."""
        every = min(int(settings["fix_moving_s"]), int(settings["fix_rest_s"]))
        batch = int(settings["batch_fixes"])
        need = every * (batch + 1) + 4.0
        plan = Plan(walk_s=walk_s or max(16.0, need), receiver=receiver)
        if plan.walk_s < need or plan.walk_s > 900:
            raise BenchError(
                f"the board takes a fix every {every} s in batches of {batch}: the walk "
                f"needs {need:g} s. Provision it for the bench, e.g. --set fix_rest_s=2 "
                "--set fix_moving_s=2 --set batch_fixes=3 --set batch_s=10"
            )
        plan.jump_s = max(plan.jump_s, every * 2 + 4.0)
        plan.drain_s = max(plan.drain_s, int(settings["batch_s"]) + 10.0)
        return plan


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Report:
    device: int
    board: str
    plan: Plan
    started: float
    checks: list[Check] = field(default_factory=list)
    frames: int = 0
    fixes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "board": self.board,
            "started": self.started,
            "plan": self.plan.__dict__,
            "passed": self.passed,
            "checks": [c.__dict__ for c in self.checks],
            "frames": self.frames,
            "fixes": self.fixes,
        }


def walk_position(t_s: float) -> tuple[float, float]:
    d = WALK_MPS * t_s
    b = math.radians(WALK_BEARING_DEG)
    lat = START[0] + d * math.cos(b) / 111_320.0
    lon = START[1] + d * math.sin(b) / (111_320.0 * math.cos(math.radians(START[0])))
    return lat, lon


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    k = math.cos(math.radians((a[0] + b[0]) / 2))
    return math.hypot((a[0] - b[0]) * 111_320.0, (a[1] - b[1]) * 111_320.0 * k)


class Sky:
    """What the GNSS receiver sees at each Unix second: the walk, nothing, the jump."""

    def __init__(self, t0: int, plan: Plan) -> None:
        self.t0 = t0
        self.nofix_at = t0 + plan.walk_s
        self.jump_at = self.nofix_at + plan.nofix_s
        self.end = self.jump_at + plan.jump_s
        self.last_walk = walk_position(plan.walk_s)
        self.jump = (self.last_walk[0] + JUMP_DEG, self.last_walk[1])

    def at(self, unix: int) -> tuple[float, float] | None:
        if unix < self.nofix_at:
            return walk_position(unix - self.t0)
        if unix < self.jump_at:
            return None
        return self.jump


class GnssFeeder(threading.Thread):
    """Writes each second's NMEA into the GNSS serial port, as the receiver profile (sim.nmea)
    writes it: the simulator's one NMEA writer."""

    def __init__(self, port: serial.Serial, sky: Sky, receiver: str = nmea.DEFAULT_PROFILE) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.sky = sky
        self.receiver = nmea.Receiver(receiver)
        self.receiver.power_on(int(time.time()) * 1000, cold=False)
        self.stop = threading.Event()
        self.epochs = 0
        self.error: str | None = None

    def run(self) -> None:
        last = -1
        while not self.stop.is_set():
            now = time.time()
            sec = int(now)
            if sec != last:
                last = sec
                pos = self.sky.at(sec)
                data = self.receiver.second(sec, None if pos is None else nmea.Position(*pos))
                try:
                    self.port.write(data)
                except (OSError, serial.SerialException) as e:
                    self.error = str(e)
                    return
                self.epochs += 1
            self.stop.wait(max(0.01, sec + 1 - now + 0.02))


class Uplink:
    """Follows the tag's up topic and the backend's ACKs on its down topic."""

    def __init__(self, host: str, port: int, device: int) -> None:
        self.device = device
        self.lock = threading.Lock()
        self.frames: dict[tuple[int, int], tuple[float, fr.Frame]] = {}
        self.unparsed = 0
        self.acked: set[tuple[int, int]] = set()
        self.ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"tagwatch-bench-{device}-{int(time.time())}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.subscribed = 0
        try:
            rc = self.client.connect(host, port)
        except OSError as e:
            raise BenchError(f"broker {host}:{port}: {e}") from e
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise BenchError(f"broker {host}:{port}: {mqtt.error_string(rc)}")
        self.client.loop_start()
        if not self.ready.wait(10):
            self.close()
            raise BenchError(f"broker {host}:{port}: could not subscribe to the tag's topics")

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if not rc.is_failure:
            c.subscribe([(topics.tag_up(self.device), 1), (topics.tag_down(self.device), 1)])

    def _on_subscribe(self, *_a: Any) -> None:
        self.ready.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            f = fr.parse(bytes(msg.payload))
        except fr.DecodeError:
            with self.lock:
                self.unparsed += 1
            return
        with self.lock:
            if msg.topic == topics.tag_up(self.device) and f.mtype == fr.TAG_DATA:
                self.frames.setdefault((f.boot, f.seq), (time.time(), f))
            elif f.mtype == fr.ACK:
                for r in f.records:
                    if r.name == "ack_range":
                        for s in range(r.first, r.last + 1):
                            self.acked.add((r.boot, s))

    def snapshot(self) -> tuple[list[tuple[float, fr.Frame]], set[tuple[int, int]]]:
        with self.lock:
            return sorted(self.frames.values(), key=lambda x: x[0]), set(self.acked)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class ConsoleReader(threading.Thread):
    def __init__(self, port: serial.Serial) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.data = bytearray()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                chunk = self.port.read(256)
            except (OSError, serial.SerialException):
                return
            self.data += chunk


def read_settings(board: Board) -> dict[str, Any]:
    """The device id and sampling settings from the board's config (never its key)."""
    board.enter()
    code = (
        "import json\n"
        f"with open({img.CONFIG_NAME!r}) as f:\n"
        "    _tw_c = json.load(f)\n"
        f"print(repr(dict((k, _tw_c.get(k)) for k in {BENCH_KEYS!r})))\n"
        "del _tw_c\n"
    )
    try:
        got: dict[str, Any] = json.loads(json.dumps(board.eval_code(code)))
    except BoardError as e:
        raise BenchError(f"the board is not provisioned (no readable config.json): {e}") from e
    from firmware import config as fwconfig

    for k in BENCH_KEYS:
        if got.get(k) is None:
            got[k] = fwconfig.DEFAULTS[k]
    return got


def run(
    board: Board,
    gnss: serial.Serial,
    broker: tuple[str, int],
    open_strap: Callable[[], None],
    walk_s: float | None = None,
    say: Callable[[str], None] = print,
    receiver: str = nmea.DEFAULT_PROFILE,
) -> Report:
    settings = read_settings(board)
    device = int(settings["device"])
    plan = Plan.for_board(settings, walk_s, receiver)
    uplink = Uplink(broker[0], broker[1], device)
    try:
        return _run(board, gnss, uplink, settings, plan, open_strap, say)
    finally:
        uplink.close()


def _run(
    board: Board,
    gnss: serial.Serial,
    uplink: Uplink,
    settings: dict[str, Any],
    plan: Plan,
    open_strap: Callable[[], None],
    say: Callable[[str], None],
) -> Report:
    device = int(settings["device"])
    board.soft_reset()  # boot the firmware afresh with the bench watching from the start
    console = board.t.serial
    patience = console.timeout
    console.timeout = 0.2  # the reader notices its stop flag between short reads
    reader = ConsoleReader(console)
    reader.start()
    t0 = int(time.time()) + 1
    sky = Sky(t0, plan)
    feeder = GnssFeeder(gnss, sky, plan.receiver)
    feeder.start()
    report = Report(device, str(settings["board"]), plan, float(t0))
    try:
        say(f"bench: tag {device}: walk {plan.walk_s:g} s, no sky {plan.nofix_s:g} s, jump")
        time.sleep(max(0.0, sky.end - time.time()))
        say("bench: OPEN THE STRAP now")
        open_strap()
        strap_at = time.time()
        deadline = strap_at + plan.drain_s
        while time.time() < deadline:
            frames, acked = uplink.snapshot()
            keys = {(f.boot, f.seq) for _t, f in frames}
            if _tamper(frames, strap_at) is not None and keys and keys <= acked:
                break
            time.sleep(0.2)
    finally:
        feeder.stop.set()
        reader.stop.set()
        feeder.join(5)
        reader.join(5)
        console.timeout = patience
    if feeder.error:
        raise BenchError(f"writing NMEA to the GNSS port failed: {feeder.error}")
    frames, acked = uplink.snapshot()
    report.frames = len(frames)
    report.checks = evaluate(frames, acked, uplink.unparsed, sky, strap_at, bytes(reader.data))
    report.fixes = [
        {"ts": f.time_of(r), "lat_e7": r.lat_e7, "lon_e7": r.lon_e7, "acc_dm": r.acc_dm}
        for _t, f in frames
        for r in f.records
        if r.name == "fix" and f.flags & fr.FLAG_TIME_VALID
    ]
    return report


def _tamper(frames: list[tuple[float, fr.Frame]], since: float) -> float | None:
    """Arrival time of the first strap-open tamper record in an urgent frame after `since`."""
    for arrived, f in frames:
        for r in f.records:
            if (
                r.name == "tamper"
                and r.sensor == fr.SENSOR_STRAP
                and r.state == fr.OPEN
                and f.flags & fr.FLAG_URGENT
                and arrived >= since
            ):
                return arrived
    return None


def evaluate(
    frames: list[tuple[float, fr.Frame]],
    acked: set[tuple[int, int]],
    unparsed: int,
    sky: Sky,
    strap_at: float,
    console: bytes,
) -> list[Check]:
    checks = []
    text = console.decode(errors="replace")
    checks.append(
        Check(
            "console",
            "Traceback" not in text,
            f"{len(console)} bytes read"
            + ("; " + text[text.find("Traceback") :][:300] if "Traceback" in text else ""),
        )
    )
    checks.append(
        Check(
            "uplink", bool(frames) and unparsed == 0, f"{len(frames)} frames, {unparsed} unparsed"
        )
    )
    recs = [(f, r) for _t, f in frames for r in f.records]
    boots = [r for _f, r in recs if r.name == "boot"]
    checks.append(Check("boot", bool(boots), f"{len(boots)} boot record(s)"))
    fixes = [
        (f.time_of(r), (r.lat_e7 / 1e7, r.lon_e7 / 1e7), r.acc_dm / 10)
        for f, r in recs
        if r.name == "fix" and f.flags & fr.FLAG_TIME_VALID
    ]
    walk = [(t, p, a) for t, p, a in fixes if sky.t0 <= t < sky.nofix_at]
    off = [
        (t, round(distance_m(p, walk_position(t - sky.t0))))
        for t, p, a in walk
        if distance_m(p, walk_position(t - sky.t0)) > 15 + a
    ]
    checks.append(
        Check(
            "fixes",
            len(walk) >= 2 and not off,
            f"{len(walk)} on the walk" + (f"; off the walk (t, m): {off[:3]}" if off else ""),
        )
    )
    blind = [t for t, _p, _a in fixes if sky.nofix_at + 1 <= t < sky.jump_at]
    checks.append(Check("no fix", not blind, f"{len(blind)} fixes while there was no sky"))
    jumped = [t for t, p, _a in fixes if distance_m(p, sky.jump) < 1000]
    # The fix filter refuses an impossible jump and re-anchors after repeated "jumps"; the
    # first epoch at the new place must never be believed.
    early = [t for t in jumped if t < sky.jump_at + 1]
    checks.append(
        Check(
            "jump",
            bool(jumped) and not early,
            f"{len(early)} believed at the first epoch; re-anchored: {'yes' if jumped else 'no'}",
        )
    )
    per_frame = [sum(r.name == "fix" for r in f.records) for _t, f in frames]
    per_frame = [n for n in per_frame if n]
    checks.append(
        Check("batching", any(n >= 2 for n in per_frame), f"fixes per frame: {per_frame}")
    )
    tamper_at = _tamper(frames, strap_at)
    took = None if tamper_at is None else tamper_at - strap_at
    checks.append(
        Check(
            "tamper",
            took is not None and took <= TAMPER_LIMIT_S,
            "no strap tamper record" if took is None else f"arrived {took:.1f} s after opening",
        )
    )
    keys = {(f.boot, f.seq) for _t, f in frames}
    missing = sorted(keys - acked)
    checks.append(
        Check(
            "acknowledged",
            bool(keys) and not missing,
            f"{len(keys) - len(missing)}/{len(keys)} frames acknowledged by the backend",
        )
    )
    return checks
