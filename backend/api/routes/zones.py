"""A subject's zones as GeoJSON: read with the conditions scope, changed with manage; and the
zone preview (the zone rule run over the subject's recent fixes for a zone being drawn),
which reads the trail."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, status

from backend.api.deps import (
    DB,
    Audit,
    ClockDep,
    SubjectConditions,
    SubjectManage,
    SubjectTrail,
    ZoneManage,
)
from backend.api.models_monitoring import (
    FeatureCollection,
    PreviewEpisode,
    PreviewFix,
    ZoneFeature,
    ZoneFeatureCreate,
    ZonePreviewRequest,
    ZonePreviewResult,
    ZoneUpdate,
    zone_feature,
)
from backend.security import roles
from backend.services import trail, zone_preview, zones

router = APIRouter(prefix="/api", tags=["subjects"])


@router.get("/subjects/{subject_id}/zones", response_model=FeatureCollection)
def list_zones(subject: SubjectConditions, db: DB) -> FeatureCollection:
    """The subject's zones as a GeoJSON FeatureCollection."""
    return FeatureCollection(features=[zone_feature(r) for r in zones.of_subject(db, subject.id)])


@router.post(
    "/subjects/{subject_id}/zones", response_model=ZoneFeature, status_code=status.HTTP_201_CREATED
)
def create_zone(
    subject: SubjectManage, body: ZoneFeatureCreate, db: DB, clock: ClockDep, log: Audit
) -> dict[str, Any]:
    """A zone as a GeoJSON Feature: Point + radius_m (circle), Polygon, or LineString +
    width_m (corridor); kind inclusion, exclusion or home; buffer_m for a victim's address."""
    row = zones.create(db, subject.id, body.stored(), clock.now())
    log.record("zone.create", subject_ids=[subject.id], scope=roles.MANAGE, detail={"id": row.id})
    return zone_feature(row)


@router.patch("/zones/{zone_id}", response_model=ZoneFeature)
def update_zone(
    obj: ZoneManage, body: ZoneUpdate, db: DB, clock: ClockDep, log: Audit
) -> dict[str, Any]:
    """Change the fields sent; `null` clears the schedule (always active) and the dwell (the
    rule's default)."""
    changes = body.changes()
    row = zones.update_zone(db, obj.subject.id, obj.object_id, changes, clock.now())
    log.record(
        "zone.update",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id, "fields": sorted(changes)},
    )
    return zone_feature(row)


@router.delete("/zones/{zone_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_zone(obj: ZoneManage, db: DB, clock: ClockDep, log: Audit) -> None:
    zones.remove(db, obj.subject.id, obj.object_id, clock.now())
    log.record(
        "zone.delete",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id},
    )


@router.post(
    "/web/subjects/{subject_id}/zone-preview", response_model=ZonePreviewResult, tags=["web"]
)
def preview_zone(
    subject: SubjectTrail, body: ZonePreviewRequest, db: DB, clock: ClockDep
) -> ZonePreviewResult:
    """What the zone rule would have found for the drawn zone over the subject's fixes in
    the window (docs/web.md). Reads the trail: `purpose` required."""
    now = clock.now()
    start, end = trail.window(body.start, body.end, now)
    found = zone_preview.preview(
        db, subject.id, body.zone.to_spec(zone_preview.DRAWN), start, end, now
    )
    return ZonePreviewResult(
        checked=found.checked,
        dwell_s=found.dwell_s,
        fixes=[PreviewFix.model_validate(asdict(f)) for f in found.fixes],
        episodes=[PreviewEpisode.model_validate(asdict(e)) for e in found.episodes],
    )
