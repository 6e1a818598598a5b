"""Who is paged for an alert, and when: pure decisions over rows already read.

A unit's policies say which alerts page its on-call officer: the policy for the alert's
type, else the unit's "*" policy, if the alert is at least as severe as its minimum.
Quiet hours (local civil time in the policy's zone, across midnight allowed) defer a page
to their end; they are right across daylight-saving changes because the end is found on
the local date with zoneinfo. The on-call rota is a list of shifts; at any instant the
officers on call are those whose shift covers it, paged in rank order (rank 1 first), one
person per escalation level."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.rules.model import SEVERITIES

ANY_TYPE = "*"
CHANNELS = ("email", "push")
# Bounds a supervisor's input is held to (docs/operations.md, "Notifications").
MAX_SHIFT_S = 31 * 86_400
MAX_RANK = 9
MAX_ESCALATE_AFTER_S = 24 * 3600
MIN_ESCALATE_AFTER_S = 30
MAX_DEDUP_S = 7 * 86_400


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Policy:
    id: int
    unit_id: int
    alert_type: str
    min_severity: str
    escalate_after_s: int
    dedup_s: int
    quiet_start: str | None
    quiet_end: str | None
    tz: str
    webhook_url: str | None


@dataclass(frozen=True)
class Shift:
    id: int
    user_id: int
    rank: int
    starts_at: float
    ends_at: float
    channels: frozenset[str]
    email: str | None


def severity_at_least(severity: str, minimum: str) -> bool:
    """Unknown severities page (better a page too many than a strap cut missed)."""
    if severity not in SEVERITIES:
        return True
    return SEVERITIES.index(severity) <= SEVERITIES.index(minimum)


def match(policies: Iterable[Policy], alert_type: str, severity: str) -> Policy | None:
    by_type = {p.alert_type: p for p in policies}
    p = by_type.get(alert_type) or by_type.get(ANY_TYPE)
    if p is None or not severity_at_least(severity, p.min_severity):
        return None
    return p


def parse_hhmm(text: str) -> time:
    try:
        hh, mm = text.split(":")
        if len(hh) != 2 or len(mm) != 2:
            raise ValueError(text)
        return time(int(hh), int(mm))
    except ValueError as e:
        raise PolicyError(f"expected a local time as HH:MM, got {text!r}") from e


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise PolicyError(f"unknown time zone {tz!r}") from e


def quiet_until(policy: Policy, now: float) -> float | None:
    """If `now` falls in the policy's quiet hours, the instant they end; else None."""
    if not policy.quiet_start or not policy.quiet_end:
        return None
    start, end = parse_hhmm(policy.quiet_start), parse_hhmm(policy.quiet_end)
    if start == end:
        return None
    tz = zone(policy.tz)
    local = datetime.fromtimestamp(now, UTC).astimezone(tz)
    today = local.date()
    # The window that started today or (across midnight) yesterday.
    for day in (today, today - timedelta(days=1)):
        s = datetime.combine(day, start, tzinfo=tz)
        end_day = day + timedelta(days=1) if end <= start else day
        e = datetime.combine(end_day, end, tzinfo=tz)
        if s.timestamp() <= now < e.timestamp():
            return e.timestamp()
    return None


def on_call(shifts: Iterable[Shift], now: float) -> list[Shift]:
    """The officers on call at `now`, in paging order (rank, then the earlier shift); an
    officer on two overlapping shifts is paged once, at their better rank."""
    out: list[Shift] = []
    seen: set[int] = set()
    for s in sorted(shifts, key=lambda s: (s.rank, s.starts_at, s.id)):
        if s.starts_at <= now < s.ends_at and s.user_id not in seen:
            seen.add(s.user_id)
            out.append(s)
    return out


def backoff(attempts: int, base_s: float, max_s: float) -> float:
    """Seconds before retry number `attempts` (1: the first retry)."""
    return float(min(max_s, base_s * 2 ** max(0, attempts - 1)))


def parse_channels(text: str) -> frozenset[str]:
    return frozenset(c for c in text.split(",") if c)
