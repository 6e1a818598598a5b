"""The simulator's end of the simulator-radio socket protocol (docs/home-unit.md): a small
threaded TCP server on 127.0.0.1 that home units connect to. It sends them beacons (and,
for lock-step runs, ticks) and answers their requests through a TagSide the caller supplies
— the simulator's radio model, or a scripted tag in a test.

Usage: peer = SimRadioPeer(tag_side); peer.start(); point the home unit at peer.port;
peer.wait_unit(unit); peer.send_beacon(unit, address, adv, rssi, time)."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

MAX_LINE = 1 << 20


class TagSide:
    """What the tags do when a home unit talks to them. Return None (or frames) for success,
    or a short reason string ("out_of_range", "busy", ...) that the unit receives as a failed
    radio action. The default knows no tags."""

    def on_ack(self, unit: int, address: str, data: bytes) -> str | None:
        return "no_tag"

    def on_offload(self, unit: int, address: str) -> list[bytes] | str:
        return "no_tag"

    def on_downlink(self, unit: int, address: str, data: bytes) -> str | None:
        return "no_tag"


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.unit: int | None = None

    def send(self, msg: dict[str, Any]) -> None:
        data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        with self.lock:
            self.sock.sendall(data)


class SimRadioPeer:
    def __init__(self, tags: TagSide | None = None, host: str = "127.0.0.1", port: int = 0):
        self.tags = tags or TagSide()
        self._server = socket.create_server((host, port))
        self.host = host
        self.port: int = self._server.getsockname()[1]
        self._units: dict[int, _Conn] = {}
        self._cond = threading.Condition()
        self._tocks: dict[int, float] = {}
        self._closed = False
        self.bad_messages = 0
        self.requests: list[dict[str, Any]] = []  # every request received, for tests to inspect

    def start(self) -> SimRadioPeer:
        threading.Thread(target=self._accept, name="sim-radio-accept", daemon=True).start()
        return self

    def close(self) -> None:
        self._closed = True
        self._server.close()
        with self._cond:
            for c in self._units.values():
                c.sock.close()
            self._units.clear()

    def __enter__(self) -> SimRadioPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(_Conn(sock),), daemon=True).start()

    def _serve(self, conn: _Conn) -> None:
        f = conn.sock.makefile("rb")
        try:
            while True:
                line = f.readline(MAX_LINE)
                if not line:
                    break
                try:
                    msg = json.loads(line)
                    if not isinstance(msg, dict):
                        raise ValueError("not an object")
                    self._handle(conn, msg)
                except (ValueError, KeyError, TypeError):
                    self.bad_messages += 1
        except OSError:
            pass
        finally:
            with self._cond:
                if conn.unit is not None and self._units.get(conn.unit) is conn:
                    del self._units[conn.unit]
                self._cond.notify_all()
            conn.sock.close()

    def _handle(self, conn: _Conn, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "hello":
            with self._cond:
                conn.unit = int(msg["unit"])
                self._units[conn.unit] = conn
                self._cond.notify_all()
            return
        if conn.unit is None:
            raise ValueError("request before hello")
        if op == "tock":
            with self._cond:
                self._tocks[conn.unit] = float(msg["time"])
                self._cond.notify_all()
            return
        self.requests.append(msg)
        unit, ident, address = conn.unit, int(msg["id"]), str(msg["address"])
        res: dict[str, Any] = {"op": "result", "id": ident, "ok": True}
        outcome: Any
        if op == "ack":
            outcome = self.tags.on_ack(unit, address, bytes.fromhex(msg["data"]))
        elif op == "downlink":
            outcome = self.tags.on_downlink(unit, address, bytes.fromhex(msg["data"]))
        elif op == "offload":
            outcome = self.tags.on_offload(unit, address)
            if isinstance(outcome, list):
                res["frames"] = [bytes(x).hex() for x in outcome]
                outcome = None
        else:
            outcome = "unknown_op"
        if outcome is not None:
            res = {"op": "result", "id": ident, "ok": False, "reason": str(outcome)}
        conn.send(res)

    def wait_unit(self, unit: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: unit in self._units, timeout)

    def connected(self, unit: int) -> bool:
        with self._cond:
            return unit in self._units

    def _conn(self, unit: int) -> _Conn:
        with self._cond:
            conn = self._units.get(unit)
        if conn is None:
            raise ConnectionError(f"home unit {unit} is not connected")
        return conn

    def send_beacon(
        self, unit: int, address: str, adv: bytes, rssi: int, time: float | None = None
    ) -> None:
        """Deliver one advertisement (full legacy AD bytes, firmware.beacon.advertisement)."""
        msg: dict[str, Any] = {"op": "beacon", "address": address, "adv": adv.hex(), "rssi": rssi}
        if time is not None:
            msg["time"] = time
        self._conn(unit).send(msg)

    def tick(self, unit: int, time: float, timeout: float = 10.0) -> None:
        """Set the unit's clock and wait until it has done the work due by then."""
        self.send_tick(unit, time)
        with self._cond:
            if not self._cond.wait_for(lambda: self._tocks.get(unit) == time, timeout):
                raise TimeoutError(f"home unit {unit} did not answer tick {time}")

    def send_tick(self, unit: int, time: float) -> None:
        """tick() without waiting: a simulator that must answer the unit's radio requests
        meanwhile (a lock-step tag) polls tocked() instead."""
        with self._cond:
            self._tocks.pop(unit, None)
        self._conn(unit).send({"op": "tick", "time": time})

    def tocked(self, unit: int, time: float) -> bool:
        with self._cond:
            return self._tocks.get(unit) == time
