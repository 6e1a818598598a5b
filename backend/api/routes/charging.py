"""A subject's charging schedule: read with the conditions scope, set with manage."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import DB, Audit, ClockDep, SubjectConditions, SubjectManage
from backend.api.models_monitoring import ChargingPublic, ChargingSet
from backend.security import roles
from backend.services import charging

router = APIRouter(prefix="/api/subjects", tags=["subjects"])


@router.get("/{subject_id}/charging", response_model=ChargingPublic)
def get_charging(subject: SubjectConditions, db: DB) -> ChargingPublic:
    return ChargingPublic(subject_id=subject.id, min_minutes=charging.minutes(db, subject.id))


@router.put("/{subject_id}/charging", response_model=ChargingPublic)
def set_charging(
    subject: SubjectManage, body: ChargingSet, db: DB, clock: ClockDep, log: Audit
) -> ChargingPublic:
    """The charging schedule: at least `min_minutes` of charging each local day."""
    charging.set_minutes(db, subject.id, body.min_minutes, clock.now())
    log.record(
        "charging.set",
        subject_ids=[subject.id],
        scope=roles.MANAGE,
        detail={"min_minutes": body.min_minutes},
    )
    return ChargingPublic(subject_id=subject.id, min_minutes=body.min_minutes)
