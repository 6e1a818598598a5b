"""The simulator radio: the home unit's end of the loopback socket protocol through which the
simulator delivers beacons and exchanges acknowledgements, offloads and downlinks with its
tags (docs/home-unit.md, "Simulator radio protocol"). The other end is
home_unit.sim_radio_peer.SimRadioPeer.

Newline-delimited JSON over TCP to 127.0.0.1; bytes travel as lower-case hex. The unit
connects, says hello, and then receives `beacon` (and optionally `tick`) messages; every
request it sends carries an `id` that the peer answers with one `result`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from firmware import beacon as bc
from home_unit.clock import Clock, SimClock
from home_unit.radio import BeaconCallback, BeaconHeard, Radio, RadioError, TagLink

PROTOCOL = 1
MAX_LINE = 1 << 20  # a line longer than this is a protocol error: the link is reset

log = structlog.get_logger("home_unit.sim_radio")


class SimRadio(Radio):
    def __init__(
        self,
        unit: int,
        host: str,
        port: int,
        clock: Clock,
        request_timeout: float = 5.0,
        on_tick: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.unit = unit
        self.host = host
        self.port = port
        self.clock = clock
        self.request_timeout = request_timeout
        self.on_tick = on_tick
        self.bad_messages = 0  # lines that were not valid protocol messages, counted
        self._on_beacon: BeaconCallback | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._ticks: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()

    async def start(self, on_beacon: BeaconCallback) -> None:
        self._on_beacon = on_beacon
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._drop_link()

    def _drop_link(self) -> None:
        self.connected.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(RadioError("link_down", "simulator connection lost"))
        self._pending.clear()

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_LINE)
            except OSError as e:
                log.debug("sim_radio_connect_failed", error=str(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            self._writer = writer
            await self._send({"op": "hello", "unit": self.unit, "proto": PROTOCOL})
            self.connected.set()
            log.info("sim_radio_connected", host=self.host, port=self.port)
            try:
                await self._read(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                log.warning("sim_radio_link_lost", error=str(e))
            self._drop_link()
            await asyncio.sleep(delay)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                msg = json.loads(line)
                if not isinstance(msg, dict):
                    raise ValueError("not an object")
                await self._dispatch(msg)
            except (ValueError, KeyError, TypeError) as e:
                self.bad_messages += 1
                log.warning(
                    "sim_radio_bad_message", error=str(e), line=line[:200].decode(errors="replace")
                )

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "beacon":
            payload = bc.manufacturer_payload(bytes.fromhex(msg["adv"]))
            if payload is None:
                raise ValueError("advertisement without our manufacturer data")
            t = msg.get("time")
            if t is not None and isinstance(self.clock, SimClock):
                self.clock.set(float(t))
            heard = BeaconHeard(
                payload,
                int(msg["rssi"]),
                float(t if t is not None else self.clock.now()),
                str(msg["address"]),
            )
            if self._on_beacon is not None:
                self._on_beacon(heard)
        elif op == "result":
            fut = self._pending.pop(int(msg["id"]), None)
            if fut is None:
                raise ValueError(f"result for unknown request {msg['id']}")
            if not fut.done():
                fut.set_result(msg)
        elif op == "tick":
            t = float(msg["time"])
            if isinstance(self.clock, SimClock):
                self.clock.set(t)
            if self.on_tick is None:
                await self._send({"op": "tock", "time": t})
            else:
                # In a task: the unit may first finish contacts, whose results this reader
                # must go on delivering.
                task = asyncio.get_running_loop().create_task(self._tick(t, self.on_tick))
                self._ticks.add(task)
                task.add_done_callback(self._ticks.discard)
        else:
            raise ValueError(f"unknown op {op!r}")

    async def _tick(self, t: float, on_tick: Callable[[float], Awaitable[None]]) -> None:
        await on_tick(t)
        with contextlib.suppress(RadioError, OSError):
            await self._send({"op": "tock", "time": t})

    async def _send(self, msg: dict[str, Any]) -> None:
        if self._writer is None:
            raise RadioError("link_down", "not connected to the simulator")
        self._writer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        await self._writer.drain()

    async def request(self, op: str, address: str, data: bytes | None = None) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        msg: dict[str, Any] = {"op": op, "id": ident, "address": address}
        if data is not None:
            msg["data"] = data.hex()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        try:
            await self._send(msg)
            res = await asyncio.wait_for(fut, self.request_timeout)
        except TimeoutError as e:
            raise RadioError("timeout", f"{op} to {address}") from e
        finally:
            self._pending.pop(ident, None)
        if not res.get("ok"):
            raise RadioError(str(res.get("reason", "refused")), f"{op} to {address}")
        return res

    @contextlib.asynccontextmanager
    async def contact(self, address: str) -> AsyncIterator[TagLink]:
        if not self.connected.is_set():
            raise RadioError("link_down", "not connected to the simulator")
        yield _SimLink(self, address)


class _SimLink(TagLink):
    def __init__(self, radio: SimRadio, address: str) -> None:
        self.radio = radio
        self.address = address

    async def send_ack(self, ack: bytes) -> None:
        await self.radio.request("ack", self.address, ack)

    async def receive_offload(self) -> list[bytes]:
        res = await self.radio.request("offload", self.address)
        frames = res.get("frames", [])
        if not isinstance(frames, list):
            raise RadioError("bad_result", "frames is not a list")
        try:
            return [bytes.fromhex(f) for f in frames]
        except (TypeError, ValueError) as e:
            raise RadioError("bad_result", "frames are not hex") from e

    async def deliver_downlink(self, frame: bytes) -> None:
        await self.radio.request("downlink", self.address, frame)
