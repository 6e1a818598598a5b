"""The unit's tag pool (backend/services/pool.py), kept by its supervisors and officers:
the tags with their state, battery health and the counts ("3 free, 1 due for service"),
taking a tag in, changing its state by hand, and its history. Changes are audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from backend.api.deps import (
    DB,
    Audit,
    ClockDep,
    PoolKeeper,
    PoolTagRead,
    PoolTagWrite,
    Visible,
    visible_subjects,
)
from backend.api.models_scheme import (
    OpenRemovalPublic,
    PoolAdd,
    PoolMove,
    PoolPublic,
    PoolStatePublic,
    PoolTagPublic,
)
from backend.security import roles
from backend.services import consent, pool

router = APIRouter(prefix="/api", tags=["pool"])

VisibleManage = Annotated[Visible, Depends(visible_subjects(roles.MANAGE))]


def _tag(entry: pool.TagEntry) -> PoolTagPublic:
    return PoolTagPublic.model_validate(entry, from_attributes=True)


def _entry(db: DB, unit_id: int, device: int, now: float) -> PoolTagPublic:
    return next(_tag(e) for e in pool.unit_pool(db, unit_id, now) if e.device == device)


@router.get("/pool", response_model=PoolPublic)
def get_pool(user: PoolKeeper, visible: VisibleManage, db: DB, clock: ClockDep) -> PoolPublic:
    """The caller's unit's tags: state, since when, battery health by assignment, whether
    due for service; the counts ("3 free, 1 due for service"); and the removals still to
    do after a wearer withdrew (of the subjects the caller manages)."""
    now = clock.now()
    entries = pool.unit_pool(db, user.unit_id, now)
    removals = consent.open_removals(db, visible.ids)
    return PoolPublic.model_validate({
        "tags": [_tag(e) for e in entries],
        "counts": pool.counts(entries),
        "removals": [OpenRemovalPublic.model_validate(r._mapping) for r in removals],
    })  # fmt: skip


@router.post("/pool", response_model=PoolTagPublic, status_code=status.HTTP_201_CREATED)
def add_to_pool(
    user: PoolKeeper, body: PoolAdd, db: DB, clock: ClockDep, log: Audit
) -> PoolTagPublic:
    """Take a registered tag into the unit's pool (in stock, or fitted if assigned now)."""
    now = clock.now()
    state = pool.add(db, body.device, user.unit_id, user.id, now, body.note)
    log.record("pool.add", detail={"device": body.device, "state": state})
    return _entry(db, user.unit_id, body.device, now)


@router.post("/pool/{device_id}/state", response_model=PoolTagPublic)
def move_tag(
    device_id: PoolTagWrite,
    user: PoolKeeper,
    body: PoolMove,
    db: DB,
    clock: ClockDep,
    log: Audit,
) -> PoolTagPublic:
    """Change a tag's state by hand: charging, cleaning, faulty, back in stock, retired
    (fitted and removed follow the subjects' equipment)."""
    now = clock.now()
    pool.move(db, device_id, body.state, user.id, now, body.note)
    log.record("pool.move", detail={"device": device_id, "state": body.state})
    return _entry(db, user.unit_id, device_id, now)


@router.get("/pool/{device_id}/history", response_model=list[PoolStatePublic])
def tag_history(device_id: PoolTagRead, db: DB) -> list[PoolStatePublic]:
    """Every state the tag has been in, oldest first, with who changed it and the
    assignment of each fitting and removal."""
    return [PoolStatePublic.model_validate(r) for r in pool.history(db, device_id)]
