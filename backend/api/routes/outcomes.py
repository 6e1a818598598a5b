"""Outcomes of a subject's episode of monitoring (reoffended, recalled, completed...):
recorded, read, corrected and withdrawn by the officers who manage the subject (its own
unit), for evaluation. Each change is audited."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from backend.api.deps import DB, Audit, ClockDep, CurrentUser, OutcomeManage, SubjectManage
from backend.api.models_research import (
    OutcomeCreate,
    OutcomePublic,
    OutcomeUpdate,
    OutcomeWithdrawal,
)
from backend.security import roles
from backend.services import outcomes

router = APIRouter(prefix="/api", tags=["subjects"])


def _public(r: Any) -> OutcomePublic:
    return OutcomePublic.model_validate(r._mapping)


@router.get("/subjects/{subject_id}/outcomes", response_model=list[OutcomePublic])
def list_outcomes(subject: SubjectManage, db: DB) -> list[OutcomePublic]:
    return [_public(r) for r in outcomes.of_subject(db, subject.id)]


@router.post(
    "/subjects/{subject_id}/outcomes",
    response_model=OutcomePublic,
    status_code=status.HTTP_201_CREATED,
)
def record_outcome(
    subject: SubjectManage,
    body: OutcomeCreate,
    user: CurrentUser,
    db: DB,
    clock: ClockDep,
    log: Audit,
) -> OutcomePublic:
    """What became of the subject's episode, on which date; at most 20 per subject."""
    oid = outcomes.record(
        db, subject.id, body.kind, body.occurred_on, body.note, body.order_id, user.id,
        clock.now(),
    )  # fmt: skip
    log.record(
        "outcome.record",
        subject_ids=[subject.id],
        scope=roles.MANAGE,
        detail={"id": oid, "kind": body.kind},
    )
    return _public(outcomes.get(db, oid))


@router.patch("/outcomes/{outcome_id}", response_model=OutcomePublic)
def correct_outcome(
    obj: OutcomeManage,
    body: OutcomeUpdate,
    user: CurrentUser,
    db: DB,
    clock: ClockDep,
    log: Audit,
) -> OutcomePublic:
    """Correct an outcome recorded wrongly: the fields sent change, judged as when recorded;
    `reason` says why. Audited (outcome.correct) with what changed, from what. A withdrawn
    outcome cannot be corrected (409)."""
    changes = body.model_dump(exclude_unset=True, exclude={"reason"})
    changed = outcomes.correct(db, obj.object_id, changes, user.id, clock.now())
    if changed:
        log.record(
            "outcome.correct",
            subject_ids=[obj.subject.id],
            scope=roles.MANAGE,
            detail={"id": obj.object_id, "changed": changed, "reason": body.reason},
        )
    return _public(outcomes.get(db, obj.object_id))


@router.post("/outcomes/{outcome_id}/withdrawal", response_model=OutcomePublic)
def withdraw_outcome(
    obj: OutcomeManage,
    body: OutcomeWithdrawal,
    user: CurrentUser,
    db: DB,
    clock: ClockDep,
    log: Audit,
) -> OutcomePublic:
    """Withdraw an outcome recorded in error, with the reason: it stays listed as withdrawn
    and counts nowhere (the cohort, its exports). Audited (outcome.withdraw); once only (409)."""
    outcomes.withdraw(db, obj.object_id, body.reason, user.id, clock.now())
    log.record(
        "outcome.withdraw",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id, "reason": body.reason},
    )
    return _public(outcomes.get(db, obj.object_id))
