"""The virtual board: a tag you can flash, provision and bench like the real one, made of the
MicroPython unix port and the simulator board (firmware/boards/sim.py).

    console pty  <->  MicroPython's REPL (raw REPL included: mpremote works on it)
    GNSS pty     -->  the firmware's GNSS UART (write NMEA into it, e.g. with pyserial)
    control      -->  sensors: "strap 1", "case 0", "motion 3", "mv 3600", "charger 3"
    fs/          the board's filesystem: a real folder, written by `tagwatch hw flash`

The board "boots" like a device: MicroPython starts in fs/ and runs main.py if there is one
(the image's start script starts the firmware from config.json), then drops to the REPL if
it ends or is interrupted (Ctrl-C from the console, as mpremote sends). When MicroPython
exits (`machine.soft_reset()`, Ctrl-D at the REPL, a crash), the board boots again from
what is in fs/ — so flash, reset, run uses what was flashed.

The firmware's simulator board talks to this program over its socket (docs/firmware.md,
"Simulator board protocol"), which here runs in real time: the clock is the host's
monotonic clock, NMEA written to the GNSS pty reaches the firmware while its receiver is
powered (a powered-down receiver says nothing), and the modem is bridged to a real MQTT
broker with the HIL tag's modem bridge (sim/hil_modem.py; `HilTag` subclassed)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import tty
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from firmware import ticks
from hw import boarddef
from sim import micropython
from sim.hil import HilConfig, HilTag
from sim.hil_modem import ModemBridge

# The unix port keeps loaded code in its heap (~90 KiB for the firmware on 64-bit; see
# docs/firmware.md, "Heap"), so the virtual board runs with more than a device has.
DEFAULT_HEAP = "256k"
# Boots like a device: main.py if present, then the REPL (micropython -i).
ROM = """\
import os
try:
    os.stat('main.py')
except OSError:
    print('virtual board: no main.py (flash an image: tagwatch hw flash)')
else:
    exec(open('main.py').read())
"""
SENSORS = ("strap", "case", "motion", "mv", "charger")
CONSOLE_TAIL = 4000  # bytes of console output kept for `status`
# Console output the host has not read yet, kept for it: a host this far behind (a tool on a
# busy machine) loses nothing; beyond it, with nobody reading, the newest is lost, as a UART's.
CONSOLE_BACKLOG = 1 << 20
# Console input the firmware has not read yet: beyond it the board stops reading the host,
# whose writes then wait, as USB CDC's flow control makes them (and Ctrl-C waits behind them,
# as on a device, which sees the byte only when it is received).
CONSOLE_INPUT = 4096


CTRL_C = b"\x03"


class VirtualBoardError(RuntimeError):
    pass


def _raw_pty() -> tuple[int, int, str]:
    """A pty pair in raw mode (a UART: bytes as they are, no echo); (master, slave, path)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


class VirtualBoard(HilTag):
    def __init__(
        self,
        root: Path,
        broker_host: str = "127.0.0.1",
        broker_port: int = 1883,
        heap: str = DEFAULT_HEAP,
        control_port: int = 0,
    ) -> None:
        d = boarddef.load("virtual")
        cfg = HilConfig(
            device=0,  # the board learns its identity from config.json, not from here
            key=b"",
            workdir=root,
            brokers=[f"{broker_host}:{broker_port}"],
            heap=heap,
            reply_wait_s=0.0,  # real time: a downlink wakes the firmware when it comes
            connect_delay_ms=300,
        )
        # This board runs in real time (the console, the GNSS port): closing a modem session
        # must not wait for paho's network thread to end.
        super().__init__(cfg, modem=ModemBridge(cfg.connect_delay_ms, stop_in_background=True))
        self.env_name = str(d["host_wiring_env"])
        self.root = root.resolve()
        self.fs = self.root / "fs"
        self.fs.mkdir(parents=True, exist_ok=True)
        self.console_master, self._console_slave, self.console_path = _raw_pty()
        self.gnss_master, self._gnss_slave, self.gnss_path = _raw_pty()
        self.master, self._slave, internal_gnss = _raw_pty()  # HilTag's GNSS pty
        os.set_blocking(self.master, True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.control = socket.create_server(("127.0.0.1", control_port))
        self.controls: list[socket.socket] = []
        self.wiring = self.root / "wiring.json"
        self.wiring.write_text(
            json.dumps(
                {
                    "board_socket": f"127.0.0.1:{self.listener.getsockname()[1]}",
                    "board_gnss": internal_gnss,
                    "board_flash": str(self.fs / "lfs.img"),
                    "board_def": "",  # the image's generated board_def module
                }
            )
        )
        self.rom = self.root / "rom.py"
        self.rom.write_text(ROM)
        self.t0 = time.monotonic()
        self.repl: subprocess.Popen[bytes] | None = None
        self.repl_master = -1
        self.started_at = 0.0
        self.interrupting = False  # a SIGINT sent to the code MicroPython is running now
        self.interrupted = False  # a SIGINT sent to this MicroPython since it started
        self.safe_boot = False  # the next boot stays at the REPL (main.py was interrupted)
        self.inbuf = b""
        self.turn: list[str] = []
        self.awaiting = False
        self.turns = 0  # polls the firmware completed since the board started
        self.turn_sent_ms = 0
        self.gnss_pending = bytearray()
        self.console_tail = b""
        self.to_console = bytearray()  # MicroPython's output the host's pty has not taken yet
        self.to_repl = bytearray()  # the host's input MicroPython's pty has not taken yet
        self.stopping = False
        self.adverts_sent = 0
        self.unknown_ops: set[str] = set()

    # -- what the engineer sees ----------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {
            "console": self.console_path,
            "gnss": self.gnss_path,
            "control": f"127.0.0.1:{self.control.getsockname()[1]}",
            "fs": str(self.fs),
            "broker": self.cfg.brokers[0],
        }

    def status(self) -> dict[str, Any]:
        return {
            "boots": self.boots,
            "attached": self.conn is not None,  # the firmware connected since its boot
            "gnss_on": self.gnss_on,
            "modem": self.modem.state,
            "published": len(self.modem.published),
            "sensors": dict(self.sensors),
            # Whether the firmware is alive and polling: a stalled board shows here.
            "turns": self.turns,
            "awaiting_ms": self.now_ms - self.turn_sent_ms if self.awaiting else 0,
            "next_wake_ms": self.wake_ms - self.now_ms,
            "console_tail": self.console_tail[-4000:].decode(errors="replace"),
        }

    # -- MicroPython ---------------------------------------------------------------------------
    def _spawn(self) -> None:
        """Power on: MicroPython in fs/, its stdio on a fresh pty.

        Ctrl-C is not left to the terminal (ISIG): MicroPython's unix port resets SIGINT to its
        default action whenever it is not running code (at the REPL, between statements), so a
        terminal-generated SIGINT arriving then kills the process, where a device ignores the
        byte. The board starts MicroPython with SIGINT ignored and delivers a console Ctrl-C
        itself (_pump_console_in): as SIGINT while MicroPython's own handler is installed (a
        program is running: KeyboardInterrupt, as a device's UART interrupt does), otherwise as
        the byte, which the REPL reads."""
        master, slave = os.openpty()
        tty.setraw(slave)
        env = dict(os.environ)
        env["MICROPYPATH"] = f".frozen:{self.fs}"
        env[self.env_name] = str(self.wiring)
        # Boots like a device: main.py if there is one, then the REPL (-i). An ignored SIGINT
        # stays ignored across exec, so the interpreter installs no handler of its own (only
        # MicroPython's, while it runs code).
        script = [] if self.safe_boot else ["-i", str(self.rom)]
        self.safe_boot = False
        cmd = ["env", "--ignore-signal=INT", *micropython.command(script, self.cfg.heap)]
        self.repl = subprocess.Popen(
            cmd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=self.fs,
            env=env,
            close_fds=True,
            start_new_session=True,  # the engineer's Ctrl-C on `tagwatch hw virtual` is ours
        )
        os.close(slave)
        os.set_blocking(master, False)
        self.repl_master = master
        self.started_at = time.monotonic()
        self.interrupting = self.interrupted = False

    def _take_interrupt(self) -> bool:
        """Whether a console Ctrl-C is to be a SIGINT: MicroPython is running code and has not
        been sent one since. One SIGINT per run of code: the unix port's handler exits the
        process when a second comes before the first was raised (while it runs C code). A
        device takes the second Ctrl-C as a byte: so does this board, and the REPL reads it."""
        if not self._interrupt_armed():
            self.interrupting = False  # the interrupted code has ended
            return False
        if self.interrupting:
            return False
        self.interrupting = self.interrupted = True
        return True

    def _interrupt_armed(self) -> bool:
        """Whether MicroPython's SIGINT handler is installed (it is running code)."""
        if self.repl is None:
            return False
        try:
            status = Path(f"/proc/{self.repl.pid}/status").read_text()
        except OSError:
            return False
        for line in status.splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
        return False

    def _power_off(self) -> None:
        if self.repl is not None:
            if self.repl.poll() is None:
                self.repl.kill()
            self.repl.wait()
            self.repl = None
        if self.repl_master >= 0:
            # What MicroPython wrote just before it exited is still in the pty (e.g. the raw
            # REPL's acknowledgement of `machine.soft_reset()`): pass it on before closing.
            for _ in range(64):
                if not self._pump_console_out():
                    break
            os.close(self.repl_master)
            self.repl_master = -1
            self.to_repl.clear()  # input the dead interpreter never read
        self._detach()

    def _detach(self) -> None:
        """The firmware stopped talking (interrupted, reset or dead)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.inbuf = b""
        self.turn = []
        self.awaiting = False
        self.modem.power(False)
        self.gnss_on = False
        self.gnss_pending.clear()

    def _attach(self, conn: socket.socket) -> None:
        """The firmware's simulator board connected: it is booting."""
        self._detach()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setblocking(False)
        self.conn = conn
        self.boots += 1
        self.last_feed_ms = self.now_ms
        self.wake_ms = self.now_ms
        # A freshly booted board reads its sensors: tell it what differs from the defaults.
        for name, value in self.sensors.items():
            if (name, value) not in (("strap", 0), ("case", 0), ("mv", 4100), ("charger", 0)):
                self.pending_lines.append(f"S {name} {value}")
        self._start_turn()

    # -- the lock-step protocol, in real time ----------------------------------------------------
    def _clock(self) -> None:
        self.now_ms = int((time.monotonic() - self.t0) * 1000)

    def _start_turn(self) -> None:
        assert self.conn is not None
        lines = self._inputs()
        n = len(self.gnss_pending)
        if n:
            os.write(self.master, bytes(self.gnss_pending))
            self.gnss_pending.clear()
        lines.append(f"T {self._ticks()} {n}")
        self.conn.setblocking(True)
        try:
            self.conn.sendall("".join(x + "\n" for x in lines).encode())
            self.turn_sent_ms = self.now_ms
        except OSError:
            self._detach()
            return
        finally:
            if self.conn is not None:
                self.conn.setblocking(False)
        self.awaiting = True

    def _receive(self) -> None:
        assert self.conn is not None
        try:
            data = self.conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._detach()
            return
        self.inbuf += data
        while b"\n" in self.inbuf:
            raw, self.inbuf = self.inbuf.split(b"\n", 1)
            line = raw.decode()
            if line.startswith("W "):
                self._finish_turn(self.turn, int(line[2:]))
                self.turn = []
            elif line.startswith("X "):
                continue  # a report nobody asked for here
            else:
                self.turn.append(line)

    def _finish_turn(self, lines: list[str], wake: int) -> None:
        """The firmware's outputs of one poll (the same operations HilTag handles)."""
        self.awaiting = False
        self.turns += 1
        self.wake_ms = self.now_ms + ticks.diff(wake, self._ticks())
        for line in lines:
            op, _, rest = line.partition(" ")
            if op == "G":
                self._gnss_power(rest == "1")
                if rest != "1":
                    self.gnss_pending.clear()
            elif self._device_line(op, rest):
                continue
            elif op == "B":
                self.adverts_sent += 1  # BLE advertising: no home unit in the air on the bench
            elif op not in self.unknown_ops:
                self.unknown_ops.add(op)  # a newer firmware's line this board does not model
                print(f"virtual board: ignoring firmware lines {op!r}", file=sys.stderr)

    # -- byte pumps ------------------------------------------------------------------------------
    def _pump_console_out(self) -> int:
        """MicroPython's output to the console. It is always read, so a program never waits
        on a host that is not there; what the host's pty cannot take yet waits in
        `to_console` (os.write on a non-blocking pty writes part, or nothing, when it is
        full: the rest was silently lost, and a tool reading late saw 14 KB of 150)."""
        try:
            data = os.read(self.repl_master, 4096)
        except BlockingIOError:
            data = None
        except OSError:  # EIO: MicroPython closed its side (it exited)
            data = b""
        if data:
            self.console_tail = (self.console_tail + data)[-CONSOLE_TAIL:]
            self.to_console += data[: max(0, CONSOLE_BACKLOG - len(self.to_console))]
        self._flush(self.console_master, self.to_console)
        return len(data or b"")

    def _pump_console_in(self) -> None:
        """The host's input to MicroPython, read only while what it sent before has been
        taken (CONSOLE_INPUT); a Ctrl-C is acted on as it is read (_take_interrupt)."""
        if len(self.to_repl) >= CONSOLE_INPUT:
            return
        try:
            data = os.read(self.console_master, CONSOLE_INPUT)
        except (BlockingIOError, OSError):
            return
        if not data or self.repl_master < 0:
            return
        if self.interrupting and not self._interrupt_armed():
            self.interrupting = False  # ended before these bytes can start anything new
        parts = data.split(CTRL_C)
        for i, part in enumerate(parts):
            if i > 0:  # a Ctrl-C: interrupt a running program, else the REPL reads it
                if self.repl is not None and self._take_interrupt():
                    with contextlib.suppress(OSError):
                        os.kill(self.repl.pid, signal.SIGINT)
                    continue
                part = CTRL_C + part
            self.to_repl += part
        self._flush(self.repl_master, self.to_repl)

    @staticmethod
    def _flush(fd: int, pending: bytearray) -> None:
        """Write what `fd` takes of `pending` now, and keep the rest."""
        if not pending or fd < 0:
            return
        try:
            n = os.write(fd, pending)
        except BlockingIOError:
            return
        except OSError:  # the other side is gone: nobody will read it
            n = len(pending)
        del pending[:n]

    def _pump_gnss(self) -> None:
        try:
            data = os.read(self.gnss_master, 4096)
        except (BlockingIOError, OSError):
            return
        if self.gnss_on and self.conn is not None:
            self.gnss_pending += data

    def _control_line(self, c: socket.socket, line: str) -> None:
        parts = line.split()
        reply: str
        if parts == ["status"]:
            reply = json.dumps(self.status())
        elif len(parts) == 2 and parts[0] in SENSORS and parts[1].lstrip("-").isdigit():
            self.set_sensor(parts[0], int(parts[1]))
            self.wake_ms = self.now_ms  # a sensor change is an interrupt: wake the firmware
            reply = "ok"
        else:
            reply = f"error: expected 'status' or '<{'|'.join(SENSORS)}> <int>'"
        with contextlib.suppress(OSError):
            c.sendall(reply.encode() + b"\n")

    def _pump_control(self, c: socket.socket) -> None:
        try:
            data = c.recv(4096)
        except OSError:
            data = b""
        if not data:
            self.controls.remove(c)
            c.close()
            return
        for line in data.decode(errors="replace").splitlines():
            if line.strip():
                self._control_line(c, line.strip())

    # -- the loop --------------------------------------------------------------------------------
    def step(self, timeout_s: float = 0.05) -> None:
        """One pass: restart MicroPython if it exited, move bytes, run a turn when due."""
        if self.repl is None or self.repl.poll() is not None:
            if self.repl is not None:
                quick = time.monotonic() - self.started_at < 1.0
                if self.interrupted and self.repl.returncode != 0:
                    # It died of the console's interrupt (a reset or Ctrl-D exits with 0): the
                    # unix port aborts when a KeyboardInterrupt was raised in some C code
                    # ("FATAL: uncaught NLR" after one in gc.collect(), which the firmware's
                    # boot runs after every import). A device's program stops and the device
                    # stays at its REPL: so does this board.
                    print("virtual board: interrupted, staying at the REPL", file=sys.stderr)
                    self.safe_boot = True
                self._power_off()
                if quick:  # a crash loop must not spin the CPU
                    time.sleep(1.0)
            self._spawn()
        self._clock()
        if self.conn is not None and not self.awaiting:
            if self._modem_progress():  # the modem raises its status line: wake the firmware
                self.wake_ms = self.now_ms
            if self.modem.has_downlink():
                self.wake_ms = self.now_ms  # a downlink arrived: the modem raises its line
            if self.now_ms >= self.wake_ms:
                self._start_turn()
        fds: list[Any] = [self.gnss_master, self.listener, self.control, *self.controls]
        if len(self.to_repl) < CONSOLE_INPUT:  # else the host waits (_pump_console_in)
            fds.append(self.console_master)
        if self.repl_master >= 0:
            fds.append(self.repl_master)
        if self.conn is not None:
            fds.append(self.conn)
        wait = timeout_s
        if self.conn is not None and not self.awaiting:
            wait = max(0.0, min(timeout_s, (self.wake_ms - self.now_ms) / 1000))
        out = [self.console_master] if self.to_console else []
        if self.to_repl and self.repl_master >= 0:
            out.append(self.repl_master)
        try:
            ready, writable, _ = select.select(fds, out, [], wait)
        except InterruptedError:
            return
        self._clock()
        if self.console_master in writable:
            self._flush(self.console_master, self.to_console)
        if self.repl_master in writable:
            self._flush(self.repl_master, self.to_repl)
            self._pump_console_in()  # room again: read what the host has sent since
        for r in ready:
            if r == self.repl_master:
                self._pump_console_out()
            elif r == self.console_master:
                self._pump_console_in()
            elif r == self.gnss_master:
                self._pump_gnss()
            elif r is self.listener:
                conn, _ = self.listener.accept()
                self._attach(conn)
            elif r is self.control:
                c, _ = self.control.accept()
                self.controls.append(c)
            elif r is self.conn:
                self._receive()
            elif r in self.controls:
                self._pump_control(r)

    def run(self) -> None:
        """Until stop() (or SIGINT/SIGTERM when run from the CLI)."""
        while not self.stopping:
            self.step()

    def stop(self) -> None:
        self.stopping = True

    def close(self) -> None:
        self._power_off()
        for s in (self.listener, self.control, *self.controls):
            s.close()
        for fd in (
            self.console_master,
            self._console_slave,
            self.gnss_master,
            self._gnss_slave,
            self.master,
            self._slave,
        ):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master = self._slave = -1

    def __exit__(self, *exc: object) -> None:
        self.close()


def control(address: str, line: str, timeout_s: float = 5.0) -> str:
    """Send one control line to a running virtual board; its answer."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as s:
            s.sendall(line.encode() + b"\n")
            answer = s.makefile("rb").readline().decode().strip()
    except (OSError, ValueError) as e:
        raise VirtualBoardError(f"virtual board control {address}: {e}") from e
    if answer.startswith("error"):
        raise VirtualBoardError(f"virtual board control {address}: {answer}")
    return answer


def serve(board: VirtualBoard, on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Run the board until SIGINT or SIGTERM, then power it off."""

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        board.stop()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        board.step(0)  # power on
        if on_ready is not None:
            on_ready(board.info())
        board.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        board.close()
