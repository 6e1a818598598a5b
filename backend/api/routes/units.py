"""Units: every user lists them (to know whom a share goes to); administrators create and
rename them."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from backend.api.deps import DB, Administrator, Audit, ClockDep, CurrentUser, UnitRead, UnitWrite
from backend.services import units

router = APIRouter(prefix="/api/units", tags=["admin"])

UnitKind = Literal["police", "partner"]


class UnitCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    kind: UnitKind


class UnitUpdate(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class UnitPublic(BaseModel):
    id: int
    name: str
    kind: str


def _public(r: Any) -> UnitPublic:
    return UnitPublic(id=r.id, name=r.name, kind=r.kind)


@router.get("", response_model=list[UnitPublic])
def list_units(user: CurrentUser, db: DB) -> list[UnitPublic]:
    return [_public(r) for r in units.listing(db)]


@router.post("", response_model=UnitPublic, status_code=status.HTTP_201_CREATED)
def create_unit(
    body: UnitCreate, admin: Administrator, db: DB, clock: ClockDep, log: Audit
) -> UnitPublic:
    new_id = units.create(db, body.name, body.kind, clock.now())
    log.record("unit.create", detail={"unit_id": new_id, "name": body.name, "kind": body.kind})
    return _public(units.get(db, new_id))


@router.get("/{unit_id}", response_model=UnitPublic)
def get_unit(unit_id: UnitRead, db: DB) -> UnitPublic:
    return _public(units.get(db, unit_id))


@router.patch("/{unit_id}", response_model=UnitPublic)
def update_unit(unit_id: UnitWrite, body: UnitUpdate, db: DB, log: Audit) -> UnitPublic:
    name = units.rename(db, unit_id, body.name)
    log.record("unit.update", detail={"unit_id": unit_id, "name": name})
    return _public(units.get(db, unit_id))
