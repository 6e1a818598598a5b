# Fix quality filter: what a GNSS epoch must pass before it becomes a FIX record, and the
# accuracy estimate each accepted fix carries. Rejections are counted by reason.
import math

from firmware.runtime import TYPE_CHECKING, const

if TYPE_CHECKING:
    from firmware.nmea import Fix

# User-equivalent range error of a modern single-band receiver in open sky (u-blox M10: 1.5 m
# CEP, ~5 m typical); horizontal accuracy ~ HDOP x UERE, widened for 2D fixes and few satellites.
_UERE_DM = const(50)

REASONS = ("no_fix", "hdop", "no_time", "clock", "stale", "jump")


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
    """Whether an epoch becomes a fix, and when GNSS time may set the tag's clock.

    GNSS time is believed only when several epochs agree: a fix must either agree with the
    tag's clock (within 2 s) or be the last of `agree_after` dated 2D/3D fixes in a row that
    agree on the time (each later than the last and at the same offset from the tag's ticks,
    +-2 s: the receiver's clock runs with the tag's), none before the firmware's build date.
    Such
    an agreeing run sets an unset clock and re-bases one that disagrees, whatever set it
    (an earlier GNSS run, the home unit, a command): a wrong clock is corrected within
    seconds of good epochs instead of refusing every fix after it (docs/firmware.md,
    "Clock safety")."""

    def __init__(self, hdop_max_d: int = 50, built_unix: int = 0, max_speed_ms: int = 60) -> None:
        self.hdop_max_d = hdop_max_d
        self.built_unix = built_unix  # GNSS time before this is a placeholder or a rollover
        self.max_speed_ms = max_speed_ms  # faster than any vehicle a wearer is likely in
        self.reanchor_after = 3  # consecutive "jumps" mean the last good fix was the outlier
        self.agree_after = 5
        self.run = 0  # consecutive agreeing epochs so far
        self.run_t = 0  # the last one's GNSS time (Unix s) ...
        self.run_off = 0  # ... and its offset from the tag's tick count (s)
        self.set_to = -1  # after check: the time to set the clock to (-1: leave it)
        self.rebased = 0
        self.last: "tuple[int, int, int, int] | None" = None  # (unix, lat, lon, acc_dm)
        self.jumps_in_row = 0
        self.rejected: dict[str, int] = {}
        for r in REASONS:
            self.rejected[r] = 0
        self.accepted = 0

    def hdop_limit(self, hdop_max_d: int) -> None:
        self.hdop_max_d = hdop_max_d

    def check(self, fix: "Fix", clock_unix: int, now_ms: int) -> "tuple[int, str]":
        """Returns (accuracy_dm, "") for an accepted fix, else (0, reason). clock_unix is the
        tag's clock (-1 when it has never been set), now_ms its monotonic time. After an
        accepted fix, set_to >= 0 asks the caller to set the clock to that time."""
        self.set_to = -1
        reason = self._reason(fix, clock_unix, now_ms // 1000)
        if reason:
            self.rejected[reason] += 1
            return 0, reason
        acc = accuracy_dm(fix.hdop_d, fix.fix_type, fix.sats)
        self.last = (fix.unix(), fix.lat_e7, fix.lon_e7, acc)
        self.accepted += 1
        return acc, ""

    def _agreed(self, t: int, s: int) -> bool:
        """Counts t (GNSS time) at s (tick seconds) into the run of agreeing epochs: each
        later than the last and at the same offset from the ticks (+-2 s). Epochs without a
        fix between them do not break a run (a receiver indoors); one at another offset
        starts a new run (a placeholder date, a wrong day, a jump back at midnight)."""
        off = t - s
        if self.run and t == self.run_t:
            return self.run >= self.agree_after  # another epoch of the same second (5-10 Hz)
        if self.run and t > self.run_t and -2 <= off - self.run_off <= 2:
            self.run += 1
        else:
            self.run = 1
        self.run_t = t
        self.run_off = off
        return self.run >= self.agree_after

    def _reason(self, f: "Fix", clock_unix: int, s: int) -> str:
        if not f.valid or f.quality == 0 or f.fix_type == 0:
            return "no_fix"
        if f.hdop_d > self.hdop_max_d:
            return "hdop"
        t = f.unix()
        if t < self.built_unix or t < 0:
            return "no_time"  # no date of its own second, a placeholder or a rollover
        agreed = self._agreed(t, s)
        off = t - clock_unix
        if clock_unix < 0 or off > 2 or off < -2:
            if not agreed:
                return "clock"
            self.rebased += 1
            self.last = None  # the last fix was timed by the old clock
            self.jumps_in_row = 0
            self.set_to = t
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
