"""Evidence exports of one subject: the trail for a time range as GeoJSON, GPX and KML and
the device events and alerts as CSV, in a zip with manifest.json (who, when, why, the query,
row counts, SHA-256 of each file). docs/investigations.md, "Exports".

The trail guard (`subject_scope("trail")`) authorizes it and records the consultation with
its required purpose; the export itself is then recorded (`export.create`) with the query
and the files' hashes, in the same transaction that serves it. Alerts are included only when
the caller also has the alerts scope on the subject (a share may grant trail alone).

A subject access request (the wearer's own data) is the same bundle over the whole period
any device served them, plus their enrolments (backend/services/subject_access.py), for the
owning unit (manage scope), recorded as `disclose.subject_access`."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from backend.api.deps import Audit, ClockDep, CurrentUser, EngineDep, SubjectManage, SubjectTrail
from backend.bounds import LATEST_S
from backend.investigations import exports as ex
from backend.security import roles
from backend.services import subject_access as sa

router = APIRouter(prefix="/api/exports", tags=["exports"])

MAX_RANGE_S = 31 * 86400


@router.get(
    "/subjects/{subject_id}/evidence.zip",
    response_class=Response,
    responses={
        200: {
            "content": {"application/zip": {}},
            "description": "a zip: the requested files and manifest.json",
        }
    },
    # The scope the guard needs, for clients that offer the export (docs/web.md).
    openapi_extra={"x-scope": roles.TRAIL},
)
def export_subject(
    subject: SubjectTrail,
    user: CurrentUser,
    request: Request,
    engine: EngineDep,
    clock: ClockDep,
    log: Audit,
    start: Annotated[int, Query(alias="from", ge=0, lt=LATEST_S, description="Unix s")],
    end: Annotated[int, Query(alias="to", ge=0, lt=LATEST_S, description="Unix s")],
    reference: Annotated[
        str, Query(min_length=1, max_length=100, description="case or request reference")
    ],
    include: Annotated[
        str,
        Query(
            max_length=100,
            description="comma-separated subset of geojson, gpx, kml, events, alerts",
        ),
    ] = ",".join(ex.FORMATS),
) -> Response:
    """The subject's evidence bundle for [from, to] (at most 31 days). The manifest names
    who exported it, when, why (`purpose`), the query, each file's row count and SHA-256,
    and the audit record that holds the same hashes. Needs the trail scope."""
    if end <= start or end - start > MAX_RANGE_S:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "`to` must be after `from`, at most 31 days"
        )
    wanted = [f.strip() for f in include.split(",") if f.strip()]
    unknown = sorted(set(wanted) - set(ex.FORMATS))
    if unknown or not wanted:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"include must name some of {', '.join(ex.FORMATS)}",
        )
    omitted = []
    if "alerts" in wanted and not subject.can(roles.ALERTS):
        wanted.remove("alerts")
        omitted.append({"file": "alerts", "reason": "no alerts scope on this subject"})
    now = clock.now()
    purpose = request.query_params.get("purpose", "")
    meta: dict[str, Any] = {
        "subject_id": subject.id,
        "subject_reference": subject.reference,
        "exported_by": {"user_id": user.id, "username": user.username, "unit_id": user.unit_id},
        "exported_at": now,
        "exported_at_utc": ex.iso(now),
        "purpose": purpose,
        "reference": reference,
        "from": start,
        "to": end,
        "from_utc": ex.iso(start),
        "to_utc": ex.iso(end),
        "include": wanted,
        "omitted": omitted,
        "disclosure": not subject.owner,
    }
    with engine.connect() as conn:
        files = ex.build_files(conn, subject.id, start, end, wanted, meta)
    audit_id = log.record(
        "export.create",
        subject_ids=[subject.id],
        scope=roles.TRAIL,
        purpose=purpose,
        detail={
            "reference": reference,
            "from": start,
            "to": end,
            "files": [f.entry() for f in files],
            "omitted": omitted,
            "owner": subject.owner,
        },
    )
    return _bundle(files, meta, audit_id, now, f"{subject.reference}-{start}-{end}")


def _bundle(
    files: list[ex.ExportFile], meta: dict[str, Any], audit_id: int, now: float, stem: str
) -> Response:
    """The zip with its manifest, named for `stem`, with the evidence headers (the bundle's
    SHA-256 and the audit record that holds the files' hashes)."""
    data = ex.bundle(files, ex.manifest(files, meta, audit_id), now)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", stem)[:80] + ".zip"
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Bundle-SHA256": ex.sha256(data),
            "X-Audit-Id": str(audit_id),
        },
    )


@router.get(
    "/subjects/{subject_id}/subject-access.zip",
    response_class=Response,
    responses={
        200: {
            "content": {"application/zip": {}},
            "description": "a zip: every file of the wearer's data and manifest.json",
        }
    },
    openapi_extra={"x-scope": roles.MANAGE},
)
def export_subject_access(
    subject: SubjectManage,
    user: CurrentUser,
    engine: EngineDep,
    clock: ClockDep,
    log: Audit,
    reference: Annotated[
        str, Query(min_length=1, max_length=100, description="the subject access request")
    ],
) -> Response:
    """A subject access request: everything held about the wearer from the devices that
    served them (trail, device events, alerts) and their enrolments and consent, over the
    whole time any device served them, in the evidence bundle with its hash manifest.
    Recorded as a disclosure to the data subject. Needs the manage scope (the owning unit)."""
    now = clock.now()
    with engine.connect() as conn:
        start, end = sa.period(conn, subject.id, now)
        meta: dict[str, Any] = {
            "kind": "subject_access",
            "subject_id": subject.id,
            "subject_reference": subject.reference,
            "exported_by": {"user_id": user.id, "username": user.username,
                            "unit_id": user.unit_id},
            "exported_at": now,
            "exported_at_utc": ex.iso(now),
            "purpose": "subject access request",
            "reference": reference,
            "from": start,
            "to": end,
            "from_utc": ex.iso(start),
            "to_utc": ex.iso(end),
            "disclosure": True,
            "recipient": "the data subject",
        }  # fmt: skip
        files = sa.build(conn, subject.id, start, end, meta)
    audit_id = log.record(
        "disclose.subject_access",
        subject_ids=[subject.id],
        scope=roles.MANAGE,
        purpose="subject access request",
        detail={
            "reference": reference,
            "recipient": "the data subject",
            "from": start,
            "to": end,
            "files": [f.entry() for f in files],
        },
    )
    return _bundle(files, meta, audit_id, now, f"{subject.reference}-subject-access")
