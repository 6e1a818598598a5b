"""Alerts: the filtered list, one alert with its episodes (evidence) and history, the
acknowledge/resolve workflow, and a live stream of alert changes (Server-Sent Events).
docs/rules.md describes the lifecycle.

Reading needs the alerts scope; acknowledging and resolving change the owning unit's record
and need manage, which no share grants. The list and the stream record, per subject, whose
alerts they showed (read.alerts, or disclose.alerts for a subject seen through a share).

The stream follows alert_actions (every raise, reopen, update, clear, acknowledgement and
resolution is a row), polling the database in short transactions — so it sees alerts raised
by ingest workers in other processes, and `Last-Event-ID` resumes it without a gap. Its
authorization is not a one-off at subscription (`stream_access`): each alert's subject is
checked again at backend now when it is sent (a share that expires stops at once), and the
session every few seconds (a logout, a revoked session or a disabled user ends the stream
with `event: end`): backend/api/sse.py, the loop both streams share."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from backend.api import sse
from backend.api.deps import (
    DB,
    AlertRead,
    AlertWork,
    Audit,
    ClockDep,
    CurrentUser,
    EngineDep,
    StreamAccess,
    Visible,
    stream_access,
    visible_subjects,
)
from backend.api.models_monitoring import (
    ActionPublic,
    AlertAcknowledge,
    AlertDetail,
    AlertPublic,
    AlertResolve,
    AlertState,
    EpisodePublic,
)
from backend.bounds import LATEST_S
from backend.security import roles
from backend.services import alerts

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

POLL_S = 0.1  # how often the stream looks for new alert actions

VisibleAlerts = Annotated[Visible, Depends(visible_subjects(roles.ALERTS))]
AlertStream = Annotated[StreamAccess, Depends(stream_access(roles.ALERTS, "alert stream"))]

UnitQ = Annotated[int | None, Query(ge=1, le=2**62, description="owning unit")]
SubjectQ = Annotated[int | None, Query(ge=1, le=2**62, description="subject id")]
TypeQ = Annotated[list[str] | None, Query(alias="type", max_length=20, description="alert type")]
StateQ = Annotated[list[AlertState] | None, Query(max_length=4)]
SinceQ = Annotated[int | None, Query(ge=0, lt=LATEST_S, description="event time, Unix s")]
UntilQ = Annotated[int | None, Query(ge=0, lt=LATEST_S, description="event time, Unix s")]


def alert_public(r: Any) -> AlertPublic:
    d = dict(r._mapping)
    d["duration_s"] = None if d["end"] is None else d["end"] - d["start"]
    return AlertPublic.model_validate(d)


@router.get("", response_model=list[AlertPublic])
def list_alerts(
    visible: VisibleAlerts,
    db: DB,
    clock: ClockDep,
    log: Audit,
    unit: UnitQ = None,
    subject: SubjectQ = None,
    type_: TypeQ = None,
    state: StateQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> list[AlertPublic]:
    """Alerts of subjects the caller may see with the alerts scope, newest first, filtered
    by owning unit, subject, type, state and the event-time window they overlap."""
    which = alerts.Filter(visible.ids, unit, subject, type_, state, since, until)
    rows = alerts.listing(db, which, limit, offset)
    log.consulted(roles.ALERTS, (r.subject_id for r in rows), {"via": "alert list"}, clock.now())
    return [alert_public(r) for r in rows]


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: `event: alert`, `id:` the "
            "action id, `data:` the alert (AlertPublic) with `action`",
        }
    },
)
async def stream_alerts(
    request: Request,
    access: AlertStream,
    engine: EngineDep,
    clock: ClockDep,
    unit: UnitQ = None,
    subject: SubjectQ = None,
    type_: TypeQ = None,
    state: StateQ = None,
    after: Annotated[
        int | None, Query(ge=0, le=sse.MAX_EVENT_ID, description="resume after action")
    ] = None,
    last_event_id: sse.LastEventId = None,
) -> StreamingResponse:
    """Live alert changes (raised, reopened, updated, cleared, acknowledged, resolved) as
    Server-Sent Events. Resumes after `Last-Event-ID` (or `after`); otherwise starts now.
    The client must accept `text/event-stream` (EventSource does); anything else is 406."""
    resume = last_event_id if last_event_id is not None else after

    def opened() -> int:
        access.opened(
            "stream.alerts", {"unit": unit, "subject": subject, "type": type_, "state": state}
        )
        if resume is not None:
            return resume
        with engine.connect() as conn:
            return alerts.last_action(conn)

    def fetch(after_id: int, now: float) -> tuple[int, list[tuple[int, str, dict[str, Any], int]]]:
        which = alerts.Filter(access.visible(now).ids, unit, subject, type_, state)
        with engine.connect() as conn:
            rows = alerts.actions_after(conn, which, after_id)
        batch = []
        for r in rows:
            body = alert_public(r).model_dump()
            body["action"] = r.action
            batch.append((r.action_id, "alert", body, r.subject_id))
        return (batch[-1][0] if batch else after_id), batch

    return await sse.stream(request, clock, access, fetch, opened, poll_s=POLL_S)


@router.get("/{alert_id}", response_model=AlertDetail)
def get_alert(obj: AlertRead, db: DB) -> AlertDetail:
    """One alert with its episodes (start, end, duration, evidence, rule version) and history."""
    return AlertDetail(
        **alert_public(alerts.get(db, obj.object_id)).model_dump(),
        episode_list=[
            EpisodePublic(
                key=e.key,
                type=e.type,
                start=e.start,
                end=e.end,
                duration_s=None if e.end is None else e.end - e.start,
                confirmed_t=e.confirmed_t,
                rule_version=e.rule_version,
                late=e.late,
                cleared=e.cleared_at is not None,
                evidence=list(e.evidence),
                details=dict(e.details),
                raised_at=e.raised_at,
            )
            for e in alerts.episodes(db, obj.object_id)
        ],
        actions=[
            ActionPublic(at=a.at, user_id=a.user_id, action=a.action, note=a.note)
            for a in alerts.history(db, obj.object_id)
        ],
    )


@router.post("/{alert_id}/acknowledge", response_model=AlertPublic)
def acknowledge_alert(
    obj: AlertWork, body: AlertAcknowledge, user: CurrentUser, db: DB, clock: ClockDep, log: Audit
) -> AlertPublic:
    """open -> acknowledged (supervisors and officers of the owning unit)."""
    row = alerts.acknowledge(db, obj.object_id, user.id, body.note, clock.now())
    log.record(
        "alert.acknowledge",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"alert": obj.object_id},
    )
    return alert_public(row)


@router.post("/{alert_id}/resolve", response_model=AlertPublic)
def resolve_alert(
    obj: AlertWork, body: AlertResolve, user: CurrentUser, db: DB, clock: ClockDep, log: Audit
) -> AlertPublic:
    """open or acknowledged -> resolved, with an outcome and a note (supervisors and
    officers of the owning unit). A recurrence of the condition reopens it (docs/rules.md)."""
    row = alerts.resolve(db, obj.object_id, user.id, body.outcome, body.note, clock.now())
    log.record(
        "alert.resolve",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"alert": obj.object_id, "outcome": body.outcome},
    )
    return alert_public(row)
