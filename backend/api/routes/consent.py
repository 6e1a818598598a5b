"""A subject's enrolment on a voluntary scheme: the consent (read with the conditions scope,
recorded with manage), its review, the wearer's withdrawal (which opens a removal task) and
the removal that ends it (backend/services/consent.py). Each change is audited in the
transaction that makes it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from backend.api.deps import DB, Audit, ClockDep, CurrentUser, SubjectConditions, SubjectManage
from backend.api.models_scheme import (
    ConsentReview,
    EnrolmentCreate,
    EnrolmentPublic,
    Removal,
    Withdrawal,
)
from backend.security import roles
from backend.services import consent

router = APIRouter(prefix="/api", tags=["consent"])


def _enrolments(db: DB, subject_id: int) -> list[EnrolmentPublic]:
    return [
        EnrolmentPublic.model_validate({**r, "sharing": sorted(roles.parse_scopes(r["sharing"]))})
        for r in consent.enrolment_rows(db, subject_id)
    ]


def _current(db: DB, subject_id: int) -> EnrolmentPublic:
    return _enrolments(db, subject_id)[-1]


@router.get("/subjects/{subject_id}/enrolments", response_model=list[EnrolmentPublic])
def list_enrolments(subject: SubjectConditions, db: DB) -> list[EnrolmentPublic]:
    """The subject's enrolments on voluntary schemes, oldest first: the consent, its
    withdrawal and the removal task it opened."""
    return _enrolments(db, subject.id)


@router.post(
    "/subjects/{subject_id}/enrolments",
    response_model=EnrolmentPublic,
    status_code=status.HTTP_201_CREATED,
)
def enrol(
    subject: SubjectManage,
    body: EnrolmentCreate,
    user: CurrentUser,
    db: DB,
    clock: ClockDep,
    log: Audit,
) -> EnrolmentPublic:
    """Record the wearer's consent to a scheme (409 while an enrolment is in force)."""
    now = clock.now()
    body.check(now)
    given = consent.Consent(body.scheme, body.consent_at, frozenset(body.sharing),
                            body.witnessed_by, body.document_ref, body.review_at)  # fmt: skip
    eid = consent.enrol(db, subject.id, given, user.id, now)
    detail = {"enrolment_id": eid, "scheme": body.scheme, "document_ref": body.document_ref,
              "sharing": sorted(body.sharing)}  # fmt: skip
    log.record("consent.enrol", subject_ids=[subject.id], scope=roles.MANAGE, detail=detail)
    return _current(db, subject.id)


def _recorded(
    subject: SubjectManage, db: DB, log: Audit, action: str, detail: dict[str, Any]
) -> EnrolmentPublic:
    log.record(action, subject_ids=[subject.id], scope=roles.MANAGE, detail=detail)
    return _current(db, subject.id)


@router.post("/subjects/{subject_id}/consent/review", response_model=EnrolmentPublic)
def review(
    subject: SubjectManage, body: ConsentReview, db: DB, clock: ClockDep, log: Audit
) -> EnrolmentPublic:
    """Consent reviewed with the wearer: set the next review date."""
    now = clock.now()
    body.check(now)
    consent.review(db, subject.id, body.review_at, now)
    return _recorded(subject, db, log, "consent.review", {"review_at": body.review_at})


@router.post("/subjects/{subject_id}/consent/withdrawal", response_model=EnrolmentPublic)
def withdraw(
    subject: SubjectManage,
    body: Withdrawal,
    user: CurrentUser,
    db: DB,
    clock: ClockDep,
    log: Audit,
) -> EnrolmentPublic:
    """The wearer withdrew consent: recorded, a removal task opens and the subject's shares
    in force are revoked (listed in the audit record)."""
    now = clock.now()
    body.check(now)
    done = consent.withdraw(db, subject.id, body.withdrawn_at, body.note, user.id, now)
    detail = {"withdrawn_at": body.withdrawn_at, "removal_task": done.removal_task,
              "revoked_shares": done.revoked_shares}  # fmt: skip
    return _recorded(subject, db, log, "consent.withdraw", detail)


@router.post("/subjects/{subject_id}/consent/removal", response_model=EnrolmentPublic)
def record_removal(
    subject: SubjectManage,
    body: Removal,
    user: CurrentUser,
    db: DB,
    clock: ClockDep,
    log: Audit,
) -> EnrolmentPublic:
    """The equipment came off at `removed_at`: the subject's assignments end then, the
    enrolment exits, and the devices' data dated from then on is refused at ingest."""
    now = clock.now()
    body.check(now)
    stopped = consent.complete_removal(db, subject.id, body.removed_at, user.id, now)
    detail = {"removed_at": body.removed_at, "devices": stopped}
    return _recorded(subject, db, log, "consent.removal", detail)
