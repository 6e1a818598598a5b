"""Weekly windows in local civil time, turned into absolute event-time intervals.

A window is days of the week plus a local start and end ("19:00"-"07:00"); an end at or
before the start runs past midnight into the next day. Intervals are computed per local
date with zoneinfo, so a 19:00-07:00 curfew is 11 hours on the night the clocks go forward
and 13 hours on the night they go back. A local time that does not exist (01:30 on the
spring-forward night) is read with the offset before the change, as PEP 495 (fold=0)
defines; one that happens twice (01:30 on the fall-back night) is its first occurrence."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_TZ = "Europe/London"


def parse_hhmm(text: str) -> time:
    hh, _, mm = text.partition(":")
    # ASCII digits only: str.isdigit() also takes full-width and other scripts' digits.
    if not (hh.isascii() and mm.isascii() and hh.isdigit() and mm.isdigit() and len(mm) == 2):
        raise ValueError("a time of day is HH:MM in ASCII digits")
    h, m = int(hh), int(mm)
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise ValueError("a time of day is 00:00 to 23:59")
    return time(h, m)


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def to_unix(d: date, t: time, tz: str) -> int:
    return int(datetime.combine(d, t, tzinfo=zone(tz)).timestamp())


def local_date(ts: int, tz: str) -> date:
    return datetime.fromtimestamp(ts, zone(tz)).date()


@dataclass(frozen=True)
class Weekly:
    """Days (a window starts on these local days), local start and end, IANA zone."""

    days: tuple[str, ...]
    start: str
    end: str
    tz: str = DEFAULT_TZ

    def __post_init__(self) -> None:
        bad = [d for d in self.days if d not in DAYS]
        if bad:
            raise ValueError(f"unknown day(s) {bad}; use {DAYS}")
        parse_hhmm(self.start)
        parse_hhmm(self.end)
        zone(self.tz)

    @property
    def overnight(self) -> bool:
        return parse_hhmm(self.end) <= parse_hhmm(self.start)

    def window_on(self, d: date) -> tuple[int, int] | None:
        """The window that starts on local date d, as [start, end) Unix seconds."""
        if DAYS[d.weekday()] not in self.days:
            return None
        s, e = parse_hhmm(self.start), parse_hhmm(self.end)
        end_day = d + timedelta(days=1) if self.overnight else d
        return to_unix(d, s, self.tz), to_unix(end_day, e, self.tz)

    def windows(self, t0: int, t1: int) -> list[tuple[int, int, str]]:
        """Windows overlapping [t0, t1), with the local date each starts on (the night's id)."""
        out = []
        d = local_date(t0, self.tz) - timedelta(days=1)
        last = local_date(t1, self.tz)
        while d <= last:
            w = self.window_on(d)
            if w is not None and w[0] < t1 and w[1] > t0:
                out.append((w[0], w[1], d.isoformat()))
            d += timedelta(days=1)
        return out


@dataclass(frozen=True)
class Exception_:
    """A one-off change: `excused` lifts the curfew over [start, end) (authorised absence),
    `extra` adds a curfew window."""

    start: int
    end: int
    kind: str = "excused"


def merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of half-open spans as sorted, disjoint, non-empty spans; spans that touch
    join."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def subtract(
    intervals: Iterable[tuple[int, int]], holes: Iterable[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Intervals minus holes (both half-open, holes in any order): the non-empty parts of
    each interval that no hole covers, in the intervals' order. The holes are merged and
    searched by bisection, so thousands of them (the gaps between fixes over a month) cost
    n log n, not n squared."""
    cut = merge(holes)
    ends = [b for _, b in cut]
    out: list[tuple[int, int]] = []
    for s, e in intervals:
        at, i = s, bisect_right(ends, s)
        while i < len(cut) and cut[i][0] < e:
            if cut[i][0] > at:
                out.append((at, cut[i][0]))
            at = max(at, cut[i][1])
            i += 1
        if at < e:
            out.append((at, e))
    return out


def active_at(windows: Sequence[Weekly], t: int) -> bool:
    return any(w.windows(t, t + 1) for w in windows)
