"""A sliding-window rate limiter for login attempts, keyed by client address and by
username. In memory, per API process: with N replicas the effective limit is N times this,
which the account lock-out (in the database, shared) bounds anyway."""

from __future__ import annotations

import threading
from collections import deque

from backend.clock import Clock

WINDOW_S = 60.0
# Forget keys idle this long so that an attacker cycling names cannot grow memory forever.
_MAX_KEYS = 100_000


class RateLimiter:
    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, *keys: str) -> float | None:
        """Record one attempt under each key; returns seconds to wait if any key is over
        its limit (the attempt is then not counted), else None."""
        now = self.clock.now()
        with self._lock:
            if len(self._hits) > _MAX_KEYS:
                self._evict(now)
            wait = 0.0
            for key in keys:
                q = self._hits.setdefault(key, deque())
                while q and q[0] <= now - WINDOW_S:
                    q.popleft()
                if len(q) >= self.per_minute:
                    wait = max(wait, q[0] + WINDOW_S - now)
            if wait > 0:
                return wait
            for key in keys:
                self._hits[key].append(now)
            return None

    def _evict(self, now: float) -> None:
        for key in [k for k, q in self._hits.items() if not q or q[-1] <= now - WINDOW_S]:
            del self._hits[key]
