"""What the unit does with the backend's downlinks for a tag (docs/home-unit.md, "Downlinks"):
commands are held for the tag's next contact; ACKs are remembered and handed over only for
frames the tag still offers, and a frame a remembered ACK names is answered with that ACK
instead of being relayed a second time.

In-process unit, no broker: the backend's messages are handed to the daemon as paho would
(`on_message`), and the radio is a stand-in for BLE (hardware the tests cannot have) behind
the daemon's Radio interface, reaching a scripted tag that verifies every ACK and command
with its own key and frees frames only on a verified ACK."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from firmware import frame as fr
from firmware import topics
from home_unit import pushed_config, store
from home_unit.clock import SimClock
from home_unit.contacts import Acked, Held
from home_unit.daemon import HomeUnit
from home_unit.mqtt_link import Incoming
from home_unit.radio import BeaconCallback, BeaconHeard, Radio, TagLink
from home_unit.settings import HomeUnitSettings
from tests.home_unit.scripted_tag import T0, ScriptedTag
from tests.home_unit.test_relay_integration import UNIT, UNIT_KEY, config

NOW = float(T0)


class DirectLink(TagLink):
    def __init__(self, tag: ScriptedTag) -> None:
        self.tag = tag

    async def send_ack(self, ack: bytes) -> None:
        self.tag.on_ack(ack)

    async def receive_offload(self) -> list[bytes]:
        return self.tag.offload()

    async def deliver_downlink(self, frame: bytes) -> None:
        self.tag.on_downlink(frame)


class DirectRadio(Radio):
    def __init__(self, tag: ScriptedTag) -> None:
        self.tag = tag

    async def start(self, on_beacon: BeaconCallback) -> None:
        return None

    async def stop(self) -> None:
        return None

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[TagLink]:
        yield DirectLink(self.tag)

    def contact(self, address: str) -> contextlib.AbstractAsyncContextManager[TagLink]:
        return self._open()


class Bench:
    """One unit paired with one scripted tag; `contact()` is a beacon heard and the contact
    it starts, run to its end."""

    def __init__(self, tmp_path: Path, tag: ScriptedTag, **over: Any) -> None:
        settings = HomeUnitSettings.model_validate(
            {"unit": UNIT, "key_hex": UNIT_KEY.hex(), "state_db": str(tmp_path / "hu.db"),
             "radio": "sim", "log_level": "warning", **over}
        )  # fmt: skip
        self.tag = tag
        self.unit = HomeUnit(settings, DirectRadio(tag), SimClock(NOW))
        self.unit.on_config(pushed_config.sign(config(1, tag), UNIT_KEY))
        self.time = NOW

    async def contact(self) -> None:
        self.time += 60
        self.unit.on_beacon(BeaconHeard(self.tag.beacon_payload(), -60, self.time, "tag"))
        await self.unit.contacts.settle()

    def down(self, payload: bytes) -> None:
        """A message on the tag's down topic, as the broker delivers it."""
        self.unit.on_message(Incoming(topics.tag_down(self.tag.tag), payload, 1, 1, False))

    def ack(self, boot: int, first: int, last: int) -> None:
        rec = fr.Record(fr.ACK_RANGE, boot=boot, first=first, last=last)
        f = fr.Frame(fr.ACK, self.tag.tag, 0, 0, T0, [rec], fr.FLAG_TIME_VALID)
        self.down(fr.encode(f, self.tag.key))

    def command(self, seq: int) -> None:
        f = fr.Frame(fr.COMMAND, self.tag.tag, 0, seq, T0, [fr.Record(fr.CMD_LOCATE)])
        self.down(fr.encode(f, self.tag.key))

    def queued(self) -> list[int]:
        return [q.seq for q in self.unit.store.pending(0, 1000) if q.kind == store.RELAY]

    def run(self, scenario: Any) -> None:
        try:
            asyncio.run(scenario())
        finally:
            self.unit.store.close()


def test_a_frame_acknowledged_before_the_tag_offers_it_again_is_answered_not_relayed(
    tmp_path: Path,
) -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    b = Bench(tmp_path, tag)
    c = b.unit.counters

    async def scenario() -> None:
        tag.make_frames(3)
        await b.contact()
        assert b.queued() == [1, 2, 3] and c["relay_queued"] == 3
        # The backend stored them: its ACK frees the unit's copies. The tag learns of it
        # only at its next contact, and offers the three again there with a new frame.
        b.ack(1, 1, 3)
        assert b.queued() == [] and c["relay_freed"] == 3
        tag.make_frames(1)
        await b.contact()
        assert b.queued() == [4], "only the new frame is relayed"
        assert sorted(tag.freed) == [(1, 1), (1, 2), (1, 3)], "answered with the ACK"
        b.ack(1, 4, 4)
        await b.contact()  # frame 4 offered once more: answered the same way
        assert sorted(tag.freed) == [(1, s) for s in range(1, 5)]
        await b.contact()  # nothing pending: nothing written

    b.run(scenario)
    assert c["relay_queued"] == 4
    assert c["relay_already_acked"] == 4
    assert c["relay_duplicate"] == 0
    assert [f.mtype for f in tag.downlinks] == [fr.ACK, fr.ACK]
    assert c["downlink_ack_confirmed"] == 2  # forgotten once the tag stopped offering
    assert tag.downlinks_refused == []


def test_acks_for_frames_the_tag_sent_over_cellular_displace_no_command(tmp_path: Path) -> None:
    # A day away: the tag uploads over its own modem and the backend's ACKs for those frames
    # reach the unit too (it subscribes to the tag's down topic). A command sent meanwhile
    # must still be there when the tag comes home, and the stale ACKs are not written to it.
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    b = Bench(tmp_path, tag)
    c = b.unit.counters

    async def scenario() -> None:
        b.command(1)
        for i in range(40):
            b.ack(1, 100 + i, 100 + i)
        b.command(2)
        assert c["downlink_dropped"] == 0
        await b.contact()  # home again, holding nothing unacknowledged

    b.run(scenario)
    assert [f.seq for f in tag.commands] == [1, 2]
    assert [f.mtype for f in tag.downlinks] == [fr.COMMAND, fr.COMMAND]
    assert c["downlink_ack_unneeded"] == 40
    assert c["downlink_dropped"] == 0


def test_a_contact_writes_no_more_downlinks_than_the_tag_keeps(tmp_path: Path) -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY, inbox=8)
    b = Bench(tmp_path, tag)

    async def scenario() -> None:
        for seq in range(1, 11):
            b.command(seq)
        await b.contact()
        assert [f.seq for f in tag.commands] == list(range(1, 9))
        await b.contact()

    b.run(scenario)
    assert [f.seq for f in tag.commands] == list(range(1, 11))
    assert tag.downlinks_refused == []


def test_an_ack_the_tag_did_not_take_is_written_again_when_it_offers_the_frames(
    tmp_path: Path,
) -> None:
    # The tag keeps one downlink per contact here: the second ACK is refused. At the next
    # contact the tag offers that frame again; the unit still knows the backend has it.
    tag = ScriptedTag(1001, UNIT, UNIT_KEY, inbox=1)
    b = Bench(tmp_path, tag)
    c = b.unit.counters

    async def scenario() -> None:
        tag.make_frames(2)
        await b.contact()
        b.ack(1, 1, 1)
        b.ack(1, 2, 2)
        await b.contact()
        assert tag.freed == [(1, 1)] and tag.downlinks_refused == ["inbox_full"]
        await b.contact()
        assert tag.freed == [(1, 1), (1, 2)]

    b.run(scenario)
    assert c["relay_queued"] == 2
    assert c["relay_already_acked"] == 3


def test_with_the_relay_queue_full_the_acks_not_yet_written_are_written(tmp_path: Path) -> None:
    # No room: the unit does not read the offload, so it cannot tell which frames the tag
    # holds; the ACKs it has not written yet may be what frees the tag's flash.
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    b = Bench(tmp_path, tag, max_relay_frames=2)
    c = b.unit.counters

    async def scenario() -> None:
        other = [(1002, 1, s, b"frame %d" % s) for s in (1, 2)]
        b.unit.store.enqueue(store.RELAY, other, NOW, 2)
        tag.make_frames(2)
        b.ack(1, 1, 2)  # sent over cellular; the ACK reached the unit, not yet the tag
        await b.contact()

    b.run(scenario)
    assert tag.freed == [(1, 1), (1, 2)]
    assert c["relay_queued"] == 0


def test_an_empty_offload_from_a_tag_holding_frames_forgets_no_ack(tmp_path: Path) -> None:
    # A tag serves no offload in a contact whose ack it refused. Its beacon said it holds
    # frames, so the empty offer is not "holds nothing": the ACK is written, not forgotten.
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    b = Bench(tmp_path, tag)
    c = b.unit.counters

    async def scenario() -> None:
        tag.make_frames(2)
        await b.contact()
        b.ack(1, 1, 2)
        serve = tag.offload
        tag.offload = lambda: []  # type: ignore[method-assign]
        await b.contact()
        tag.offload = serve  # type: ignore[method-assign]

    b.run(scenario)
    assert tag.freed == [(1, 1), (1, 2)]
    assert c["downlink_ack_unneeded"] == 0 and c["downlink_ack_confirmed"] == 0


def test_remembered_acks_are_bounded_per_tag(tmp_path: Path) -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    b = Bench(tmp_path, tag, max_acks_per_tag=3)
    c = b.unit.counters

    async def scenario() -> None:
        for s in range(1, 6):
            b.ack(1, s, s)
        assert [a.ranges for a in b.unit.store.known_acks(tag.tag)] == [
            ((1, 3, 3),),
            ((1, 4, 4),),
            ((1, 5, 5),),
        ]

    b.run(scenario)
    assert c["downlink_ack_expired"] == 2


def test_an_ack_the_tag_keeps_refusing_stops_holding_its_frames_back(tmp_path: Path) -> None:
    # The unit cannot verify an ACK for a tag (it has no tag key). One that the broker ACL
    # should have kept out, signed with the wrong key, is refused by the tag at every
    # contact; after two writes the unit stops trusting it and relays the frame it names.
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    b = Bench(tmp_path, tag)
    c = b.unit.counters

    async def scenario() -> None:
        tag.make_frames(1)
        rec = fr.Record(fr.ACK_RANGE, boot=1, first=1, last=1)
        forged = fr.Frame(fr.ACK, tag.tag, 0, 0, T0, [rec], fr.FLAG_TIME_VALID)
        b.down(fr.encode(forged, bytes(32)))
        await b.contact()
        await b.contact()
        assert b.queued() == [] and tag.downlinks_refused == ["mac", "mac"]
        await b.contact()
        assert b.queued() == [1]

    b.run(scenario)
    assert c["relay_already_acked"] == 2
    assert c["downlink_ack_refused"] == 1
    assert tag.pending_count() == 1  # the tag still holds it: nothing was lost meanwhile


def test_range_lookups_agree_with_a_plain_scan() -> None:
    rnd = random.Random(7)
    for _ in range(500):
        ranges = []
        for _ in range(rnd.randint(0, 6)):
            first = rnd.randint(0, 40)
            ranges.append((rnd.randint(0, 2), first, first + rnd.randint(0, 5)))
        offered = {(rnd.randint(0, 2), rnd.randint(0, 50)) for _ in range(rnd.randint(0, 8))}
        acked = Acked(ranges)
        for boot in range(3):
            for seq in range(50):
                plain = any(b == boot and f <= seq <= la for b, f, la in ranges)
                assert ((boot, seq) in acked) == plain
        plain_named = any(b == bo and f <= sq <= la for b, f, la in ranges for bo, sq in offered)
        assert Held(offered).named_by(ranges) == plain_named
