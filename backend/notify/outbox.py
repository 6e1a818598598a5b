"""The notification outbox: where the rules hand an alert over, in their own transaction.

`alert_raised` is called by the alert workflow (backend/rules/store.py) in the transaction
that raises or reopens the alert, so the hand-over commits with the alert or not at all: a
crash or restart after the commit loses nothing, the dispatcher finds the row when it next
looks. Everything slower (who is on call, sending) happens later, outside the rules'
transaction (dispatcher.py)."""

from __future__ import annotations

from sqlalchemy import Connection, insert

from backend.storage.schema import notification_outbox

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
DROPPED = "dropped"

# A page's states (notification_pages.state).
PAGED, ACKED, ESCALATED, CLOSED, EXHAUSTED = (
    "paged",
    "acknowledged",
    "escalated",
    "closed",
    "exhausted",
)

PLAN = "plan"
ESCALATE = "escalate"
EMAIL = "email"
PUSH = "push"
WEBHOOK = "webhook"
KINDS = (PLAN, ESCALATE, EMAIL, PUSH, WEBHOOK)
SENDS = (EMAIL, PUSH, WEBHOOK)


def enqueue(
    conn: Connection,
    kind: str,
    alert_id: int,
    due_at: float,
    now: float,
    page_id: int | None = None,
    target: str | None = None,
) -> None:
    conn.execute(
        insert(notification_outbox).values(
            kind=kind,
            alert_id=alert_id,
            page_id=page_id,
            target=target,
            state=PENDING,
            due_at=due_at,
            attempts=0,
            created_at=now,
        )
    )


def alert_raised(conn: Connection, alert_id: int, now: float) -> None:
    """An alert was raised or reopened: plan its pages."""
    enqueue(conn, PLAN, alert_id, now, now)
