"""A subject's curfews (weekly windows in local civil time) and one-off exceptions:
read with the conditions scope, changed with manage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from backend.api.deps import (
    DB,
    Audit,
    ClockDep,
    CurfewManage,
    ExceptionManage,
    SubjectConditions,
    SubjectManage,
)
from backend.api.models_monitoring import (
    CurfewCreate,
    CurfewPublic,
    ExceptionCreate,
    ExceptionPublic,
)
from backend.security import roles
from backend.services import curfews

router = APIRouter(prefix="/api", tags=["subjects"])


def _curfew(r: Any) -> CurfewPublic:
    return CurfewPublic(
        id=r.id,
        subject_id=r.subject_id,
        days=r.days.split(","),
        start=r.start,
        end=r.end,
        tz=r.tz,
        created_at=r.created_at,
    )


@router.get("/subjects/{subject_id}/curfews", response_model=list[CurfewPublic])
def list_curfews(subject: SubjectConditions, db: DB) -> list[CurfewPublic]:
    return [_curfew(r) for r in curfews.of_subject(db, subject.id)]


@router.post(
    "/subjects/{subject_id}/curfews",
    response_model=CurfewPublic,
    status_code=status.HTTP_201_CREATED,
)
def create_curfew(
    subject: SubjectManage, body: CurfewCreate, db: DB, clock: ClockDep, log: Audit
) -> CurfewPublic:
    """A weekly curfew window in local civil time (an end at or before the start runs into
    the next day)."""
    row = curfews.create(db, subject.id, body.days, body.start, body.end, body.tz, clock.now())
    log.record("curfew.create", subject_ids=[subject.id], scope=roles.MANAGE, detail={"id": row.id})
    return _curfew(row)


@router.delete("/curfews/{curfew_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_curfew(obj: CurfewManage, db: DB, clock: ClockDep, log: Audit) -> None:
    curfews.remove(db, obj.subject.id, obj.object_id, clock.now())
    log.record(
        "curfew.delete",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id},
    )


@router.get("/subjects/{subject_id}/curfew-exceptions", response_model=list[ExceptionPublic])
def list_exceptions(subject: SubjectConditions, db: DB) -> list[ExceptionPublic]:
    return [
        ExceptionPublic.model_validate(r._mapping) for r in curfews.exceptions_of(db, subject.id)
    ]


@router.post(
    "/subjects/{subject_id}/curfew-exceptions",
    response_model=ExceptionPublic,
    status_code=status.HTTP_201_CREATED,
)
def create_exception(
    subject: SubjectManage, body: ExceptionCreate, db: DB, clock: ClockDep, log: Audit
) -> ExceptionPublic:
    """A one-off change: excused (authorised absence) or extra curfew time."""
    now = clock.now()
    body.check(now)
    row = curfews.add_exception(db, subject.id, body.model_dump(), now)
    log.record(
        "curfew_exception.create",
        subject_ids=[subject.id],
        scope=roles.MANAGE,
        detail={"id": row.id},
    )
    return ExceptionPublic.model_validate(row._mapping)


@router.delete("/curfew-exceptions/{exception_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_exception(obj: ExceptionManage, db: DB, clock: ClockDep, log: Audit) -> None:
    curfews.remove_exception(db, obj.subject.id, obj.object_id, clock.now())
    log.record(
        "curfew_exception.delete",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id},
    )
