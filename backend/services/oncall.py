"""On call: a unit's rota and notification policies as its supervisor keeps them, and the
browsers an officer receives Web Push in (docs/operations.md, "Notifications"). Every bound
is checked here (a refused change is `Invalid`: a 422 with a sentence); who may change which
unit's rota is the API's dependency layer (deps.py), not this module's. The dispatcher that
pages from them is backend/notify/."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, String, cast, delete, func, insert, literal, select, update

from backend.notify import policy as pol
from backend.rules.model import SEVERITIES
from backend.security import roles
from backend.services.errors import Invalid
from backend.storage.schema import (
    notification_policies,
    oncall_shifts,
    push_subscriptions,
    users,
)

MAX_SUBSCRIPTIONS_PER_USER = 10  # browsers and devices an officer receives pushes on
MAX_SHIFTS_PER_UNIT = 2000  # about a year of a three-officer unit's shifts
MAX_POLICIES_PER_UNIT = 60  # one per alert type and a "*"
PAGED_ROLES = (roles.SUPERVISOR, roles.OFFICER)
RETIRED = "-"  # a removed policy's type starts with it


@dataclass(frozen=True)
class ShiftIn:
    user_id: int
    rank: int
    starts_at: float
    ends_at: float
    channels: list[str]
    email: str | None


@dataclass(frozen=True)
class PolicyIn:
    alert_type: str
    min_severity: str
    escalate_after_s: int
    dedup_s: int
    quiet_start: str | None
    quiet_end: str | None
    tz: str
    webhook_url: str | None


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise ValueError(str(e)) from e


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, hosts: list[str] | None = None) -> str:
    """https (or http to a loopback address); with `hosts`, only to one of them."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise Invalid("the address must be an https URL")
    if parts.scheme == "http" and not _loopback(host):
        raise Invalid("the address must be an https URL")
    if hosts is not None and not any(host == h or host.endswith("." + h) for h in hosts):
        raise Invalid("the push endpoint is not one of the configured push services")
    return url


def check_channels(channels: list[str]) -> str:
    bad = sorted(set(channels) - set(pol.CHANNELS))
    if bad or not channels:
        raise Invalid(f"channels must be a non-empty subset of {', '.join(pol.CHANNELS)}")
    return ",".join(c for c in pol.CHANNELS if c in channels)


def add_shift(conn: Connection, unit_id: int, s: ShiftIn, now: float) -> int:
    if not s.starts_at < s.ends_at <= s.starts_at + pol.MAX_SHIFT_S:
        raise Invalid("a shift ends after it starts, at most 31 days later")
    if not 1 <= s.rank <= pol.MAX_RANK:
        raise Invalid(f"rank is 1 (paged first) to {pol.MAX_RANK}")
    channels = check_channels(s.channels)
    if "email" in s.channels and not s.email:
        raise Invalid("an e-mail shift needs an e-mail address")
    user = conn.execute(
        select(users.c.unit_id, users.c.role, users.c.disabled_at).where(users.c.id == s.user_id)
    ).first()
    if user is None or user.unit_id != unit_id or user.disabled_at is not None:
        raise Invalid("the officer on call must be an active user of the unit")
    if user.role not in PAGED_ROLES:
        raise Invalid("only officers and supervisors can be on call")
    n = conn.execute(
        select(func.count()).where(
            oncall_shifts.c.unit_id == unit_id, oncall_shifts.c.ends_at > now
        )
    ).scalar_one()
    if n >= MAX_SHIFTS_PER_UNIT:
        raise Invalid(f"a unit has at most {MAX_SHIFTS_PER_UNIT} current and future shifts")
    return int(
        conn.execute(
            insert(oncall_shifts)
            .values(
                unit_id=unit_id,
                user_id=s.user_id,
                rank=s.rank,
                starts_at=s.starts_at,
                ends_at=s.ends_at,
                channels=channels,
                email=s.email,
                created_at=now,
            )
            .returning(oncall_shifts.c.id)
        ).scalar_one()
    )


def shifts(conn: Connection, unit_id: int, since: float) -> list[dict[str, Any]]:
    c = oncall_shifts.c
    rows = conn.execute(
        select(oncall_shifts)
        .where(c.unit_id == unit_id, c.ends_at > since)
        .order_by(c.starts_at, c.rank, c.id)
    ).mappings()
    return [dict(r) for r in rows]


def shift(conn: Connection, shift_id: int) -> dict[str, Any]:
    return dict(
        conn.execute(select(oncall_shifts).where(oncall_shifts.c.id == shift_id)).mappings().one()
    )


def delete_shift(conn: Connection, unit_id: int, shift_id: int) -> bool:
    c = oncall_shifts.c
    res = conn.execute(delete(oncall_shifts).where(c.id == shift_id, c.unit_id == unit_id))
    return res.rowcount == 1


def set_policy(conn: Connection, unit_id: int, p: PolicyIn, now: float) -> int:
    """Create or replace the unit's policy for the alert type."""
    if p.min_severity not in SEVERITIES:
        raise Invalid(f"min_severity must be one of {', '.join(SEVERITIES)}")
    if not pol.MIN_ESCALATE_AFTER_S <= p.escalate_after_s <= pol.MAX_ESCALATE_AFTER_S:
        raise Invalid("escalate_after_s is 30 s to 24 h")
    if not 0 <= p.dedup_s <= pol.MAX_DEDUP_S:
        raise Invalid("dedup_s is 0 to 7 days")
    if (p.quiet_start is None) != (p.quiet_end is None):
        raise Invalid("quiet hours need both a start and an end")
    try:
        for t in (p.quiet_start, p.quiet_end):
            if t is not None:
                pol.parse_hhmm(t)
        pol.zone(p.tz)
    except pol.PolicyError as e:
        raise Invalid(str(e)) from e
    if p.webhook_url:
        check_url(p.webhook_url)
    values = {
        "alert_type": p.alert_type,
        "min_severity": p.min_severity,
        "escalate_after_s": p.escalate_after_s,
        "dedup_s": p.dedup_s,
        "quiet_start": p.quiet_start,
        "quiet_end": p.quiet_end,
        "tz": p.tz,
        "webhook_url": p.webhook_url or None,
        "updated_at": now,
    }
    c = notification_policies.c
    old = conn.execute(
        select(c.id).where(c.unit_id == unit_id, c.alert_type == p.alert_type)
    ).scalar()
    if old is not None:
        conn.execute(update(notification_policies).where(c.id == old).values(**values))
        return int(old)
    n = conn.execute(
        select(func.count()).where(c.unit_id == unit_id, ~c.alert_type.startswith(RETIRED))
    ).scalar_one()
    if n >= MAX_POLICIES_PER_UNIT:
        raise Invalid(f"a unit has at most {MAX_POLICIES_PER_UNIT} policies")
    return int(
        conn.execute(
            insert(notification_policies)
            .values(unit_id=unit_id, created_at=now, **values)
            .returning(c.id)
        ).scalar_one()
    )


def policies(conn: Connection, unit_id: int) -> list[dict[str, Any]]:
    c = notification_policies.c
    rows = conn.execute(
        select(notification_policies)
        .where(c.unit_id == unit_id, ~c.alert_type.startswith(RETIRED))
        .order_by(c.alert_type)
    ).mappings()
    return [dict(r) for r in rows]


def policy(conn: Connection, policy_id: int) -> dict[str, Any]:
    c = notification_policies.c
    return dict(
        conn.execute(select(notification_policies).where(c.id == policy_id)).mappings().one()
    )


def delete_policy(conn: Connection, unit_id: int, alert_type: str) -> bool:
    """Pages already made under the policy keep it for their escalation, so it is retired
    (its type becomes "-<id>", which no alert has) rather than deleted."""
    c = notification_policies.c
    res = conn.execute(
        update(notification_policies)
        .where(c.unit_id == unit_id, c.alert_type == alert_type)
        .values(alert_type=literal("-") + cast(c.id, String))
    )
    return res.rowcount == 1


def subscribe(
    conn: Connection,
    user_id: int,
    endpoint: str,
    p256dh: str,
    auth: str,
    hosts: list[str],
    now: float,
) -> int:
    """Record (or move to this user) a browser's push subscription."""
    check_url(endpoint, hosts)
    try:
        key, secret = b64url_decode(p256dh), b64url_decode(auth)
    except ValueError as e:
        raise Invalid("the subscription keys are not base64url") from e
    if len(key) != 65 or key[0] != 4 or len(secret) != 16:
        raise Invalid("the subscription keys are not a P-256 key and a 16-byte secret")
    c = push_subscriptions.c
    old = conn.execute(select(c.id).where(c.endpoint == endpoint)).scalar()
    if old is not None:
        conn.execute(
            update(push_subscriptions)
            .where(c.id == old)
            .values(user_id=user_id, p256dh=p256dh, auth=auth, created_at=now)
        )
        return int(old)
    n = conn.execute(select(func.count()).where(c.user_id == user_id)).scalar_one()
    if n >= MAX_SUBSCRIPTIONS_PER_USER:
        raise Invalid(
            f"at most {MAX_SUBSCRIPTIONS_PER_USER} browsers per officer: remove one first"
        )
    return int(
        conn.execute(
            insert(push_subscriptions)
            .values(user_id=user_id, endpoint=endpoint, p256dh=p256dh, auth=auth, created_at=now)
            .returning(c.id)
        ).scalar_one()
    )


def unsubscribe(conn: Connection, user_id: int, endpoint: str) -> bool:
    c = push_subscriptions.c
    res = conn.execute(
        delete(push_subscriptions).where(c.endpoint == endpoint, c.user_id == user_id)
    )
    return res.rowcount == 1


def shift_unit(conn: Connection, shift_id: int) -> int | None:
    """The unit whose rota a shift is on (None: no such shift)."""
    found = conn.execute(select(oncall_shifts.c.unit_id).where(oncall_shifts.c.id == shift_id))
    unit = found.scalar()
    return None if unit is None else int(unit)
