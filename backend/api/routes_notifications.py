"""Notifications (docs/operations.md, "Notifications"): the unit's on-call rota and
notification policies, kept by its supervisor; an officer's browsers subscribed to Web
Push; acknowledging an alert from a page's link.

Every route works on the caller's own unit (OnCallReader, OnCallEditor, ShiftId and PageAck
in deps.py authorize); nothing takes a unit from the request. Changes are audited."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from backend.api.deps import (
    DB,
    Audit,
    ClockDep,
    Context,
    OnCallEditor,
    OnCallReader,
    PageAck,
    ShiftId,
)
from backend.notify import ack, rota
from backend.notify.channels import webhook_key

router = APIRouter(prefix="/api", tags=["notifications"])

UNPROCESSABLE = 422
Channel = Literal["email", "push"]
Severity = Literal["critical", "high", "medium", "low"]
# A shift's times: within the plausible span of any time in the API (backend/bounds.py).
Time = Annotated[float, Field(ge=0, le=4_102_444_800)]
HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
AlertType = Annotated[
    str,
    Path(
        pattern=r"^(\*|[a-z][a-z0-9_]{0,47})$",
        max_length=48,
        description="an alert type, or * for every type without a policy of its own",
    ),
]


def _refused(e: Exception) -> HTTPException:
    return HTTPException(UNPROCESSABLE, str(e))


# ---- the rota ---------------------------------------------------------------------------


class ShiftCreate(BaseModel):
    user_id: int = Field(ge=1, le=2**62)
    rank: int = Field(ge=1, le=9, description="1 is paged first; 2 when 1 does not acknowledge")
    starts_at: Time
    ends_at: Time
    channels: list[Channel] = Field(min_length=1, max_length=2)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class ShiftPublic(BaseModel):
    id: int
    user_id: int
    rank: int
    starts_at: float
    ends_at: float
    channels: list[str]
    email: str | None


def _shift(r: dict[str, Any]) -> ShiftPublic:
    return ShiftPublic(
        id=r["id"],
        user_id=r["user_id"],
        rank=r["rank"],
        starts_at=r["starts_at"],
        ends_at=r["ends_at"],
        channels=r["channels"].split(","),
        email=r["email"],
    )


@router.get("/oncall/shifts", response_model=list[ShiftPublic])
def list_shifts(user: OnCallReader, db: DB, clock: ClockDep) -> list[ShiftPublic]:
    """The unit's current and future shifts, earliest first."""
    return [_shift(r) for r in rota.shifts(db, user.unit_id, clock.now())]


@router.post("/oncall/shifts", response_model=ShiftPublic, status_code=status.HTTP_201_CREATED)
def create_shift(
    body: ShiftCreate, user: OnCallEditor, db: DB, clock: ClockDep, log: Audit
) -> ShiftPublic:
    s = rota.ShiftIn(
        body.user_id, body.rank, body.starts_at, body.ends_at, list(body.channels), body.email
    )
    try:
        shift_id = rota.add_shift(db, user.unit_id, s, clock.now())
    except rota.RotaError as e:
        raise _refused(e) from e
    log.record("oncall.shift.create", detail={"shift": shift_id, "user": body.user_id})
    (created,) = [r for r in rota.shifts(db, user.unit_id, 0.0) if r["id"] == shift_id]
    return _shift(created)


@router.delete("/oncall/shifts/{shift_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_shift(shift_id: ShiftId, user: OnCallEditor, db: DB, log: Audit) -> None:
    rota.delete_shift(db, user.unit_id, shift_id)
    log.record("oncall.shift.delete", detail={"shift": shift_id})


# ---- policies ---------------------------------------------------------------------------


class PolicySet(BaseModel):
    min_severity: Severity
    escalate_after_s: int = Field(ge=30, le=24 * 3600)
    dedup_s: int = Field(ge=0, le=7 * 86_400)
    quiet_start: HHMM | None = None
    quiet_end: HHMM | None = None
    tz: str = Field(default="Europe/London", min_length=1, max_length=64)
    webhook_url: str | None = Field(default=None, max_length=500)


class PolicyPublic(BaseModel):
    id: int
    alert_type: str
    min_severity: str
    escalate_after_s: int
    dedup_s: int
    quiet_start: str | None
    quiet_end: str | None
    tz: str
    webhook_url: str | None


class PolicySaved(PolicyPublic):
    webhook_key: str | None = Field(
        description="hex HMAC key the webhook's receiver checks signatures with (docs/"
        "operations.md); shown when the policy is saved, never listed"
    )


def _policy(r: dict[str, Any]) -> PolicyPublic:
    return PolicyPublic(**{k: r[k] for k in PolicyPublic.model_fields})


@router.get("/oncall/policies", response_model=list[PolicyPublic])
def list_policies(user: OnCallReader, db: DB) -> list[PolicyPublic]:
    return [_policy(r) for r in rota.policies(db, user.unit_id)]


@router.put("/oncall/policies/{alert_type}", response_model=PolicySaved)
def set_policy(
    alert_type: AlertType,
    body: PolicySet,
    user: OnCallEditor,
    db: DB,
    clock: ClockDep,
    ctx: Context,
    log: Audit,
) -> PolicySaved:
    p = rota.PolicyIn(
        alert_type, body.min_severity, body.escalate_after_s, body.dedup_s, body.quiet_start,
        body.quiet_end, body.tz, body.webhook_url,
    )  # fmt: skip
    try:
        policy_id = rota.set_policy(db, user.unit_id, p, clock.now())
    except rota.RotaError as e:
        raise _refused(e) from e
    log.record(
        "oncall.policy.set",
        detail={"policy": policy_id, "alert_type": alert_type, **body.model_dump()},
    )
    (saved,) = [r for r in rota.policies(db, user.unit_id) if r["id"] == policy_id]
    key = webhook_key(ctx.dispatcher.server_key, policy_id).hex() if body.webhook_url else None
    return PolicySaved(**_policy(saved).model_dump(), webhook_key=key)


@router.delete("/oncall/policies/{alert_type}", status_code=status.HTTP_204_NO_CONTENT)
def delete_policy(alert_type: AlertType, user: OnCallEditor, db: DB, log: Audit) -> None:
    if not rota.delete_policy(db, user.unit_id, alert_type):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no policy for that alert type")
    log.record("oncall.policy.delete", detail={"alert_type": alert_type})


# ---- the officer's browsers and the page's link ----------------------------------------


class PushKeys(BaseModel):
    p256dh: str = Field(min_length=1, max_length=128)
    auth: str = Field(min_length=1, max_length=64)


class PushSubscriptionIn(BaseModel):
    """As the browser's PushSubscription.toJSON() gives it (expirationTime is ignored)."""

    endpoint: str = Field(min_length=1, max_length=1000)
    keys: PushKeys


class PushKey(BaseModel):
    public_key: str = Field(description="the VAPID application server key (base64url)")


class Created(BaseModel):
    id: int


class AckResult(BaseModel):
    alert_id: int
    result: ack.AckResultKind


@router.get("/notifications/push-key", response_model=PushKey)
def push_key(user: OnCallReader, ctx: Context) -> PushKey:
    if ctx.dispatcher.push is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Web Push is not configured")
    return PushKey(public_key=ctx.dispatcher.push.public_key)


@router.post(
    "/notifications/subscriptions", response_model=Created, status_code=status.HTTP_201_CREATED
)
def subscribe(
    body: PushSubscriptionIn, user: OnCallReader, db: DB, clock: ClockDep, ctx: Context, log: Audit
) -> Created:
    try:
        sub_id = rota.subscribe(
            db, user.id, body.endpoint, body.keys.p256dh, body.keys.auth,
            ctx.settings.push_hosts, clock.now(),
        )  # fmt: skip
    except rota.RotaError as e:
        raise _refused(e) from e
    log.record("notification.subscribe", detail={"subscription": sub_id})
    return Created(id=sub_id)


@router.delete("/notifications/subscriptions", status_code=status.HTTP_204_NO_CONTENT)
def unsubscribe(
    endpoint: Annotated[str, Query(min_length=1, max_length=1000)],
    user: OnCallReader,
    db: DB,
    log: Audit,
) -> None:
    if not rota.unsubscribe(db, user.id, endpoint):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this browser is not subscribed")
    log.record("notification.unsubscribe", detail={})


@router.post("/notifications/ack", response_model=AckResult)
def acknowledge(page: PageAck, user: OnCallReader, db: DB, clock: ClockDep) -> AckResult:
    """Acknowledge the alert a page is about, with the token from the page's link."""
    try:
        out = ack.acknowledge(db, page.page_id, page.expires_at, user.id, clock.now())
    except ack.AckError as e:
        raise HTTPException(e.status, str(e)) from e
    return AckResult(alert_id=out.alert_id, result=out.result)
