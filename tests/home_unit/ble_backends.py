"""bleak backends standing in for the BLE hardware, built on bleak 3.1.0's own backend
interface (BaseBleakScanner, BaseBleakClient) and fed with bleak's own data classes
(BLEDevice, AdvertisementData, BleakGATTService/Characteristic). The home unit's
BleakRadio drives them through the real BleakScanner and BleakClient, exactly as it drives
BlueZ on a unit; only the air is simulated. The GATT server side implements the contract in
docs/home-unit.md on top of a ScriptedTag."""

from __future__ import annotations

from typing import Any, ClassVar

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError

from home_unit import ble_radio as ble
from tests.home_unit.scripted_tag import ScriptedTag


def advertisement_data(adv: bytes, rssi: int) -> AdvertisementData:
    """What BlueZ reports for raw legacy advertising data: AD structures split into bleak's
    fields (manufacturer data keyed by the little-endian company id)."""
    manufacturer: dict[int, bytes] = {}
    name = None
    i = 0
    while i < len(adv):
        n = adv[i]
        kind, body = adv[i + 1], adv[i + 2 : i + 1 + n]
        if kind == 0xFF:
            manufacturer[body[0] | body[1] << 8] = bytes(body[2:])
        elif kind == 0x09:
            name = body.decode()
        i += 1 + n
    return AdvertisementData(name, manufacturer, {}, [], None, rssi, ())


class ScriptedScanner(BaseBleakScanner):
    """A scanner backend whose 'air' is the test: advertise() delivers one advertisement."""

    instances: ClassVar[list[ScriptedScanner]] = []

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self.scanning = False
        ScriptedScanner.instances.append(self)

    async def start(self) -> None:
        self.seen_devices = {}
        self.scanning = True

    async def stop(self) -> None:
        self.scanning = False

    def advertise(self, address: str, adv: bytes, rssi: int) -> None:
        if not self.scanning:
            return
        data = advertisement_data(adv, rssi)
        device = self.create_or_update_device(address, address, data.local_name, None, data)
        self.call_detection_callbacks(device, data)


class GattTag:
    """The tag's GATT server (docs/home-unit.md, "GATT contract") over a ScriptedTag."""

    def __init__(self, tag: ScriptedTag) -> None:
        self.tag = tag
        self.connections = 0
        self._offload: list[bytes] = []
        self._downlink = bytearray()

    def connected(self) -> None:
        self.connections += 1
        self._offload = [c for f in self.tag.offload() for c in ble.chunks(f)]
        self._downlink = bytearray()

    def read(self, uuid: str) -> bytes:
        if uuid != ble.OFFLOAD_CHAR_UUID:
            raise BleakError(f"read not permitted on {uuid}")
        return self._offload.pop(0) if self._offload else b""

    def write(self, uuid: str, data: bytes) -> None:
        if uuid == ble.ACK_CHAR_UUID:
            self.tag.on_ack(data)
        elif uuid == ble.DOWNLINK_CHAR_UUID:
            self._downlink += data[1:]
            if data[0] & ble.FINAL:
                self.tag.on_downlink(bytes(self._downlink))
                self._downlink = bytearray()
        else:
            raise BleakError(f"write not permitted on {uuid}")


class TagGattClient(BaseBleakClient):
    """A client backend connecting to GattTag servers registered by address."""

    tags: ClassVar[dict[str, GattTag]] = {}

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.get("disconnected_callback"),
            timeout=kwargs.get("timeout", 10.0),
        )
        self.requested_services = kwargs.get("services")
        self._server: GattTag | None = None

    @property
    def mtu_size(self) -> int:
        return 247

    @property
    def is_connected(self) -> bool:
        return self._server is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        server = self.tags.get(self.address)
        if server is None or not server.tag.in_range:
            raise TimeoutError(f"{self.address} did not answer")
        services = BleakGATTServiceCollection()
        svc = BleakGATTService(None, 1, ble.SERVICE_UUID)
        services.add_service(svc)
        for handle, uuid, props in (
            (2, ble.ACK_CHAR_UUID, ["write"]),
            (3, ble.OFFLOAD_CHAR_UUID, ["read"]),
            (4, ble.DOWNLINK_CHAR_UUID, ["write"]),
        ):
            services.add_characteristic(
                BleakGATTCharacteristic(None, handle, uuid, props, lambda: 244, svc)  # type: ignore[arg-type]
            )
        self.services = services
        server.connected()
        self._server = server

    async def disconnect(self) -> None:
        self._server = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise BleakError("the tag does not pair")

    async def unpair(self) -> None:
        raise BleakError("the tag does not pair")

    def _live(self) -> GattTag:
        if self._server is None or not self._server.tag.in_range:
            self._server = None
            raise BleakError("not connected")
        return self._server

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kw: Any
    ) -> bytearray:
        return bytearray(self._live().read(characteristic.uuid))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        if not response:
            raise BleakError("the contract uses write with response")
        value = bytes(data)
        if len(value) > 512:
            raise BleakError("ATT value longer than 512 bytes")
        self._live().write(characteristic.uuid, value)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kw: Any
    ) -> bytearray:
        raise BleakError("no descriptors")

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        raise BleakError("no descriptors")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        raise BleakError("no notifications in the contract")

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        raise BleakError("no notifications in the contract")


class NoBusScanner(ScriptedScanner):
    """A host without a system bus (D-Bus or bluetoothd not running): bleak's BlueZ backend
    fails to connect to the bus socket."""

    async def start(self) -> None:
        raise FileNotFoundError(2, "No such file or directory")
