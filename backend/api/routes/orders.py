"""Orders and licence conditions of a subject: read with the conditions scope, changed
with manage (the subject's own unit). Their span is when the subject is monitored."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from backend.api.deps import DB, Audit, ClockDep, OrderManage, SubjectConditions, SubjectManage
from backend.api.models_monitoring import OrderCreate, OrderPublic, OrderUpdate
from backend.security import roles
from backend.services import orders

router = APIRouter(prefix="/api", tags=["subjects"])


def _public(r: Any) -> OrderPublic:
    return OrderPublic.model_validate(r._mapping)


@router.get("/subjects/{subject_id}/orders", response_model=list[OrderPublic])
def list_orders(subject: SubjectConditions, db: DB) -> list[OrderPublic]:
    return [_public(r) for r in orders.of_subject(db, subject.id)]


@router.post(
    "/subjects/{subject_id}/orders",
    response_model=OrderPublic,
    status_code=status.HTTP_201_CREATED,
)
def create_order(
    subject: SubjectManage, body: OrderCreate, db: DB, clock: ClockDep, log: Audit
) -> OrderPublic:
    """An order or licence condition: its span is when the subject is monitored."""
    now = clock.now()
    body.check(now)
    oid = orders.create(db, subject.id, body.model_dump(), now)
    log.record("order.create", subject_ids=[subject.id], scope=roles.MANAGE, detail={"id": oid})
    return _public(orders.get(db, oid))


@router.patch("/orders/{order_id}", response_model=OrderPublic)
def update_order(
    obj: OrderManage, body: OrderUpdate, db: DB, clock: ClockDep, log: Audit
) -> OrderPublic:
    """Change the fields sent; `null` clears ends_at and the thresholds."""
    now = clock.now()
    body.check(now)
    changes = body.model_dump(exclude_unset=True)
    orders.update_order(db, obj.subject.id, obj.object_id, changes, now)
    log.record(
        "order.update",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id, "fields": sorted(changes)},
    )
    return _public(orders.get(db, obj.object_id))
