"""Notifications to an officer (docs/operations.md, "Notifications"): the server's Web Push
key, the browsers the officer receives pages in, and acknowledging an alert from a page's
link (PageAck in deps.py: the page's alert's subject with manage; the page must also have
been sent to the caller, notify/ack.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from backend.api.deps import DB, Audit, ClockDep, Context, OnCallReader, PageAck
from backend.api.models_notifications import AckResult, Created, PushKey, PushSubscriptionIn
from backend.notify import ack
from backend.services import oncall
from backend.services.errors import NotFound

router = APIRouter(prefix="/api/notifications", tags=["notifications"])


@router.get("/push-key", response_model=PushKey)
def push_key(user: OnCallReader, ctx: Context) -> PushKey:
    if ctx.dispatcher.push is None:
        raise NotFound("Web Push is not configured")
    return PushKey(public_key=ctx.dispatcher.push.public_key)


@router.post("/subscriptions", response_model=Created, status_code=status.HTTP_201_CREATED)
def subscribe(
    body: PushSubscriptionIn, user: OnCallReader, db: DB, clock: ClockDep, ctx: Context, log: Audit
) -> Created:
    sub_id = oncall.subscribe(
        db, user.id, body.endpoint, body.keys.p256dh, body.keys.auth, ctx.settings.push_hosts,
        clock.now(),
    )  # fmt: skip
    log.record("notification.subscribe", detail={"subscription": sub_id})
    return Created(id=sub_id)


@router.delete("/subscriptions", status_code=status.HTTP_204_NO_CONTENT)
def unsubscribe(
    endpoint: Annotated[str, Query(min_length=1, max_length=1000)],
    user: OnCallReader,
    db: DB,
    log: Audit,
) -> None:
    if not oncall.unsubscribe(db, user.id, endpoint):
        raise NotFound("this browser is not subscribed")
    log.record("notification.unsubscribe", detail={})


@router.post("/ack", response_model=AckResult)
def acknowledge(page: PageAck, user: OnCallReader, db: DB, clock: ClockDep) -> AckResult:
    """Acknowledge the alert a page is about, with the token from the page's link."""
    try:
        out = ack.acknowledge(db, page.page_id, page.expires_at, user.id, clock.now())
    except ack.AckError as e:
        raise HTTPException(e.status, str(e)) from e
    return AckResult(alert_id=out.alert_id, result=out.result)
