"""Evaluation: a unit's cohort under pseudonymous ids (JSON), and the same rows as CSV or
Parquet, for
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
PARQUET = "application/vnd.apache.parquet"  # registered with IANA in 2024

Start = Annotated[int, Query(alias="from", ge=0, lt=LATEST_S, description="Unix s")]
End = Annotated[int, Query(alias="to", ge=0, lt=LATEST_S, description="Unix s")]


def _cohort(
    user: CohortReader, ctx: Context, clock: ClockDep, log: Audit, start: int, end: int,
    action: str, fmt: str | None = None,
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
        detail={"from": start, "to": end, "rows": len(found["rows"])}
        | ({"format": fmt} if fmt else {}),
    )
    return found


@router.get("/cohort", response_model=Cohort, response_model_by_alias=True)
def cohort(
    user: CohortReader, ctx: Context, clock: ClockDep, log: Audit, start: Start, end: End
) -> Any:
    """The caller's unit's subjects monitored in the period (at most 92 days): per
    pseudonymous id, wear days, curfew nights kept and broken, zone events, alerts by type
    and outcome, recorded outcomes; the totals, and the same week by week. Aggregate counts
    below 5 are null; a cohort smaller than 5 gets no rows and no totals, a week with fewer
    than 5 wearers no figures. Researchers and supervisors; audited (research.cohort)."""
    return _cohort(user, ctx, clock, log, start, end, "research.cohort")


def _export(
    user: CohortReader, ctx: Context, clock: ClockDep, log: Audit, start: int, end: int,
    fmt: str,
) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
    found = _cohort(user, ctx, clock, log, start, end, "research.export", fmt)
    return research.flat(found["rows"])


def _attachment(body: bytes | str, media_type: str, name: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/export.csv", responses={200: {"content": {"text/csv": {}}}})
def export(
    user: CohortReader, ctx: Context, clock: ClockDep, log: Audit, start: Start, end: End
) -> Response:
    """The cohort's rows as CSV: a column per zone event type, alert type and alert outcome,
    the outcomes joined by ";". Audited (research.export)."""
    rows, columns = _export(user, ctx, clock, log, start, end, "csv")
    return _attachment(csv_cells.table(rows, columns), "text/csv; charset=utf-8", "cohort.csv")


@router.get("/export.parquet", responses={200: {"content": {PARQUET: {}}}})
def export_parquet(
    user: CohortReader, ctx: Context, clock: ClockDep, log: Audit, start: Start, end: End
) -> Response:
    """The same rows and columns as the CSV as an Apache Parquet file (`pid` and `outcomes`
    text, `wear_days` a float, counts 64-bit integers). Audited (research.export)."""
    rows, columns = _export(user, ctx, clock, log, start, end, "parquet")
    return _attachment(research.parquet(rows, columns), PARQUET, "cohort.parquet")
