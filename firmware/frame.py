# The tagwatch wire frame: one signed container for everything a tag or home unit sends and
# everything the backend sends back (acknowledgements and commands). See docs/protocol.md.
#
# Runs unmodified on MicroPython and CPython. MicroPython's struct silently truncates
# out-of-range values, so every value is range-checked before packing: both runtimes then
# either produce the same bytes or raise the same ValueError.
import struct

from firmware import mac as _mac
from firmware.runtime import TYPE_CHECKING, const

if TYPE_CHECKING:
    from typing import Any

VERSION = 1

# Message types (header byte 1).
TAG_DATA = 1
HOME_DATA = 2
ACK = 3
COMMAND = 4
MESSAGE_TYPES = (TAG_DATA, HOME_DATA, ACK, COMMAND)

# Header flags (header byte 2).
FLAG_TIME_VALID = 0x01  # timestamps are Unix seconds; clear: seconds since boot
FLAG_URGENT = 0x02  # carries an alert-class record (tamper, critical battery, motion-no-fix)

HEADER_FMT = ">BBBBIHIIH"
HEADER_LEN = 20
MAC_MIN = 8
MAC_MAX = 32
MAC_DEFAULT = 12
MAX_BODY = 4096
_RECORD_HEADER_LEN = const(2)
_MAX_RECORD_PAYLOAD = const(255)

# Record types. Each is (name, struct format, field names); the format's first field is
# "dt" (seconds before the frame timestamp) for records that describe something that happened.
FIX = 0x01
TAMPER = 0x02
BATTERY = 0x03
MODE = 0x04
MOTION_NO_FIX = 0x05
OVERFLOW = 0x06
BOOT = 0x07
CLOCK_SET = 0x08
PRESENCE = 0x09
STATUS = 0x0A
COMMAND_RESULT = 0x0B
HOME_POWER = 0x10
HOME_TAMPER = 0x11
LINK = 0x12
ACK_RANGE = 0x20
CMD_CONFIG = 0x30
CMD_NOTIFY = 0x31
CMD_LOCATE = 0x32
CMD_TIME_SYNC = 0x33
CMD_CLEAR_TAMPER = 0x34
CMD_ZONE = 0x35
CMD_BROKER = 0x36

SPECS = {
    FIX: (
        "fix",
        ">HiiHBBBHHB",
        (
            "dt",
            "lat_e7",
            "lon_e7",
            "acc_dm",
            "fix_type",
            "source",
            "sats",
            "speed_cms",
            "course_cd",
            "hdop_d",
        ),
    ),
    TAMPER: ("tamper", ">HBB", ("dt", "sensor", "state")),
    BATTERY: ("battery", ">HBBHH", ("dt", "level", "flags", "mv", "hours_left")),
    MODE: ("mode", ">HBBI", ("dt", "mode", "reason", "home_unit")),
    MOTION_NO_FIX: ("motion_no_fix", ">HBH", ("dt", "stage", "minutes")),
    OVERFLOW: ("overflow", ">HI", ("dt", "lost")),
    BOOT: ("boot", ">HBH", ("dt", "reset_cause", "fw_version")),
    CLOCK_SET: ("clock_set", ">HBi", ("dt", "source", "delta_s")),
    PRESENCE: ("presence", ">HIIBb", ("dt", "home_unit", "tag", "state", "rssi")),
    STATUS: ("status", ">HHHHH", ("dt", "fw_version", "buf_used", "buf_free", "bad_inputs")),
    COMMAND_RESULT: ("command_result", ">HIB", ("dt", "cmd_seq", "result")),
    HOME_POWER: ("home_power", ">HBB", ("dt", "mains", "battery")),
    HOME_TAMPER: ("home_tamper", ">HBB", ("dt", "kind", "state")),
    LINK: ("link", ">HB", ("dt", "state")),
    ACK_RANGE: ("ack_range", ">HII", ("boot", "first", "last")),
    CMD_CONFIG: ("cmd_config", ">Bi", ("key", "value")),
    CMD_NOTIFY: ("cmd_notify", ">BBH", ("pattern", "repeats", "message")),
    CMD_LOCATE: ("cmd_locate", ">", ()),
    CMD_TIME_SYNC: ("cmd_time_sync", ">I", ("unix",)),
    CMD_CLEAR_TAMPER: ("cmd_clear_tamper", ">B", ("sensor",)),
    CMD_ZONE: ("cmd_zone", ">BiiH", ("slot", "lat_e7", "lon_e7", "radius_m")),
    # The host name follows the port, to the record's end (Record.extra): ASCII, as in the
    # provisioned "host:port" (firmware.uplink.endpoint).
    CMD_BROKER: ("cmd_broker", ">H", ("port",)),
}

# Enumerations carried in record fields.
FIX_NONE = 0
FIX_2D = 1
FIX_3D = 2
SOURCE_GNSS = 0
SOURCE_RF_HOME = 1
SENSOR_STRAP = 1
SENSOR_CASE = 2
CLOSED = 0
OPEN = 1
MODE_GPS = 0
MODE_RF = 1
MODE_REASON_BOOT = 0
MODE_REASON_HOME_ACK = 1
MODE_REASON_LEASE_EXPIRED = 2
MODE_REASON_COMMAND = 3
MODE_REASON_URGENT_UNHEARD = 4
BATTERY_CHARGING = 0x01
BATTERY_CHARGER = 0x02
BATTERY_LOW = 0x04
BATTERY_CRITICAL = 0x08
HOURS_UNKNOWN = 0xFFFF
MOTION_CLEARED = 0
MOTION_NOTIFIED = 1
MOTION_ESCALATED = 2
RESET_POWER_ON = 0
RESET_HARD = 1
RESET_WATCHDOG = 2
RESET_DEEPSLEEP = 3
RESET_SOFT = 4
RESET_BROWNOUT = 5
CLOCK_GNSS = 1
CLOCK_HOME_UNIT = 2
CLOCK_COMMAND = 3
CLOCK_BACKEND = 4
AWAY = 0
HOME = 1
RESULT_OK = 0
RESULT_BAD_MAC = 1
RESULT_REPLAY = 2
RESULT_UNKNOWN = 3
RESULT_BAD_ARGS = 4
RESULT_DUPLICATE = 5  # already run (delivered again by the other path): not run again
HOME_MOVED = 1
HOME_CASE = 2
LINK_OFFLINE = 0
LINK_ONLINE = 1
# CMD_CONFIG keys (the firmware documents which it honours).
CFG_FIX_MOVING_S = 1
CFG_FIX_FAST_S = 2
CFG_FIX_REST_S = 3
CFG_BATCH_FIXES = 4
CFG_BATCH_S = 5
CFG_FAST_UNTIL = 6
CFG_HDOP_MAX_D = 7
CFG_LEASE_S = 8


class DecodeError(ValueError):
    """The one error a decoder raises; `reason` is a short stable code (see docs/protocol.md)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.detail = detail


def check_values(fmt: str, values: "tuple[Any, ...] | list[Any]") -> None:
    """Raise ValueError unless each value is an int that fits its struct code."""
    codes = fmt[1:]
    if len(values) != len(codes):
        raise ValueError("expected %d values, got %d" % (len(codes), len(values)))
    for i in range(len(codes)):
        v = values[i]
        if type(v) is not int:
            raise ValueError("value %r is not an int" % (v,))
        c = codes[i]
        bits = 8 if c in "Bb" else 16 if c in "Hh" else 32
        lo = -(1 << (bits - 1)) if c in "bhi" else 0
        if v < lo or v >= lo + (1 << bits):
            raise ValueError("value %d out of range for %s" % (v, c))


class Record:
    """One typed record. Known types expose their fields as attributes; unknown types
    (from a newer peer) keep their payload in `raw` so they can be skipped or relayed."""

    def __init__(
        self,
        rtype: int,
        values: "tuple[int, ...] | list[int] | None" = None,
        raw: bytes = b"",
        extra: bytes = b"",
        trusted: bool = False,
        **fields: int,
    ) -> None:
        self.type = rtype
        self.raw = raw
        self.extra = extra  # trailing bytes a newer version appended to a known type
        spec = SPECS.get(rtype)
        self.name = spec[0] if spec else None
        self.values: tuple[int, ...] = ()
        if spec is None:
            if values or fields:
                raise ValueError("unknown record type %d takes raw bytes only" % rtype)
            return
        names = spec[2]
        if values is None:
            for k in fields:
                if k not in names:
                    raise ValueError("%s has no field %s" % (spec[0], k))
            values = []
            for n in names:
                if n not in fields:
                    raise ValueError("%s needs field %s" % (spec[0], n))
                values.append(fields[n])
        values = tuple(values)
        if not trusted:  # the decoder's values come from struct.unpack and are in range
            check_values(spec[1], values)
        self.values = values

    def __getattr__(self, name: str) -> int:
        # Fields are looked up in the spec rather than stored per instance: less heap per record.
        spec = SPECS.get(self.type)
        if spec is not None:
            names = spec[2]
            for i in range(len(names)):
                if names[i] == name:
                    return self.values[i]
        raise AttributeError(name)

    def payload(self) -> bytes:
        spec = SPECS.get(self.type)
        if spec is None:
            return self.raw
        return struct.pack(spec[1], *self.values) + self.extra

    def to_dict(self) -> "dict[str, Any]":
        # The dict form is for tools and tests: its code loads only when asked for.
        from firmware.framedict import record_to_dict

        return record_to_dict(self)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Record)
            and self.type == other.type
            and self.values == other.values
            and self.raw == other.raw
            and self.extra == other.extra
        )

    def __repr__(self) -> str:
        return "Record(%r)" % (self.to_dict(),)


class Frame:
    def __init__(
        self,
        mtype: int,
        device: int,
        boot: int,
        seq: int,
        ts: int,
        records: "list[Record] | tuple[Record, ...]" = (),
        flags: int = 0,
        mac_len: int = MAC_DEFAULT,
        version: int = VERSION,
    ) -> None:
        self.version = version
        self.mtype = mtype
        self.flags = flags
        self.mac_len = mac_len
        self.device = device
        self.boot = boot
        self.seq = seq
        self.ts = ts
        self.records = list(records)
        self.mac = b""  # set by encode() and parse()
        self.signed = b""  # header + body as received, the bytes the MAC covers

    def time_of(self, record: Record) -> int:
        """Device time of a record: the frame timestamp less the record's dt."""
        return self.ts - record.dt

    def to_dict(self) -> "dict[str, Any]":
        from firmware.framedict import frame_to_dict

        return frame_to_dict(self)

    def __repr__(self) -> str:
        return "Frame(%r)" % (self.to_dict(),)


def encode(frame: Frame, key: bytes) -> bytes:
    """Serialise and sign a frame; returns the bytes to send and sets frame.mac/.signed."""
    if frame.version != VERSION:
        raise ValueError("can only encode version %d" % VERSION)
    if frame.mtype not in MESSAGE_TYPES:
        raise ValueError("unknown message type %r" % (frame.mtype,))
    if frame.mac_len < MAC_MIN or frame.mac_len > MAC_MAX:
        raise ValueError("mac_len must be %d..%d" % (MAC_MIN, MAC_MAX))
    # The header goes first in parts, and the signed bytes are joined once: no body copy
    # beside them (on a tag the seal's transient, not its loaded code, is what the heap
    # fails on: docs/firmware.md, "Heap").
    parts = [b""]
    n = 0
    for rec in frame.records:
        p = rec.payload()
        if len(p) > _MAX_RECORD_PAYLOAD:
            raise ValueError("record payload too long")
        if rec.type < 1 or rec.type > 0xFF:
            raise ValueError("record type out of range")
        parts.append(bytes((rec.type, len(p))))
        parts.append(p)
        n += _RECORD_HEADER_LEN + len(p)
    if n > MAX_BODY:
        raise ValueError("body of %d bytes exceeds %d" % (n, MAX_BODY))
    head = (
        frame.version,
        frame.mtype,
        frame.flags,
        frame.mac_len,
        frame.device,
        frame.boot,
        frame.seq,
        frame.ts,
        n,
    )
    check_values(HEADER_FMT, head)
    parts[0] = struct.pack(HEADER_FMT, *head)
    signed = b"".join(parts)
    tag = _mac.hmac_sha256(key, signed)[: frame.mac_len]
    frame.signed = signed
    frame.mac = tag
    return signed + tag


def _decode_records(body: memoryview) -> "list[Record]":
    records = []
    i = 0
    n = len(body)
    while i < n:
        if n - i < _RECORD_HEADER_LEN:
            raise DecodeError("record_truncated", "record header at %d" % i)
        rtype = body[i]
        rlen = body[i + 1]
        i += _RECORD_HEADER_LEN
        if rtype == 0:
            raise DecodeError("record_type", "type 0 at %d" % (i - 2))
        if i + rlen > n:
            raise DecodeError("record_truncated", "record %d wants %d bytes" % (rtype, rlen))
        payload = bytes(body[i : i + rlen])
        i += rlen
        spec = SPECS.get(rtype)
        if spec is None:
            records.append(Record(rtype, raw=payload))
            continue
        size = struct.calcsize(spec[1])
        if rlen < size:
            raise DecodeError("record_short", "%s needs %d bytes, has %d" % (spec[0], size, rlen))
        values = struct.unpack_from(spec[1], payload, 0) if size else ()
        if rtype == FIX and not fix_in_range(values):
            raise DecodeError("value", "fix outside the globe")
        records.append(Record(rtype, values, extra=payload[size:], trusted=True))
    return records


def fix_in_range(v: "tuple[int, ...]") -> bool:
    """Whether a FIX record's values (wire order) lie on the globe."""
    return -900000000 <= v[1] <= 900000000 and -1800000000 <= v[2] <= 1800000000


def parse(data: "bytes | bytearray | memoryview") -> Frame:
    """Parse the structure of a frame without checking its MAC (the key is found from the
    device id in the header). Raises DecodeError and nothing else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("type", "not bytes")
    data = bytes(data)
    if len(data) < HEADER_LEN + MAC_MIN:
        raise DecodeError("short", "%d bytes" % len(data))
    h = struct.unpack_from(HEADER_FMT, data, 0)
    version, mtype, flags, mac_len, device, boot, seq, ts, body_len = h
    if version != VERSION:
        raise DecodeError("version", "version %d" % version)
    if mtype not in MESSAGE_TYPES:
        raise DecodeError("message_type", "type %d" % mtype)
    if mac_len < MAC_MIN or mac_len > MAC_MAX:
        raise DecodeError("mac_len", "mac_len %d" % mac_len)
    if body_len > MAX_BODY:
        raise DecodeError("body", "body_len %d" % body_len)
    if HEADER_LEN + body_len + mac_len != len(data):
        raise DecodeError(
            "length", "header says %d bytes, got %d" % (HEADER_LEN + body_len + mac_len, len(data))
        )
    end = HEADER_LEN + body_len
    records = _decode_records(memoryview(data)[HEADER_LEN:end])
    f = Frame(mtype, device, boot, seq, ts, records, flags=flags, mac_len=mac_len, version=version)
    f.signed = data[:end]
    f.mac = data[end:]
    return f


def verify(frame: Frame, key: bytes) -> Frame:
    """Check a parsed frame's MAC with the sender's key; raises DecodeError('mac')."""
    want = _mac.hmac_sha256(key, frame.signed)[: frame.mac_len]
    if not _mac.equal(want, frame.mac):
        raise DecodeError("mac", "device %d" % frame.device)
    return frame


def decode(data: "bytes | bytearray | memoryview", key: bytes) -> Frame:
    return verify(parse(data), key)


def peek_device(data: bytes) -> "int | None":
    """Device id from a frame's header, or None if there is no header to read."""
    if len(data) < HEADER_LEN:
        return None
    device: int = struct.unpack_from(">I", data, 4)[0]
    return device
