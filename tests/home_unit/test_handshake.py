"""The acknowledgement protocol, home-unit side: beacon verification (paired tag, MAC,
counter), replay rejection, and the signed acknowledgement a tag accepts — and only its own
tag accepts."""

from __future__ import annotations

import pytest

from firmware import beacon as bc
from firmware.frame import DecodeError
from home_unit import handshake
from tests.home_unit.scripted_tag import ScriptedTag, device_key

UNIT = 5001
UNIT_KEY = device_key(UNIT)


class Counters:
    def __init__(self) -> None:
        self.last: dict[int, int] = {}

    def accept(self, tag: int, counter: int) -> bool:
        if counter <= self.last.get(tag, -1):
            return False
        self.last[tag] = counter
        return True


def test_good_beacon_verifies_and_ack_echoes_its_counter() -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    tag.make_frames(3)
    keys = {tag.tag: tag.bkey}
    v = handshake.verify_beacon(tag.beacon_payload(), keys, Counters().accept)
    assert v.beacon.tag == 1001 and v.beacon.counter == 1 and v.beacon.pending == 3
    assert v.wants_offload
    ack = handshake.Acknowledger(UNIT, UNIT_KEY).ack(v.beacon, 1_790_000_123.7, 120, True)
    assert len(ack) == bc.HOME_ACK_LEN + bc.SHORT_MAC
    tag.on_ack(ack)
    assert tag.acks_refused == []
    a = tag.acks[-1]
    assert (a.home_unit, a.tag, a.unix, a.lease, a.echo) == (UNIT, 1001, 1_790_000_123, 120, 1)
    assert a.flags & bc.ACK_OFFLOAD_READY


def test_replayed_beacon_is_refused_even_after_newer_ones() -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    keys = {tag.tag: tag.bkey}
    counters = Counters()
    recorded = tag.beacon_payload()
    handshake.verify_beacon(recorded, keys, counters.accept)
    with pytest.raises(handshake.BeaconRefused) as e:
        handshake.verify_beacon(recorded, keys, counters.accept)
    assert e.value.reason == handshake.REPLAY
    handshake.verify_beacon(tag.beacon_payload(), keys, counters.accept)
    with pytest.raises(handshake.BeaconRefused):
        handshake.verify_beacon(recorded, keys, counters.accept)


def test_forged_beacon_does_not_move_the_counter() -> None:
    """A forger cannot push the counter past the real tag's and so lock it out."""
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    keys = {tag.tag: tag.bkey}
    counters = Counters()
    forged = bc.encode_beacon(bc.Beacon(1001, 999_999), bytes(32))
    with pytest.raises(handshake.BeaconRefused) as e:
        handshake.verify_beacon(forged, keys, counters.accept)
    assert e.value.reason == handshake.FORGED and e.value.tag == 1001
    assert counters.last == {}
    handshake.verify_beacon(tag.beacon_payload(), keys, counters.accept)


def test_flipped_bit_unpaired_tag_and_garbage_each_have_a_reason() -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    other = ScriptedTag(1002, UNIT, UNIT_KEY)
    keys = {tag.tag: tag.bkey}
    payload = bytearray(tag.beacon_payload())
    payload[9] ^= 0x01  # status bit changed in flight
    reasons = []
    for p in (bytes(payload), other.beacon_payload(), b"\xb1" + bytes(5), b""):
        with pytest.raises(handshake.BeaconRefused) as e:
            handshake.verify_beacon(p, keys, Counters().accept)
        reasons.append(e.value.reason)
    assert reasons == [handshake.FORGED, handshake.UNPAIRED, handshake.BAD, handshake.BAD]


def test_ack_is_accepted_only_by_its_own_tag() -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    other = ScriptedTag(1002, UNIT, UNIT_KEY)
    other_unit_tag = ScriptedTag(1001, 5002, device_key(5002))
    b = handshake.verify_beacon(tag.beacon_payload(), {1001: tag.bkey}, Counters().accept).beacon
    ack = handshake.Acknowledger(UNIT, UNIT_KEY).ack(b, 1_790_000_000, 120, False)
    with pytest.raises(DecodeError):
        bc.decode_home_ack(ack, other.pkey)  # another tag of the same unit
    with pytest.raises(DecodeError):
        bc.decode_home_ack(ack, other_unit_tag.pkey)  # the same tag id paired elsewhere
    foreign = handshake.Acknowledger(5002, device_key(5002)).ack(b, 1_790_000_000, 120, False)
    tag.on_ack(foreign)
    assert tag.acks_refused == ["mac"]


def test_replayed_ack_is_refused_by_the_tag() -> None:
    """A recording of an acknowledgement, played back later, names an old echo."""
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    counters = Counters()
    acker = handshake.Acknowledger(UNIT, UNIT_KEY)
    b1 = handshake.verify_beacon(tag.beacon_payload(), {1001: tag.bkey}, counters.accept).beacon
    recorded = acker.ack(b1, 1_790_000_000, 120, False)
    tag.on_ack(recorded)
    b2 = handshake.verify_beacon(tag.beacon_payload(), {1001: tag.bkey}, counters.accept).beacon
    tag.on_ack(acker.ack(b2, 1_790_000_010, 120, False))
    tag.on_ack(recorded)
    assert [a.echo for a in tag.acks] == [1, 2]
    assert tag.acks_refused == ["replay"]


def test_pairing_keys_are_derived_once_and_match_the_codec() -> None:
    acker = handshake.Acknowledger(UNIT, UNIT_KEY)
    assert acker.pairing_key(1001) == bc.pairing_key(UNIT_KEY, 1001)
    assert acker.pairing_key(1001) is acker.pairing_key(1001)
    assert acker.pairing_key(1001) != acker.pairing_key(1002)
