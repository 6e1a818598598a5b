"""The real radio: bleak on a Linux SBC (BlueZ over D-Bus), written against bleak 3.1.0.

Scanning: a BleakScanner detection callback picks the manufacturer data with our company id
(firmware.beacon.COMPANY_ID) out of each advertisement, with its RSSI. Contact: a GATT
connection to the tag, on which the unit writes the acknowledgement, reads the offload and
writes downlinks. The GATT service below is the contract the tag firmware implements
(docs/home-unit.md, "GATT contract").

Frames can be longer than one ATT value (512 bytes), so offload reads and downlink writes
carry chunks: one flags byte (bit 0 FINAL: this chunk ends a frame) and up to CHUNK bytes of
the frame. An empty offload read means the tag has nothing more to hand over."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from firmware import beacon as bc
from firmware import frame as fr
from home_unit.clock import Clock
from home_unit.radio import (
    MAX_OFFLOAD_FRAMES,
    BeaconCallback,
    BeaconHeard,
    Radio,
    RadioError,
    TagLink,
)

SERVICE_UUID = "7a9e0001-6c1f-4b4e-9d43-746167776174"
ACK_CHAR_UUID = "7a9e0002-6c1f-4b4e-9d43-746167776174"  # write with response: 28-byte home ack
OFFLOAD_CHAR_UUID = "7a9e0003-6c1f-4b4e-9d43-746167776174"  # read: next offload chunk
DOWNLINK_CHAR_UUID = "7a9e0004-6c1f-4b4e-9d43-746167776174"  # write with response: chunk

CHUNK = 500  # frame bytes per chunk; with the flags byte a value stays under ATT's 512
FINAL = 0x01
MAX_FRAME = fr.HEADER_LEN + fr.MAX_BODY + fr.MAC_MAX

log = structlog.get_logger("home_unit.ble_radio")


def chunks(frame: bytes) -> list[bytes]:
    """Split one frame into GATT values (flags byte + data)."""
    parts = [frame[i : i + CHUNK] for i in range(0, len(frame), CHUNK)] or [b""]
    return [bytes((FINAL if i == len(parts) - 1 else 0,)) + p for i, p in enumerate(parts)]


class BleakRadio(Radio):
    def __init__(
        self,
        clock: Clock,
        adapter: str | None = None,
        connect_timeout: float = 10.0,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
    ) -> None:
        self.clock = clock
        self.adapter = adapter
        self.connect_timeout = connect_timeout
        self.scanner_backend = scanner_backend
        self.client_backend = client_backend
        self._scanner: BleakScanner | None = None
        self._on_beacon: BeaconCallback | None = None
        self._devices: dict[str, BLEDevice] = {}  # last BLEDevice per address, to connect by

    def _bluez(self) -> Any:
        return {"adapter": self.adapter} if self.adapter else {}

    def _detected(self, device: BLEDevice, adv: AdvertisementData) -> None:
        data = adv.manufacturer_data.get(bc.COMPANY_ID)
        if data is None or self._on_beacon is None:
            return  # someone else's advertisement
        self._devices[device.address] = device
        self._on_beacon(BeaconHeard(bytes(data), int(adv.rssi), self.clock.now(), device.address))

    async def start(self, on_beacon: BeaconCallback) -> None:
        self._on_beacon = on_beacon
        self._scanner = BleakScanner(
            detection_callback=self._detected, bluez=self._bluez(), backend=self.scanner_backend
        )
        try:
            await self._scanner.start()
        except BleakError as e:
            raise RadioError("scan", str(e)) from e
        except OSError as e:
            # No system bus to reach BlueZ through (D-Bus or bluetoothd not running), no
            # adapter: nothing this unit can hear until the host is put right.
            self._scanner = None
            raise RadioError("start", f"cannot reach BlueZ over D-Bus: {e}") from e

    async def stop(self) -> None:
        if self._scanner is not None:
            with contextlib.suppress(BleakError):
                await self._scanner.stop()
            self._scanner = None

    @contextlib.asynccontextmanager
    async def contact(self, address: str) -> AsyncIterator[TagLink]:
        target: BLEDevice | str = self._devices.get(address, address)
        client = BleakClient(
            target,
            services=[SERVICE_UUID],
            timeout=self.connect_timeout,
            bluez=self._bluez(),
            backend=self.client_backend,
        )
        try:
            await client.connect()
        except (BleakError, TimeoutError, OSError) as e:
            raise RadioError("connect", f"{address}: {e}") from e
        try:
            yield _GattLink(client, address)
        finally:
            with contextlib.suppress(BleakError, TimeoutError, OSError):
                await client.disconnect()


class _GattLink(TagLink):
    def __init__(self, client: BleakClient, address: str) -> None:
        self.client = client
        self.address = address

    async def send_ack(self, ack: bytes) -> None:
        try:
            await self.client.write_gatt_char(ACK_CHAR_UUID, ack, response=True)
        except (BleakError, TimeoutError, OSError) as e:
            raise RadioError("gatt_write", f"ack to {self.address}: {e}") from e

    async def receive_offload(self) -> list[bytes]:
        frames: list[bytes] = []
        current = bytearray()
        while len(frames) < MAX_OFFLOAD_FRAMES:
            try:
                value = bytes(await self.client.read_gatt_char(OFFLOAD_CHAR_UUID))
            except (BleakError, TimeoutError, OSError) as e:
                raise RadioError("gatt_read", f"offload from {self.address}: {e}") from e
            if not value:
                if current:
                    raise RadioError("offload_truncated", f"{self.address} stopped mid-frame")
                return frames
            current += value[1:]
            if len(current) > MAX_FRAME:
                raise RadioError("offload_oversize", f"{self.address} sent {len(current)} bytes")
            if value[0] & FINAL:
                frames.append(bytes(current))
                current = bytearray()
        log.warning("offload_cut_off", address=self.address, frames=len(frames))
        return frames

    async def deliver_downlink(self, frame: bytes) -> None:
        try:
            for value in chunks(frame):
                await self.client.write_gatt_char(DOWNLINK_CHAR_UUID, value, response=True)
        except (BleakError, TimeoutError, OSError) as e:
            raise RadioError("gatt_write", f"downlink to {self.address}: {e}") from e
