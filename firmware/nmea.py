# NMEA 0183 reader for GNSS receivers: fed bytes as they arrive from the UART, never blocks on a
# half line, verifies checksums, and merges GGA/GNS (position), RMC (date, speed, course,
# validity) and GSA (2D/3D) of one epoch into a Fix. Any talker (GP, GN, GL, GA, GB, ...).
# Every dropped line is counted by reason (as_GPS counts its checksum failures the same way).
# Coordinates are parsed with integer arithmetic so both runtimes give identical values.

MAX_LINE = 100  # NMEA allows 82 characters; u-blox proprietary lines stay under this

_P10 = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000)


class Fix:
    """One epoch: UTC time of day (ms), date (days since 1970 or -1), position in 1e-7 degree."""

    def __init__(self) -> None:
        self.tod_ms = -1
        self.days = -1
        self.lat_e7 = 0
        self.lon_e7 = 0
        self.quality = 0  # GGA fix quality; 0 = no fix
        self.sats = 0
        self.hdop_d = 255  # 0.1 units; 255 = unknown
        self.fix_type = 0  # 0 none, 1 2D, 2 3D (the wire codec's values)
        self.speed_cms = 0
        self.course_cd = 0
        self.valid = False  # RMC status A (or GGA quality > 0 when no RMC came)

    def unix(self) -> int:
        """Unix seconds, or -1 if the receiver has not given a date yet."""
        if self.days < 0 or self.tod_ms < 0:
            return -1
        return self.days * 86400 + self.tod_ms // 1000


def _int(field: bytes, default: int = -1) -> int:
    if not field:
        return default
    n = 0
    for c in field:
        if c < 48 or c > 57:
            raise ValueError("not a number")
        n = n * 10 + c - 48
    return n


def _fixed(field: bytes, places: int) -> int:
    """'12.345' -> 12345 for places=3 (truncates extra digits)."""
    if not field:
        return -1
    dot = field.find(b".")
    if dot < 0:
        return _int(field) * _P10[places]
    frac = (field[dot + 1 :] + b"0000000000")[:places]
    return _int(field[:dot], 0) * _P10[places] + _int(frac, 0)


def _coord(value: bytes, hemi: bytes, deg_digits: int) -> int:
    """ddmm.mmmm + N/S (or dddmm.mmmm + E/W) -> 1e-7 degree, rounded."""
    dot = value.find(b".")
    if dot < 0:
        dot = len(value)
    if dot != deg_digits + 2:
        raise ValueError("bad coordinate")
    deg = _int(value[:deg_digits])
    minutes_e7 = _fixed(value[deg_digits:], 7)
    if minutes_e7 >= 60 * _P10[7]:
        raise ValueError("minutes out of range")
    e7 = deg * _P10[7] + (minutes_e7 + 30) // 60
    if hemi == b"S" or hemi == b"W":
        return -e7
    if hemi != b"N" and hemi != b"E":
        raise ValueError("bad hemisphere")
    return e7


def _tod(field: bytes) -> int:
    if len(field) < 6:
        raise ValueError("bad time")
    h = _int(field[0:2])
    m = _int(field[2:4])
    ms = _fixed(field[4:], 3)
    if h > 23 or m > 59 or ms >= 61000:
        raise ValueError("bad time")
    return (h * 60 + m) * 60000 + ms


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 (Howard Hinnant's algorithm; no time module needed)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _date(field: bytes) -> int:
    if len(field) != 6:
        raise ValueError("bad date")
    d = _int(field[0:2])
    m = _int(field[2:4])
    yy = _int(field[4:6])
    y = (2000 if yy < 80 else 1900) + yy  # two-digit year: 1980..2079
    if not (1 <= d <= 31 and 1 <= m <= 12):
        raise ValueError("bad date")
    return days_from_civil(y, m, d)


def checksum(body: bytes) -> int:
    c = 0
    for b in body:
        c ^= b
    return c


def sentence(body: str) -> bytes:
    """A complete line with checksum for `body` (without $ and *): used by simulators/tests."""
    b = body.encode()
    return b"$" + b + b"*" + ("%02X" % checksum(b)).encode() + b"\r\n"


class Reader:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.skipping = False  # inside an overlong line: drop until its end
        self.fixes: list[Fix] = []  # completed epochs not yet taken
        self.rmc: "Fix | None" = None  # RMC seen for the current epoch
        self.fix_mode = 0  # latest GSA: 1 none, 2 2D, 3 3D
        self.days = -1
        # Counters (never reset; reported in status records as bad inputs).
        self.good = 0
        self.checksum_errors = 0
        self.overlong = 0
        self.partial = 0
        self.garbage = 0
        self.malformed = 0
        self.ignored = 0  # valid sentences of other types (GSV, VTG, TXT, ...)

    def bad(self) -> int:
        return self.checksum_errors + self.overlong + self.partial + self.garbage + self.malformed

    def feed(self, data: bytes) -> None:
        """Consume whatever bytes the UART had; complete lines are parsed at once."""
        buf = self.buf
        for c in data:
            if c == 10 or c == 13:
                if self.skipping:
                    self.skipping = False
                elif buf:
                    self._line(bytes(buf))
                buf[:] = b""
                continue
            if c == 36 and buf:  # '$' inside a line: the previous one was cut short
                self.partial += 1
                buf[:] = b""
            if self.skipping:
                continue
            if len(buf) >= MAX_LINE:
                self.overlong += 1
                self.skipping = True
                buf[:] = b""
                continue
            buf.append(c)

    def take(self) -> "Fix | None":
        if self.fixes:
            return self.fixes.pop(0)
        return None

    def _line(self, line: bytes) -> None:
        n = len(line)
        if n < 10 or line[0] != 36 or line[n - 3] != 42:  # $....*hh
            self.garbage += 1
            return
        for c in line:
            if c < 32 or c > 126:
                self.garbage += 1
                return
        body = line[1 : n - 3]
        try:
            want = int(line[n - 2 :], 16)
        except ValueError:
            self.garbage += 1
            return
        if checksum(body) != want:
            self.checksum_errors += 1
            return
        f = body.split(b",")
        kind = f[0][2:] if len(f[0]) == 5 else b""
        try:
            if kind == b"GGA":
                self._gga(f)
            elif kind == b"RMC":
                self._rmc(f)
            elif kind == b"GSA":
                self._gsa(f)
            elif kind == b"GNS":
                self._gns(f)
            else:
                self.ignored += 1
                return
        except (ValueError, IndexError):
            self.malformed += 1
            return
        self.good += 1

    def _position(self, f: "list[bytes]", q: int, sats: int, hdop: bytes) -> None:
        fix = Fix()
        fix.tod_ms = _tod(f[1])
        fix.quality = q
        fix.sats = sats
        h = _fixed(hdop, 1)
        fix.hdop_d = 255 if h < 0 or h > 255 else h
        if q > 0:
            fix.lat_e7 = _coord(f[2], f[3], 2)
            fix.lon_e7 = _coord(f[4], f[5], 3)
        rmc = self.rmc
        fix.days = self.days
        if rmc is not None and rmc.tod_ms == fix.tod_ms:
            fix.speed_cms = rmc.speed_cms
            fix.course_cd = rmc.course_cd
            fix.valid = rmc.valid and q > 0
        else:
            fix.valid = q > 0
        if q == 0:
            fix.fix_type = 0
        elif self.fix_mode == 2:
            fix.fix_type = 1
        else:
            fix.fix_type = 2
        if len(self.fixes) >= 4:  # nobody is taking them: keep the newest few
            self.fixes.pop(0)
        self.fixes.append(fix)

    def _gga(self, f: "list[bytes]") -> None:
        # $xxGGA,time,lat,N,lon,E,quality,sats,hdop,alt,M,sep,M,age,station
        q = _int(f[6], 0)
        self._position(f, q, _int(f[7], 0), f[8])

    def _gns(self, f: "list[bytes]") -> None:
        # $xxGNS,time,lat,N,lon,E,mode chars (one per constellation),sats,hdop,...
        q = 0
        for c in f[6]:
            if c in b"ADPRFE":  # any constellation with a fix (not N = none)
                q = 1
        self._position(f, q, _int(f[7], 0), f[8])

    def _rmc(self, f: "list[bytes]") -> None:
        # $xxRMC,time,status,lat,N,lon,E,speed kn,course,date,magvar,E,mode
        r = Fix()
        r.tod_ms = _tod(f[1])
        r.valid = f[2] == b"A"
        kn_e3 = _fixed(f[7], 3)
        r.speed_cms = 0 if kn_e3 < 0 else (kn_e3 * 5144 + 50000) // 100000  # 1 kn = 51.44 cm/s
        c = _fixed(f[8], 2)
        r.course_cd = 0 if c < 0 or c >= 36000 else c
        if f[9]:
            self.days = _date(f[9])
        r.days = self.days
        self.rmc = r

    def _gsa(self, f: "list[bytes]") -> None:
        # $xxGSA,A/M,mode(1 none, 2 2D, 3 3D),sv...,pdop,hdop,vdop[,system]
        self.fix_mode = _int(f[2], 1)
