"""A victim's own device linked to one of the subject's orders (docs/rules.md, "Proximity:
the victim's device"): linked and ended with manage; its links, the warnings sent to it and
(only with victim-safe mode off) the victim's own positions read with the victim scope,
which only the owning unit's supervisors and officers hold and no share grants. Every read
states a purpose and is audited by the guard."""

from __future__ import annotations

from fastapi import APIRouter, status

from backend.api.deps import (
    DB,
    Audit,
    ClockDep,
    SubjectManage,
    SubjectVictim,
    VictimLinkManage,
    VictimLinkRead,
    WindowFrom,
    WindowTo,
)
from backend.api.models_victims import (
    VictimLinkCreate,
    VictimLinkEnd,
    VictimLinkPublic,
    VictimPosition,
    WarningPublic,
)
from backend.security import roles
from backend.services import trail, victims

router = APIRouter(prefix="/api", tags=["victim devices"])


def _public(link: victims.Link) -> VictimLinkPublic:
    return VictimLinkPublic(**link.__dict__)


@router.get("/subjects/{subject_id}/victim-devices", response_model=list[VictimLinkPublic])
def list_links(subject: SubjectVictim, db: DB) -> list[VictimLinkPublic]:
    return [_public(x) for x in victims.of_subject(db, subject.id)]


@router.post(
    "/subjects/{subject_id}/victim-devices",
    response_model=VictimLinkPublic,
    status_code=status.HTTP_201_CREATED,
)
def create_link(
    subject: SubjectManage, body: VictimLinkCreate, db: DB, clock: ClockDep, log: Audit
) -> VictimLinkPublic:
    """Link a registered victim device (`tagwatch backend register --kind victim`) to one of
    the subject's orders, with its warning and alert distances."""
    now = clock.now()
    body.check(now)
    link = victims.link(
        db,
        body.order_id,
        body.device,
        int(now) if body.starts_at is None else body.starts_at,
        now,
        warn_m=body.warn_m,
        alert_m=body.alert_m,
        silent_s=body.silent_s,
        victim_safe=body.victim_safe,
        subject_id=subject.id,
    )
    log.record("victim_link.create", subject_ids=[subject.id], scope=roles.MANAGE,
               detail={"id": link.id, "device": link.device})  # fmt: skip
    return _public(link)


@router.patch("/victim-devices/{link_id}", response_model=VictimLinkPublic)
def end_link(
    obj: VictimLinkManage, body: VictimLinkEnd, db: DB, clock: ClockDep, log: Audit
) -> VictimLinkPublic:
    now = clock.now()
    body.check(now)
    link = victims.unlink(db, obj.object_id, body.ends_at, now)
    log.record("victim_link.end", subject_ids=[obj.subject.id], scope=roles.MANAGE,
               detail={"id": link.id})  # fmt: skip
    return _public(link)


@router.get("/victim-devices/{link_id}/warnings", response_model=list[WarningPublic])
def list_warnings(obj: VictimLinkRead, db: DB) -> list[WarningPublic]:
    """The warnings sent to the victim's device and whether it acknowledged each."""
    link = victims.get(db, obj.object_id)
    return [WarningPublic(**w.__dict__) for w in victims.warnings(db, link.device)]


@router.get("/victim-devices/{link_id}/positions", response_model=list[VictimPosition])
def list_positions(
    obj: VictimLinkRead,
    db: DB,
    clock: ClockDep,
    start: WindowFrom = None,
    end: WindowTo = None,
) -> list[VictimPosition]:
    """The victim's own positions in [from, to] (at most 31 days), within the link's span:
    409 while victim-safe mode is on."""
    start, end = trail.window(start, end, clock.now())
    link = victims.get(db, obj.object_id)
    return [
        VictimPosition(t=p.ts, lat=p.lat_e7 / 1e7, lon=p.lon_e7 / 1e7, accuracy_m=p.acc_dm / 10)
        for p in victims.positions(db, link, start, end)
    ]
