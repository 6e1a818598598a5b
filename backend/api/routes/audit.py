"""The audit log, for auditors only: search, CSV export and chain verification. Reading the
log is itself recorded in it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from backend.api.deps import Audit, AuditReader, EngineDep
from backend.services import audit_log

router = APIRouter(prefix="/api/audit", tags=["audit"])

MAX_PAGE = 1000


class AuditRecord(BaseModel):
    id: int
    at: float
    actor: str
    action: str
    detail: dict[str, Any]
    user_id: int | None
    unit_id: int | None
    subject_ids: list[int] | None
    subject_references: list[str] | None = None  # the subjects' references, for people
    scope: str | None
    purpose: str | None
    request_id: str | None
    prev_hash: str | None
    hash: str | None


class AuditPage(BaseModel):
    records: list[AuditRecord]
    next_after_id: int | None


class VerificationPublic(BaseModel):
    ok: bool
    checked: int
    head: str
    first_bad_id: int | None
    reason: str


def filters(
    since: Annotated[float | None, Query(ge=0, lt=1e11)] = None,
    until: Annotated[float | None, Query(ge=0, lt=1e11)] = None,
    user_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    unit_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    subject_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    action: Annotated[str | None, Query(max_length=64, description="prefix")] = None,
    actor: Annotated[str | None, Query(max_length=64, description="username")] = None,
    subject: Annotated[str | None, Query(max_length=64, description="subject reference")] = None,
) -> audit_log.Query:
    """Query filters shared by search and export."""
    return audit_log.Query(since, until, user_id, unit_id, subject_id, action, actor, subject)


Filters = Annotated[audit_log.Query, Depends(filters)]


@router.get("", response_model=AuditPage)
def search(
    auditor: AuditReader,
    query: Filters,
    engine: EngineDep,
    log: Audit,
    after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> AuditPage:
    log.record("audit.read", detail={"filters": query.described(), "after_id": after_id})
    with engine.connect() as conn:
        found = [AuditRecord(**r) for r in audit_log.search(conn, query, after_id, limit)]
    return AuditPage(records=found, next_after_id=found[-1].id if len(found) >= limit else None)


@router.get(
    "/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "the matching records"}},
)
def export_csv(
    auditor: AuditReader, query: Filters, engine: EngineDep, log: Audit
) -> StreamingResponse:
    log.record("audit.export", detail={"filters": query.described()})
    return StreamingResponse(
        audit_log.export_csv(engine, query),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


@router.get("/verify", response_model=VerificationPublic)
def verify(auditor: AuditReader, engine: EngineDep, log: Audit) -> VerificationPublic:
    """Walk the whole hash chain; `first_bad_id` names the first record that was altered,
    inserted or whose predecessor was removed."""
    with engine.connect() as conn:
        v = audit_log.verify(conn)
    log.record("audit.verify", detail={"ok": v.ok, "checked": v.checked, "bad": v.first_bad_id})
    return VerificationPublic(**vars(v))
