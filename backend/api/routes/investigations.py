"""Crime-scene correlation: who was in a place during a time window (ad hoc or a batch of
incidents from a file), and where a named subject was instead (docs/investigations.md).

Every query states a purpose (the `purpose` query parameter) and a reference, searches only
subjects the caller may see with the trail scope (`visible_subjects("trail")` — partners see
those shared with them for their trail, administrators and auditors are refused), and is
audited with its parameters and the subjects it returned, those seen through a share listed
as disclosed; each subject returned is also recorded as a consultation of its trail
(read.trail, or disclose.trail through a share), as every other trail read is."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile, status
from sqlalchemy import Engine

from backend.api.deps import (
    PURPOSE_MAX,
    PURPOSE_MIN,
    Audit,
    EngineDep,
    Investigator,
    SubjectTrail,
    User,
    Visible,
    visible_subjects,
)
from backend.investigations import incidents as inc
from backend.investigations.area import Area, AreaError
from backend.investigations.correlate import Params, SubjectHit, correlate, whereabouts
from backend.investigations.evidence import subject_names
from backend.investigations.models import (
    BatchResult,
    CorrelationQuery,
    CorrelationResult,
    HitOut,
    IncidentError,
    IncidentResult,
    Options,
    WhereaboutsQuery,
    WhereaboutsResult,
)
from backend.security import roles

router = APIRouter(prefix="/api/investigations", tags=["investigations"])

VisibleTrail = Annotated[Visible, Depends(visible_subjects(roles.TRAIL))]
Purpose = Annotated[
    str,
    Query(
        min_length=PURPOSE_MIN,
        max_length=PURPOSE_MAX,
        description="why this query is made (recorded in the audit log)",
    ),
]
# A batch file is read whole; the API's request limit (TAGWATCH_MAX_REQUEST_BYTES) bounds it.
MAX_FILE_BYTES = 1_000_000


def _area(q: CorrelationQuery | WhereaboutsQuery) -> Area:
    try:
        return q.area()
    except AreaError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from e


def _check_window(start: int, end: int) -> None:
    if end <= start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "`to` must be after `from`")
    if end - start > 7 * 86400:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "the window may be at most 7 days"
        )


def _hit(h: SubjectHit) -> HitOut:
    return HitOut.model_validate(h.as_dict())


def _disclosed(engine: Engine, user: User, ids: set[int]) -> list[int]:
    """Subjects among `ids` seen through a share: each is a disclosure to the caller's unit."""
    with engine.connect() as conn:
        names = subject_names(conn, ids)
    return sorted(s for s, (_, _, unit) in names.items() if unit != user.unit_id)


@router.post("/correlate", response_model=CorrelationResult, response_model_by_alias=True)
def correlate_place(
    body: CorrelationQuery,
    purpose: Purpose,
    user: Investigator,
    visible: VisibleTrail,
    engine: EngineDep,
    log: Audit,
) -> dict[str, Any]:
    """Every subject the caller may see (trail scope) whose fixes, interpolated path or home
    presence put them **within** or **possibly within** the place during the window, with
    the closest approach (time, distance, accuracy, the fixes behind it), time inside, and
    the path through the window. Nearest and surest first. At most 7 days per query."""
    area = _area(body)
    _check_window(body.start, body.end)
    p = body.options.params()
    with engine.connect() as conn:
        hits = correlate(conn, area, body.start, body.end, p, visible=visible.ids)
    ids = {h.subject_id for h in hits}
    audit_id = log.record(
        "investigation.correlate",
        subject_ids=sorted(ids),
        scope=roles.TRAIL,
        purpose=purpose,
        detail={
            "reference": body.reference,
            "area": area.describe(),
            "from": body.start,
            "to": body.end,
            "options": body.options.model_dump(),
            "results": [{"subject_id": h.subject_id, "status": h.status} for h in hits],
            "disclosed": _disclosed(engine, user, ids),
        },
    )
    log.consulted(roles.TRAIL, ids, {"via": "correlation", "record": audit_id}, log.clock.now())
    return {
        "reference": body.reference,
        "purpose": purpose,
        "area": area.describe(),
        "start": body.start,
        "end": body.end,
        "options": body.options,
        "count": len(hits),
        "hits": [_hit(h) for h in hits],
        "audit_id": audit_id,
    }


@router.post("/batch", response_model=BatchResult, response_model_by_alias=True)
def correlate_batch(
    file: Annotated[UploadFile, File(description="incidents: CSV or GeoJSON")],
    purpose: Purpose,
    reference: Annotated[
        str, Query(min_length=1, max_length=100, description="the batch's reference")
    ],
    user: Investigator,
    visible: VisibleTrail,
    engine: EngineDep,
    log: Audit,
    k: Annotated[float, Query(ge=0, le=5, description="accuracy multiplier")] = 1.0,
    max_gap_s: Annotated[int, Query(ge=0, le=7200)] = 900,
) -> dict[str, Any]:
    """The daily crime-data run: a file of incidents (reference, place, radius, window) —
    CSV with a header `reference,lat,lon,radius_m,from,to`, or a GeoJSON FeatureCollection
    (Point + `radius_m`, or Polygon; properties `reference`, `from`, `to`) — gives the hits
    per incident. Bad rows are reported by CSV line number (or GeoJSON feature number) with
    the reason; the good rows still run. One audit record for the run."""
    data = file.file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the incident file is too large")
    try:
        fmt, incidents, problems = inc.parse(data, file.filename or "")
    except inc.IncidentFileError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from e
    options = Options(k=k, max_gap_s=max_gap_s)
    p: Params = options.params()
    results: list[dict[str, Any]] = []
    seen: set[int] = set()
    with engine.connect() as conn:
        for incident in incidents:
            hits = correlate(conn, incident.area, incident.start, incident.end, p, visible.ids)
            seen |= {h.subject_id for h in hits}
            results.append(
                {
                    "at": incident.at,
                    "reference": incident.reference,
                    "area": incident.area.describe(),
                    "start": incident.start,
                    "end": incident.end,
                    "count": len(hits),
                    "hits": [_hit(h) for h in hits],
                }
            )
    errors = [IncidentError(at=e.at, line=e.line, feature=e.feature, reason=e.reason)
              for e in problems]  # fmt: skip
    audit_id = log.record(
        "investigation.batch",
        subject_ids=sorted(seen),
        scope=roles.TRAIL,
        purpose=purpose,
        detail={
            "reference": reference,
            "file": {"name": (file.filename or "")[:200], "format": fmt, "bytes": len(data)},
            "options": options.model_dump(),
            "incidents": [
                {"at": r["at"], "reference": r["reference"], "area": r["area"],
                 "from": r["start"], "to": r["end"],
                 "subject_ids": [h.subject_id for h in r["hits"]]}
                for r in results
            ],
            "errors": len(errors),
            "disclosed": _disclosed(engine, user, seen),
        },
    )  # fmt: skip
    log.consulted(roles.TRAIL, seen, {"via": "correlation batch", "record": audit_id},
                  log.clock.now())  # fmt: skip
    return {
        "reference": reference,
        "purpose": purpose,
        "format": fmt,
        "incidents": [IncidentResult.model_validate(r) for r in results],
        "errors": errors,
        "subjects": len(seen),
        "audit_id": audit_id,
    }


@router.post(
    "/subjects/{subject_id}/whereabouts",
    response_model=WhereaboutsResult,
    response_model_by_alias=True,
)
def subject_whereabouts(
    subject: SubjectTrail,
    body: WhereaboutsQuery,
    request: Request,
    log: Audit,
    engine: EngineDep,
) -> dict[str, Any]:
    """The exculpatory answer for one subject: were they in the place during the window,
    and where were they instead — the closest approach, every fix in the window with its
    distance to the place, the fixes bracketing the window, home stays, and how much of the
    window the evidence covers (its gaps). Needs the trail scope; the purpose is recorded."""
    area = _area(body)
    _check_window(body.start, body.end)
    with engine.connect() as conn:
        w = whereabouts(conn, subject.id, area, body.start, body.end, body.options.params())
    audit_id = log.record(
        "investigation.whereabouts",
        subject_ids=[subject.id],
        scope=roles.TRAIL,
        # The guard validated and recorded it (read.trail); this record carries it too.
        purpose=request.query_params.get("purpose"),
        detail={
            "reference": body.reference,
            "area": area.describe(),
            "from": body.start,
            "to": body.end,
            "options": body.options.model_dump(),
            "status": w.status,
            "coverage": w.coverage,
            "owner": subject.owner,
        },
    )
    return {**w.as_dict(), "reference": subject.reference, "audit_id": audit_id}
