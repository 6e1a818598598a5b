"""Subjects and their monitoring: orders, equipment assignments (with history), curfews and
one-off exceptions, zones (GeoJSON), the charging schedule, and the trail (GeoJSON).

Every route takes its caller from backend/api/deps.py: `subject_scope(...)` for routes on a
subject, `object_scope(...)` for an object of a subject, `visible_subjects(...)` for lists.
The subject itself is the view scope (reference and name); everything it is monitored
against is the conditions scope (read, audited) and manage (change). Every change bumps
the subject's configuration version, so the rule engine re-reads it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from sqlalchemy import Connection, delete, func, insert, select, update

from backend import bounds
from backend.api.deps import (
    DB,
    Audit,
    ClockDep,
    CurrentUser,
    SubjectConditions,
    SubjectManage,
    SubjectTrail,
    SubjectView,
    Visible,
    object_scope,
    require_role,
    visible_subjects,
)
from backend.api.deps import ObjectAccess as _ObjectAccess
from backend.api.models_monitoring import (
    AssignmentCreate,
    AssignmentPublic,
    AssignmentUpdate,
    ChargingPublic,
    ChargingSet,
    CurfewCreate,
    CurfewPublic,
    Dated,
    ExceptionCreate,
    ExceptionPublic,
    FeatureCollection,
    OrderCreate,
    OrderPublic,
    OrderUpdate,
    SubjectCreate,
    SubjectUpdate,
    ZoneFeature,
    ZoneFeatureCreate,
    ZoneUpdate,
)
from backend.api.subject_view import SubjectPublic, subject_public
from backend.rules.store import bump_config
from backend.scheme import consent, pool
from backend.security import access, roles
from backend.security.access import subject_access
from backend.storage.position_queries import trail as trail_query
from backend.storage.schema import (
    assignments,
    charging_schedules,
    curfew_exceptions,
    curfews,
    devices,
    orders,
    subjects,
    zones,
)

router = APIRouter(prefix="/api", tags=["subjects"])

Editor = Annotated[Any, Depends(require_role(roles.SUPERVISOR, roles.OFFICER))]
VisibleView = Annotated[Visible, Depends(visible_subjects(roles.VIEW))]


def _owner_of(table: Any, column: str = "subject_id") -> Any:
    def resolve(conn: Connection, object_id: int) -> int | None:
        sid = conn.execute(select(table.c[column]).where(table.c.id == object_id)).scalar()
        return None if sid is None else int(sid)

    return resolve


OrderManage = Annotated[
    _ObjectAccess, Depends(object_scope("order_id", _owner_of(orders), roles.MANAGE, "order"))
]
AssignmentManage = Annotated[
    _ObjectAccess,
    Depends(object_scope("assignment_id", _owner_of(assignments), roles.MANAGE, "assignment")),
]
CurfewManage = Annotated[
    _ObjectAccess, Depends(object_scope("curfew_id", _owner_of(curfews), roles.MANAGE, "curfew"))
]
ExceptionManage = Annotated[
    _ObjectAccess,
    Depends(
        object_scope("exception_id", _owner_of(curfew_exceptions), roles.MANAGE, "curfew exception")
    ),
]
ZoneManage = Annotated[
    _ObjectAccess, Depends(object_scope("zone_id", _owner_of(zones), roles.MANAGE, "zone"))
]


def _changed(db: DB, subject_id: int, now: float, tz: str | None = None) -> None:
    bump_config(db, subject_id, now, tz)


def _plausible(body: Dated, now: float) -> None:
    """Record dates within ten years of backend now (bounds.record_time_problem)."""
    problem = body.implausible(now)
    if problem:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problem)


def _room(db: DB, table: Any, subject_id: int, limit: int, what: str) -> None:
    """A subject holds at most `limit` of these (bounds.py): its every evaluation reads them."""
    n = db.execute(
        select(func.count()).select_from(table).where(table.c.subject_id == subject_id)
    ).scalar_one()
    if n >= limit:
        raise HTTPException(status.HTTP_409_CONFLICT, f"a subject has at most {limit} {what}")


# ---- subjects ---------------------------------------------------------------------------


@router.post("/subjects", response_model=SubjectPublic, status_code=status.HTTP_201_CREATED)
def create_subject(
    body: SubjectCreate, user: Editor, db: DB, clock: ClockDep, log: Audit
) -> SubjectPublic:
    """Create a subject in the caller's own unit (supervisors and officers)."""
    now = clock.now()
    try:
        sid = access.create_subject(
            db,
            reference=body.reference,
            name=body.name,
            unit_id=user.unit_id,
            risk_notes=body.risk_notes,
            now=now,
        )
    except access.DirectoryError as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
    _changed(db, sid, now, body.tz)
    log.record("subject.create", subject_ids=[sid], scope=roles.MANAGE)
    found = subject_access(db, user, sid, now)
    assert found is not None
    return subject_public(found)


@router.get("/subjects", response_model=list[SubjectPublic])
def list_subjects(
    user: CurrentUser,
    visible: VisibleView,
    db: DB,
    clock: ClockDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> list[SubjectPublic]:
    """Subjects the caller may see (its unit's and those shared with it)."""
    ids = db.execute(
        select(subjects.c.id)
        .where(visible.where(subjects.c.id))
        .order_by(subjects.c.id)
        .limit(limit)
        .offset(offset)
    ).scalars()
    out = []
    for sid in ids:
        found = subject_access(db, user, sid, clock.now())
        if found is not None:
            out.append(subject_public(found))
    return out


@router.get("/subjects/{subject_id}", response_model=SubjectPublic)
def get_subject(subject: SubjectView) -> SubjectPublic:
    return subject_public(subject)


@router.patch("/subjects/{subject_id}", response_model=SubjectPublic)
def update_subject(
    subject: SubjectManage,
    body: SubjectUpdate,
    user: CurrentUser,
    db: DB,
    clock: ClockDep,
    log: Audit,
) -> SubjectPublic:
    values = body.model_dump(exclude_none=True, exclude={"tz"})
    if values:
        db.execute(update(subjects).where(subjects.c.id == subject.id).values(**values))
    _changed(db, subject.id, clock.now(), body.tz)
    log.record(
        "subject.update",
        subject_ids=[subject.id],
        scope=roles.MANAGE,
        detail={"fields": sorted(body.model_dump(exclude_none=True))},
    )
    found = subject_access(db, user, subject.id, clock.now())
    assert found is not None
    return subject_public(found)


# ---- orders -----------------------------------------------------------------------------


def _order(r: Any) -> OrderPublic:
    return OrderPublic.model_validate(r._mapping)


@router.get("/subjects/{subject_id}/orders", response_model=list[OrderPublic])
def list_orders(subject: SubjectConditions, db: DB) -> list[OrderPublic]:
    rows = db.execute(select(orders).where(orders.c.subject_id == subject.id).order_by(orders.c.id))
    return [_order(r) for r in rows]


@router.post("/subjects/{subject_id}/orders", response_model=OrderPublic, status_code=201)
def create_order(
    subject: SubjectManage, body: OrderCreate, db: DB, clock: ClockDep, log: Audit
) -> OrderPublic:
    """An order or licence condition: its span is when the subject is monitored."""
    _plausible(body, clock.now())
    _room(db, orders, subject.id, bounds.MAX_ORDERS, "orders")
    oid = db.execute(
        insert(orders)
        .values(subject_id=subject.id, created_at=clock.now(), **body.model_dump())
        .returning(orders.c.id)
    ).scalar_one()
    _changed(db, subject.id, clock.now())
    log.record("order.create", subject_ids=[subject.id], scope=roles.MANAGE, detail={"id": oid})
    return _order(db.execute(select(orders).where(orders.c.id == oid)).one())


@router.patch("/orders/{order_id}", response_model=OrderPublic)
def update_order(
    obj: OrderManage, body: OrderUpdate, db: DB, clock: ClockDep, log: Audit
) -> OrderPublic:
    _plausible(body, clock.now())
    values = body.model_dump(exclude_unset=True)
    row = db.execute(select(orders).where(orders.c.id == obj.object_id)).one()
    ends = values.get("ends_at", row.ends_at)
    if ends is not None and ends <= row.starts_at:
        raise HTTPException(422, "ends_at must be after starts_at")
    if values:
        db.execute(update(orders).where(orders.c.id == obj.object_id).values(**values))
    _changed(db, obj.subject.id, clock.now())
    log.record(
        "order.update",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id, "fields": sorted(values)},
    )
    return _order(db.execute(select(orders).where(orders.c.id == obj.object_id)).one())


# ---- equipment assignments ------------------------------------------------------------------


@router.get("/subjects/{subject_id}/assignments", response_model=list[AssignmentPublic])
def list_assignments(subject: SubjectConditions, db: DB) -> list[AssignmentPublic]:
    """Equipment history: every tag and home unit the subject has had."""
    rows = db.execute(
        select(assignments)
        .where(assignments.c.subject_id == subject.id)
        .order_by(assignments.c.starts_at, assignments.c.id)
    )
    return [AssignmentPublic.model_validate(r._mapping) for r in rows]


@router.post("/subjects/{subject_id}/assignments", response_model=AssignmentPublic, status_code=201)
def create_assignment(
    subject: SubjectManage, body: AssignmentCreate, db: DB, clock: ClockDep, log: Audit
) -> AssignmentPublic:
    """Fit a device. The subject's previous device of the same role is unassigned from
    `starts_at`; a device serving another subject at that time is refused."""
    _plausible(body, clock.now())
    kind = db.execute(select(devices.c.kind).where(devices.c.id == body.device)).scalar()
    if kind is None:
        raise HTTPException(422, f"device {body.device} is not registered")
    if kind != body.role:
        raise HTTPException(422, f"device {body.device} is a {kind}, not a {body.role}")
    a = assignments.c
    busy = db.execute(
        select(a.id).where(
            a.device == body.device,
            a.subject_id != subject.id,
            (a.ends_at.is_(None)) | (a.ends_at > body.starts_at),
        )
    ).first()
    if busy is not None:
        raise HTTPException(409, f"device {body.device} is assigned to another subject")
    user = log.user.id if log.user else None
    try:
        consent.may_fit(db, subject.id)
        for swapped in db.execute(
            select(a.id).where(
                a.subject_id == subject.id,
                a.role == body.role,
                a.ends_at.is_(None),
                a.starts_at < body.starts_at,
            )
        ).scalars():
            pool.remove(db, swapped, body.starts_at, user, clock.now())
        new_id = db.execute(
            insert(assignments)
            .values(subject_id=subject.id, created_at=clock.now(), **body.model_dump())
            .returning(a.id)
        ).scalar_one()
        pool.assignment_started(db, body.device, new_id, user, clock.now())
    except (consent.ConsentError, pool.PoolError) as e:
        raise HTTPException(409, str(e)) from e
    _changed(db, subject.id, clock.now())
    log.record(
        "assignment.create",
        subject_ids=[subject.id],
        scope=roles.MANAGE,
        detail={"device": body.device, "role": body.role},
    )
    return AssignmentPublic.model_validate(
        db.execute(select(assignments).where(a.id == new_id)).one()._mapping
    )


@router.patch("/assignments/{assignment_id}", response_model=AssignmentPublic)
def end_assignment(
    obj: AssignmentManage, body: AssignmentUpdate, db: DB, clock: ClockDep, log: Audit
) -> AssignmentPublic:
    """Remove a device: the assignment ends at `ends_at`."""
    _plausible(body, clock.now())
    row = db.execute(select(assignments).where(assignments.c.id == obj.object_id)).one()
    if body.ends_at <= row.starts_at:
        raise HTTPException(422, "ends_at must be after starts_at")
    pool.remove(db, obj.object_id, body.ends_at, log.user.id if log.user else None, clock.now())
    _changed(db, obj.subject.id, clock.now())
    log.record(
        "assignment.end",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id},
    )
    return AssignmentPublic.model_validate(
        db.execute(select(assignments).where(assignments.c.id == obj.object_id)).one()._mapping
    )


# ---- curfews and exceptions ---------------------------------------------------------------


def _curfew(r: Any) -> CurfewPublic:
    return CurfewPublic(
        id=r.id,
        subject_id=r.subject_id,
        days=r.days.split(","),
        start=r.start,
        end=r.end,
        tz=r.tz,
        created_at=r.created_at,
    )


@router.get("/subjects/{subject_id}/curfews", response_model=list[CurfewPublic])
def list_curfews(subject: SubjectConditions, db: DB) -> list[CurfewPublic]:
    rows = db.execute(
        select(curfews).where(curfews.c.subject_id == subject.id).order_by(curfews.c.id)
    )
    return [_curfew(r) for r in rows]


@router.post("/subjects/{subject_id}/curfews", response_model=CurfewPublic, status_code=201)
def create_curfew(
    subject: SubjectManage, body: CurfewCreate, db: DB, clock: ClockDep, log: Audit
) -> CurfewPublic:
    """A weekly curfew window in local civil time (an end at or before the start runs into
    the next day)."""
    _room(db, curfews, subject.id, bounds.MAX_CURFEWS, "curfew windows")
    cid = db.execute(
        insert(curfews)
        .values(
            subject_id=subject.id,
            days=",".join(body.days),
            start=body.start,
            end=body.end,
            tz=body.tz,
            created_at=clock.now(),
        )
        .returning(curfews.c.id)
    ).scalar_one()
    _changed(db, subject.id, clock.now())
    log.record("curfew.create", subject_ids=[subject.id], scope=roles.MANAGE, detail={"id": cid})
    return _curfew(db.execute(select(curfews).where(curfews.c.id == cid)).one())


@router.delete("/curfews/{curfew_id}", status_code=204)
def delete_curfew(obj: CurfewManage, db: DB, clock: ClockDep, log: Audit) -> None:
    db.execute(delete(curfews).where(curfews.c.id == obj.object_id))
    _changed(db, obj.subject.id, clock.now())
    log.record(
        "curfew.delete",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id},
    )


@router.get("/subjects/{subject_id}/curfew-exceptions", response_model=list[ExceptionPublic])
def list_exceptions(subject: SubjectConditions, db: DB) -> list[ExceptionPublic]:
    rows = db.execute(
        select(curfew_exceptions)
        .where(curfew_exceptions.c.subject_id == subject.id)
        .order_by(curfew_exceptions.c.starts_at)
    )
    return [ExceptionPublic.model_validate(r._mapping) for r in rows]


@router.post(
    "/subjects/{subject_id}/curfew-exceptions", response_model=ExceptionPublic, status_code=201
)
def create_exception(
    subject: SubjectManage, body: ExceptionCreate, db: DB, clock: ClockDep, log: Audit
) -> ExceptionPublic:
    """A one-off change: excused (authorised absence) or extra curfew time."""
    _plausible(body, clock.now())
    _room(db, curfew_exceptions, subject.id, bounds.MAX_EXCEPTIONS, "curfew exceptions")
    xid = db.execute(
        insert(curfew_exceptions)
        .values(subject_id=subject.id, created_at=clock.now(), **body.model_dump())
        .returning(curfew_exceptions.c.id)
    ).scalar_one()
    _changed(db, subject.id, clock.now())
    log.record(
        "curfew_exception.create", subject_ids=[subject.id], scope=roles.MANAGE, detail={"id": xid}
    )
    row = db.execute(select(curfew_exceptions).where(curfew_exceptions.c.id == xid)).one()
    return ExceptionPublic.model_validate(row._mapping)


@router.delete("/curfew-exceptions/{exception_id}", status_code=204)
def delete_exception(obj: ExceptionManage, db: DB, clock: ClockDep, log: Audit) -> None:
    db.execute(delete(curfew_exceptions).where(curfew_exceptions.c.id == obj.object_id))
    _changed(db, obj.subject.id, clock.now())
    log.record(
        "curfew_exception.delete",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id},
    )


# ---- zones ------------------------------------------------------------------------------


def zone_feature(r: Any) -> dict[str, Any]:
    """A zones row as the GeoJSON Feature the API answers (also the live map's)."""
    return ZoneFeature(
        id=r.id,
        geometry=r.geometry,
        properties={
            "name": r.name,
            "kind": r.kind,
            "shape": r.shape,
            "radius_m": r.radius_m,
            "width_m": r.width_m,
            "buffer_m": r.buffer_m,
            "victim": r.victim,
            "schedule": r.schedule,
            "dwell_s": r.dwell_s,
            "subject_id": r.subject_id,
            "created_at": r.created_at,
        },
    ).model_dump()


@router.get("/subjects/{subject_id}/zones", response_model=FeatureCollection)
def list_zones(subject: SubjectConditions, db: DB) -> FeatureCollection:
    """The subject's zones as a GeoJSON FeatureCollection."""
    rows = db.execute(select(zones).where(zones.c.subject_id == subject.id).order_by(zones.c.id))
    return FeatureCollection(features=[zone_feature(r) for r in rows])


@router.post("/subjects/{subject_id}/zones", response_model=ZoneFeature, status_code=201)
def create_zone(
    subject: SubjectManage, body: ZoneFeatureCreate, db: DB, clock: ClockDep, log: Audit
) -> dict[str, Any]:
    """A zone as a GeoJSON Feature: Point + radius_m (circle), Polygon, or LineString +
    width_m (corridor); kind inclusion, exclusion or home; buffer_m for a victim's address."""
    _room(db, zones, subject.id, bounds.MAX_ZONES, "zones")
    p = body.properties
    zid = db.execute(
        insert(zones)
        .values(
            subject_id=subject.id,
            name=p.name,
            kind=p.kind,
            shape=body.shape(),
            geometry=body.geometry.model_dump(),
            radius_m=p.radius_m,
            width_m=p.width_m,
            buffer_m=p.buffer_m,
            victim=p.victim,
            schedule=[w.model_dump() for w in p.schedule],
            dwell_s=p.dwell_s,
            created_at=clock.now(),
        )
        .returning(zones.c.id)
    ).scalar_one()
    _changed(db, subject.id, clock.now())
    log.record("zone.create", subject_ids=[subject.id], scope=roles.MANAGE, detail={"id": zid})
    return zone_feature(db.execute(select(zones).where(zones.c.id == zid)).one())


@router.patch("/zones/{zone_id}", response_model=ZoneFeature)
def update_zone(
    obj: ZoneManage, body: ZoneUpdate, db: DB, clock: ClockDep, log: Audit
) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True)
    if "schedule" in values:
        values["schedule"] = [w.model_dump() for w in body.schedule or []]
    if values:
        db.execute(update(zones).where(zones.c.id == obj.object_id).values(**values))
    _changed(db, obj.subject.id, clock.now())
    log.record(
        "zone.update",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id, "fields": sorted(values)},
    )
    return zone_feature(db.execute(select(zones).where(zones.c.id == obj.object_id)).one())


@router.delete("/zones/{zone_id}", status_code=204)
def delete_zone(obj: ZoneManage, db: DB, clock: ClockDep, log: Audit) -> None:
    db.execute(delete(zones).where(zones.c.id == obj.object_id))
    _changed(db, obj.subject.id, clock.now())
    log.record(
        "zone.delete",
        subject_ids=[obj.subject.id],
        scope=roles.MANAGE,
        detail={"id": obj.object_id},
    )


# ---- charging ---------------------------------------------------------------------------


@router.get("/subjects/{subject_id}/charging", response_model=ChargingPublic)
def get_charging(subject: SubjectConditions, db: DB) -> ChargingPublic:
    m = db.execute(
        select(charging_schedules.c.min_minutes).where(
            charging_schedules.c.subject_id == subject.id
        )
    ).scalar()
    return ChargingPublic(subject_id=subject.id, min_minutes=m)


@router.put("/subjects/{subject_id}/charging", response_model=ChargingPublic)
def set_charging(
    subject: SubjectManage, body: ChargingSet, db: DB, clock: ClockDep, log: Audit
) -> ChargingPublic:
    """The charging schedule: at least `min_minutes` of charging each local day."""
    db.execute(delete(charging_schedules).where(charging_schedules.c.subject_id == subject.id))
    db.execute(
        insert(charging_schedules).values(
            subject_id=subject.id, min_minutes=body.min_minutes, created_at=clock.now()
        )
    )
    _changed(db, subject.id, clock.now())
    log.record(
        "charging.set",
        subject_ids=[subject.id],
        scope=roles.MANAGE,
        detail={"min_minutes": body.min_minutes},
    )
    return ChargingPublic(subject_id=subject.id, min_minutes=body.min_minutes)


# ---- trail ------------------------------------------------------------------------------


@router.get("/subjects/{subject_id}/trail", response_model=FeatureCollection)
def get_trail(
    subject: SubjectTrail,
    db: DB,
    clock: ClockDep,
    start: Annotated[
        int | None,
        Query(alias="from", ge=0, lt=bounds.LATEST_S, description="Unix s; default to-24h"),
    ] = None,
    end: Annotated[
        int | None, Query(alias="to", ge=0, lt=bounds.LATEST_S, description="Unix s; default now")
    ] = None,
) -> FeatureCollection:
    """The subject's positions in [from, to] as GeoJSON: one Point Feature per fix (time,
    accuracy, device) and a LineString of the path. At most 31 days per request. The read
    is audited with its stated purpose (the `purpose` query parameter)."""
    end = int(clock.now()) if end is None else end
    start = end - 86400 if start is None else start
    if end < start or end - start > 31 * 86400:
        raise HTTPException(422, "`to` must be after `from`, at most 31 days later")
    devs = db.execute(
        select(assignments.c.device, assignments.c.starts_at, assignments.c.ends_at).where(
            assignments.c.subject_id == subject.id, assignments.c.role == "tag"
        )
    ).all()
    points: list[tuple[int, dict[str, Any]]] = []
    for dev, s, e in devs:
        lo, hi = max(start, s), min(end, (e - 1) if e is not None else end)
        if lo > hi:
            continue
        for r in trail_query(db, dev, lo, hi):
            points.append(
                (
                    r.ts,
                    {
                        "type": "Feature",
                        "geometry": {
                            "type": "Point",
                            "coordinates": [r.lon_e7 / 1e7, r.lat_e7 / 1e7],
                        },
                        "properties": {
                            "t": r.ts,
                            "accuracy_m": r.acc_dm / 10,
                            "device": dev,
                            "source": "rf_home" if r.source == 1 else "gnss",
                        },
                    },
                )
            )
    points.sort(key=lambda p: p[0])
    feats = [f for _, f in points]
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
