"""A MicroPython board on a serial port, through mpremote's serial transport (pyserial): the
raw REPL to run snippets, write files, list and hash them, wipe the filesystem and reset.
The same code drives a real ESP32-S3 on /dev/ttyUSB0 and the virtual board on a pty.

Everything the board is asked to do is a short snippet sent over the raw REPL; replies are
read back as repr()/hex text. File contents (the device config carries the key) are sent as
data and never echoed or logged."""

from __future__ import annotations

import ast
import contextlib
import io
import os
import stat
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import serial
from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport

# Bytes per write snippet: raw-paste mode has flow control, so a larger chunk only saves
# round trips (repr() of binary .mpy data can be up to 4x the raw size).
CHUNK = 2048
ATTEMPT_S = 1.0  # one try at the raw REPL
QUIET_S = 0.5  # silence that says a board has answered everything it was sent

# Hashes every file named, in one round trip, as "<hex sha256> <path>" lines.
_HASH_SNIPPET = """\
import hashlib, binascii
def _tw_hash(paths):
    buf = bytearray(512)
    mv = memoryview(buf)
    for p in paths:
        h = hashlib.sha256()
        try:
            with open(p, 'rb') as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    h.update(mv[:n])
            print(binascii.hexlify(h.digest()).decode(), p)
        except OSError:
            print('-', p)
"""

# Removes everything under the filesystem root the board runs from (the image, the config,
# the flash log): what a full erase leaves, minus MicroPython itself.
_ERASE_SNIPPET = """\
import os
def _tw_rm(d):
    n = 0
    for e in os.ilistdir(d):
        p = (d + '/' if d else '') + e[0]
        if e[1] & 0x4000:
            n += _tw_rm(p)
            os.rmdir(p)
        else:
            os.remove(p)
            n += 1
    return n
print(_tw_rm(''))
"""


class BoardError(RuntimeError):
    """A board problem with a message for the engineer; the CLI exits non-zero with it."""


class PortError(BoardError):
    pass


class NoAnswerError(BoardError):
    pass


class HashMismatchError(BoardError):
    pass


def check_port(port: str) -> None:
    """A clear error for a port that is not there or not a serial device."""
    if "://" in port:  # a pyserial URL (rfc2217://, socket://): let pyserial judge
        return
    try:
        mode = os.stat(port).st_mode
    except OSError as e:
        raise PortError(f"serial port {port}: {e.strerror}") from e
    if not stat.S_ISCHR(mode):
        raise PortError(f"serial port {port}: not a character device")


class Board:
    """A connection to a board's REPL. Use as a context manager; `enter()` interrupts what
    runs and enters the raw REPL."""

    def __init__(self, port: str, baud: int = 115200, timeout_s: float = 5.0) -> None:
        check_port(port)
        self.port = port
        self.timeout_s = timeout_s
        try:
            self.t = SerialTransport(port, baudrate=baud, timeout=timeout_s)
        except (TransportError, serial.SerialException, OSError) as e:
            raise PortError(f"cannot open serial port {port}: {e}") from e
        self.t.is_pty = False  # read with the port's timeout, not a blocking read per byte

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self.t.in_raw_repl:
                self.t.exit_raw_repl()
            self.t.close()
        except (OSError, serial.SerialException):
            pass  # the board went away (a reset): nothing left to close cleanly

    def enter(self) -> None:
        """Interrupt the running program and enter the raw REPL. Ctrl-C and Ctrl-A are sent
        again every ATTEMPT_S: a board still booting (just reset) can swallow the first ones."""
        deadline = time.monotonic() + self.timeout_s
        tries = 0
        while True:
            left = deadline - time.monotonic()
            tries += 1
            try:
                # mpremote prints what it got instead of a prompt; the error below says it.
                with contextlib.redirect_stdout(io.StringIO()):
                    self.t.enter_raw_repl(soft_reset=False, timeout_overall=min(ATTEMPT_S, left))
                break
            except (TransportError, serial.SerialException, OSError) as e:
                if isinstance(e, TransportError) and time.monotonic() < deadline - 0.1:
                    continue
                raise NoAnswerError(
                    f"the board on {self.port} does not answer (no raw REPL within "
                    f"{self.timeout_s:g} s): is MicroPython on it, is it powered, is this its "
                    "console port?"
                ) from e
        if tries > 1:
            self._resync(deadline)

    def _resync(self, deadline: float) -> None:
        """After a retry the board may still be answering the earlier attempts (a banner per
        Ctrl-A, late): let it finish, drop what it said, and take one fresh banner, so the
        next command reads its own answer rather than a stale banner."""
        quiet_until = time.monotonic() + QUIET_S
        while time.monotonic() < quiet_until and time.monotonic() < deadline + QUIET_S:
            n = self.t.serial.in_waiting
            if n:
                self.t.serial.read(n)
                quiet_until = time.monotonic() + QUIET_S
            else:
                time.sleep(0.02)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.t.enter_raw_repl(soft_reset=False, timeout_overall=max(ATTEMPT_S, QUIET_S))
        except (TransportError, serial.SerialException, OSError) as e:
            raise NoAnswerError(f"the board on {self.port} stopped answering: {e}") from e

    def exec(self, code: str, timeout_s: float | None = None) -> str:
        """Run code in the raw REPL; its printed output, or BoardError with its traceback."""
        try:
            out, err = self.t.exec_raw(code, timeout=timeout_s or self.timeout_s)
        except (TransportError, serial.SerialException, OSError) as e:
            raise NoAnswerError(f"the board on {self.port} stopped answering: {e}") from e
        if err:
            raise BoardError(f"the board refused: {err.decode(errors='replace').strip()}")
        return str(out.decode(errors="replace"))

    def eval(self, expr: str) -> Any:
        return self.eval_code(f"print(repr({expr}))")

    def eval_code(self, code: str) -> Any:
        """Run code that prints one repr() as its last line; that value."""
        out = self.exec(code).strip().splitlines()
        try:
            return ast.literal_eval(out[-1]) if out else None
        except (ValueError, SyntaxError) as e:
            raise BoardError(f"the board answered something unexpected: {out[-1][:80]!r}") from e

    def mkdirs(self, paths: list[str]) -> None:
        want = sorted({str(p) for f in paths for p in PurePosixPath(f).parents if str(p) != "."})
        if want:
            self.exec(
                "import os\n"
                f"for d in {want!r}:\n"
                "    try:\n        os.mkdir(d)\n    except OSError:\n        pass\n"
            )

    def write(self, path: str, data: bytes, progress: Callable[[int], None] | None = None) -> None:
        """Write a file (replacing it); the data travels as literals, never printed back."""
        try:
            self.t.exec(f"_tw_f = open({path!r}, 'wb')")
            for i in range(0, len(data), CHUNK):
                self.t.exec(f"_tw_f.write({data[i : i + CHUNK]!r})")
                if progress:
                    progress(min(CHUNK, len(data) - i))
            self.t.exec("_tw_f.close()\ndel _tw_f")
        except TransportExecError as e:
            # The error text is the board's traceback of open()/write(), never the data.
            raise BoardError(f"writing {path} failed: {e.error_output.strip()}") from e
        except (TransportError, serial.SerialException, OSError) as e:
            raise NoAnswerError(f"the board on {self.port} stopped answering: {e}") from e

    def hashes(self, paths: list[str]) -> dict[str, str | None]:
        """SHA-256 (hex) of each file on the board; None where it is missing."""
        out = self.exec(_HASH_SNIPPET + f"_tw_hash({paths!r})\ndel _tw_hash\n", timeout_s=30)
        got: dict[str, str | None] = {}
        for line in out.splitlines():
            digest, _, path = line.strip().partition(" ")
            if path:
                got[path] = None if digest == "-" else digest
        return got

    def erase(self) -> int:
        """Remove every file on the board's filesystem; returns how many."""
        return int(self.exec(_ERASE_SNIPPET + "del _tw_rm\n", timeout_s=60).strip() or 0)

    def soft_reset(self) -> None:
        """Restart MicroPython so main.py runs what was flashed (`machine.soft_reset()`: a
        soft reboot on a device; the virtual board's process exits and it boots again)."""
        try:
            self.t.exec_raw_no_follow("import machine\nmachine.soft_reset()")
        except (TransportError, serial.SerialException, OSError) as e:
            raise NoAnswerError(f"the board on {self.port} did not take the reset: {e}") from e
        self.t.in_raw_repl = False
