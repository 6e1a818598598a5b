"""NMEA 0183 sentences as GNSS receivers write them: GGA, RMC, GSA, GNS, GSV, any talker.

The simulator's one NMEA writer: fleet tags, HIL tags (over a pty) and the hardware bench all
feed the firmware's own NMEA parser through `Receiver`, whose profiles follow real makes
(PROFILES: sentence order, talker, rate, what is said before the time is known, binary bursts,
damaged lines). The sentences follow NMEA 4.10 as a u-blox M10 emits them: latitude as
ddmm.mmmmm, time as hhmmss.ss, "no fix" epochs with empty position fields and 99.99 DOPs, and
a checksum that is the XOR of every character between '$' and '*', in two upper-case hex
digits.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
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


def position(lat: float, lon: float) -> str:
    """The four position fields every fix sentence carries: ddmm.mmmmm,N/S,dddmm.mmmmm,E/W."""
    la, ns = lat_field(lat)
    lo, ew = lon_field(lon)
    return f"{la},{ns},{lo},{ew}"


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
        body = (
            f"{_talker(talker)}GGA,{t},{position(lat, lon)},1,{sats:02d},{hdop:.2f},"
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
        knots = speed_mps * 3600 / 1852
        course = "" if course_deg is None else f"{course_deg % 360:.2f}"
        body = f"{_talker(talker)}RMC,{t},A,{position(lat, lon)},{knots:.3f},{course},{d},,,A,V"
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
        body = (
            f"{_talker(talker)}GNS,{t},{position(lat, lon)},AAAN,{sats:02d},{hdop:.2f},"
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


def gsv(talker: str, prns: Sequence[int]) -> list[str]:
    """GSV: the satellites in view, four to a sentence. Elevation, azimuth and signal come
    from the PRN (a fixed, plausible sky): the firmware ignores GSV, it only has to be there
    and take its share of the UART, as it does with GSV-heavy receivers."""
    view = list(prns)[:16]
    pages = max(1, (len(view) + 3) // 4)
    out = []
    for page in range(pages):
        sats = view[page * 4 : page * 4 + 4]
        fields = "".join(
            f",{p:02d},{(p * 37) % 80 + 5:02d},{(p * 73) % 360:03d},{(p * 11) % 25 + 20:02d}"
            for p in sats
        )
        out.append(sentence(f"{_talker(talker)}GSV,{pages},{page + 1},{len(view):02d}{fields}"))
    return out


@dataclass(frozen=True)
class Profile:
    """How one kind of receiver writes its epochs (docs/simulator.md, "GNSS receivers")."""

    talker: str
    order: tuple[str, ...]  # sentence kinds of one epoch, in the order it sends them
    rate_hz: int = 1
    # Before it knows the time: empty time fields (u-blox), or a clock counting from
    # 00:00:00 since power-on dated 1980-01-06 (MTK), whose first fix may still carry it.
    placeholder: bool = False
    time_after_s: int = 3  # after a cold start, seconds until it knows the time
    binary_p: float = 0.0  # chance of a binary protocol burst (UBX) before an epoch
    damage_p: float = 0.0  # chance a sentence has a wrong checksum, or is cut short


PROFILES: dict[str, Profile] = {
    # The tag's own receiver, with GSV/VTG/GLL silenced at power-up (firmware/boards/esp32s3.py).
    "ublox-m10": Profile("GN", ("RMC", "GGA", "GSA")),
    "ublox-m10-ubx": Profile("GN", ("RMC", "GGA", "GSA"), binary_p=0.3),
    "mtk": Profile("GP", ("GGA", "GSA", "RMC"), placeholder=True),
    "mtk-10hz": Profile("GP", ("GGA", "GSA", "RMC"), rate_hz=10, placeholder=True),
    "sirf": Profile("GP", ("GGA", "GSA", "GSV", "RMC")),
    "sirf-noisy": Profile("GP", ("GGA", "GSA", "GSV", "RMC"), damage_p=0.02),
}
DEFAULT_PROFILE = "ublox-m10"
GPS_EPOCH_MS = 315_964_800_000  # 1980-01-06, where an MTK receiver's clock starts


@dataclass(frozen=True)
class Position:
    """What the GNSS model says for one epoch."""

    lat: float
    lon: float
    sats: int = 9
    hdop: float = 0.9
    alt_m: float = 35.0


class Receiver:
    """One receiver's output, epoch by epoch: the one NMEA writer for fleet tags, HIL tags and
    the hardware bench. Speed and course follow from successive positions."""

    def __init__(self, profile: str | Profile = DEFAULT_PROFILE, seed: int = 0) -> None:
        if isinstance(profile, str):
            if profile not in PROFILES:
                raise NmeaError(f"unknown receiver {profile!r} (known: {', '.join(PROFILES)})")
            profile = PROFILES[profile]
        self.p = profile
        self.rng = random.Random(seed)
        self.on_ms = 0
        self.has_time = True
        self.has_fixed = True
        self.last: tuple[int, Position] | None = None

    def power_on(self, utc_ms: int, cold: bool) -> None:
        """A cold start loses the time (and the MTK's date) until satellites give it back."""
        self.on_ms = utc_ms
        self.has_time = self.has_fixed = not cold
        self.last = None

    def second(self, utc_s: int, pos: Position | None) -> bytes:
        """The bytes of one second: rate_hz epochs, damaged as the profile says."""
        out = []
        step = 1000 // self.p.rate_hz
        motion = self._motion(utc_s * 1000, pos)
        for i in range(self.p.rate_hz):
            out += self._epoch(utc_s * 1000 + i * step, pos, *motion)
        return "".join(out).encode("ascii", "surrogateescape")

    def _epoch(
        self, t_ms: int, pos: Position | None, speed: float, course: float | None
    ) -> list[str]:
        p = self.p
        if not self.has_time and t_ms - self.on_ms >= p.time_after_s * 1000:
            self.has_time = not p.placeholder  # an MTK keeps its placeholder until a fix
        shown = t_ms
        if pos is not None and not self.has_fixed:
            self.has_fixed = True
            if p.placeholder:  # its first fix still carries the placeholder date
                shown = GPS_EPOCH_MS + t_ms % 86_400_000
            self.has_time = True
        elif pos is None and not self.has_time:
            if not p.placeholder:
                return [
                    sentence(f"{p.talker}RMC,,V,,,,,,,,,,N,V"),
                    sentence(f"{p.talker}GGA,,,,,,0,00,99.99,,,,,,"),
                ]
            shown = GPS_EPOCH_MS + (t_ms - self.on_ms) + 799
        lat = lon = None
        sats, hdop, alt = 0, 99.99, 0.0
        if pos is not None:
            lat, lon, sats, hdop, alt = pos.lat, pos.lon, pos.sats, pos.hdop, pos.alt_m
        lines: list[str] = []
        if p.binary_p and self.rng.random() < p.binary_p:
            lines.append(self._ubx())
        for k in p.order:
            if k == "GSV":
                lines += gsv(p.talker, range(1, max(sats, 6) + 3))
            else:
                lines += epoch(
                    p.talker, shown, lat, lon, sats, hdop, alt, 48.0, speed, course, (k,)
                )
        if p.damage_p:
            lines = [self._damage(s) if self.rng.random() < p.damage_p else s for s in lines]
        return lines

    def _motion(self, t_ms: int, pos: Position | None) -> tuple[float, float | None]:
        last, self.last = self.last, (None if pos is None else (t_ms, pos))
        if pos is None or last is None or t_ms <= last[0]:
            return 0.0, None
        k = 111_319.5
        dy = (pos.lat - last[1].lat) * k
        dx = (pos.lon - last[1].lon) * k * math.cos(math.radians(pos.lat))
        d = math.hypot(dx, dy)
        if d < 0.5:  # standing still: no course, as receivers report it
            return 0.0, None
        return d * 1000 / (t_ms - last[0]), math.degrees(math.atan2(dx, dy)) % 360

    def _ubx(self) -> str:
        """A UBX frame (sync chars, class, id, length, payload, checksum) of random bytes:
        binary that may hold '$', CR or LF, as a u-blox interleaves with NMEA."""
        n = self.rng.randint(8, 120)
        body = bytes([0x01, 0x07, n & 0xFF, n >> 8]) + self.rng.randbytes(n)
        a = b = 0
        for c in body:
            a = (a + c) & 0xFF
            b = (b + a) & 0xFF
        return (b"\xb5\x62" + body + bytes([a, b])).decode("ascii", "surrogateescape")

    def _damage(self, line: str) -> str:
        if self.rng.random() < 0.5:  # a flipped bit on the wire: the checksum does not match
            i = self.rng.randrange(1, line.index("*"))
            return line[:i] + chr(ord(line[i]) ^ 0x04) + line[i + 1 :]
        return line[: self.rng.randrange(1, len(line) - 2)]  # cut short (power, buffer)
