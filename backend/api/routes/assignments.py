"""A subject's equipment: every tag and home unit it has had (conditions scope), fitting and
removing them (manage)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from backend.api.deps import (
    DB,
    AssignmentManage,
    Audit,
    ClockDep,
    CurrentUser,
    SubjectConditions,
    SubjectManage,
)
from backend.api.models_monitoring import AssignmentCreate, AssignmentPublic, AssignmentUpdate
from backend.security import roles
from backend.services import assignments

router = APIRouter(prefix="/api", tags=["subjects"])


def _public(r: Any) -> AssignmentPublic:
    return AssignmentPublic.model_validate(r._mapping)


@router.get("/subjects/{subject_id}/assignments", response_model=list[AssignmentPublic])
def list_assignments(subject: SubjectConditions, db: DB) -> list[AssignmentPublic]:
    """Equipment history: every tag and home unit the subject has had."""
    return [_public(r) for r in assignments.of_subject(db, subject.id)]


@router.post(
    "/subjects/{subject_id}/assignments",
    response_model=AssignmentPublic,
    status_code=status.HTTP_201_CREATED,
)
def create_assignment(
    subject: SubjectManage,
    body: AssignmentCreate,
    user: CurrentUser,
    db: DB,
    clock: ClockDep,
    log: Audit,
) -> AssignmentPublic:
    """Fit a device. The subject's previous device of the same role is unassigned from
    `starts_at`; a device serving another subject at that time is refused."""
    now = clock.now()
    body.check(now)
    new_id = assignments.fit(db, subject.id, body.device, body.role, body.starts_at, now, user.id)
    log.record(
        "assignment.create",
        subject_ids=[subject.id],
        scope=roles.MANAGE,
        detail={"device": body.device, "role": body.role},
    )
    return _public(assignments.get(db, new_id))


@router.patch("/assignments/{assignment_id}", response_model=AssignmentPublic)
def end_assignment(
    obj: AssignmentManage,
    body: AssignmentUpdate,
    user: CurrentUser,
    db: DB,
    clock: ClockDep,
    log: Audit,
) -> AssignmentPublic:
    """Remove a device: the assignment ends at `ends_at`."""
    now = clock.now()
    body.check(now)
    assignments.end(db, obj.subject.id, obj.object_id, body.ends_at, now, user.id)
    log.record(
        "assignment.end",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id},
    )
    return _public(assignments.get(db, obj.object_id))
