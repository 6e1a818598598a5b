# NMEA 0183 reader for GNSS receivers: fed bytes as they arrive from the UART, never blocks on a
# half line, verifies checksums, and assembles the sentences of one epoch (one UTC time) into
# a Fix, whatever their order and talker (GP, GN, GL, GA, GB, ...).
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
        self.valid = False  # a GNSS fix the receiver calls valid (RMC status A, if it sent one)

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
    """Sentences in, epochs out. An epoch is every sentence with the same UTC time, in
    whatever order and from whatever talkers the receiver sends them: GGA or GNS give the
    position and quality (the first of them counts), RMC the date, speed, course and
    validity, ZDA a date, and the latest GSA the 2D/3D mode and, when GGA's is empty, the
    HDOP. An epoch is emitted once it has a position and an RMC, or when a sentence of
    another time starts the next one. A fix is dated only by an RMC or ZDA of its own
    epoch, never by one from another second (docs/firmware.md, "Epoch assembly")."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.skipping = False  # inside an overlong line: drop until its end or a '$'
        self.fixes: list[Fix] = []  # completed epochs not yet taken
        self.cur: "Fix | None" = None  # the epoch being assembled
        self.cur_pos = False  # it has its GGA/GNS
        self.cur_rmc = 0  # its RMC: 0 none yet, 1 void (V, or mode E/M/S/N), 2 valid
        self.done_tod = -1  # time of the last epoch emitted: its late sentences are dropped
        self.fix_mode = 0  # latest GSA: 1 none, 2 2D, 3 3D
        self.gsa_hdop = 255  # latest GSA's HDOP (0.1 units)
        # Counters (never reset; all but nofix and ignored are reported as bad inputs).
        self.good = 0
        self.checksum_errors = 0
        self.overlong = 0
        self.partial = 0
        self.garbage = 0
        self.malformed = 0
        self.nofix = 0  # sentences of a receiver without time yet (cold start): normal
        self.ignored = 0  # valid sentences of other types (GSV, VTG, TXT, ...)

    def bad(self) -> int:
        return self.checksum_errors + self.overlong + self.partial + self.garbage + self.malformed

    def reset(self) -> None:
        """The receiver was powered off and on: what it was saying before is over."""
        self.buf = bytearray()
        self.skipping = False
        self.cur = None
        self.done_tod = -1

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
            if c == 36:  # '$' always starts a sentence, whatever came before it
                if self.skipping:
                    self.skipping = False
                elif buf:
                    if buf[0] == 36:
                        self.partial += 1  # the previous sentence was cut short
                    else:
                        self.garbage += 1  # binary output or line noise
                    buf[:] = b""
            elif self.skipping:
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
        if kind == b"GSA":
            parse = self._gsa
        elif kind == b"GGA":
            parse = self._gga
        elif kind == b"RMC":
            parse = self._rmc
        elif kind == b"GNS":
            parse = self._gns
        elif kind == b"ZDA":
            parse = self._zda
        else:
            self.ignored += 1
            return
        if kind != b"GSA" and len(f) > 1 and not f[1]:
            self.nofix += 1  # no time yet: the receiver has just started
            return
        try:
            parse(f)
        except (ValueError, IndexError):
            self.malformed += 1
            return
        self.good += 1

    def _epoch(self, f: "list[bytes]") -> "Fix | None":
        """The epoch a timed sentence belongs to (None: one already emitted)."""
        tod = _tod(f[1])
        cur = self.cur
        if cur is not None and cur.tod_ms == tod:
            return cur
        if tod == self.done_tod:
            return None
        if cur is not None:
            self._emit()
        cur = Fix()
        cur.tod_ms = tod
        self.cur = cur
        self.cur_pos = False
        self.cur_rmc = 0
        return cur

    def _emit(self) -> None:
        fix = self.cur
        if fix is None:
            return
        self.cur = None
        self.done_tod = fix.tod_ms
        q = fix.quality
        # GGA quality 1-5 (GNS modes A D P R F) are GNSS fixes; 6 estimated (dead
        # reckoning), 7 manual and 8 simulator are not. An epoch without GGA/GNS (lost to a
        # bad checksum) has no satellites or HDOP, hence no accuracy: it is no fix either.
        if not self.cur_pos or q < 1 or q > 5:
            fix.quality = 0 if not self.cur_pos else q
            fix.fix_type = 0
        else:
            fix.valid = self.cur_rmc != 1
            fix.fix_type = 1 if self.fix_mode == 2 else 2
        if fix.hdop_d == 255:
            fix.hdop_d = self.gsa_hdop
        if len(self.fixes) >= 4:  # nobody is taking them: keep the newest few
            self.fixes.pop(0)
        self.fixes.append(fix)

    def _complete(self) -> None:
        if self.cur_pos and self.cur_rmc:
            self._emit()

    def _position(self, f: "list[bytes]", q: int, sats: bytes, hdop: bytes) -> None:
        fix = self._epoch(f)
        if fix is None or self.cur_pos:
            return  # a second position sentence of the epoch (another talker, GNS + GGA)
        if 0 < q < 6:
            fix.lat_e7 = _coord(f[2], f[3], 2)
            fix.lon_e7 = _coord(f[4], f[5], 3)
        fix.quality = q
        fix.sats = _int(sats, 0)
        h = _fixed(hdop, 1)
        fix.hdop_d = 255 if h < 0 or h > 255 else h
        self.cur_pos = True
        self._complete()

    def _gga(self, f: "list[bytes]") -> None:
        # $xxGGA,time,lat,N,lon,E,quality,sats,hdop,alt,M,sep,M,age,station
        self._position(f, _int(f[6], 0), f[7], f[8])

    def _gns(self, f: "list[bytes]") -> None:
        # $xxGNS,time,lat,N,lon,E,mode chars (one per constellation),sats,hdop,...
        q = 0
        for c in f[6]:
            if c in b"ADPRF":  # a constellation with a GNSS fix (not E, M, S or N)
                q = 1
        self._position(f, q, f[7], f[8])

    def _rmc(self, f: "list[bytes]") -> None:
        # $xxRMC,time,status,lat,N,lon,E,speed kn,course,date,magvar,E[,mode[,nav status]]
        fix = self._epoch(f)
        if fix is None or self.cur_rmc:
            return
        kn_e3 = _fixed(f[7], 3)
        c = _fixed(f[8], 2)
        days = _date(f[9]) if f[9] else -1
        ok = f[2] == b"A" and (len(f) < 13 or f[12] not in (b"E", b"M", b"S", b"N"))
        fix.speed_cms = 0 if kn_e3 < 0 else (kn_e3 * 5144 + 50000) // 100000  # 51.44 cm/s/kn
        fix.course_cd = 0 if c < 0 or c >= 36000 else c
        if days >= 0:
            fix.days = days
        self.cur_rmc = 2 if ok else 1
        self._complete()

    def _zda(self, f: "list[bytes]") -> None:
        # $xxZDA,time,day,month,year,zone hours,zone minutes
        d, m, y = _int(f[2]), _int(f[3]), _int(f[4])
        if not (1 <= d <= 31 and 1 <= m <= 12 and 1980 <= y <= 2079):
            raise ValueError("bad date")
        fix = self._epoch(f)
        if fix is not None:
            fix.days = days_from_civil(y, m, d)

    def _gsa(self, f: "list[bytes]") -> None:
        # $xxGSA,A/M,mode(1 none, 2 2D, 3 3D),sv x12,pdop,hdop,vdop[,system]
        self.fix_mode = _int(f[2], 1)
        h = _fixed(f[16], 1) if len(f) > 16 else -1
        if 0 <= h <= 255:
            self.gsa_hdop = h
