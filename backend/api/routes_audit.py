"""The audit log, for auditors only: search, CSV export and chain verification. Reading the
log is itself recorded in it."""

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import Connection, Select, select

from backend.api.deps import Audit, EngineDep, User, require_role
from backend.security import audit, roles
from backend.storage.schema import audit_log, subjects

router = APIRouter(prefix="/api/audit", tags=["audit"])

Auditor_ = Annotated[User, Depends(require_role(roles.AUDITOR))]
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


class Filters:
    """Query filters shared by search and export."""

    def __init__(
        self,
        since: Annotated[float | None, Query(ge=0, lt=1e11)] = None,
        until: Annotated[float | None, Query(ge=0, lt=1e11)] = None,
        user_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        unit_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        subject_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        action: Annotated[str | None, Query(max_length=64, description="prefix")] = None,
        actor: Annotated[str | None, Query(max_length=64, description="username")] = None,
        subject: Annotated[
            str | None, Query(max_length=64, description="subject reference")
        ] = None,
    ) -> None:
        self.since = since
        self.until = until
        self.user_id = user_id
        self.unit_id = unit_id
        self.subject_id = subject_id
        self.action = action
        self.actor = actor
        self.subject = subject
        self.subject_ids: set[int] | None = None  # `subject` resolved (resolve())

    def resolve(self, conn: Connection) -> None:
        """A subject reference names subjects by id (references are unique per unit)."""
        if self.subject is not None:
            self.subject_ids = set(
                conn.execute(
                    select(subjects.c.id).where(subjects.c.reference == self.subject)
                ).scalars()
            )

    def query(self) -> Select[Any]:
        q = select(audit_log).order_by(audit_log.c.id)
        if self.since is not None:
            q = q.where(audit_log.c.at >= self.since)
        if self.until is not None:
            q = q.where(audit_log.c.at < self.until)
        if self.user_id is not None:
            q = q.where(audit_log.c.user_id == self.user_id)
        if self.unit_id is not None:
            q = q.where(audit_log.c.unit_id == self.unit_id)
        if self.action:
            q = q.where(audit_log.c.action.startswith(self.action, autoescape=True))
        if self.actor:
            q = q.where(audit_log.c.actor == self.actor)
        return q

    def keep(self, row: Any) -> bool:
        # subject_ids is a JSON list: filtered here, portably, rather than in SQL.
        ids = row["subject_ids"] or ()
        if self.subject_id is not None and self.subject_id not in ids:
            return False
        return self.subject_ids is None or bool(self.subject_ids.intersection(ids))

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None and k != "subject_ids"}


def _references(conn: Connection, rows: list[AuditRecord]) -> None:
    ids = {i for r in rows for i in (r.subject_ids or ())}
    if not ids:
        return
    refs = {
        r.id: r.reference
        for r in conn.execute(
            select(subjects.c.id, subjects.c.reference).where(subjects.c.id.in_(ids))
        )
    }
    for r in rows:
        if r.subject_ids:
            r.subject_references = [refs.get(i, f"#{i}") for i in r.subject_ids]


FiltersDep = Annotated[Filters, Depends()]


@router.get("", response_model=AuditPage)
def search(
    auditor: Auditor_,
    filters: FiltersDep,
    engine: EngineDep,
    log: Audit,
    after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> AuditPage:
    log.record("audit.read", detail={"filters": filters.as_dict(), "after_id": after_id})
    out: list[AuditRecord] = []
    with engine.connect() as conn:
        filters.resolve(conn)
        result = conn.execution_options(yield_per=500).execute(
            filters.query().where(audit_log.c.id > after_id)
        )
        for row in result.mappings():
            if filters.keep(row):
                out.append(AuditRecord(**row))
                if len(out) >= limit:
                    break
        result.close()
        _references(conn, out)
    return AuditPage(records=out, next_after_id=out[-1].id if len(out) >= limit else None)


@router.get(
    "/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "the matching records"}},
)
def export_csv(
    auditor: Auditor_, filters: FiltersDep, engine: EngineDep, log: Audit
) -> StreamingResponse:
    log.record("audit.export", detail={"filters": filters.as_dict()})

    def rows() -> Iterator[str]:
        # A connection of its own, read in chunks: the export may be long.
        with engine.connect() as conn:
            filters.resolve(conn)
            result = conn.execution_options(yield_per=1000).execute(filters.query())
            yield from audit.to_csv(r for r in result.mappings() if filters.keep(r))

    return StreamingResponse(
        rows(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


@router.get("/verify", response_model=VerificationPublic)
def verify(auditor: Auditor_, engine: EngineDep, log: Audit) -> VerificationPublic:
    """Walk the whole hash chain; `first_bad_id` names the first record that was altered,
    inserted or whose predecessor was removed."""
    with engine.connect() as conn:
        v = audit.verify(conn)
    log.record("audit.verify", detail={"ok": v.ok, "checked": v.checked, "bad": v.first_bad_id})
    return VerificationPublic(**vars(v))
