# The real board's BLE radio: MicroPython's `bluetooth` (NimBLE on the ESP32-S3). Beacons go
# out as short connectable advertising bursts; the GATT service of docs/home-unit.md ("GATT
# contract") is served from the BLE IRQ handler by firmware.homelink.HomeLink.
#
# Needs MicroPython >= 1.21 on the ESP32 port, where BLE events are synchronous
# (MICROPY_PY_BLUETOOTH_USE_SYNC_EVENTS): the write handler runs before the write response
# goes back, and _IRQ_GATTS_READ_REQUEST arrives before a read is answered, so each read of
# the offload characteristic can be given the next chunk with gatts_write().
import time

import bluetooth
import machine
from micropython import const

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_READ_REQUEST = const(4)

_SERVICE = "7a9e0001-6c1f-4b4e-9d43-746167776174"
_ACK = "7a9e0002-6c1f-4b4e-9d43-746167776174"  # write with response: the home ack
_OFFLOAD = "7a9e0003-6c1f-4b4e-9d43-746167776174"  # read: the next offload chunk
_DOWNLINK = "7a9e0004-6c1f-4b4e-9d43-746167776174"  # write with response: a downlink chunk

_ADV_INTERVAL_US = 100_000  # within a burst
_BURST_MS = 350  # three advertising events per beacon, then the radio is quiet
_CONNECTED_MAX_MS = 10_000  # a central that holds the connection longer is dropped
_VALUE_MAX = 512  # ATT maximum value


class BleRadio:
    def __init__(self, name: str = "tw") -> None:
        self.ble = bluetooth.BLE()
        self.ble.active(True)
        self.ble.config(gap_name=name)
        service = (
            bluetooth.UUID(_SERVICE),
            (
                (bluetooth.UUID(_ACK), bluetooth.FLAG_WRITE),
                (bluetooth.UUID(_OFFLOAD), bluetooth.FLAG_READ),
                (bluetooth.UUID(_DOWNLINK), bluetooth.FLAG_WRITE),
            ),
        )
        ((self.h_ack, self.h_offload, self.h_downlink),) = self.ble.gatts_register_services(
            (service,)
        )
        self.ble.gatts_set_buffer(self.h_ack, 32)
        self.ble.gatts_set_buffer(self.h_downlink, _VALUE_MAX)
        self.ble.gatts_write(self.h_offload, b"")
        self.service: object = None  # firmware.homelink.HomeLink
        self.conn = -1
        self.connected_at = 0
        self.advertising = False
        self.events = 0  # GATT events since the application last looked (it wakes for them)
        self.timer = machine.Timer(1)
        self.ble.irq(self._irq)

    def serve(self, service: "object") -> None:
        self.service = service

    def busy(self) -> bool:
        """The radio needs the clocks (a burst on air or a central connected)."""
        return self.advertising or self.conn >= 0

    def advertise(self, adv: bytes) -> None:
        if self.conn >= 0:
            return  # connected: the home unit is already talking to us
        self.ble.gap_advertise(_ADV_INTERVAL_US, adv, connectable=True)
        self.advertising = True
        self.timer.init(mode=machine.Timer.ONE_SHOT, period=_BURST_MS, callback=self._burst_end)

    def _burst_end(self, _t: "object") -> None:
        if self.conn < 0:
            # None stops advertising (the documented call; the stubs type it as int only).
            self.ble.gap_advertise(None)  # pyright: ignore[reportArgumentType]
        self.advertising = False

    def step(self) -> None:
        """Drop a central that holds the connection too long (a stuck or hostile one)."""
        if self.conn >= 0 and time.ticks_diff(time.ticks_ms(), self.connected_at) > (
            _CONNECTED_MAX_MS
        ):
            # Connection handles arrive as ints in IRQ data; the stubs type them as memoryview.
            self.ble.gap_disconnect(self.conn)  # pyright: ignore[reportArgumentType]

    def _irq(self, event: int, data: "tuple[object, ...]") -> "int | None":
        s = self.service
        if event == _IRQ_CENTRAL_CONNECT:
            self.conn = int(data[0])  # type: ignore[call-overload]
            self.connected_at = time.ticks_ms()
            self.advertising = False  # a connection ends advertising
            if s is not None:
                s.connect()  # type: ignore[attr-defined]
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self.conn = -1
            if s is not None:
                s.disconnect()  # type: ignore[attr-defined]
            self.events += 1
        elif event == _IRQ_GATTS_WRITE and s is not None:
            handle = data[1]
            value = self.ble.gatts_read(handle)  # type: ignore[arg-type]
            if handle == self.h_ack:
                s.write_ack(value)  # type: ignore[attr-defined]
            elif handle == self.h_downlink:
                s.write_downlink(value)  # type: ignore[attr-defined]
            self.events += 1
        elif event == _IRQ_GATTS_READ_REQUEST and data[1] == self.h_offload:
            chunk = s.read_offload() if s is not None else b""  # type: ignore[attr-defined]
            self.ble.gatts_write(self.h_offload, chunk)
            return 0  # accept the read: it returns the value just written
        return None
