# Adaptive sampling with the GNSS receiver duty-cycled: how often a fix is wanted (fast while
# the backend has raised the rate, once a minute while moving, hourly at rest), when to power
# the receiver, and a cold/warm/hot start model that sets the acquisition budget. The energy
# ledger charges the receiver's actual on-time in its acquisition and tracking states.
from firmware.runtime import const

OFF = 0
ACQUIRING = 1
_TRACKING = const(2)

HOT = 0
WARM = 1
COLD = 2

# Ephemeris stays usable ~2 h (hot start with backup power); the almanac for weeks (warm).
_HOT_AGE_S = const(2 * 3600)
_WARM_AGE_S = const(14 * 86400)
# Expected time to first fix (u-blox M10: hot ~1 s, cold ~23-30 s) and how long to try before
# giving up for this interval; NIJ 1004.00 asks for a cold fix within 2 minutes.
TTFF_S = (2, 26, 32)
BUDGET_S = (30, 90, 120)
# Below this interval the receiver stays on: a restart costs more than tracking through it.
_KEEP_ON_S = const(30)


def start_kind(off_s: int, ever_fixed: bool) -> int:
    if not ever_fixed:
        return COLD
    if off_s <= _HOT_AGE_S:
        return HOT
    if off_s <= _WARM_AGE_S:
        return WARM
    return COLD


class Sampler:
    def __init__(self, cfg: "dict[str, int]", fast_until_unix: int = 0) -> None:
        self.cfg = cfg  # fix_moving_s, fix_fast_s, fix_rest_s, rest_after_s
        self.state = OFF
        self.on_at_ms = 0
        self.off_at_ms = 0
        self.last_fix_ms = -1  # last accepted fix (monotonic ms)
        self.next_ms = 0  # when the next fix is due
        self.plan_ms = -1  # what next_ms counts from (power-on of a fix, or a give-up)
        self.kind = COLD
        self.starts = [0, 0, 0]
        self.timeouts = 0
        self.fast_until_unix = fast_until_unix  # the backend raised the rate until then
        self.locate = False
        self.near_until_ms = -1  # near a zone the tag watches (zonewatch): sample fast

    def locate_now(self, now_ms: int) -> None:
        """A fix is wanted now (cmd_locate, back in GPS mode): fast sampling until it comes."""
        self.locate = True
        self.next_ms = now_ms

    def fast_until(self, unix: int) -> None:
        self.fast_until_unix = unix

    def near_zone(self, until_ms: int) -> None:
        self.near_until_ms = until_ms

    def interval_s(self, now_ms: int, last_motion_ms: int, unix: int) -> int:
        c = self.cfg
        if (
            self.locate
            or (unix >= 0 and unix < self.fast_until_unix)
            or now_ms < self.near_until_ms
        ):
            return c["fix_fast_s"]
        if last_motion_ms >= 0 and now_ms - last_motion_ms < c["rest_after_s"] * 1000:
            return c["fix_moving_s"]
        return c["fix_rest_s"]

    def wants_on(self, now_ms: int, interval_s: int) -> bool:
        if self.state != OFF:
            return True
        # The interval may have shrunk since the fix was planned (the wearer started moving
        # after an hour at rest, the backend raised the rate): bring the next fix forward.
        if self.plan_ms >= 0 and self.plan_ms + interval_s * 1000 < self.next_ms:
            self.next_ms = self.plan_ms + interval_s * 1000
        return now_ms >= self.next_ms or interval_s <= _KEEP_ON_S

    def power_on(self, now_ms: int) -> int:
        off_s = (now_ms - self.off_at_ms) // 1000
        self.kind = start_kind(off_s, self.last_fix_ms >= 0)
        self.starts[self.kind] += 1
        self.state = ACQUIRING
        self.on_at_ms = now_ms
        return self.kind

    def acquire_deadline_ms(self) -> int:
        return self.on_at_ms + BUDGET_S[self.kind] * 1000

    def got_fix(self, now_ms: int, interval_s: int) -> None:
        self.last_fix_ms = now_ms
        self.state = _TRACKING
        self.locate = False
        # Duty-cycled fixes keep their cadence from the power-on, whatever the start took;
        # a receiver left tracking counts from this fix.
        base = self.on_at_ms
        if interval_s <= _KEEP_ON_S or base + interval_s * 1000 <= now_ms:
            base = now_ms
        self.plan_ms = base
        self.next_ms = base + interval_s * 1000

    def should_power_off(self, now_ms: int, interval_s: int) -> bool:
        if self.state == OFF:
            return False
        # An attempt past its budget is given up even when fixes are wanted fast: keeping a
        # receiver on is for tracking between fixes, not for searching for hours from where it
        # found nothing (switched on indoors). Fast sampling restarts it straight away.
        if self.state == ACQUIRING and now_ms >= self.acquire_deadline_ms():
            self.timeouts += 1
            self.plan_ms = now_ms
            self.next_ms = now_ms + interval_s * 1000
            return True
        # Tracking with fixes far apart: off until the next one.
        return interval_s > _KEEP_ON_S and self.state not in (OFF, ACQUIRING)

    def power_off(self, now_ms: int) -> None:
        self.state = OFF
        self.off_at_ms = now_ms
