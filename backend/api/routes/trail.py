"""A subject's trail as GeoJSON: one Point Feature per fix and a LineString of the path.
The trail guard records the read with its stated purpose."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import DB, ClockDep, SubjectTrail, WindowFrom, WindowTo
from backend.api.models_monitoring import FeatureCollection
from backend.services import trail

router = APIRouter(prefix="/api/subjects", tags=["subjects"])


@router.get("/{subject_id}/trail", response_model=FeatureCollection)
def get_trail(
    subject: SubjectTrail,
    db: DB,
    clock: ClockDep,
    start: WindowFrom = None,
    end: WindowTo = None,
) -> FeatureCollection:
    """The subject's positions in [from, to] as GeoJSON: one Point Feature per fix (time,
    accuracy, device) and a LineString of the path. At most 31 days per request. The read
    is audited with its stated purpose (the `purpose` query parameter)."""
    start, end = trail.window(start, end, clock.now())
    feats: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]},
            "properties": {
                "t": p.t,
                "accuracy_m": p.accuracy_m,
                "device": p.device,
                "source": p.source,
            },
        }
        for p in trail.points(db, subject.id, start, end)
    ]
    if len(feats) >= 2:
        feats.append(
            {
                "type": "Feature",
                "geometry": {
                    "type": "LineString",
                    "coordinates": [f["geometry"]["coordinates"] for f in feats],
                },
                "properties": {"kind": "path"},
            }
        )
    return FeatureCollection(features=feats)
