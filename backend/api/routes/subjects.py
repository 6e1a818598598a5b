"""Subjects: supervisors and officers create them in their own unit; the list shows the
caller's unit's and those shared with it; what of a subject a caller is shown follows its
access (subject_view.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from backend.api.deps import (
    DB,
    Audit,
    ClockDep,
    CurrentUser,
    Editor,
    SubjectManage,
    SubjectView,
    Visible,
    visible_subjects,
)
from backend.api.models_monitoring import SubjectCreate, SubjectUpdate
from backend.api.subject_view import SubjectPublic, subject_public
from backend.security import roles
from backend.services import subjects

router = APIRouter(prefix="/api/subjects", tags=["subjects"])

VisibleView = Annotated[Visible, Depends(visible_subjects(roles.VIEW))]


@router.post("", response_model=SubjectPublic, status_code=status.HTTP_201_CREATED)
def create_subject(
    body: SubjectCreate, user: Editor, db: DB, clock: ClockDep, log: Audit
) -> SubjectPublic:
    """Create a subject in the caller's own unit (supervisors and officers)."""
    now = clock.now()
    sid = subjects.create(
        db,
        reference=body.reference,
        name=body.name,
        unit_id=user.unit_id,
        risk_notes=body.risk_notes,
        now=now,
        tz=body.tz,
    )
    log.record("subject.create", subject_ids=[sid], scope=roles.MANAGE)
    return subject_public(subjects.own(db, user, sid, now))


@router.get("", response_model=list[SubjectPublic])
def list_subjects(
    user: CurrentUser,
    visible: VisibleView,
    db: DB,
    clock: ClockDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> list[SubjectPublic]:
    """Subjects the caller may see (its unit's and those shared with it)."""
    page = subjects.listing(db, user, visible.ids, clock.now(), limit, offset)
    return [subject_public(s) for s in page]


@router.get("/{subject_id}", response_model=SubjectPublic)
def get_subject(subject: SubjectView) -> SubjectPublic:
    return subject_public(subject)


@router.patch("/{subject_id}", response_model=SubjectPublic)
def update_subject(
    subject: SubjectManage,
    body: SubjectUpdate,
    user: CurrentUser,
    db: DB,
    clock: ClockDep,
    log: Audit,
) -> SubjectPublic:
    """Change the fields sent."""
    now = clock.now()
    changes = body.model_dump(exclude_unset=True)
    subjects.update_subject(db, subject.id, changes, now)
    log.record(
        "subject.update",
        subject_ids=[subject.id],
        scope=roles.MANAGE,
        detail={"fields": sorted(changes)},
    )
    return subject_public(subjects.own(db, user, subject.id, now))
