"""The live map (every visible subject's last position, presence, equipment and freshness,
and the zones of those whose conditions the caller may see) and the stream of new positions.
The live map shows a subject's zones (and its home unit's place, the home zone's centre)
only with the conditions scope: live alone is positions."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from backend.api import sse
from backend.api.deps import (
    DB,
    Audit,
    ClockDep,
    CurrentUser,
    EngineDep,
    StreamAccess,
    Visible,
    stream_access,
    visible_subjects,
)
from backend.api.models_monitoring import FeatureCollection, zone_feature
from backend.security import roles
from backend.services import live

router = APIRouter(prefix="/api/web/live", tags=["web"])

POLL_S = 0.5  # how often the position stream looks for new fixes

VisibleLive = Annotated[Visible, Depends(visible_subjects(roles.LIVE))]
VisibleConditions = Annotated[Visible, Depends(visible_subjects(roles.CONDITIONS))]
LiveStream = Annotated[StreamAccess, Depends(stream_access(roles.LIVE, "live stream"))]


class LivePosition(BaseModel):
    t: int = Field(description="event time, Unix s")
    lat: float
    lon: float
    accuracy_m: float
    source: Literal["gnss", "rf_home"]
    late: bool


class Presence(BaseModel):
    t: int | None
    at_home: bool
    home_unit: int


class HomeUnitPublic(BaseModel):
    device: int
    last_seen_at: float | None = Field(description="backend time of its last frame")
    lat: float | None = Field(
        description="the home zone's centre, if the subject has one and the caller may see "
        "its zones (the conditions scope)"
    )
    lon: float | None


class FreshnessPublic(BaseModel):
    mode: Literal["home", "moving", "resting", "unknown"] = Field(
        description="what the tag is doing, so what it is expected to send"
    )
    last_contact: int | None = Field(description="event time of the newest record, Unix s")
    expected_s: int = Field(description="the mode's reporting interval")
    late_after_s: int
    silent_after_s: int = Field(description="the comms-loss threshold")
    state: Literal["on_time", "late", "silent"] = Field(description="at the view's `now`")


class LiveSubject(BaseModel):
    id: int
    reference: str
    name: str
    unit_id: int
    owner: bool = Field(description="false: shared with the caller's unit")
    tag: int | None
    tag_last_seen_at: float | None
    position: LivePosition | None
    presence: Presence | None
    home_unit: HomeUnitPublic | None
    freshness: FreshnessPublic | None = Field(description="none without a tag fitted")


class LiveView(BaseModel):
    now: float = Field(description="backend clock, Unix s")
    subjects: list[LiveSubject]
    zones: FeatureCollection = Field(
        description="the zones of the listed subjects the caller may see with the conditions "
        "scope (a share for live positions alone shows none)"
    )


def _position(r: Any) -> dict[str, Any]:
    return {
        "t": r.ts,
        "lat": r.lat_e7 / 1e7,
        "lon": r.lon_e7 / 1e7,
        "accuracy_m": r.acc_dm / 10,
        "source": "rf_home" if r.source == 1 else "gnss",
        "late": bool(r.late),
    }


def _subject(s: live.LiveSubject) -> LiveSubject:
    a, unit = s.access, s.home_unit
    return LiveSubject(
        id=a.id,
        reference=a.reference,
        name=a.name,
        unit_id=a.unit_id,
        owner=a.owner,
        tag=s.tag.device if s.tag else None,
        tag_last_seen_at=s.tag.last_seen_at if s.tag else None,
        position=LivePosition.model_validate(_position(s.position)) if s.position else None,
        presence=Presence(
            t=s.presence.ts, at_home=s.presence.state == 1, home_unit=s.presence.home_unit
        )
        if s.presence
        else None,
        home_unit=HomeUnitPublic(
            device=unit.device,
            last_seen_at=unit.last_seen_at,
            lat=s.home[0] if s.home else None,
            lon=s.home[1] if s.home else None,
        )
        if unit
        else None,
        freshness=FreshnessPublic.model_validate(asdict(s.freshness)) if s.freshness else None,
    )


@router.get("", response_model=LiveView)
def live_map(
    user: CurrentUser,
    visible: VisibleLive,
    conditions: VisibleConditions,
    db: DB,
    clock: ClockDep,
    log: Audit,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
    subject: Annotated[int | None, Query(ge=1, le=2**62, description="only this subject")] = None,
) -> LiveView:
    """Every subject the caller may see live (or only `subject`): its last position (with
    accuracy), the presence its home unit last reported, its home unit and whether it reports
    as its mode should (`freshness`); and the zones of those whose conditions the caller may
    also see. Audited as a consultation of each subject, per scope (a disclosure for subjects
    shared with the caller)."""
    now = clock.now()
    found = live.live_map(db, user, visible.ids, conditions.ids, now, limit, subject)
    log.consulted(roles.LIVE, (s.access.id for s in found.subjects), {"via": "live map"}, now)
    log.consulted(roles.CONDITIONS, {z.subject_id for z in found.zones}, {"via": "live map"}, now)
    return LiveView(
        now=now,
        subjects=[_subject(s) for s in found.subjects],
        zones=FeatureCollection(features=[zone_feature(z) for z in found.zones]),
    )


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: `event: position` (`id:` the position row, "
            "`data:` subject_id, t, lat, lon, accuracy_m, source, late); `event: end` when "
            "the session ends",
        }
    },
)
async def live_stream(
    request: Request,
    access: LiveStream,
    engine: EngineDep,
    clock: ClockDep,
    last_event_id: sse.LastEventId = None,
) -> StreamingResponse:
    """New positions of subjects the caller may see live, as Server-Sent Events. Each
    position's subject is checked again when it is sent (a share that expires stops at
    once), and recorded per subject (read.live, or disclose.live through a share); the
    session every few seconds (logout or disabling ends the stream). Accept
    text/event-stream."""
    resume = last_event_id

    def opened() -> int:
        access.opened("stream.live", {"via": "live map"})
        if resume is not None:
            return resume
        with engine.connect() as conn:
            return live.last_position_id(conn)

    def fetch(after_id: int, now: float) -> tuple[int, list[tuple[int, str, dict[str, Any], int]]]:
        with engine.connect() as conn:
            last, found = live.positions_after(conn, access.visible(now).ids, after_id)
        batch = [
            (r.id, "position", {"id": r.id, "subject_id": sid, **_position(r)}, sid)
            for sid, r in found
        ]
        return last, batch

    return await sse.stream(request, clock, access, fetch, opened, poll_s=POLL_S)
