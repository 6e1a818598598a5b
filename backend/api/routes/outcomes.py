"""Outcomes of a subject's episode of monitoring (reoffended, recalled, completed...):
recorded and read by the officers who manage the subject (its own unit), for evaluation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from backend.api.deps import DB, Audit, ClockDep, CurrentUser, SubjectManage
from backend.api.models_research import OutcomeCreate, OutcomePublic
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
