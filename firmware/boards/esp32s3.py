# The real tag board: ESP32-S3 + u-blox M10 (UART1) + SIM7080G (UART2) + LIS2DH12 + strap and
# case sense + BQ24074 charger + vibration motor. Pins, battery and current table come from
# the board definition (hw/boards/esp32s3.json), frozen into the image as `board_def`.
import time

import esp32
import machine

from firmware import frame as fr
from firmware.boards import definition
from firmware.boards.esp32s3_ble import BleRadio
from firmware.boards.sim7080g import Sim7080G
from firmware.files import Files

try:
    from typing import TYPE_CHECKING
except ImportError:  # MicroPython
    TYPE_CHECKING = False  # type: ignore[misc]
if TYPE_CHECKING:
    from typing import Any

# UBX-CFG-VALSET (RAM layer): NMEA output on UART1 limited to RMC, GGA, GSA (GSV, VTG, GLL
# off) so the reader sees ~200 bytes a second instead of ~700.
_UBX_QUIET = (0x209100C5, 0x209100B1, 0x209100CA)  # CFG-MSGOUT-NMEA_ID_{GSV,VTG,GLL}_UART1

# LIS2DH12 registers: 10 Hz low-power, high-pass on INT1, wake-up (any axis high) on INT1.
_ACCEL_INIT = ((0x20, 0x2F), (0x21, 0x01), (0x22, 0x40), (0x23, 0x00), (0x24, 0x08),
               (0x32, 0x08), (0x33, 0x01), (0x30, 0x2A))  # fmt: skip
_ACCEL_INT1_SRC = 0x31

# Vibration patterns (on/off milliseconds): 1 short, 2 "go outside", 3 urgent.
_PATTERNS = {1: (200, 200), 2: (600, 300, 600, 300), 3: (150, 100, 150, 100, 150, 600)}

_RESETS = {
    machine.PWRON_RESET: fr.RESET_POWER_ON,
    machine.HARD_RESET: fr.RESET_HARD,
    machine.WDT_RESET: fr.RESET_WATCHDOG,
    machine.DEEPSLEEP_RESET: fr.RESET_DEEPSLEEP,
    machine.SOFT_RESET: fr.RESET_SOFT,
}


def ubx(cls: int, mid: int, payload: bytes) -> bytes:
    msg = bytes((cls, mid, len(payload) & 0xFF, len(payload) >> 8)) + payload
    a = b = 0
    for c in msg:
        a = (a + c) & 0xFF
        b = (b + a) & 0xFF
    return b"\xb5\x62" + msg + bytes((a, b))


class Esp32S3Board:
    name = "esp32s3"

    def __init__(self, cfg: "dict[str, object]") -> None:
        d = definition.load()
        p: dict[str, int] = d["pins"]  # type: ignore[assignment]
        self.capacity_mah: int = d["battery_mah"]  # type: ignore[assignment]
        self.currents: dict[str, dict[str, int]] = d["currents_ua"]  # type: ignore[assignment]
        self.bursts: dict[str, int] = d["bursts_uas"]  # type: ignore[assignment]
        self.pins = p
        Pin = machine.Pin
        self.gnss_en = Pin(p["gnss_enable"], Pin.OUT, value=0)
        self.gnss_uart = machine.UART(
            p["gnss_uart"], p["gnss_baud"], tx=p["gnss_tx"], rx=p["gnss_rx"], rxbuf=2048
        )
        modem_uart = machine.UART(
            p["modem_uart"], p["modem_baud"], tx=p["modem_tx"], rx=p["modem_rx"], rxbuf=4096
        )
        self.modem = Sim7080G(
            modem_uart,
            Pin(p["modem_pwrkey"], Pin.OUT, value=0),
            Pin(p["modem_supply"], Pin.OUT, value=0),
            cfg,
        )
        self.strap = Pin(p["strap_sense"], Pin.IN, Pin.PULL_UP)  # loop to ground: open reads 1
        self.case = Pin(p["case_sense"], Pin.IN, Pin.PULL_UP)
        self.chg = Pin(p["charger_chg"], Pin.IN, Pin.PULL_UP)
        self.pgood = Pin(p["charger_pgood"], Pin.IN, Pin.PULL_UP)
        self.adc = machine.ADC(Pin(p["battery_adc"]), atten=machine.ADC.ATTN_11DB)
        self.motor = machine.PWM(Pin(p["vibration"]), freq=200, duty_u16=0)
        self.i2c = machine.I2C(p["i2c_id"], sda=Pin(p["i2c_sda"]), scl=Pin(p["i2c_scl"]))
        self.accel_int = Pin(p["accel_int"], Pin.IN)
        self.motion_count = 0
        self.accel_int.irq(self._on_motion, Pin.IRQ_RISING)
        self._accel_init()
        # Strap, case and accelerometer wake the chip from light sleep.
        esp32.wake_on_ext1((self.strap, self.case, self.accel_int), esp32.WAKEUP_ANY_HIGH)
        self.wdt: "Any" = None
        self.gnss_on = False
        self.buzz: list[int] = []
        self.timer = machine.Timer(0)
        self.radio = BleRadio("tw%s" % cfg.get("device", 0))

    def _accel_init(self) -> None:
        addr = self.pins["accel_addr"]
        try:
            for reg, val in _ACCEL_INIT:
                self.i2c.writeto_mem(addr, reg, bytes((val,)))
        except OSError:
            # No accelerometer answering: the tag still works, treating itself as moving
            # (fixes a minute) rather than at rest; the status record shows no motion source.
            self.motion_count = -1

    def _on_motion(self, _pin: "Any") -> None:
        if self.motion_count >= 0:
            self.motion_count += 1

    # clock and power ----------------------------------------------------------------------
    def ticks_ms(self) -> int:
        # The stubs type ticks as opaque; firmware.ticks does the same wrapping arithmetic.
        return time.ticks_ms()  # pyright: ignore[reportReturnType]

    def sleep_until(self, wake_ticks: int) -> None:
        r = self.radio
        while True:
            ms = time.ticks_diff(wake_ticks, time.ticks_ms())
            if ms <= 0:
                return
            r.step()
            if r.events:  # the home unit wrote an ack or a downlink: poll now
                r.events = 0
                return
            if self.gnss_on or self.modem.phase != "off" or self.buzz or r.busy():
                # UARTs, the motor timer and the BLE link need the clocks running: idle
                # sleep in slices, so a GATT write is acted on within 50 ms.
                time.sleep_ms(min(ms, 50))
            else:
                # Light sleep with the BLE controller idle keeps its timing on the 32 kHz
                # crystal; beacons are bursts the application starts, so nothing is lost.
                machine.lightsleep(ms)
                return

    def reset_cause(self) -> int:
        return _RESETS.get(machine.reset_cause(), fr.RESET_HARD)

    def watchdog_start(self, timeout_ms: int) -> None:
        self.wdt = machine.WDT(timeout=timeout_ms)

    def watchdog_feed(self) -> None:
        if self.wdt is not None:
            self.wdt.feed()

    def files(self) -> Files:
        return Files("/tw")  # littlefs mounted at / by the ESP32 port

    # GNSS ---------------------------------------------------------------------------------
    def gnss_power(self, on: bool) -> None:
        self.gnss_on = on
        self.gnss_en.value(1 if on else 0)
        if on:
            payload = bytearray(b"\x00\x01\x00\x00")  # version 0, RAM layer
            for key in _UBX_QUIET:
                payload += key.to_bytes(4, "little") + b"\x00"
            self.gnss_uart.write(ubx(0x06, 0x8A, bytes(payload)))
        else:
            self.gnss_uart.read()  # drop the half line left in the buffer

    def gnss_read(self) -> "bytes | None":
        n = self.gnss_uart.any()
        return self.gnss_uart.read(n) if n else None

    # sensors and wearer -------------------------------------------------------------------
    def strap_open(self) -> bool:
        return self.strap.value() == 1

    def case_open(self) -> bool:
        return self.case.value() == 1

    def battery_mv(self) -> int:
        p = self.pins
        uv = 0
        for _ in range(8):  # average out ADC noise
            uv += self.adc.read_uv()
        return uv // 8 * p["battery_divider_num"] // p["battery_divider_den"] // 1000

    def charger(self) -> "tuple[bool, bool]":
        return self.pgood.value() == 0, self.chg.value() == 0

    def motion(self) -> int:
        if self.motion_count < 0:
            return 1
        n = self.motion_count
        self.motion_count = 0
        if n:
            try:  # reading INT1_SRC releases the latched interrupt
                self.i2c.readfrom_mem(self.pins["accel_addr"], _ACCEL_INT1_SRC, 1)
            except OSError:
                pass
        return n

    def vibrate(self, pattern: int, repeats: int) -> None:
        steps = _PATTERNS.get(pattern, _PATTERNS[1])
        self.buzz = list(steps) * max(1, min(repeats, 10))
        self._buzz_step(None)

    def _buzz_step(self, _t: "Any") -> None:
        if not self.buzz:
            self.motor.duty_u16(0)
            return
        on = len(self.buzz) % 2 == 0
        self.motor.duty_u16(45000 if on else 0)
        ms = self.buzz.pop(0)
        self.timer.init(mode=machine.Timer.ONE_SHOT, period=ms, callback=self._buzz_step)
