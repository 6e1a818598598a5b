"""Presence of one paired tag from the beacons the home unit hears (docs/home-unit.md,
"Presence"). Pure: RSSI and times in, state changes out.

Leaving shows only as silence, so there is no "left" beacon to react to. Two RSSI thresholds
give hysteresis (a tag must come in strongly to be home, and stays home on weaker beacons),
the RSSI is smoothed because indoor shadowing alone moves it by 2-4 dB, and a tag is away
only when no beacon has kept it home for the away timeout."""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN = -1
AWAY = 0  # firmware.frame.AWAY
HOME = 1  # firmware.frame.HOME


@dataclass(frozen=True)
class Thresholds:
    enter_dbm: int = -75  # smoothed RSSI at or above this makes an away tag home
    exit_dbm: int = -85  # smoothed RSSI at or above this keeps a home tag home
    away_timeout_s: float = 90.0  # no keeping beacon for this long: away
    smoothing: float = 0.5  # weight of the newest RSSI in the moving average (1 = none)

    def __post_init__(self) -> None:
        if self.exit_dbm > self.enter_dbm:
            raise ValueError("exit_dbm must not be above enter_dbm")
        if self.away_timeout_s <= 0:
            raise ValueError("away_timeout_s must be positive")
        if not 0 < self.smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")


@dataclass(frozen=True)
class Change:
    """A presence transition. `time` is when it happened on the unit's clock: for HOME the
    beacon that brought the tag in, for AWAY the last beacon that kept it home (the best
    evidence of when it left), not the moment the timeout noticed."""

    state: int
    time: float
    rssi: int


class PresenceTracker:
    def __init__(
        self,
        thresholds: Thresholds,
        state: int = UNKNOWN,
        last_kept: float | None = None,
        rssi: int = 0,
    ) -> None:
        if state == HOME and last_kept is None:
            raise ValueError("a home tag needs the time it was last kept home")
        self.thresholds = thresholds
        self.state = state
        self.last_kept = last_kept
        self.rssi = rssi  # raw RSSI of the last keeping beacon
        self.smoothed: float | None = None

    def observe(self, rssi: int, now: float) -> tuple[Change | None, bool]:
        """Feed one verified beacon. Returns (transition or None, whether this beacon keeps
        the tag home — the home unit acknowledges only such beacons)."""
        th = self.thresholds
        if self.smoothed is None:
            self.smoothed = float(rssi)
        else:
            self.smoothed += th.smoothing * (rssi - self.smoothed)
        change = None
        if self.state != HOME and self.smoothed >= th.enter_dbm:
            self.state = HOME
            change = Change(HOME, now, rssi)
        kept = self.state == HOME and self.smoothed >= th.exit_dbm
        if kept:
            self.last_kept = now
            self.rssi = rssi
        return change, kept

    def expire(self, now: float) -> Change | None:
        """Call as time passes: the tag turns away once the away timeout has run out."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        assert self.last_kept is not None
        self.state = AWAY
        self.smoothed = None  # a return starts afresh instead of from a stale average
        return Change(AWAY, self.last_kept, self.rssi)

    def deadline(self) -> float | None:
        """When the tag will be away unless a keeping beacon comes first; None if not home."""
        if self.state != HOME or self.last_kept is None:
            return None
        return self.last_kept + self.thresholds.away_timeout_s
