# The tag's half of the beacon protocol (docs/protocol.md, "Beacon"): its signed beacon in a
# legacy advertisement, and the check of its home unit's signed acknowledgement. The tag loads
# only this; firmware/beacon.py adds the home unit's half (parse and verify a beacon, sign an
# ack, the pairing key) and is the module everything else imports.
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


def beacon_key(tag_key: bytes) -> bytes:
    """Key a tag signs its beacons with; the backend gives it to the tag's home units,
    which can then verify beacons without holding the tag's frame key."""
    return _mac.derive(tag_key, _BEACON_LABEL)


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


def pack(fmt: str, values: "tuple[int, ...]") -> bytes:
    """struct.pack after the range check (MicroPython's struct truncates silently)."""
    check_values(fmt, values)
    return struct.pack(fmt, *values)


def encode_beacon(b: Beacon, bkey: bytes) -> bytes:
    """Manufacturer-data payload (after the 2-byte company id) for one beacon."""
    body = pack(BEACON_FMT, (BEACON_KIND, b.tag, b.counter, b.status, b.battery, b.pending))
    signed = struct.pack("<H", COMPANY_ID) + body
    return body + _mac.hmac_sha256(bkey, signed)[:SHORT_MAC]


def advertisement(payload: bytes, name: bytes = b"") -> bytes:
    """Full legacy advertising data: Flags AD + Manufacturer Specific AD (+ name if it fits)."""
    adv = bytes((2, 0x01, 0x06)) + bytes((len(payload) + 3, 0xFF))
    adv += struct.pack("<H", COMPANY_ID) + payload
    if name and len(adv) + 2 + len(name) <= ADV_MAX:
        adv += bytes((len(name) + 1, 0x09)) + name
    if len(adv) > ADV_MAX:
        raise ValueError("advertisement of %d bytes exceeds %d" % (len(adv), ADV_MAX))
    return adv


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
