"""Alerts: the filtered list, one alert with its episodes (evidence) and history, the
acknowledge/resolve workflow, a live stream of alert changes (Server-Sent Events), and the
rules' parameters. docs/rules.md describes the lifecycle.

Reading needs the alerts scope; acknowledging and resolving change the owning unit's record
and need manage, which no share grants. The list and the stream record, per subject, whose
alerts they showed (read.alerts, or disclose.alerts for a subject seen through a share).

The stream follows alert_actions (every raise, reopen, update, clear, acknowledgement and
resolution is a row), polling the database in short transactions — so it sees alerts raised
by ingest workers in other processes, and `Last-Event-ID` resumes it without a gap. Its
authorization is not a one-off at subscription (`stream_access`): each alert's subject is
checked again at backend now when it is sent (a share that expires stops at once), and the
session every `SESSION_CHECK_S` (a logout, a revoked session or a disabled user ends the
stream with `event: end`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import Connection, Select, func, select

from backend.api import sse
from backend.api.deps import (
    DB,
    Audit,
    Auditor,
    ClockDep,
    CurrentUser,
    EngineDep,
    ObjectAccess,
    RequestId,
    StreamAccess,
    Visible,
    object_scope,
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
    RuleInfo,
)
from backend.bounds import LATEST_S
from backend.rules import store
from backend.rules.engine import Engine as RuleEngine
from backend.security import roles
from backend.storage.schema import alert_actions, alert_episodes, alerts, subjects

router = APIRouter(prefix="/api", tags=["alerts"])

POLL_S = 0.1  # how often the stream looks for new alert actions
KEEPALIVE_S = 15.0
SESSION_CHECK_S = 5.0  # how often the stream re-checks the caller's session


def _alert_subject(conn: Connection, alert_id: int) -> int | None:
    sid = conn.execute(select(alerts.c.subject_id).where(alerts.c.id == alert_id)).scalar()
    return None if sid is None else int(sid)


AlertRead = Annotated[
    ObjectAccess, Depends(object_scope("alert_id", _alert_subject, roles.ALERTS, "alert"))
]
AlertWork = Annotated[
    ObjectAccess, Depends(object_scope("alert_id", _alert_subject, roles.MANAGE, "alert"))
]
VisibleAlerts = Annotated[Visible, Depends(visible_subjects(roles.ALERTS))]
AlertStream = Annotated[StreamAccess, Depends(stream_access(roles.ALERTS, "alert stream"))]


def _public(r: Any) -> AlertPublic:
    d = dict(r._mapping)
    d["duration_s"] = None if d["end"] is None else d["end"] - d["start"]
    return AlertPublic.model_validate(d)


def _base() -> Select[Any]:
    return select(alerts, subjects.c.unit_id).join(subjects, subjects.c.id == alerts.c.subject_id)


def _filtered(
    q: Select[Any],
    visible: Visible,
    unit: int | None,
    subject: int | None,
    type_: list[str] | None,
    state: list[AlertState] | None,
    since: int | None,
    until: int | None,
) -> Select[Any]:
    q = q.where(visible.where(alerts.c.subject_id))
    if unit is not None:
        q = q.where(subjects.c.unit_id == unit)
    if subject is not None:
        q = q.where(alerts.c.subject_id == subject)
    if type_:
        q = q.where(alerts.c.type.in_(type_))
    if state:
        q = q.where(alerts.c.state.in_(state))
    if since is not None:  # alerts whose condition overlaps [since, until]
        q = q.where((alerts.c.end.is_(None)) | (alerts.c.end >= since))
    if until is not None:
        q = q.where(alerts.c.start <= until)
    return q


UnitQ = Annotated[int | None, Query(ge=1, le=2**62, description="owning unit")]
SubjectQ = Annotated[int | None, Query(ge=1, le=2**62, description="subject id")]
TypeQ = Annotated[list[str] | None, Query(alias="type", max_length=20, description="alert type")]
StateQ = Annotated[list[AlertState] | None, Query(max_length=4)]
SinceQ = Annotated[int | None, Query(ge=0, lt=LATEST_S, description="event time, Unix s")]
UntilQ = Annotated[int | None, Query(ge=0, lt=LATEST_S, description="event time, Unix s")]


@router.get("/alerts", response_model=list[AlertPublic])
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
    q = _filtered(_base(), visible, unit, subject, type_, state, since, until)
    rows = db.execute(
        q.order_by(alerts.c.start.desc(), alerts.c.id.desc()).limit(limit).offset(offset)
    ).all()
    log.consulted(roles.ALERTS, (r.subject_id for r in rows), {"via": "alert list"}, clock.now())
    return [_public(r) for r in rows]


@router.get(
    "/alerts/stream",
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
    user: CurrentUser,
    access: AlertStream,
    engine: EngineDep,
    clock: ClockDep,
    request_id: RequestId,
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
    if "text/event-stream" not in request.headers.get("accept", ""):
        raise HTTPException(406, "this is a Server-Sent Events stream: Accept text/event-stream")
    resume = last_event_id if last_event_id is not None else after

    def opened() -> int:
        # Off the event loop: waiting for SQLite's write lock here would block the loop
        # that the lock's holder (a request finishing its transaction) needs to commit.
        Auditor(user, request_id, clock, engine).record(
            "stream.alerts",
            scope=roles.ALERTS,
            detail={"unit": unit, "subject": subject, "type": type_, "state": state},
        )
        if resume is not None:
            return resume
        with engine.connect() as conn:
            return int(conn.execute(select(func.max(alert_actions.c.id))).scalar() or 0)

    cursor = await run_in_threadpool(opened)

    def fetch(after_id: int, now: float) -> tuple[int, list[tuple[int, str, dict[str, Any], int]]]:
        q = (
            _filtered(
                _base()
                .add_columns(
                    alert_actions.c.id.label("action_id"), alert_actions.c.action.label("action")
                )
                .join(alert_actions, alert_actions.c.alert_id == alerts.c.id),
                access.visible(now),
                unit,
                subject,
                type_,
                state,
                None,
                None,
            )
            .where(alert_actions.c.id > after_id)
            .order_by(alert_actions.c.id)
            .limit(500)
        )
        with engine.connect() as conn:
            batch = []
            for r in conn.execute(q):
                body = _public(r).model_dump()
                body["action"] = r.action
                batch.append((r.action_id, "alert", body, r.subject_id))
        return (batch[-1][0] if batch else after_id), batch

    return sse.response(
        sse.events(
            request,
            clock,
            access,
            fetch,
            cursor,
            poll_s=POLL_S,
            session_check_s=SESSION_CHECK_S,
            keepalive_s=KEEPALIVE_S,
        )
    )


@router.get("/alerts/{alert_id}", response_model=AlertDetail)
def get_alert(obj: AlertRead, db: DB) -> AlertDetail:
    """One alert with its episodes (start, end, duration, evidence, rule version) and history."""
    row = db.execute(_base().where(alerts.c.id == obj.object_id)).one()
    eps = db.execute(
        select(alert_episodes)
        .where(alert_episodes.c.alert_id == obj.object_id)
        .order_by(alert_episodes.c.start)
    )
    acts = db.execute(
        select(alert_actions)
        .where(alert_actions.c.alert_id == obj.object_id)
        .order_by(alert_actions.c.id)
    )
    base = _public(row).model_dump()
    return AlertDetail(
        **base,
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
            for e in eps
        ],
        actions=[
            ActionPublic(at=a.at, user_id=a.user_id, action=a.action, note=a.note) for a in acts
        ],
    )


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertPublic)
def acknowledge_alert(
    obj: AlertWork, body: AlertAcknowledge, user: CurrentUser, db: DB, clock: ClockDep, log: Audit
) -> AlertPublic:
    """open -> acknowledged (supervisors and officers of the owning unit)."""
    try:
        store.acknowledge(db, obj.object_id, user.id, body.note, clock.now())
    except store.WorkflowError as e:
        raise HTTPException(409, str(e)) from e
    log.record(
        "alert.acknowledge",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"alert": obj.object_id},
    )
    return _public(db.execute(_base().where(alerts.c.id == obj.object_id)).one())


@router.post("/alerts/{alert_id}/resolve", response_model=AlertPublic)
def resolve_alert(
    obj: AlertWork, body: AlertResolve, user: CurrentUser, db: DB, clock: ClockDep, log: Audit
) -> AlertPublic:
    """open or acknowledged -> resolved, with an outcome and a note (supervisors and
    officers of the owning unit). A recurrence of the condition reopens it (docs/rules.md)."""
    try:
        store.resolve(db, obj.object_id, user.id, body.outcome, body.note, clock.now())
    except store.WorkflowError as e:
        raise HTTPException(409, str(e)) from e
    log.record(
        "alert.resolve",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"alert": obj.object_id, "outcome": body.outcome},
    )
    return _public(db.execute(_base().where(alerts.c.id == obj.object_id)).one())


@router.get("/rules", response_model=list[RuleInfo])
def list_rules(user: CurrentUser) -> list[RuleInfo]:
    """Every rule, its version and its parameters with their defaults."""
    return [RuleInfo.model_validate(d) for d in RuleEngine().describe()]
