"""NMEA 0183 sentences as a GNSS receiver writes them: GGA, RMC, GSA and GNS, any talker.

The simulator feeds these to the firmware's own NMEA parser (over a pty for HIL tags), so
they follow what a u-blox M10 emits: NMEA 4.10 fields, latitude as ddmm.mmmmm, time as
hhmmss.ss, "no fix" epochs with empty position fields and 99.99 DOPs, and a checksum that is
the XOR of every character between '$' and '*', in two upper-case hex digits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

TALKERS = ("GP", "GN", "GL", "GA", "GB", "GQ")
KINDS = ("RMC", "GGA", "GSA", "GNS")


class NmeaError(ValueError):
    pass


def checksum(body: str) -> str:
    """XOR of the characters of `body` (what lies between '$' and '*')."""
    c = 0
    for ch in body.encode("ascii"):
        c ^= ch
    return f"{c:02X}"


def sentence(body: str) -> str:
    if "$" in body or "*" in body or "\r" in body or "\n" in body:
        raise NmeaError(f"reserved character in NMEA body {body!r}")
    return f"${body}*{checksum(body)}\r\n"


def _talker(talker: str) -> str:
    if len(talker) != 2 or not talker.isalpha() or not talker.isupper():
        raise NmeaError(f"talker must be two upper-case letters, got {talker!r}")
    return talker


def _time(utc_ms: int) -> str:
    cs = (utc_ms // 10) % 8_640_000  # centiseconds of the UTC day
    h, rem = divmod(cs, 360_000)
    m, rem = divmod(rem, 6000)
    return f"{h:02d}{m:02d}{rem // 100:02d}.{rem % 100:02d}"


def _date(utc_ms: int) -> str:
    d = datetime.fromtimestamp(utc_ms / 1000, tz=UTC)
    return f"{d.day:02d}{d.month:02d}{d.year % 100:02d}"


def _angle(value: float, deg_digits: int, pos: str, neg: str) -> tuple[str, str]:
    if not math.isfinite(value):
        raise NmeaError(f"position must be finite, got {value!r}")
    hemi = pos if value >= 0 else neg
    a = abs(value)
    deg = int(a)
    minutes = round((a - deg) * 60, 5)
    if minutes >= 60.0:  # rounding carried into the next degree
        deg, minutes = deg + 1, 0.0
    return f"{deg:0{deg_digits}d}{minutes:08.5f}", hemi


def lat_field(lat: float) -> tuple[str, str]:
    if not -90 <= lat <= 90:
        raise NmeaError(f"latitude out of range: {lat}")
    return _angle(lat, 2, "N", "S")


def lon_field(lon: float) -> tuple[str, str]:
    if not -180 <= lon <= 180:
        raise NmeaError(f"longitude out of range: {lon}")
    return _angle(lon, 3, "E", "W")


def gga(
    talker: str,
    utc_ms: int,
    lat: float | None,
    lon: float | None,
    sats: int = 0,
    hdop: float = 99.99,
    alt_m: float = 0.0,
    geoid_sep_m: float = 0.0,
) -> str:
    """Quality 1 (autonomous fix) when lat/lon are given, else 0 with empty fields."""
    t = _time(utc_ms)
    if lat is None or lon is None:
        body = f"{_talker(talker)}GGA,{t},,,,,0,00,99.99,,,,,,"
    else:
        la, ns = lat_field(lat)
        lo, ew = lon_field(lon)
        body = (
            f"{_talker(talker)}GGA,{t},{la},{ns},{lo},{ew},1,{sats:02d},{hdop:.2f},"
            f"{alt_m:.1f},M,{geoid_sep_m:.1f},M,,"
        )
    return sentence(body)


def rmc(
    talker: str,
    utc_ms: int,
    lat: float | None,
    lon: float | None,
    speed_mps: float = 0.0,
    course_deg: float | None = None,
) -> str:
    t, d = _time(utc_ms), _date(utc_ms)
    if lat is None or lon is None:
        body = f"{_talker(talker)}RMC,{t},V,,,,,,,{d},,,N,V"
    else:
        la, ns = lat_field(lat)
        lo, ew = lon_field(lon)
        knots = speed_mps * 3600 / 1852
        course = "" if course_deg is None else f"{course_deg % 360:.2f}"
        body = f"{_talker(talker)}RMC,{t},A,{la},{ns},{lo},{ew},{knots:.3f},{course},{d},,,A,V"
    return sentence(body)


def gsa(talker: str, prns: Sequence[int], hdop: float, fix: bool) -> str:
    """GSA: up to 12 satellites used; PDOP/VDOP derived from HDOP (PDOP ~ 1.6 HDOP, typical
    of a receiver with a good vertical spread)."""
    ids = [f"{p:02d}" for p in list(prns)[:12]] if fix else []
    ids += [""] * (12 - len(ids))
    if fix:
        pdop, vdop = min(hdop * 1.6, 99.99), min(hdop * 1.25, 99.99)
        dops = f"{pdop:.2f},{hdop:.2f},{vdop:.2f}"
        mode = "3"
    else:
        dops, mode = "99.99,99.99,99.99", "1"
    return sentence(f"{_talker(talker)}GSA,A,{mode},{','.join(ids)},{dops}")


def gns(
    talker: str,
    utc_ms: int,
    lat: float | None,
    lon: float | None,
    sats: int = 0,
    hdop: float = 99.99,
    alt_m: float = 0.0,
    geoid_sep_m: float = 0.0,
) -> str:
    t = _time(utc_ms)
    if lat is None or lon is None:
        body = f"{_talker(talker)}GNS,{t},,,,,NNNN,00,99.99,,,,,V"
    else:
        la, ns = lat_field(lat)
        lo, ew = lon_field(lon)
        body = (
            f"{_talker(talker)}GNS,{t},{la},{ns},{lo},{ew},AAAN,{sats:02d},{hdop:.2f},"
            f"{alt_m:.1f},{geoid_sep_m:.1f},,,V"
        )
    return sentence(body)


def epoch(
    talker: str,
    utc_ms: int,
    lat: float | None,
    lon: float | None,
    sats: int = 0,
    hdop: float = 99.99,
    alt_m: float = 35.0,
    geoid_sep_m: float = 48.0,
    speed_mps: float = 0.0,
    course_deg: float | None = None,
    kinds: Sequence[str] = ("RMC", "GGA", "GSA"),
) -> list[str]:
    """The sentences of one receiver epoch, in the order a u-blox sends them."""
    fix = lat is not None and lon is not None
    out = []
    for k in kinds:
        if k == "RMC":
            out.append(rmc(talker, utc_ms, lat, lon, speed_mps, course_deg))
        elif k == "GGA":
            out.append(gga(talker, utc_ms, lat, lon, sats, hdop, alt_m, geoid_sep_m))
        elif k == "GSA":
            out.append(gsa(talker, list(range(1, sats + 1)), hdop, fix))
        elif k == "GNS":
            out.append(gns(talker, utc_ms, lat, lon, sats, hdop, alt_m, geoid_sep_m))
        else:
            raise NmeaError(f"unknown sentence {k!r} (known: {', '.join(KINDS)})")
    return out
