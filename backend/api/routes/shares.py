"""Shares: a supervisor shares its unit's subject with another unit, for some scopes, a
purpose and until an expiry; the other unit's users see it from then on, every use audited
as a disclosure. The owning unit's supervisor ends it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import (
    DB,
    Audit,
    ClockDep,
    CurrentUser,
    ShareRead,
    ShareRevoke,
    SubjectManage,
    SubjectShare,
)
from backend.security import roles
from backend.services import shares

router = APIRouter(prefix="/api", tags=["shares"])

# The schema spells the shareable scopes out for OpenAPI; roles.SHAREABLE is the definition
# (tests/backend/api/test_access.py checks they agree).
Scope = Literal["live", "trail", "alerts", "reports", "conditions"]


class ShareCreate(BaseModel):
    model_config = ConfigDict(strict=True)  # JSON true is not 1, nor 1 true

    unit_id: int = Field(ge=1, le=2**62, description="the unit the subject is shared with")
    scopes: list[Scope] = Field(min_length=1, max_length=4)
    purpose: str = Field(min_length=3, max_length=500)
    expires_at: float = Field(gt=0, lt=1e11, description="Unix seconds")


class SharePublic(BaseModel):
    id: int
    subject_id: int
    owner_unit_id: int
    unit_id: int
    scopes: list[str]
    purpose: str
    created_by: int
    created_at: float
    expires_at: float
    revoked_at: float | None
    active: bool


def _public(r: Any, now: float) -> SharePublic:
    return SharePublic(
        id=r.id,
        subject_id=r.subject_id,
        owner_unit_id=r.owner_unit_id,
        unit_id=r.unit_id,
        scopes=sorted(roles.parse_scopes(r.scopes)),
        purpose=r.purpose,
        created_by=r.created_by,
        created_at=r.created_at,
        expires_at=r.expires_at,
        revoked_at=r.revoked_at,
        active=r.revoked_at is None and r.expires_at > now,
    )


@router.get("/subjects/{subject_id}/shares", response_model=list[SharePublic])
def list_subject_shares(subject: SubjectManage, db: DB, clock: ClockDep) -> list[SharePublic]:
    """Shares of one subject (its owning unit only)."""
    now = clock.now()
    return [_public(r, now) for r in shares.of_subject(db, subject.id)]


@router.post(
    "/subjects/{subject_id}/shares",
    response_model=SharePublic,
    status_code=status.HTTP_201_CREATED,
)
def create_share(
    subject: SubjectShare, body: ShareCreate, user: CurrentUser, db: DB, clock: ClockDep, log: Audit
) -> SharePublic:
    """Share a subject with another unit (supervisors of the owning unit). Every use of
    the share is then recorded as a disclosure."""
    now = clock.now()
    share_id = shares.create(
        db,
        subject_id=subject.id,
        unit_id=body.unit_id,
        scopes=frozenset(body.scopes),
        purpose=body.purpose,
        expires_at=body.expires_at,
        created_by=user.id,
        now=now,
    )
    log.record(
        "share.create",
        subject_ids=[subject.id],
        purpose=body.purpose,
        detail={"share_id": share_id, "to_unit_id": body.unit_id,
                "scopes": sorted(body.scopes), "expires_at": body.expires_at},
    )  # fmt: skip
    return _public(shares.get(db, share_id), now)


@router.get("/shares", response_model=list[SharePublic])
def list_shares(
    user: CurrentUser,
    db: DB,
    clock: ClockDep,
    active: Annotated[bool, Query(description="only unrevoked, unexpired shares")] = True,
) -> list[SharePublic]:
    """Shares the caller's unit gave (supervisors, officers) or received."""
    now = clock.now()
    return [_public(r, now) for r in shares.visible_to(db, user, now, active)]


@router.get("/shares/{share_id}", response_model=SharePublic)
def get_share(share_id: ShareRead, db: DB, clock: ClockDep) -> SharePublic:
    return _public(shares.get(db, share_id), clock.now())


@router.delete("/shares/{share_id}", response_model=SharePublic)
def revoke_share(share_id: ShareRevoke, db: DB, clock: ClockDep, log: Audit) -> SharePublic:
    """Revoke a share (supervisors of the owning unit); the other unit loses access at once."""
    now = clock.now()
    shares.revoke(db, share_id, now)
    row = shares.get(db, share_id)
    log.record(
        "share.revoke",
        subject_ids=[row.subject_id],
        detail={"share_id": share_id, "to_unit_id": row.unit_id},
    )
    return _public(row, now)
