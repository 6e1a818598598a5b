"""Backend "now" comes from a clock object: the real clock in production, a settable one
when the simulator drives the backend in lock-step (ARCHITECTURE.md, Invariant 5)."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Unix seconds."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to; safe to set from another thread."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def set(self, t: float) -> None:
        with self._lock:
            self._now = t

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now
