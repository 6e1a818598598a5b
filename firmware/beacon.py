# The tag's BLE beacon and the home unit's signed acknowledgement (docs/protocol.md, "Beacon"):
# the whole codec, both sides. The tag's half (its beacon, the check of an ack) is defined in
# firmware/tagbeacon.py, which the tag loads alone; this module adds the home unit's half and
# is the one the home unit, the simulator and the tests import.
import struct

from firmware import mac as _mac
from firmware.frame import DecodeError
from firmware.tagbeacon import (
    ACK_OFFLOAD_READY,
    ADV_MAX,
    BEACON_FMT,
    BEACON_KIND,
    BEACON_LEN,
    COMPANY_ID,
    HOME_ACK_FMT,
    HOME_ACK_KIND,
    HOME_ACK_LEN,
    SHORT_MAC,
    ST_BATTERY_LOW,
    ST_CASE_OPEN,
    ST_CHARGING,
    ST_PENDING,
    ST_RF_MODE,
    ST_STRAP_OPEN,
    Beacon,
    HomeAck,
    advertisement,
    beacon_key,
    decode_home_ack,
    encode_beacon,
    pack,
)

__all__ = [
    "ACK_OFFLOAD_READY",
    "ADV_MAX",
    "BEACON_FMT",
    "BEACON_KIND",
    "BEACON_LEN",
    "COMPANY_ID",
    "HOME_ACK_FMT",
    "HOME_ACK_KIND",
    "HOME_ACK_LEN",
    "SHORT_MAC",
    "ST_BATTERY_LOW",
    "ST_CASE_OPEN",
    "ST_CHARGING",
    "ST_PENDING",
    "ST_RF_MODE",
    "ST_STRAP_OPEN",
    "Beacon",
    "HomeAck",
    "advertisement",
    "beacon_key",
    "decode_beacon",
    "decode_home_ack",
    "encode_beacon",
    "encode_home_ack",
    "manufacturer_payload",
    "pairing_key",
    "parse_beacon",
]

_PAIR_LABEL = b"tagwatch pair v1"


def pairing_key(home_key: bytes, tag_id: int) -> bytes:
    """Key a home unit signs its acknowledgements to one tag with. The home unit derives it
    from its own key; the tag receives it when paired, so a tag can only ever accept its
    own home unit, and cannot forge acknowledgements for any other tag."""
    return _mac.derive(home_key, _PAIR_LABEL + struct.pack(">I", tag_id))


def parse_beacon(payload: bytes) -> "tuple[Beacon, bytes, bytes]":
    """Structure of a beacon payload (MAC unchecked): returns (Beacon, signed, mac)."""
    if len(payload) != BEACON_LEN + SHORT_MAC:
        raise DecodeError("length", "beacon of %d bytes" % len(payload))
    v = struct.unpack_from(BEACON_FMT, payload, 0)
    if v[0] != BEACON_KIND:
        raise DecodeError("version", "beacon kind 0x%02x" % v[0])
    signed = struct.pack("<H", COMPANY_ID) + bytes(payload[:BEACON_LEN])
    return Beacon(v[1], v[2], v[3], v[4], v[5]), signed, bytes(payload[BEACON_LEN:])


def decode_beacon(payload: bytes, bkey: bytes) -> Beacon:
    b, signed, tag = parse_beacon(payload)
    if not _mac.equal(_mac.hmac_sha256(bkey, signed)[:SHORT_MAC], tag):
        raise DecodeError("mac", "beacon from %d" % b.tag)
    return b


def manufacturer_payload(adv: bytes) -> "bytes | None":
    """Our manufacturer-data payload from raw advertising data, or None if absent."""
    i = 0
    while i + 1 < len(adv):
        n = adv[i]
        if n == 0 or i + 1 + n > len(adv):
            return None
        if adv[i + 1] == 0xFF and n >= 3:
            cid = adv[i + 2] | (adv[i + 3] << 8)
            if cid == COMPANY_ID:
                return bytes(adv[i + 4 : i + 1 + n])
        i += 1 + n
    return None


def encode_home_ack(a: HomeAck, pkey: bytes) -> bytes:
    body = pack(HOME_ACK_FMT, (HOME_ACK_KIND, a.home_unit, a.tag, a.unix, a.lease, a.echo, a.flags))
    return body + _mac.hmac_sha256(pkey, body)[:SHORT_MAC]
