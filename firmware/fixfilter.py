# Fix quality filter: what a GNSS epoch must pass before it becomes a FIX record, and the
# accuracy estimate each accepted fix carries. Rejections are counted by reason.
import math

from firmware.runtime import TYPE_CHECKING, const

if TYPE_CHECKING:
    from firmware.nmea import Fix

# User-equivalent range error of a modern single-band receiver in open sky (u-blox M10: 1.5 m
# CEP, ~5 m typical); horizontal accuracy ~ HDOP x UERE, widened for 2D fixes and few satellites.
_UERE_DM = const(50)

REASONS = ("no_fix", "hdop", "no_time", "stale", "future", "jump")


def accuracy_dm(hdop_d: int, fix_type: int, sats: int) -> int:
    acc: int = hdop_d * _UERE_DM // 10
    if fix_type == 1:
        acc *= 2
    if sats < 5:
        acc = acc * 3 // 2
    if acc < 10:
        acc = 10
    return min(acc, 0xFFFF)  # acc_dm is a 16-bit field


def distance_m(lat1_e7: int, lon1_e7: int, lat2_e7: int, lon2_e7: int) -> float:
    """Equirectangular distance; exact enough for the few kilometres a jump test looks at,
    and stable in single-precision floats (ESP32)."""
    k = 0.0111319  # metres per 1e-7 degree of latitude
    dy = (lat2_e7 - lat1_e7) * k
    mid = (lat1_e7 + lat2_e7) / 2e7
    dx = (lon2_e7 - lon1_e7) * k * math.cos(math.radians(mid))
    return math.sqrt(dx * dx + dy * dy)


class FixFilter:
    def __init__(self, hdop_max_d: int = 50, max_speed_ms: int = 60) -> None:
        self.hdop_max_d = hdop_max_d
        self.max_speed_ms = max_speed_ms  # faster than any vehicle a wearer is likely in
        self.future_s = 30  # a fix this far ahead of a valid clock is not believed
        self.reanchor_after = 3  # consecutive "jumps" mean the last good fix was the outlier
        # A clock set from a less precise source (the home unit's ack, a command) may be
        # behind: this many consecutive 3D epochs that agree with each other on the offset
        # re-base it to GNSS time (one bogus epoch cannot).
        self.rebase_after = 3
        self.rebase_n = 0
        self.rebase_last = (0, 0)  # (fix unix, offset from the clock) of the last candidate
        self.rebased = 0
        self.last: "tuple[int, int, int, int] | None" = None  # (unix, lat, lon, acc_dm)
        self.jumps_in_row = 0
        self.rejected: dict[str, int] = {}
        for r in REASONS:
            self.rejected[r] = 0
        self.accepted = 0

    def check(self, fix: "Fix", clock_unix: int, clock_soft: bool = False) -> "tuple[int, str]":
        """Returns (accuracy_dm, "") for an accepted fix, else (0, reason). clock_unix is the
        tag's clock (-1 when it has never been set); clock_soft: it was set from a source
        less precise than GNSS, so consistent GNSS time may re-base it."""
        reason = self._reason(fix, clock_unix, clock_soft)
        if reason:
            self.rejected[reason] += 1
            return 0, reason
        acc = accuracy_dm(fix.hdop_d, fix.fix_type, fix.sats)
        self.last = (fix.unix(), fix.lat_e7, fix.lon_e7, acc)
        self.accepted += 1
        return acc, ""

    def _rebase(self, f: "Fix", t: int, clock_unix: int) -> bool:
        """A future fix against a soft clock: True once rebase_after consecutive 3D epochs
        (one second apart, with a valid date) put GNSS time at the same offset (+-2 s)."""
        off = t - clock_unix
        prev_t, prev_off = self.rebase_last
        if self.rebase_n and 0 < t - prev_t <= 2 and -2 <= off - prev_off <= 2:
            self.rebase_n += 1
        else:
            self.rebase_n = 1
        self.rebase_last = (t, off)
        if f.fix_type < 2 or f.sats < 4 or self.rebase_n < self.rebase_after:
            return False
        self.rebase_n = 0
        self.rebased += 1
        return True

    def _reason(self, fix: "Fix", clock_unix: int, clock_soft: bool) -> str:
        f = fix
        if not f.valid or f.quality == 0 or f.fix_type == 0:
            self.rebase_n = 0
            return "no_fix"
        if f.hdop_d > self.hdop_max_d:
            self.rebase_n = 0
            return "hdop"
        t = f.unix()
        if t < 0:
            return "no_time"
        if clock_unix >= 0 and t > clock_unix + self.future_s:
            if not (clock_soft and self._rebase(f, t, clock_unix)):
                return "future"
        else:
            self.rebase_n = 0
        last = self.last
        if last is None:
            return ""
        if t <= last[0]:
            return "stale"
        d = distance_m(last[1], last[2], f.lat_e7, f.lon_e7)
        slack = (last[3] + accuracy_dm(f.hdop_d, f.fix_type, f.sats)) / 10
        if d - slack > self.max_speed_ms * (t - last[0]):
            self.jumps_in_row += 1
            if self.jumps_in_row < self.reanchor_after:
                return "jump"
        self.jumps_in_row = 0
        return ""
