# Motion without a fix (shielding, e.g. foil round the tag): minutes with motion since the
# last accepted fix are counted over a sliding window; past the threshold the wearer is told
# to go outside (vibration) and, if there is still no fix after the grace period, it escalates.

NONE = 0
NOTIFIED = 1
ESCALATED = 2
CLEARED = 3


class MotionNoFix:
    def __init__(self, minutes: int = 10, window_min: int = 60, grace_min: int = 10) -> None:
        self.minutes = minutes
        self.window_min = window_min
        self.grace_min = grace_min
        self.moving_minutes: list[int] = []  # minute numbers (since boot) with motion
        self.stage = NONE
        self.stage_at_min = 0
        self.last_motion_ms = -1

    def motion(self, now_ms: int, counts: bool = True) -> None:
        """Motion now. It counts only while a fix is expected: moving about the house in RF
        mode, with the receiver off by design, is no motion without a fix."""
        self.last_motion_ms = now_ms
        if not counts:
            return
        m = now_ms // 60000
        mm = self.moving_minutes
        if not mm or mm[-1] != m:
            mm.append(m)
        while mm and mm[0] <= m - self.window_min:
            mm.pop(0)

    def count(self) -> int:
        return len(self.moving_minutes)

    def fix(self) -> int:
        """A fix was accepted: returns CLEARED if an alert was open, else NONE."""
        self.moving_minutes = []
        if self.stage != NONE:
            self.stage = NONE
            return CLEARED
        return NONE

    def step(self, now_ms: int, gnss_trying: bool) -> int:
        """Returns a new stage (NOTIFIED, ESCALATED) when one is reached, else NONE."""
        m = now_ms // 60000
        mm = self.moving_minutes
        while mm and mm[0] <= m - self.window_min:
            mm.pop(0)
        if self.stage == NONE and len(mm) >= self.minutes and gnss_trying:
            self.stage = NOTIFIED
            self.stage_at_min = m
            return NOTIFIED
        if self.stage == NOTIFIED and m - self.stage_at_min >= self.grace_min:
            self.stage = ESCALATED
            return ESCALATED
        return NONE
