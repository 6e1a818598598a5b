# The simulator board for the MicroPython unix port. The GNSS UART is a pty the simulator
# writes NMEA into; modem, sensors and the clock come over a line protocol on a TCP socket
# (docs/firmware.md, "Simulator board protocol"), in lock-step: the firmware reports when it
# wants to wake ("W"), the simulator answers with the time it now is ("T"). The firmware
# never reads the wall clock. Flash is littlefs on an image file that outlives the process,
# so killing the process is a power cut and restarting it a reboot.
import gc
import json
import socket

import vfs

from firmware import board as hal
from firmware import frame as fr
from firmware.blockfile import BlockFile
from firmware.boards import definition
from firmware.files import Files


class SimModem:
    def __init__(self, link: "Link") -> None:
        self.link = link
        self.state = hal.MODEM_OFF
        self.inbox: list[tuple[str, bytes]] = []

    def power(self, on: bool) -> None:
        self.link.send("M %d" % (1 if on else 0))
        if not on:
            self.state = hal.MODEM_OFF

    def connect(self, broker: str, client_id: str, password: str, down_topic: str) -> None:
        # The simulator's bridge opens the session with exactly these credentials.
        self.state = hal.MODEM_CONNECTING
        self.link.send("C %s %s %s %s" % (client_id, down_topic, broker or "-", password))

    def status(self) -> int:
        return self.state

    def publish(self, topic: str, payload: bytes) -> bool:
        if self.state != hal.MODEM_ONLINE:
            return False
        self.link.send("P %s %s" % (topic, payload.hex()))
        return True

    def receive(self) -> "tuple[str, bytes] | None":
        if self.inbox:
            return self.inbox.pop(0)
        return None

    def step(self, now_ms: int) -> int:
        return -1


class SimRadio:
    """The BLE radio: advertisements go to the simulator ("B"), which decides whether the home
    unit hears them and with what RSSI; the home unit's GATT operations come back as lines
    between turns (N, A, O, K) and are answered at once, as a GATT server answers."""

    def __init__(self, link: "Link") -> None:
        self.link = link
        self.service: object = None  # firmware.homelink.HomeLink

    def serve(self, service: "object") -> None:
        self.service = service

    def advertise(self, adv: bytes) -> None:
        self.link.send("B " + adv.hex())

    def handle(self, op: str, arg: str) -> None:
        s = self.service
        if s is None:  # no RF support in this build: the tag refuses every GATT operation
            self.link.send("e")
        elif op == "N":
            if arg == "1":
                s.connect()  # type: ignore[attr-defined]
            else:
                s.disconnect()  # type: ignore[attr-defined]
            self.link.send("n")
        elif op == "A":
            s.write_ack(bytes.fromhex(arg))  # type: ignore[attr-defined]
            self.link.send("a")
        elif op == "O":
            self.link.send(("o " + s.read_offload().hex()).strip())  # type: ignore[attr-defined]
        else:
            s.write_downlink(bytes.fromhex(arg))  # type: ignore[attr-defined]
            self.link.send("k")
        self.link.flush()


class Link:
    """The simulator's socket: line-based, one turn per T ... W exchange."""

    def __init__(self, addr: str) -> None:
        host, port = addr.rsplit(":", 1)
        self.sock = socket.socket()
        self.sock.connect(socket.getaddrinfo(host, int(port))[0][-1])
        self.out: list[bytes] = []

    def send(self, line: str) -> None:
        # Held until the turn ends: one write per turn, no small-packet stalls on TCP.
        self.out.append(line.encode())

    def flush(self) -> None:
        if self.out:
            self.out.append(b"")
            self.sock.write(b"\n".join(self.out))
            self.out = []

    def readline(self) -> str:
        raw = self.sock.readline()
        if not raw:
            raise SystemExit(0)  # the simulator went away: power off
        return raw.decode().strip()


class SimBoard:
    name = "sim"

    def __init__(self, cfg: "dict[str, object]") -> None:
        self.cfg = cfg
        # Battery and current table from hw/boards/virtual.json (the real tag's parts).
        d = definition.load(str(cfg["board_def"]))
        self.capacity_mah: int = d["battery_mah"]  # type: ignore[assignment]
        self.currents: dict[str, dict[str, int]] = d["currents_ua"]  # type: ignore[assignment]
        self.bursts: dict[str, int] = d["bursts_uas"]  # type: ignore[assignment]
        self.link = Link(str(cfg["board_socket"]))
        self.uart = open(str(cfg["board_gnss"]), "rb")  # noqa: SIM115 - the UART stays open
        self.modem = SimModem(self.link)
        self.radio = SimRadio(self.link)
        self.now = int(cfg.get("board_start_ticks", 0))  # type: ignore[call-overload]
        self.gnss_buf = b""
        self.sensors = {"strap": 0, "case": 0, "mv": 4100, "charger": 0, "motion": 0}
        self.heap_peak = 0
        self.heap_code = 0
        self.app: object = None
        flash = BlockFile(str(cfg["board_flash"]), 4096, 256)  # 1 MB
        try:
            # BlockFile implements the block protocol without subclassing the stubs' class.
            fs = vfs.VfsLfs2(flash)  # pyright: ignore[reportArgumentType]
        except OSError:  # a blank image: format it, as provisioning does
            vfs.VfsLfs2.mkfs(flash)  # pyright: ignore[reportArgumentType]
            fs = vfs.VfsLfs2(flash)  # pyright: ignore[reportArgumentType]
        vfs.mount(fs, "/flash")
        self._turn()  # the simulator opens with the boot time

    def _turn(self) -> None:
        """Read simulator lines until the next T (the time to run at)."""
        while True:
            line = self.link.readline()
            op = line[:1]
            if op == "T":
                _t, ticks, nbytes = line.split()
                self.now = int(ticks)
                n = int(nbytes)
                if n:
                    self.gnss_buf += self.uart.read(n)  # already written: returns at once
                return
            if op == "S":
                _s, name, value = line.split()
                if name == "motion":
                    self.sensors[name] += int(value)
                else:
                    self.sensors[name] = int(value)
            elif op == "L":
                self.modem.state = int(line[2:])
            elif op == "R":
                _r, topic, data = line.split()
                self.modem.inbox.append((topic, bytes.fromhex(data)))
            elif op and op in "NAOK":
                self.radio.handle(op, line[2:])
            elif op == "?":
                self.link.send("X " + json.dumps(self.report()))
                self.link.flush()
            elif op == "U":  # the frames still in the flash log, for the run's accounting
                if self.app is not None:
                    for _boot, _seq, data in self.app.store.pending_frames():  # type: ignore[attr-defined]
                        # One frame a write: a day's backlog joined into one buffer does not
                        # fit a fragmented heap at the end of a run.
                        self.link.send("Y " + data.hex())
                        self.link.flush()
                self.link.send("Z")
                self.link.flush()
            elif op == "Q":
                raise SystemExit(0)

    def report(self) -> "dict[str, object]":
        app = self.app
        out: dict[str, object] = {
            "heap_peak": self.heap_peak,
            "heap_code": self.heap_code,
            "heap_free": gc.mem_free(),
        }
        if app is not None:
            a = app  # firmware.app.App
            out.update(
                {
                    "boot": a.boot,  # type: ignore[attr-defined]
                    "seq": a.seq,  # type: ignore[attr-defined]
                    "polls": a.polls,  # type: ignore[attr-defined]
                    "fixes": a.fixes,  # type: ignore[attr-defined]
                    "pending": a.store.pending(),  # type: ignore[attr-defined]
                    "lost_total": a.state.int("lost_total"),  # type: ignore[attr-defined]
                    "uah": a.ledger.breakdown_uah(a.mono.ms),  # type: ignore[attr-defined]
                    "ms": a.mono.ms,  # type: ignore[attr-defined]
                    "nmea_bad": a.nmea.bad(),  # type: ignore[attr-defined]
                    "refused": a.downlink.refused,  # type: ignore[attr-defined]
                    "starts": a.sampler.starts,  # type: ignore[attr-defined]
                    "latched": [a.strap.latched, a.case.latched],  # type: ignore[attr-defined]
                    "mode": a.mode.code,  # type: ignore[attr-defined]
                    "clock": a.clock_unix(a.mono.ms),  # type: ignore[attr-defined]
                }
            )
            rf = a.rf  # type: ignore[attr-defined]
            if rf is not None:
                out["rf"] = {
                    "beacons": rf.beacons,
                    "counter": rf.counter.value,
                    "acks": rf.prox.accepted,
                    "refused": rf.prox.refused,
                    "contacts": rf.link.contacts,
                    "offered": rf.link.offered,
                    "lease_until": rf.prox.lease_until,
                }
        return out

    # clock and power ----------------------------------------------------------------------
    def ticks_ms(self) -> int:
        return self.now

    def sleep_until(self, wake_ticks: int) -> None:
        gc.collect()  # measure what is live, as the heap high-water mark
        used = gc.mem_alloc()
        if used > self.heap_peak:
            self.heap_peak = used
        self.link.send("W %d" % wake_ticks)
        self.link.flush()
        self._turn()

    def reset_cause(self) -> int:
        v = self.cfg.get("board_reset_cause", fr.RESET_POWER_ON)
        return v if type(v) is int else fr.RESET_POWER_ON  # type: ignore[return-value]

    def watchdog_start(self, timeout_ms: int) -> None:
        self.link.send("D %d" % timeout_ms)  # the simulator enforces it in simulated time

    def watchdog_feed(self) -> None:
        self.link.send("F")

    def files(self) -> Files:
        return Files("/flash/tw")

    # GNSS ---------------------------------------------------------------------------------
    def gnss_power(self, on: bool) -> None:
        self.link.send("G %d" % (1 if on else 0))

    def gnss_read(self) -> "bytes | None":
        d = self.gnss_buf
        self.gnss_buf = b""
        return d

    # sensors and wearer -------------------------------------------------------------------
    def strap_open(self) -> bool:
        return self.sensors["strap"] != 0

    def case_open(self) -> bool:
        return self.sensors["case"] != 0

    def battery_mv(self) -> int:
        return self.sensors["mv"]

    def charger(self) -> "tuple[bool, bool]":
        c = self.sensors["charger"]
        return bool(c & 1), bool(c & 2)

    def motion(self) -> int:
        m = self.sensors["motion"]
        self.sensors["motion"] = 0
        return m

    def vibrate(self, pattern: int, repeats: int) -> None:
        self.link.send("V %d %d" % (pattern, repeats))
