# Battery monitor: level from the cell voltage (a Li-ion discharge curve), charging start/stop,
# low (20 %) and critical (5 %) events with hysteresis so a sagging cell does not flap, and
# hours left from the energy ledger's average current.
from firmware.runtime import const

# (millivolts, percent) for a single Li-ion/LiPo cell at light load.
CURVE = (
    (3300, 0),
    (3500, 3),
    (3600, 5),
    (3680, 10),
    (3740, 20),
    (3780, 30),
    (3820, 40),
    (3870, 50),
    (3930, 60),
    (4000, 70),
    (4070, 80),
    (4130, 90),
    (4200, 100),
)
_LOW = const(20)
_CRITICAL = const(5)
_REARM = const(5)  # percent above a threshold before it can fire again

EV_CHARGING = 1
EV_NOT_CHARGING = 2
EV_LOW = 3
EV_CRITICAL = 4


def level_from_mv(mv: int) -> int:
    if mv <= CURVE[0][0]:
        return 0
    for i in range(1, len(CURVE)):
        v1, p1 = CURVE[i]
        if mv <= v1:
            v0, p0 = CURVE[i - 1]
            return p0 + (mv - v0) * (p1 - p0) // (v1 - v0)
    return 100


class Battery:
    def __init__(self, capacity_mah: int) -> None:
        self.capacity_mah = capacity_mah
        self.mv = 0
        self.level = -1
        self.charging = False
        self.charger = False
        self.low = False
        self.critical = False

    def update(self, mv: int, charger: bool, charging: bool) -> "list[int]":
        """New reading; returns the events it caused (EV_*)."""
        events = []
        # Average with the previous reading: one ADC sample under a radio burst reads low.
        self.mv = mv if self.level < 0 else (self.mv + mv) // 2
        self.level = level_from_mv(self.mv)
        if charging != self.charging:
            events.append(EV_CHARGING if charging else EV_NOT_CHARGING)
        self.charging = charging
        self.charger = charger
        if not self.low and self.level <= _LOW and not charging:
            self.low = True
            events.append(EV_LOW)
        elif self.low and self.level >= _LOW + _REARM:
            self.low = False
        if not self.critical and self.level <= _CRITICAL and not charging:
            self.critical = True
            events.append(EV_CRITICAL)
        elif self.critical and self.level >= _CRITICAL + _REARM:
            self.critical = False
        return events

    def flags(self) -> int:
        f = 0
        if self.charging:
            f |= 1
        if self.charger:
            f |= 2
        if self.low:
            f |= 4
        if self.critical:
            f |= 8
        return f

    def hours_left(self, average_ua: int) -> int:
        """Hours to empty at the given average draw; 0xFFFF when unknown or charging."""
        if self.level < 0 or average_ua <= 0 or self.charging:
            return 0xFFFF
        h = self.capacity_mah * 1000 * self.level // 100 // average_ua
        return 0xFFFE if h > 0xFFFE else h
