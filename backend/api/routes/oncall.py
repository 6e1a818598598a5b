"""On call (docs/operations.md, "Notifications"): the unit's rota and notification
policies. Officers and supervisors read their own unit's; its supervisor keeps them. The
unit is always the caller's (OnCallReader, OnCallEditor, ShiftWrite in deps.py)."""

from __future__ import annotations

from fastapi import APIRouter, status

from backend.api.deps import DB, Audit, ClockDep, Context, OnCallEditor, OnCallReader, ShiftWrite
from backend.api.models_notifications import (
    AlertType,
    PolicyPublic,
    PolicySaved,
    PolicySet,
    ShiftCreate,
    ShiftPublic,
)
from backend.notify.channels import webhook_key
from backend.services import oncall
from backend.services.errors import NotFound

router = APIRouter(prefix="/api/oncall", tags=["notifications"])


@router.get("/shifts", response_model=list[ShiftPublic])
def list_shifts(user: OnCallReader, db: DB, clock: ClockDep) -> list[ShiftPublic]:
    """The unit's current and future shifts, earliest first."""
    return [ShiftPublic.of(r) for r in oncall.shifts(db, user.unit_id, clock.now())]


@router.post("/shifts", response_model=ShiftPublic, status_code=status.HTTP_201_CREATED)
def create_shift(
    body: ShiftCreate, user: OnCallEditor, db: DB, clock: ClockDep, log: Audit
) -> ShiftPublic:
    s = oncall.ShiftIn(
        body.user_id, body.rank, body.starts_at, body.ends_at, list(body.channels), body.email
    )
    shift_id = oncall.add_shift(db, user.unit_id, s, clock.now())
    log.record("oncall.shift.create", detail={"shift": shift_id, "user": body.user_id})
    return ShiftPublic.of(oncall.shift(db, shift_id))


@router.delete("/shifts/{shift_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_shift(shift_id: ShiftWrite, user: OnCallEditor, db: DB, log: Audit) -> None:
    oncall.delete_shift(db, user.unit_id, shift_id)
    log.record("oncall.shift.delete", detail={"shift": shift_id})


@router.get("/policies", response_model=list[PolicyPublic])
def list_policies(user: OnCallReader, db: DB) -> list[PolicyPublic]:
    return [PolicyPublic.of(r) for r in oncall.policies(db, user.unit_id)]


@router.put("/policies/{alert_type}", response_model=PolicySaved)
def set_policy(
    alert_type: AlertType,
    body: PolicySet,
    user: OnCallEditor,
    db: DB,
    clock: ClockDep,
    ctx: Context,
    log: Audit,
) -> PolicySaved:
    p = oncall.PolicyIn(
        alert_type, body.min_severity, body.escalate_after_s, body.dedup_s, body.quiet_start,
        body.quiet_end, body.tz, body.webhook_url,
    )  # fmt: skip
    policy_id = oncall.set_policy(db, user.unit_id, p, clock.now())
    log.record(
        "oncall.policy.set",
        detail={"policy": policy_id, "alert_type": alert_type, **body.model_dump()},
    )
    key = webhook_key(ctx.dispatcher.server_key, policy_id).hex() if body.webhook_url else None
    saved = PolicyPublic.of(oncall.policy(db, policy_id))
    return PolicySaved(**saved.model_dump(), webhook_key=key)


@router.delete("/policies/{alert_type}", status_code=status.HTTP_204_NO_CONTENT)
def delete_policy(alert_type: AlertType, user: OnCallEditor, db: DB, log: Audit) -> None:
    if not oncall.delete_policy(db, user.unit_id, alert_type):
        raise NotFound("no policy for that alert type")
    log.record("oncall.policy.delete", detail={"alert_type": alert_type})
