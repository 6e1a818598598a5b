"""A subject's device events for the timeline beside its alerts (the alerts scope)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from backend.api.deps import DB, ClockDep, SubjectAlerts
from backend.bounds import LATEST_S
from backend.services import device_events, trail

router = APIRouter(prefix="/api/web/subjects", tags=["web"])

FromQ = Annotated[int | None, Query(alias="from", ge=0, lt=LATEST_S, description="Unix s")]
ToQ = Annotated[int | None, Query(alias="to", ge=0, lt=LATEST_S, description="Unix s")]


class DeviceEventPublic(BaseModel):
    t: int | None = Field(description="event time, Unix s (None: the device had no time)")
    device: int
    role: str
    kind: str
    data: dict[str, Any]
    late: bool


@router.get("/{subject_id}/events", response_model=list[DeviceEventPublic])
def subject_events(
    subject: SubjectAlerts,
    db: DB,
    clock: ClockDep,
    start: FromQ = None,
    end: ToQ = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 5000,
) -> list[DeviceEventPublic]:
    """What the subject's tag and home unit reported in [from, to] (tamper, battery,
    charging, mode, link, status...) and the home unit's presence reports about the tag
    (kind `presence`, data `state` 1 home / 0 away), newest first, for the timeline beside
    its alerts."""
    start, end = trail.window(start, end, clock.now())
    return [
        DeviceEventPublic.model_validate(e)
        for e in device_events.timeline(db, subject.id, start, end, limit)
    ]
