"""The notification dispatcher: works the outbox (outbox.py) on the backend clock.

`step(now)` takes the rows that are due and works each once:
- plan: an alert was raised or reopened. Find the unit's policy for it; drop it if none
  pages for it, or if the same condition (the alert's group key) was paged within the
  policy's de-duplication time (a flapping condition pages once); defer it to the end of
  quiet hours; else page the first officer on call.
- escalate: a page's time ran out. If its alert is still open, page the next officer on
  call (and so on down the rota, until no one is left: "exhausted", audited and counted).
- email, push, webhook: send one message. A failure is retried with back-off until
  `notify_max_attempts`, then the row is failed; each outcome is counted (metrics) and
  every page and send is written to the audit log. A row whose alert was acknowledged
  before it went out is dropped, not sent.

A page is a row in notification_pages and the outbox rows that carry it, written in one
transaction. A row is claimed by a compare-and-set on its lease (lease_until), so two
dispatchers (API replicas) never work it at the same time; a dispatcher that dies while
sending leaves the lease to run out and the row is sent again (at least once, never lost).
Sends happen outside any transaction: a slow SMTP relay never holds a database lock.

`start()` runs `step` on a thread every `notify_tick_s` of wall time, reading the backend
clock; the simulator calls `step` itself in lock-step instead."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, delete, func, insert, or_, select, update

from backend.clock import Clock, SystemClock
from backend.notify import outbox as ob
from backend.notify import policy as pol
from backend.notify.ack import AckTokens, ack_key
from backend.notify.channels import Email, Message, Push, SendError, Subscription, Webhook
from backend.notify.outbox import ACKED, CLOSED, ESCALATED, EXHAUSTED, PAGED
from backend.rules.store import ACKNOWLEDGED, OPEN
from backend.security import audit
from backend.settings import Settings
from backend.storage.database import IMMEDIATE
from backend.storage.schema import (
    alerts,
    notification_outbox,
    notification_pages,
    notification_policies,
    oncall_shifts,
    push_subscriptions,
    subjects,
)

log = structlog.get_logger("tagwatch.notify")

ACTOR = "notifications"
BATCH = 50  # rows worked per step: a backlog is worked through over several steps
LEASE_MIN_S = 60.0
# Outcomes counted per kind (metrics.py reads `counts`): a bounded label set.
OUTCOMES = (
    "sent",
    "retried",
    "failed",
    "dropped",
    "paged",
    "deduplicated",
    "deferred",
    "unpaged",
    "escalated",
    "exhausted",
)


@dataclass(frozen=True)
class AlertRow:
    id: int
    type: str
    severity: str
    state: str
    group_key: str
    subject_id: int
    unit_id: int
    raised_at: float


def _policy(r: Any) -> pol.Policy:
    return pol.Policy(
        id=r.id,
        unit_id=r.unit_id,
        alert_type=r.alert_type,
        min_severity=r.min_severity,
        escalate_after_s=r.escalate_after_s,
        dedup_s=r.dedup_s,
        quiet_start=r.quiet_start,
        quiet_end=r.quiet_end,
        tz=r.tz,
        webhook_url=r.webhook_url,
    )


def _shift(r: Any) -> pol.Shift:
    return pol.Shift(
        id=r.id,
        user_id=r.user_id,
        rank=r.rank,
        starts_at=r.starts_at,
        ends_at=r.ends_at,
        channels=pol.parse_channels(r.channels),
        email=r.email,
    )


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        server_key: bytes,
        clock: Clock | None = None,
        email: Email | None = None,
        push: Push | None = None,
        webhook: Webhook | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock or SystemClock()
        self.server_key = server_key
        self.tokens = AckTokens(ack_key(server_key))
        self.email = email
        self.push = push
        self.webhook = webhook
        self.lease_s = max(LEASE_MIN_S, 3 * settings.notify_send_timeout_s)
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_step: float | None = None
        # Called after each send with (kind, target, message): the simulator's scoring.
        self.on_sent: list[Callable[[str, str | None, Message], None]] = []

    # ---- the loop ---------------------------------------------------------------------

    def start(self) -> Dispatcher:
        self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.notify_send_timeout_s * 2 + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.notify_tick_s):
            try:
                while self.step() >= BATCH and not self._stop.is_set():
                    pass
            except Exception:
                log.exception("notification dispatch failed")

    def step(self, now: float | None = None) -> int:
        """Work every due row (up to BATCH); returns how many were worked."""
        with self._lock:
            now = self.clock.now() if now is None else now
            o = notification_outbox.c
            with self.engine.connect() as conn:
                due = conn.execute(
                    select(o.id, o.kind)
                    .where(
                        o.state == ob.PENDING,
                        o.due_at <= now,
                        or_(o.lease_until.is_(None), o.lease_until < now),
                    )
                    .order_by(o.due_at, o.id)
                    .limit(BATCH)
                ).all()
            worked = 0
            for row_id, kind in due:
                try:
                    if kind in ob.SENDS:
                        worked += self._send(row_id, kind, now)
                    else:
                        worked += self._decide(row_id, kind, now)
                except Exception:
                    # The row keeps its lease until it runs out, then is tried again.
                    log.exception("notification row failed", row=row_id, kind=kind)
                    self.counts[(kind, "retried")] += 1
            self.last_step = now
            return worked

    # ---- claiming ---------------------------------------------------------------------

    def _claim(self, conn: Connection, row_id: int, now: float) -> bool:
        o = notification_outbox.c
        res = conn.execute(
            update(notification_outbox)
            .where(
                o.id == row_id,
                o.state == ob.PENDING,
                or_(o.lease_until.is_(None), o.lease_until < now),
            )
            .values(lease_until=now + self.lease_s)
        )
        return res.rowcount == 1

    def _finish(
        self,
        conn: Connection,
        row_id: int,
        state: str,
        now: float,
        error: str | None = None,
        attempts: int | None = None,
        due_at: float | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state, "lease_until": None, "last_error": error}
        if state != ob.PENDING:
            values["done_at"] = now
        if attempts is not None:
            values["attempts"] = attempts
        if due_at is not None:
            values["due_at"] = due_at
        conn.execute(
            update(notification_outbox).where(notification_outbox.c.id == row_id).values(**values)
        )

    def _audit(
        self, conn: Connection, action: str, alert: AlertRow, now: float, **detail: Any
    ) -> None:
        audit.append(
            conn,
            audit.Entry(
                actor=ACTOR,
                action=f"notification.{action}",
                detail={"alert": alert.id, **detail},
                unit_id=alert.unit_id,
                subject_ids=[alert.subject_id],
                purpose="alert notification",
            ),
            now,
        )

    # ---- plan and escalate ------------------------------------------------------------

    def _decide(self, row_id: int, kind: str, now: float) -> int:
        with self.engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            if not self._claim(conn, row_id, now):
                return 0
            row = conn.execute(
                select(notification_outbox).where(notification_outbox.c.id == row_id)
            ).one()
            alert = _alert(conn, row.alert_id)
            if kind == ob.PLAN:
                self._plan(conn, row, alert, now)
            else:
                self._escalate(conn, row, alert, now)
        return 1

    def _plan(self, conn: Connection, row: Any, alert: AlertRow, now: float) -> None:
        if alert.state != OPEN:
            self._finish(conn, row.id, ob.DROPPED, now, "the alert was no longer open")
            self.counts[(ob.PLAN, "dropped")] += 1
            return
        c = notification_policies.c
        policies = [
            _policy(r)
            for r in conn.execute(select(notification_policies).where(c.unit_id == alert.unit_id))
        ]
        policy = pol.match(policies, alert.type, alert.severity)
        if policy is None:
            self._finish(conn, row.id, ob.DROPPED, now, "no policy pages for this alert")
            self.counts[(ob.PLAN, "unpaged")] += 1
            return
        p = notification_pages.c
        last = conn.execute(
            select(func.max(p.paged_at)).where(p.group_key == alert.group_key, p.level == 0)
        ).scalar()
        if last is not None and now - last < policy.dedup_s:
            self._finish(conn, row.id, ob.DROPPED, now, "the same condition was paged recently")
            self._audit(conn, "deduplicated", alert, now, last_paged_at=last)
            self.counts[(ob.PLAN, "deduplicated")] += 1
            return
        until = pol.quiet_until(policy, now)
        if until is not None:
            self._finish(conn, row.id, ob.PENDING, now, due_at=until)
            self._audit(conn, "deferred", alert, now, until=until)
            self.counts[(ob.PLAN, "deferred")] += 1
            return
        self._page(conn, alert, policy, 0, now)
        self._finish(conn, row.id, ob.SENT, now)

    def _escalate(self, conn: Connection, row: Any, alert: AlertRow, now: float) -> None:
        page = conn.execute(
            select(notification_pages).where(notification_pages.c.id == row.page_id)
        ).one()
        if alert.state != OPEN:
            state = ACKED if alert.state == ACKNOWLEDGED else CLOSED
            if page.state == PAGED:
                _set_page(conn, page.id, state)
            self._finish(conn, row.id, ob.DROPPED, now, f"the alert was {alert.state}")
            self.counts[(ob.ESCALATE, "dropped")] += 1
            return
        _set_page(conn, page.id, ESCALATED)
        policy = _policy(
            conn.execute(
                select(notification_policies).where(notification_policies.c.id == page.policy_id)
            ).one()
        )
        self._audit(conn, "escalated", alert, now, page=page.id, level=page.level + 1)
        self.counts[(ob.ESCALATE, "escalated")] += 1
        self._page(conn, alert, policy, page.level + 1, now)
        self._finish(conn, row.id, ob.SENT, now)

    def _page(
        self, conn: Connection, alert: AlertRow, policy: pol.Policy, level: int, now: float
    ) -> int | None:
        """Page the officer on call at `level` of the rota: the page, its sends and its
        escalation, in the caller's transaction."""
        s = oncall_shifts.c
        shifts = [
            _shift(r)
            for r in conn.execute(
                select(oncall_shifts).where(
                    s.unit_id == alert.unit_id, s.starts_at <= now, s.ends_at > now
                )
            )
        ]
        ranked = pol.on_call(shifts, now)
        page_row = {
            "alert_id": alert.id,
            "policy_id": policy.id,
            "group_key": alert.group_key,
            "level": level,
            "paged_at": now,
        }
        if level >= len(ranked):
            conn.execute(
                insert(notification_pages).values(
                    **page_row, user_id=None, state=EXHAUSTED, token_expires_at=now
                )
            )
            self._audit(conn, "exhausted", alert, now, level=level, on_call=len(ranked))
            self.counts[(ob.ESCALATE if level else ob.PLAN, "exhausted")] += 1
            return None
        shift = ranked[level]
        page_id = conn.execute(
            insert(notification_pages)
            .values(
                **page_row,
                user_id=shift.user_id,
                state=PAGED,
                token_expires_at=now + self.settings.notify_ack_ttl_s,
            )
            .returning(notification_pages.c.id)
        ).scalar_one()
        sends: list[str] = []
        if "email" in shift.channels and shift.email:
            ob.enqueue(conn, ob.EMAIL, alert.id, now, now, page_id, shift.email)
            sends.append(ob.EMAIL)
        if "push" in shift.channels:
            for sub_id in conn.execute(
                select(push_subscriptions.c.id).where(push_subscriptions.c.user_id == shift.user_id)
            ).scalars():
                ob.enqueue(conn, ob.PUSH, alert.id, now, now, page_id, str(sub_id))
                sends.append(ob.PUSH)
        if policy.webhook_url:
            ob.enqueue(conn, ob.WEBHOOK, alert.id, now, now, page_id, None)
            sends.append(ob.WEBHOOK)
        ob.enqueue(conn, ob.ESCALATE, alert.id, now + policy.escalate_after_s, now, page_id)
        self._audit(
            conn, "paged", alert, now, page=page_id, level=level, to_user=shift.user_id,
            channels=sends,
        )  # fmt: skip
        self.counts[(ob.PLAN if level == 0 else ob.ESCALATE, "paged")] += 1
        return int(page_id)

    # ---- sending ----------------------------------------------------------------------

    def _send(self, row_id: int, kind: str, now: float) -> int:
        with self.engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            if not self._claim(conn, row_id, now):
                return 0
        with self.engine.connect() as conn:
            row = conn.execute(
                select(notification_outbox).where(notification_outbox.c.id == row_id)
            ).one()
            alert = _alert(conn, row.alert_id)
            page = conn.execute(
                select(notification_pages).where(notification_pages.c.id == row.page_id)
            ).one()
            policy = _policy(
                conn.execute(
                    select(notification_policies).where(
                        notification_policies.c.id == page.policy_id
                    )
                ).one()
            )
            sub = None
            if kind == ob.PUSH:
                sub = conn.execute(
                    select(push_subscriptions).where(push_subscriptions.c.id == int(row.target))
                ).first()
        if alert.state != OPEN:
            with self.engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
                self._finish(conn, row_id, ob.DROPPED, now, f"the alert was {alert.state}")
            self.counts[(kind, "dropped")] += 1
            return 1
        message = self.message(alert, page, policy)
        attempts = row.attempts + 1
        error: SendError | None = None
        try:
            if kind == ob.EMAIL:
                if self.email is None:
                    raise SendError("e-mail is not configured", retry=False)
                self.email.send(row.target, message)
            elif kind == ob.PUSH:
                if self.push is None:
                    raise SendError("Web Push is not configured", retry=False)
                if sub is None:
                    raise SendError("the subscription was removed", retry=False)
                self.push.send(Subscription(sub.endpoint, sub.p256dh, sub.auth), message)
            else:
                if self.webhook is None or not policy.webhook_url:
                    raise SendError("the webhook is not configured", retry=False)
                self.webhook.send(
                    policy.webhook_url, policy.id, self.webhook_body(alert, page, message), now
                )
        except SendError as e:
            error = e
        with self.engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            if error is None:
                self._finish(conn, row_id, ob.SENT, now, attempts=attempts)
                self._audit(
                    conn, "sent", alert, now, page=page.id, channel=kind, to_user=page.user_id,
                    attempt=attempts,
                )  # fmt: skip
                self.counts[(kind, "sent")] += 1
            elif error.retry and attempts < self.settings.notify_max_attempts:
                wait = pol.backoff(
                    attempts, self.settings.notify_retry_base_s, self.settings.notify_retry_max_s
                )
                self._finish(conn, row_id, ob.PENDING, now, str(error)[:200], attempts, now + wait)
                self.counts[(kind, "retried")] += 1
            else:
                self._finish(conn, row_id, ob.FAILED, now, str(error)[:200], attempts)
                if kind == ob.PUSH and sub is not None and not error.retry:
                    # The push service says the subscription is gone: stop using it.
                    conn.execute(
                        delete(push_subscriptions).where(push_subscriptions.c.id == sub.id)
                    )
                self._audit(
                    conn, "failed", alert, now, page=page.id, channel=kind, to_user=page.user_id,
                    attempt=attempts, error=str(error)[:200],
                )  # fmt: skip
                self.counts[(kind, "failed")] += 1
        if error is None:
            for cb in self.on_sent:
                cb(kind, row.target, message)
        return 1

    def link(self, page_id: int, expires_at: float) -> str:
        token = self.tokens.issue(page_id, expires_at)
        return f"{self.settings.public_url.rstrip('/')}/web/#/ack/{token}"

    def message(self, alert: AlertRow, page: Any, policy: pol.Policy) -> Message:
        """No subject's name or place: what, how urgent, when (the policy's local time)."""
        what = alert.type.replace("_", " ")
        when = datetime.fromtimestamp(alert.raised_at, UTC).astimezone(pol.zone(policy.tz))
        escalated = (
            f" Escalated to you: not acknowledged after {policy.escalate_after_s // 60 or 1} min."
            if page.level
            else ""
        )
        return Message(
            subject=f"tagwatch: {alert.severity} alert ({what}) needs acknowledging",
            text=(
                f"A {alert.severity} alert ({what}) was raised at {when:%H:%M %Z} for a "
                f"subject of your unit.{escalated} Sign in to see it and acknowledge it:"
            ),
            link=self.link(page.id, page.token_expires_at),
            alert_id=alert.id,
            level=page.level,
        )

    @staticmethod
    def webhook_body(alert: AlertRow, page: Any, message: Message) -> dict[str, Any]:
        return {
            "alert": alert.id,
            "type": alert.type,
            "severity": alert.severity,
            "raised_at": alert.raised_at,
            "level": page.level,
            "link": message.link,
        }


def _alert(conn: Connection, alert_id: int) -> AlertRow:
    a = alerts.c
    r = conn.execute(
        select(
            a.id,
            a.type,
            a.severity,
            a.state,
            a.group_key,
            a.subject_id,
            subjects.c.unit_id,
            a.raised_at,
        )
        .join(subjects, subjects.c.id == a.subject_id)
        .where(a.id == alert_id)
    ).one()
    return AlertRow(*r)


def _set_page(conn: Connection, page_id: int, state: str) -> None:
    conn.execute(
        update(notification_pages).where(notification_pages.c.id == page_id).values(state=state)
    )


def build(engine: Engine, settings: Settings, server_key: bytes, clock: Clock) -> Dispatcher:
    """The dispatcher with the channels the settings configure (e-mail only with a relay)."""
    return Dispatcher(
        engine,
        settings,
        server_key,
        clock,
        email=Email(settings) if settings.smtp_host else None,
        push=Push(settings),
        webhook=Webhook(settings, server_key),
    )
