"""Acknowledging an alert from a page's link.

The link carries a token: a JWT (HS256, a key derived from the server key) naming the page
and its expiry. It is only half of what acknowledges: the web app first signs the officer
in, then sends the token with their session; the token acknowledges once (the page's
token_used_at), before its expiry, and only from the officer it was sent to: sent again by
that officer it only answers how the alert stands. A forwarded e-mail or a push read over a
shoulder gives nobody else anything."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

import jwt
from sqlalchemy import Connection, select, update

from backend.notify.outbox import ACKED
from backend.rules import store
from backend.security import audit
from backend.storage.schema import alerts, notification_pages, subjects

ALGORITHM = "HS256"
LABEL = b"tagwatch page ack v1"
TYP = "page-ack"


class AckError(ValueError):
    """The token is not one of ours, or is unreadable: a 4xx (`status`), never a 5xx."""

    status = 422


class AckExpired(AckError):
    status = 409  # the page's state: its link has run out


class AckUsed(AckError):
    status = 409


class AckNotYours(AckError):
    status = 403


def ack_key(server_key: bytes) -> bytes:
    return hmac.new(server_key, LABEL, hashlib.sha256).digest()


class AckTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, page_id: int, expires_at: float) -> str:
        """Deterministic for a page: the dispatcher makes the same token for every channel
        of the page, and again after a restart, without storing it."""
        claims = {"typ": TYP, "pg": page_id, "exp": int(expires_at)}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def page_of(self, token: str) -> tuple[int, int]:
        """(page id, expiry) from a token whose signature is ours; expiry is checked
        against the backend clock by the caller (acknowledge)."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"verify_exp": False, "require": ["exp", "pg", "typ"]},
            )
        except jwt.PyJWTError as e:
            raise AckError("this acknowledgement link is not valid") from e
        if claims.get("typ") != TYP or not isinstance(claims.get("pg"), int):
            raise AckError("this acknowledgement link is not valid")
        return int(claims["pg"]), int(claims["exp"])


AckResultKind = Literal["acknowledged", "already", "not_open"]


@dataclass(frozen=True)
class AckOutcome:
    alert_id: int
    subject_id: int
    # acknowledged: by this link; already: acknowledged before — by someone else (from the
    # queue or another page), or by this officer with this very link (a double tap, a page
    # opened twice): the escalation stopped all the same; not_open: resolved or cleared.
    result: AckResultKind


def page_subject(conn: Connection, page_id: int) -> int | None:
    """The subject whose alert a page is about (the authorization layer scopes by it)."""
    sid = conn.execute(
        select(alerts.c.subject_id)
        .join(notification_pages, notification_pages.c.alert_id == alerts.c.id)
        .where(notification_pages.c.id == page_id)
    ).scalar()
    return None if sid is None else int(sid)


def _take(conn: Connection, page_id: int, now: float) -> bool:
    """Mark the link used, by compare-and-set: of two uses at once, PostgreSQL makes the
    second wait for the first's commit and then finds it used (on SQLite the IMMEDIATE
    transactions run one after the other)."""
    pg = notification_pages.c
    res = conn.execute(
        update(notification_pages)
        .where(pg.id == page_id, pg.token_used_at.is_(None))
        .values(token_used_at=now)
    )
    return res.rowcount == 1


def acknowledge(
    conn: Connection, page_id: int, expires_at: int, user_id: int, now: float
) -> AckOutcome:
    """Use a page's link, in the caller's transaction (IMMEDIATE on SQLite): before expiry,
    by the officer paged; acknowledges the alert if it is still open. The link is used once:
    the officer using it again (a double tap, the e-mail and the push both opened, two
    requests at the same time) is told how the alert stands and nothing more is written;
    only if the alert is open again since (reopened) is a used link refused."""
    pg = notification_pages.c
    page = conn.execute(select(notification_pages).where(pg.id == page_id)).first()
    if page is None:
        raise AckError("this acknowledgement link is not valid")
    if page.user_id != user_id:
        raise AckNotYours("this link was sent to another officer: open the alert from the queue")
    if now >= min(expires_at, page.token_expires_at):
        raise AckExpired("this link has expired: open the alert from the queue")
    taken = page.token_used_at is None and _take(conn, page_id, now)
    alert = conn.execute(
        select(alerts.c.state, alerts.c.subject_id, subjects.c.unit_id)
        .join(subjects, subjects.c.id == alerts.c.subject_id)
        .where(alerts.c.id == page.alert_id)
    ).one()
    if not taken:
        if alert.state == store.OPEN:
            raise AckUsed("this link has already been used: open the alert from the queue")
        repeat: AckResultKind = "already" if alert.state == store.ACKNOWLEDGED else "not_open"
        return AckOutcome(page.alert_id, alert.subject_id, repeat)
    result: AckResultKind
    if alert.state == store.OPEN:
        store.acknowledge(conn, page.alert_id, user_id, "acknowledged from a notification", now)
        result = "acknowledged"
    elif alert.state == store.ACKNOWLEDGED:
        result = "already"
    else:
        result = "not_open"
    if result != "not_open":
        conn.execute(update(notification_pages).where(pg.id == page_id).values(state=ACKED))
    audit.append(
        conn,
        audit.Entry(
            actor="notifications",
            action="notification.acknowledged",
            detail={"alert": page.alert_id, "page": page_id, "result": result},
            user_id=user_id,
            unit_id=alert.unit_id,
            subject_ids=[alert.subject_id],
            purpose="alert notification",
        ),
        now,
    )
    return AckOutcome(page.alert_id, alert.subject_id, result)
