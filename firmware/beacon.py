# The tag's BLE beacon and the home unit's signed acknowledgement (docs/protocol.md, "Beacon").
# A beacon must fit a legacy advertisement: 31 bytes of AD structures, headers included.
import struct

from firmware import mac as _mac
from firmware.frame import DecodeError, check_values

COMPANY_ID = 0xFFFF  # Bluetooth SIG id reserved for testing; a deployment sets its own
BEACON_KIND = 0xB1
HOME_ACK_KIND = 0xA1
BEACON_FMT = ">BIIBBH"  # kind, tag, counter, status, battery, pending
BEACON_LEN = 13
HOME_ACK_FMT = ">BIIIHIB"  # kind, home unit, tag, unix time, lease s, echoed counter, flags
HOME_ACK_LEN = 20
SHORT_MAC = 8
ADV_MAX = 31

# Beacon status bits.
ST_STRAP_OPEN = 0x01
ST_CASE_OPEN = 0x02
ST_CHARGING = 0x04
ST_BATTERY_LOW = 0x08
ST_PENDING = 0x10
ST_RF_MODE = 0x20

# Home-ack flag bits.
ACK_OFFLOAD_READY = 0x01

_BEACON_LABEL = b"tagwatch beacon v1"
_PAIR_LABEL = b"tagwatch pair v1"


def beacon_key(tag_key: bytes) -> bytes:
    """Key a tag signs its beacons with; the backend gives it to the tag's home units,
    which can then verify beacons without holding the tag's frame key."""
    return _mac.derive(tag_key, _BEACON_LABEL)


def pairing_key(home_key: bytes, tag_id: int) -> bytes:
    """Key a home unit signs its acknowledgements to one tag with. The home unit derives it
    from its own key; the tag receives it when paired, so a tag can only ever accept its
    own home unit, and cannot forge acknowledgements for any other tag."""
    return _mac.derive(home_key, _PAIR_LABEL + struct.pack(">I", tag_id))


class Beacon:
    def __init__(
        self, tag: int, counter: int, status: int = 0, battery: int = 0, pending: int = 0
    ) -> None:
        self.tag = tag
        self.counter = counter
        self.status = status
        self.battery = battery
        self.pending = pending

    def to_dict(self) -> "dict[str, int]":
        return {
            "tag": self.tag,
            "counter": self.counter,
            "status": self.status,
            "battery": self.battery,
            "pending": self.pending,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Beacon) and self.to_dict() == other.to_dict()


class HomeAck:
    def __init__(
        self, home_unit: int, tag: int, unix: int, lease: int, echo: int, flags: int = 0
    ) -> None:
        self.home_unit = home_unit
        self.tag = tag
        self.unix = unix
        self.lease = lease
        self.echo = echo
        self.flags = flags

    def to_dict(self) -> "dict[str, int]":
        return {
            "home_unit": self.home_unit,
            "tag": self.tag,
            "unix": self.unix,
            "lease": self.lease,
            "echo": self.echo,
            "flags": self.flags,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HomeAck) and self.to_dict() == other.to_dict()


def _pack(fmt: str, values: "tuple[int, ...]") -> bytes:
    check_values(fmt, values)
    return struct.pack(fmt, *values)


def encode_beacon(b: Beacon, bkey: bytes) -> bytes:
    """Manufacturer-data payload (after the 2-byte company id) for one beacon."""
    body = _pack(BEACON_FMT, (BEACON_KIND, b.tag, b.counter, b.status, b.battery, b.pending))
    signed = struct.pack("<H", COMPANY_ID) + body
    return body + _mac.hmac_sha256(bkey, signed)[:SHORT_MAC]


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


def advertisement(payload: bytes, name: bytes = b"") -> bytes:
    """Full legacy advertising data: Flags AD + Manufacturer Specific AD (+ name if it fits)."""
    adv = bytes((2, 0x01, 0x06)) + bytes((len(payload) + 3, 0xFF))
    adv += struct.pack("<H", COMPANY_ID) + payload
    if name and len(adv) + 2 + len(name) <= ADV_MAX:
        adv += bytes((len(name) + 1, 0x09)) + name
    if len(adv) > ADV_MAX:
        raise ValueError("advertisement of %d bytes exceeds %d" % (len(adv), ADV_MAX))
    return adv


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
    body = _pack(
        HOME_ACK_FMT, (HOME_ACK_KIND, a.home_unit, a.tag, a.unix, a.lease, a.echo, a.flags)
    )
    return body + _mac.hmac_sha256(pkey, body)[:SHORT_MAC]


def decode_home_ack(data: bytes, pkey: bytes) -> HomeAck:
    if len(data) != HOME_ACK_LEN + SHORT_MAC:
        raise DecodeError("length", "home ack of %d bytes" % len(data))
    v = struct.unpack_from(HOME_ACK_FMT, data, 0)
    if v[0] != HOME_ACK_KIND:
        raise DecodeError("version", "home ack kind 0x%02x" % v[0])
    want = _mac.hmac_sha256(pkey, bytes(data[:HOME_ACK_LEN]))[:SHORT_MAC]
    if not _mac.equal(want, bytes(data[HOME_ACK_LEN:])):
        raise DecodeError("mac", "home ack from %d" % v[1])
    return HomeAck(v[1], v[2], v[3], v[4], v[5], v[6])
