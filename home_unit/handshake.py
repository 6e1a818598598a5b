"""Beacon in, acknowledgement out: the home unit's side of docs/protocol.md "Beacon" and
"Home-unit acknowledgement". Pure apart from the replay check, which the caller backs with
the store so that it survives restarts.

A beacon is accepted only from a paired tag (its beacon key comes from the pushed
configuration), with a MAC that verifies, and with a counter above the last accepted one.
The acknowledgement is signed with the pairing key derived from the unit's own key, echoes
the beacon counter (so the tag can tell it answers a beacon it sent recently) and carries the
unit's clock and the lease."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from firmware import beacon as bc
from firmware import mac
from firmware.frame import DecodeError

# Reasons a beacon is refused; each is counted (docs/home-unit.md, "Counters").
UNPAIRED = "beacon_unpaired"
BAD = "beacon_malformed"
FORGED = "beacon_mac"
REPLAY = "beacon_replay"


class BeaconRefused(Exception):
    def __init__(self, reason: str, tag: int | None, detail: str = "") -> None:
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.tag = tag
        self.detail = detail


@dataclass(frozen=True)
class Verified:
    beacon: bc.Beacon

    @property
    def wants_offload(self) -> bool:
        return bool(self.beacon.status & bc.ST_PENDING) or self.beacon.pending > 0


def verify_beacon(
    payload: bytes,
    beacon_keys: dict[int, bytes],
    accept_counter: Callable[[int, int], bool],
) -> Verified:
    """Check one manufacturer payload. `accept_counter(tag, counter)` records the counter if
    it is new and says whether it was; it is called only once the MAC has verified, so a
    forger cannot push the counter forward and lock the real tag out."""
    try:
        parsed, signed, tag_mac = bc.parse_beacon(payload)
    except DecodeError as e:
        raise BeaconRefused(BAD, None, str(e)) from e
    key = beacon_keys.get(parsed.tag)
    if key is None:
        raise BeaconRefused(UNPAIRED, parsed.tag)
    if not mac.equal(mac.hmac_sha256(key, signed)[: bc.SHORT_MAC], tag_mac):
        raise BeaconRefused(FORGED, parsed.tag)
    b = parsed
    if not accept_counter(b.tag, b.counter):
        raise BeaconRefused(REPLAY, b.tag, f"counter {b.counter}")
    return Verified(b)


class Acknowledger:
    """Signs acknowledgements for the tags paired with one unit. Pairing keys are derived
    once per tag (two HMACs) and kept."""

    def __init__(self, unit: int, unit_key: bytes) -> None:
        self.unit = unit
        self._unit_key = unit_key
        self._keys: dict[int, bytes] = {}

    def pairing_key(self, tag: int) -> bytes:
        key = self._keys.get(tag)
        if key is None:
            key = self._keys[tag] = bc.pairing_key(self._unit_key, tag)
        return key

    def ack(self, b: bc.Beacon, now: float, lease: int, offload: bool) -> bytes:
        flags = bc.ACK_OFFLOAD_READY if offload else 0
        a = bc.HomeAck(self.unit, b.tag, int(now), lease, b.counter, flags)
        return bc.encode_home_ack(a, self.pairing_key(b.tag))
