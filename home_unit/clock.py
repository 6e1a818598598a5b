"""Where the home unit's "now" comes from: the wall clock (NTP-disciplined on a real unit) or
the simulator, which owns time in lock-step runs and sets it with tick messages."""

from __future__ import annotations

import time


class Clock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        """Seconds for measuring intervals of due work (sensor polling): never jumps when
        NTP steps the wall clock."""
        return time.monotonic()


class SimClock(Clock):
    """Time set from outside; never goes backwards (a late tick cannot undo a timeout).
    Until the simulator first sets it, `started` is False and the daemon does no
    time-driven work (no heartbeat stamped with a time that never was)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = 0.0 if start is None else start
        self.started = start is not None

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        # Simulated time never goes backwards either: intervals are simulated seconds, so a
        # unit's polling costs the same per simulated day however fast the simulation runs.
        return self._now

    def set(self, t: float) -> None:
        self._now = max(self._now, t)
        self.started = True
