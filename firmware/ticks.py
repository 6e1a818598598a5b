# Wraparound-safe tick arithmetic, the same as MicroPython's time.ticks_add/ticks_diff, in pure
# Python so the logic runs (and is tested) on CPython and so the simulator can start the tick
# counter just before a wrap. MicroPython ports wrap ticks_ms at 2**30.
PERIOD = 1 << 30
_HALF = PERIOD >> 1
_MASK = PERIOD - 1


def add(ticks: int, delta: int) -> int:
    return (ticks + delta) & _MASK


def diff(end: int, start: int) -> int:
    """Signed difference end - start, correct across one wrap (|result| < PERIOD / 2)."""
    return ((end - start + _HALF) & _MASK) - _HALF


class Monotonic:
    """Turns wrapping ticks into an unbounded millisecond count since boot. The application
    keeps every deadline in this count, so a timer set days ago is never misread after a wrap;
    polls only need to come less than PERIOD / 2 (6.2 days) apart."""

    def __init__(self, now_ticks: int) -> None:
        self.last = now_ticks
        self.ms = 0

    def update(self, now_ticks: int) -> int:
        d = diff(now_ticks, self.last)
        if d > 0:  # a tick source never runs backwards; ignore a stale reading
            self.ms += d
            self.last = now_ticks
        return self.ms

    def to_ticks(self, mono_ms: int) -> int:
        return add(self.last, mono_ms - self.ms)
