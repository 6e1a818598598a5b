"""The HIL tag's BLE bridge on its own, through the narrow interface it has to the tag: the
lines a GATT contact sends the firmware, a powered-off tag, and a wake-up after each contact."""

from __future__ import annotations

import pytest

from sim.hil_error import HilError
from sim.hil_home import HomeBridge


class ScriptedTag:
    """Answers every exchange with the line the firmware gives for it (`n`, `a`, ...)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.on = True
        self.wakes = 0

    def exchange(self, lines: list[str], until: tuple[str, ...]) -> list[str]:
        self.sent += lines
        return [until[0]]

    def bridge(self) -> HomeBridge:
        return HomeBridge("tag-7", 5.0, self.exchange, lambda: self.on, self.wake)

    def wake(self) -> None:
        self.wakes += 1


def test_a_written_ack_is_one_contact_recorded_and_wakes_the_tag() -> None:
    tag = ScriptedTag()
    radio = tag.bridge()
    radio.write_ack(b"\x01\x02")
    assert tag.sent == ["N 1", "A 0102", "N 0"]  # connect, write, disconnect
    assert radio.acks_written == [b"\x01\x02"] and not radio.gatt_connected
    assert tag.wakes == 1  # the BLE IRQ


def test_a_tag_that_is_off_takes_no_ack() -> None:
    tag = ScriptedTag()
    tag.on = False
    radio = tag.bridge()
    radio.write_ack(b"\x01")
    assert radio.acks_written == [] and "A 01" not in tag.sent


def test_without_a_home_unit_the_air_is_silent_and_rssi_cannot_be_set() -> None:
    tag = ScriptedTag()
    radio = tag.bridge()
    radio.air(1000, 1_795_737_601.0, [(1000, b"beacon")])  # nobody there: nothing happens
    assert tag.sent == [] and tag.wakes == 0
    with pytest.raises(HilError, match="no home unit"):
        radio.set_rssi(-60)
