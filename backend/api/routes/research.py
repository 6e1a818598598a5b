"""Evaluation: a unit's cohort under pseudonymous ids (JSON), and the same rows as CSV, for
its researchers and supervisors (docs/api.md, "Evaluation"). No name, reference, date of
birth, position or zone leaves here (backend/services/research.py). Each read is recorded
in the audit log with the subjects it covers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status

from backend import csv_cells
from backend.api.deps import Audit, ClockDep, CohortReader, Context
from backend.api.models_research import Cohort
from backend.bounds import LATEST_S
from backend.security import roles
from backend.services import research

router = APIRouter(prefix="/api/research", tags=["research"])

Start = Annotated[int, Query(alias="from", ge=0, lt=LATEST_S, description="Unix s")]
End = Annotated[int, Query(alias="to", ge=0, lt=LATEST_S, description="Unix s")]


def _cohort(
    user: CohortReader, ctx: Context, clock: ClockDep, log: Audit, start: int, end: int,
    action: str,
) -> dict[str, Any]:  # fmt: skip
    with ctx.engine.connect() as conn:
        try:
            found = research.cohort(conn, ctx.research_key, user.unit_id, start, end, clock.now())
        except ValueError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from e
    log.record(
        action,
        subject_ids=found["subject_ids"] or None,
        scope=roles.REPORTS,
        detail={"from": start, "to": end, "rows": len(found["rows"])},
    )
    return found


@router.get("/cohort", response_model=Cohort, response_model_by_alias=True)
def cohort(
    user: CohortReader, ctx: Context, clock: ClockDep, log: Audit, start: Start, end: End
) -> Any:
    """The caller's unit's subjects monitored in the period (at most 92 days): per
    pseudonymous id, wear days, curfew nights kept and broken, zone events, alerts by type
    and outcome, recorded outcomes; aggregate counts below 5 are null, and no rows are given
    for a cohort smaller than 5. Researchers and supervisors; audited (research.cohort)."""
    return _cohort(user, ctx, clock, log, start, end, "research.cohort")


@router.get("/export.csv", responses={200: {"content": {"text/csv": {}}}})
def export(
    user: CohortReader, ctx: Context, clock: ClockDep, log: Audit, start: Start, end: End
) -> Response:
    """The cohort's rows as CSV: a column per zone event type, alert type and alert outcome,
    the outcomes joined by ";". Audited (research.export)."""
    found = _cohort(user, ctx, clock, log, start, end, "research.export")
    rows, columns = research.flat(found["rows"])
    return Response(
        csv_cells.table(rows, columns),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="cohort.csv"'},
    )
