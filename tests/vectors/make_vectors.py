"""Writes tests/vectors/*.json, the golden vectors both runtimes test against.

Run it only when the protocol changes on purpose (and bump the protocol version if an
existing vector's bytes change): `python -m tests.vectors.make_vectors`. The tests check
every vector against both codecs and one against a construction independent of the codec.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from firmware import beacon as bc
from firmware import frame as fr

HERE = Path(__file__).parent
TAG_KEY = bytes(range(32))
HOME_KEY = bytes(range(100, 132))
T0 = 1_790_000_000  # 2026-09-21T13:33:20Z


def fix(dt: int, lat: float, lon: float, acc_m: float = 4.2, **kw: int) -> fr.Record:
    return fr.Record(
        fr.FIX,
        dt=dt,
        lat_e7=round(lat * 1e7),
        lon_e7=round(lon * 1e7),
        acc_dm=round(acc_m * 10),
        fix_type=kw.get("fix_type", fr.FIX_3D),
        source=kw.get("source", fr.SOURCE_GNSS),
        sats=kw.get("sats", 9),
        speed_cms=kw.get("speed_cms", 140),
        course_cd=kw.get("course_cd", 27_000),
        hdop_d=kw.get("hdop_d", 9),
    )


def frames() -> list[dict[str, Any]]:
    bournemouth = (50.7192, -1.8808)
    out: list[tuple[str, bytes, fr.Frame]] = []
    out.append(
        (
            "one_fix",
            TAG_KEY,
            fr.Frame(fr.TAG_DATA, 1001, 3, 17, T0, [fix(5, *bournemouth)], fr.FLAG_TIME_VALID),
        )
    )
    ten = [
        fix(600 - 60 * i, bournemouth[0] + i * 1e-4, bournemouth[1] - i * 2e-4, 3.5 + i)
        for i in range(10)
    ]
    out.append(("ten_fixes", TAG_KEY, fr.Frame(fr.TAG_DATA, 1001, 3, 18, T0, ten, 1)))
    events = [
        fr.Record(fr.BOOT, dt=300, reset_cause=fr.RESET_WATCHDOG, fw_version=0x0102),
        fr.Record(fr.CLOCK_SET, dt=290, source=fr.CLOCK_GNSS, delta_s=-2),
        fr.Record(fr.TAMPER, dt=60, sensor=fr.SENSOR_STRAP, state=fr.OPEN),
        fr.Record(fr.TAMPER, dt=59, sensor=fr.SENSOR_CASE, state=fr.CLOSED),
        fr.Record(
            fr.BATTERY,
            dt=50,
            level=19,
            flags=fr.BATTERY_LOW,
            mv=3620,
            hours_left=7,
        ),
        fr.Record(fr.MODE, dt=40, mode=fr.MODE_RF, reason=fr.MODE_REASON_HOME_ACK, home_unit=9001),
        fr.Record(fr.MOTION_NO_FIX, dt=30, stage=fr.MOTION_NOTIFIED, minutes=10),
        fr.Record(fr.OVERFLOW, dt=20, lost=12),
        fr.Record(fr.PRESENCE, dt=10, home_unit=9001, tag=1001, state=fr.HOME, rssi=-67),
        fr.Record(fr.STATUS, dt=0, fw_version=0x0102, buf_used=40, buf_free=4000, bad_inputs=3),
        fr.Record(fr.COMMAND_RESULT, dt=0, cmd_seq=7, result=fr.RESULT_REPLAY),
        fix(0, 50.7, -1.9, 25.0, source=fr.SOURCE_RF_HOME, fix_type=fr.FIX_NONE, sats=0),
    ]
    flags = fr.FLAG_TIME_VALID | fr.FLAG_URGENT
    out.append(("tag_events", TAG_KEY, fr.Frame(fr.TAG_DATA, 1001, 3, 19, T0, events, flags)))
    home = [
        fr.Record(fr.PRESENCE, dt=120, home_unit=9001, tag=1001, state=fr.AWAY, rssi=-127),
        fr.Record(fr.HOME_POWER, dt=60, mains=0, battery=88),
        fr.Record(fr.HOME_TAMPER, dt=30, kind=fr.HOME_MOVED, state=fr.OPEN),
        fr.Record(fr.LINK, dt=0, state=fr.LINK_ONLINE),
    ]
    out.append(("home_unit", HOME_KEY, fr.Frame(fr.HOME_DATA, 9001, 1, 5, T0, home, 1)))
    acks = [
        fr.Record(fr.ACK_RANGE, boot=3, first=17, last=19),
        fr.Record(fr.ACK_RANGE, boot=2, first=0, last=4_000_000_000),
    ]
    out.append(("ack", TAG_KEY, fr.Frame(fr.ACK, 1001, 0, 0, T0 + 2, acks, 1)))
    cmds = [
        fr.Record(fr.CMD_CONFIG, key=fr.CFG_FIX_MOVING_S, value=60),
        fr.Record(fr.CMD_CONFIG, key=fr.CFG_FAST_UNTIL, value=T0 + 3600),
        fr.Record(fr.CMD_NOTIFY, pattern=2, repeats=3, message=41),
        fr.Record(fr.CMD_LOCATE),
        fr.Record(fr.CMD_TIME_SYNC, unix=T0 + 3),
        fr.Record(fr.CMD_CLEAR_TAMPER, sensor=fr.SENSOR_STRAP),
    ]
    out.append(("command", TAG_KEY, fr.Frame(fr.COMMAND, 1001, 0, 42, T0 + 3, cmds, 1)))
    future = fix(1, -33.8688, 151.2093)
    future.extra = bytes.fromhex("beef")
    unknown = fr.Record(0x7E, raw=bytes.fromhex("00112233"))
    out.append(
        ("forward_compatible", TAG_KEY, fr.Frame(fr.TAG_DATA, 1001, 3, 20, T0, [unknown, future]))
    )
    out.append(
        (
            "short_mac_no_time",
            TAG_KEY,
            fr.Frame(fr.TAG_DATA, 0xFFFFFFFF, 0, 0, 42, [fix(2, 0.0, 0.0)], 0, fr.MAC_MIN),
        )
    )
    out.append(
        ("long_mac_empty", TAG_KEY, fr.Frame(fr.TAG_DATA, 1, 65535, 2**32 - 1, 0, [], 0, 32))
    )
    zones = [
        fr.Record(fr.CMD_ZONE, slot=0, lat_e7=507200000, lon_e7=-18795000, radius_m=350),
        fr.Record(fr.CMD_ZONE, slot=7, lat_e7=0, lon_e7=0, radius_m=0),
    ]
    out.append(("command_zone", TAG_KEY, fr.Frame(fr.COMMAND, 1001, 0, 43, T0 + 4, zones, 1)))
    answers = [
        fr.Record(fr.COMMAND_RESULT, dt=5, cmd_seq=43, result=fr.RESULT_OK),
        fr.Record(fr.COMMAND_RESULT, dt=0, cmd_seq=42, result=fr.RESULT_DUPLICATE),
    ]
    out.append(("command_results", TAG_KEY, fr.Frame(fr.TAG_DATA, 1001, 3, 21, T0 + 9, answers, 1)))
    return [
        {"name": n, "key": k.hex(), "hex": fr.encode(f, k).hex(), "frame": f.to_dict()}
        for n, k, f in out
    ]


def invalid(valid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    one = bytes.fromhex(valid[0]["hex"])
    flipped = bytearray(one)
    flipped[25] ^= 0x10
    bad_version = bytearray(one)
    bad_version[0] = 2
    bad_type = bytearray(one)
    bad_type[1] = 9
    bad_mac_len = bytearray(one)
    bad_mac_len[3] = 4
    # A FIX record that claims 3 bytes: the structure is fine, the record is too short.
    body = bytes((fr.FIX, 3)) + b"abc"
    head = bytes((1, fr.TAG_DATA, 0, 12)) + (5).to_bytes(4, "big") + bytes(10)
    head += len(body).to_bytes(2, "big")
    short_record = head + body + hmac.digest(TAG_KEY, head + body, "sha256")[:12]
    trunc_body = bytes((fr.FIX, 30)) + bytes(5)
    head2 = head[:-2] + len(trunc_body).to_bytes(2, "big")
    truncated = head2 + trunc_body + hmac.digest(TAG_KEY, head2 + trunc_body, "sha256")[:12]
    off_globe = fix(0, 0.0, 0.0)
    off_globe.values = (0, 910_000_000, *off_globe.values[2:])
    globe = fr.encode(fr.Frame(fr.TAG_DATA, 5, 0, 0, 0, [off_globe]), TAG_KEY)
    return [
        {"name": "empty", "hex": "", "reason": "short"},
        {"name": "truncated_header", "hex": one[:15].hex(), "reason": "short"},
        {"name": "version_2", "hex": bytes(bad_version).hex(), "reason": "version"},
        {"name": "message_type_9", "hex": bytes(bad_type).hex(), "reason": "message_type"},
        {"name": "mac_len_4", "hex": bytes(bad_mac_len).hex(), "reason": "mac_len"},
        {"name": "one_byte_missing", "hex": one[:-1].hex(), "reason": "length"},
        {"name": "one_byte_extra", "hex": (one + b"\0").hex(), "reason": "length"},
        {"name": "fix_too_short", "hex": short_record.hex(), "reason": "record_short"},
        {"name": "record_overruns_body", "hex": truncated.hex(), "reason": "record_truncated"},
        {"name": "latitude_91", "hex": globe.hex(), "reason": "value"},
        {"name": "bit_flipped", "hex": bytes(flipped).hex(), "reason": "mac", "key": TAG_KEY.hex()},
    ]


def beacons() -> list[dict[str, Any]]:
    out = []
    for b in (
        bc.Beacon(1001, 1, 0, 100, 0),
        bc.Beacon(1001, 70_000, bc.ST_PENDING | bc.ST_RF_MODE | bc.ST_BATTERY_LOW, 18, 312),
        bc.Beacon(0xFFFFFFFF, 0xFFFFFFFF, 0x3F, 255, 65535),
    ):
        payload = bc.encode_beacon(b, bc.beacon_key(TAG_KEY))
        out.append(
            {
                "tag_key": TAG_KEY.hex(),
                "beacon": b.to_dict(),
                "payload": payload.hex(),
                "advertisement": bc.advertisement(payload, b"TW").hex(),
            }
        )
    return out


def home_acks() -> list[dict[str, Any]]:
    out = []
    for a in (
        bc.HomeAck(9001, 1001, T0, 120, 70_000, bc.ACK_OFFLOAD_READY),
        bc.HomeAck(9001, 1002, T0 + 1, 0, 0, 0),
    ):
        pkey = bc.pairing_key(HOME_KEY, a.tag)
        out.append(
            {
                "home_key": HOME_KEY.hex(),
                "ack": a.to_dict(),
                "pairing_key": pkey.hex(),
                "hex": bc.encode_home_ack(a, pkey).hex(),
            }
        )
    return out


def hmac_cases() -> list[dict[str, str]]:
    """RFC 4231 cases 1, 2, 6 and 7 (long keys), plus an empty message; expected values
    from CPython's hmac module."""
    cases = [
        (b"\x0b" * 20, b"Hi There"),
        (b"Jefe", b"what do ya want for nothing?"),
        (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"),
        (
            b"\xaa" * 131,
            b"This is a test using a larger than block-size key and a larger than block-size "
            b"data. The key needs to be hashed before being used by the HMAC algorithm.",
        ),
        (b"k" * 64, b""),
    ]
    return [
        {"key": k.hex(), "msg": m.hex(), "mac": hmac.new(k, m, hashlib.sha256).hexdigest()}
        for k, m in cases
    ]


def main() -> None:
    valid = frames()
    data = {
        "frames": valid,
        "invalid": invalid(valid),
        "beacons": beacons(),
        "home_acks": home_acks(),
        "hmac": hmac_cases(),
    }
    for name, rows in data.items():
        (HERE / f"{name}.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(f"wrote {len(rows)} vectors to tests/vectors/{name}.json")


if __name__ == "__main__":
    main()
