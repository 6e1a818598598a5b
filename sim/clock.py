"""The simulator's lock-step clock and local civil time helpers.

Simulated time is an integer count of milliseconds since the Unix epoch (UTC). Nothing in a
simulated run reads the wall clock: the runner advances one `SimClock` and hands `now_ms` to
firmware `poll`, home units and the backend's clock object. Curfews are in local civil time
(Europe/London by default), so schedules are turned into UTC instants per local date with
zoneinfo, which gets the 23- and 25-hour days of the clock changes right.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_TZ = "Europe/London"
MS_PER_S = 1000
MS_PER_MIN = 60_000
MS_PER_H = 3_600_000
MS_PER_DAY = 86_400_000


class ClockError(ValueError):
    pass


class SimClock:
    """Monotonic simulated time in integer milliseconds since the Unix epoch."""

    def __init__(self, start_ms: int) -> None:
        if not isinstance(start_ms, int) or start_ms < 0:
            raise ClockError(f"start_ms must be a non-negative int, got {start_ms!r}")
        self._now = start_ms

    @property
    def now_ms(self) -> int:
        return self._now

    def advance(self, dt_ms: int) -> int:
        if not isinstance(dt_ms, int) or dt_ms < 0:
            raise ClockError(f"time only moves forward by whole ms, got {dt_ms!r}")
        self._now += dt_ms
        return self._now

    def advance_to(self, t_ms: int) -> int:
        if t_ms < self._now:
            raise ClockError(f"cannot go back from {self._now} to {t_ms}")
        self._now = int(t_ms)
        return self._now

    def ticks(self, until_ms: int, step_ms: int) -> Iterator[int]:
        """Advance in fixed steps up to and including `until_ms`, yielding each instant."""
        if step_ms <= 0:
            raise ClockError("step_ms must be positive")
        while self._now + step_ms <= until_ms:
            yield self.advance(step_ms)

    def utc(self) -> datetime:
        return utc(self._now)

    def local(self, tz: str = DEFAULT_TZ) -> datetime:
        return to_local(self._now, tz)


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (KeyError, ValueError) as exc:
        raise ClockError(f"unknown time zone {tz!r}") from exc


def utc(t_ms: int) -> datetime:
    return datetime.fromtimestamp(t_ms / 1000, tz=UTC)


def to_local(t_ms: int, tz: str = DEFAULT_TZ) -> datetime:
    return utc(t_ms).astimezone(zone(tz))


def from_datetime(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ClockError("naive datetime: give it a time zone")
    return round(dt.timestamp() * 1000)


def local_to_ms(day: date, at: time, tz: str = DEFAULT_TZ) -> int:
    """A local wall-clock time on a local date -> UTC ms.

    A time inside the spring-forward gap (01:xx on the last Sunday of March in London) does not
    exist: it is moved forward by the gap, as a person's watch would be. A time inside the
    autumn fold (01:xx happens twice) means the first occurrence.
    """
    # PEP 495: with fold=0 a time in the gap takes the offset from before the change (so
    # 01:30 GMT = 02:30 BST) and a time in the fold its first occurrence.
    return from_datetime(datetime.combine(day, at).replace(tzinfo=zone(tz), fold=0))


def local_midnight(day: date, tz: str = DEFAULT_TZ) -> int:
    return local_to_ms(day, time(0, 0), tz)


def local_date(t_ms: int, tz: str = DEFAULT_TZ) -> date:
    return to_local(t_ms, tz).date()


def day_bounds(day: date, tz: str = DEFAULT_TZ) -> tuple[int, int]:
    """[start, end) of a local calendar day in UTC ms: 23 h, 24 h or 25 h long."""
    return local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz)


def window_ms(day: date, start: time, end: time, tz: str = DEFAULT_TZ) -> tuple[int, int]:
    """A daily local window that starts on `day`; an end at or before the start is next day
    (a 19:00-07:00 curfew), so its real length changes across a clock change."""
    s = local_to_ms(day, start, tz)
    end_day = day + timedelta(days=1) if end <= start else day
    return s, local_to_ms(end_day, end, tz)


def windows_ms(
    first: date, days: int, start: time, end: time, tz: str = DEFAULT_TZ
) -> list[tuple[int, int]]:
    """The window on each of `days` local dates from `first`, plus the one starting the day
    before (an overnight curfew that began the evening before the run covers its morning)."""
    return [
        window_ms(first + timedelta(days=i), start, end, tz)
        for i in range(-1 if end <= start else 0, days)
    ]


def parse_hhmm(text: str) -> time:
    try:
        hh, mm = text.split(":")
        return time(int(hh), int(mm))
    except ValueError as exc:
        raise ClockError(f"expected a local time as HH:MM, got {text!r}") from exc
