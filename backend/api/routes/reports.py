"""Reports: a subject's compliance over a period (JSON, printable HTML, CSV), a unit's
caseload summary, and fleet health for operators (docs/investigations.md, "Reports").

Separation of duties (docs/security.md): compliance and caseload reports are subject data
(the reports scope: `subject_scope("reports")`, `visible_subjects("reports")`); fleet health
is device data — administrators see every device and no subject, supervisors and officers
see the devices their unit's subjects wear, with the subject id."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from backend.api.deps import (
    Audit,
    ClockDep,
    EngineDep,
    Fleet,
    Investigator,
    SubjectReports,
    Visible,
    visible_subjects,
)
from backend.bounds import LATEST_S
from backend.investigations import reports as rp
from backend.investigations.models import CaseloadRow, ComplianceOut, FleetRow
from backend.security import roles
from backend.services import units

router = APIRouter(prefix="/api/reports", tags=["reports"])

Format = Annotated[
    Literal["json", "html", "csv"], Query(description="json, printable html, or csv")
]
Start = Annotated[int, Query(alias="from", ge=0, lt=LATEST_S, description="Unix s")]
End = Annotated[int, Query(alias="to", ge=0, lt=LATEST_S, description="Unix s")]
VisibleReports = Annotated[Visible, Depends(visible_subjects(roles.REPORTS))]
_DOC: dict[int | str, dict[str, Any]] = {200: {"content": {"text/html": {}, "text/csv": {}}}}


def _period(start: int, end: int) -> None:
    try:
        rp.check_period(start, end)
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from e


def _file(body: str | bytes, fmt: str, name: str) -> Response:
    media = "text/html; charset=utf-8" if fmt == "html" else "text/csv; charset=utf-8"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80]
    # An attachment: the API's Content-Security-Policy forbids styles, a saved file has none.
    return Response(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{safe}"'}
    )


@router.get(
    "/subjects/{subject_id}/compliance",
    response_model=ComplianceOut,
    response_model_by_alias=True,
    responses=_DOC,
    openapi_extra={"x-scope": roles.REPORTS},  # the guard's scope, for clients (docs/web.md)
)
def compliance_report(
    subject: SubjectReports,
    engine: EngineDep,
    clock: ClockDep,
    start: Start,
    end: End,
    format: Format = "json",
    fix_interval_s: Annotated[
        int, Query(ge=5, le=3600, description="expected fix interval while away from home")
    ] = 60,
) -> Any:
    """Curfew nights kept/broken with minutes away, zone events, tamper and battery events,
    charging compliance per local day, data completeness (expected vs received fixes, frames
    by sequence number), alerts by outcome. At most 92 days. Needs the reports scope."""
    _period(start, end)
    with engine.connect() as conn:
        rep = rp.compliance(conn, subject.id, start, end, clock.now(), fix_interval_s)
    name = f"compliance-{subject.reference}-{start}-{end}.{format}"
    if format == "html":
        return _file(rp.compliance_html(rep), "html", name)
    if format == "csv":
        return _file(rp.compliance_csv(rep), "csv", name)
    return ComplianceOut.model_validate(rep.as_dict())


@router.get(
    "/caseload", response_model=list[CaseloadRow], responses=_DOC, response_model_by_alias=True
)
def caseload_report(
    user: Investigator,
    visible: VisibleReports,
    engine: EngineDep,
    clock: ClockDep,
    log: Audit,
    start: Start,
    end: End,
    format: Format = "json",
) -> Any:
    """One row per subject the caller's unit may report on (its own, and those shared with
    it for reports): curfew, zones, tamper, charging, completeness, open alerts, last
    contact over the period. At most 92 days. Recorded per subject (read.reports, or
    disclose.reports through a share)."""
    _period(start, end)
    now = clock.now()
    with engine.connect() as conn:
        rows = rp.caseload(conn, visible.ids, user.unit_id, start, end, now)
        unit = units.name_of(conn, user.unit_id)
    report_id = log.record(
        "report.caseload",
        subject_ids=[r["subject_id"] for r in rows],
        scope=roles.REPORTS,
        detail={"from": start, "to": end, "format": format,
                "disclosed": [r["subject_id"] for r in rows if not r["owned"]]},
    )  # fmt: skip
    log.consulted(
        roles.REPORTS, (r["subject_id"] for r in rows), {"via": "caseload", "record": report_id},
        now,
    )  # fmt: skip
    if format == "html":
        return _file(rp.caseload_html(rows, unit or "", start, end, now), "html", "caseload.html")
    if format == "csv":
        return _file(rp.table_csv(rows, rp.CASELOAD_COLUMNS), "csv", "caseload.csv")
    return [CaseloadRow.model_validate(r) for r in rows]


@router.get("/fleet", response_model=list[FleetRow], responses=_DOC)
def fleet_report(
    fleet: Fleet,
    engine: EngineDep,
    clock: ClockDep,
    log: Audit,
    format: Format = "json",
    offline_after_s: Annotated[
        int, Query(ge=60, le=7 * 86400, description="silent this long: offline")
    ] = 7200,
) -> Any:
    """Fleet health: every device's last contact, battery, firmware version, flash buffer
    fill, and home units offline. Administrators (operators) get every device and no
    subject data; supervisors and officers get their unit's subjects' devices."""
    now = clock.now()
    with engine.connect() as conn:
        if fleet.subjects is None:
            owners: dict[int, int] = {}
            rows = rp.fleet(conn, now, None, offline_after_s)
        else:
            owners = rp.fleet_devices_of(conn, fleet.subjects.ids, now)
            rows = rp.fleet(conn, now, sorted(owners), offline_after_s)
    for r in rows:
        if owners:
            r["subject_id"] = owners.get(r["device"])
    log.record(
        "report.fleet",
        subject_ids=sorted(set(owners.values())) or None,
        detail={"devices": len(rows), "format": format},
    )
    if format == "html":
        return _file(rp.fleet_html(rows, now, offline_after_s), "html", "fleet.html")
    if format == "csv":
        return _file(rp.table_csv(rows, rp.FLEET_COLUMNS), "csv", "fleet.csv")
    return [FleetRow.model_validate(r) for r in rows]
