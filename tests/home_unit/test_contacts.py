"""Contacts with a tag while another contact with it is open (docs/home-unit.md, "Radio
interface"): a beacon asking for an offload heard then is answered as soon as the open
contact ends. The case it comes from: a tag at home in RF mode sends its routine beacon
(nothing pending), the case is opened a moment later and the tag beacons again at once with
the tamper frame pending; the unit, still in the first contact (which was not asked to
offload), must not leave the tamper on the tag until the next routine beacon a minute on.

In-process unit, no broker: the radio is a stand-in for BLE (hardware the tests cannot
have) behind the daemon's Radio interface, whose contacts stay open until the test lets
them go, as a slow GATT connection would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from firmware import beacon as bc
from firmware import frame as fr
from home_unit import pushed_config, store
from home_unit.clock import SimClock
from home_unit.daemon import HomeUnit
from home_unit.radio import BeaconCallback, BeaconHeard, Radio, TagLink
from home_unit.settings import HomeUnitSettings
from tests.home_unit.scripted_tag import ScriptedTag
from tests.home_unit.test_relay_integration import UNIT, UNIT_KEY, config

NOW = 1_790_000_000.0


class HeldLink(TagLink):
    def __init__(self, tag: ScriptedTag, log: list[tuple[str, int]]) -> None:
        self.tag = tag
        self.log = log

    async def send_ack(self, ack: bytes) -> None:
        self.tag.on_ack(ack)
        self.log.append(("ack", bc.decode_home_ack(ack, self.tag.pkey).echo))

    async def receive_offload(self) -> list[bytes]:
        frames = self.tag.offload()
        self.log.append(("offload", len(frames)))
        return frames

    async def deliver_downlink(self, frame: bytes) -> None:
        self.tag.on_downlink(frame)


class HeldRadio(Radio):
    """Each contact stays open until `release` is set."""

    def __init__(self, tag: ScriptedTag) -> None:
        self.tag = tag
        self.release = asyncio.Event()
        self.log: list[tuple[str, int]] = []
        self.acks: list[bc.HomeAck] = []

    async def start(self, on_beacon: BeaconCallback) -> None:
        return None

    async def stop(self) -> None:
        return None

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[TagLink]:
        yield HeldLink(self.tag, self.log)
        await self.release.wait()

    def contact(self, address: str) -> contextlib.AbstractAsyncContextManager[TagLink]:
        return self._open()


def unit_with(tag: ScriptedTag, tmp_path: Path) -> tuple[HomeUnit, HeldRadio]:
    settings = HomeUnitSettings.model_validate(
        {"unit": UNIT, "key_hex": UNIT_KEY.hex(), "state_db": str(tmp_path / "hu.db"),
         "radio": "sim", "log_level": "warning"}
    )  # fmt: skip
    radio = HeldRadio(tag)
    unit = HomeUnit(settings, radio, SimClock(NOW))
    unit.on_config(pushed_config.sign(config(1, tag), UNIT_KEY))
    assert unit.config is not None
    return unit, radio


def heard(tag: ScriptedTag, t: float) -> BeaconHeard:
    return BeaconHeard(tag.beacon_payload(), -60, t, tag.address)


async def settle(unit: HomeUnit) -> None:
    await unit.contacts.settle()


def test_a_pending_beacon_during_an_open_contact_gets_its_offload_when_it_ends(
    tmp_path: Path,
) -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    unit, radio = unit_with(tag, tmp_path)

    async def scenario() -> None:
        unit.on_beacon(heard(tag, NOW))  # routine beacon, nothing pending: no offload asked
        await asyncio.sleep(0)
        assert radio.log == [("ack", 1)]
        tag.make_frames(1)  # the tamper frame, sealed just after
        unit.on_beacon(heard(tag, NOW + 0.2))  # at once, flagged pending
        await asyncio.sleep(0)
        assert unit.counters["contact_busy"] == 1
        radio.release.set()
        await settle(unit)

    try:
        asyncio.run(scenario())
        # The second beacon's contact follows the first: its ack echoes the pending beacon
        # (so the tag accepts it) and the offload is read in it.
        assert radio.log == [("ack", 1), ("ack", 2), ("offload", 1)]
        assert [a.echo for a in tag.acks] == [1, 2]
        assert tag.acks[1].flags & bc.ACK_OFFLOAD_READY
        assert tag.acks_refused == []
        assert unit.counters["contact_deferred"] == 1
        assert unit.counters["relay_queued"] == 1
        queued = unit.store.pending(0, 10)
        assert [fr.parse(q.data).seq for q in queued if q.kind == store.RELAY] == [1]
    finally:
        unit.store.close()


def test_a_beacon_with_nothing_pending_during_an_open_contact_adds_no_contact(
    tmp_path: Path,
) -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    unit, radio = unit_with(tag, tmp_path)

    async def scenario() -> None:
        unit.on_beacon(heard(tag, NOW))
        await asyncio.sleep(0)
        unit.on_beacon(heard(tag, NOW + 1))
        radio.release.set()
        await settle(unit)

    try:
        asyncio.run(scenario())
        assert radio.log == [("ack", 1)]
        assert unit.counters["contact_busy"] == 1
        assert unit.counters["contact_deferred"] == 0
    finally:
        unit.store.close()
