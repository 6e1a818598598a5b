"""Pydantic v2 models of the voluntary scheme's API: a subject's enrolment and consent, its
withdrawal and the removal, and the unit's tag pool (backend/services/consent.py, pool.py).
Times are Unix seconds; record dates are also within ten years of backend now (bounds.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backend.api.models_monitoring import Dated, Strict, Unix

UnitKind = Literal["police", "partner"]
PoolState = Literal["in_stock", "charging", "fitted", "removed", "cleaning", "faulty", "retired"]
# What an officer may set by hand (fitted and removed follow the assignments).
PoolMoveState = Literal["in_stock", "charging", "cleaning", "faulty", "retired"]
Note = Field(default="", max_length=2000)


class EnrolmentCreate(Dated):
    dated = ("consent_at", "review_at")
    scheme: str = Field(min_length=1, max_length=100, description="the scheme joined")
    consent_at: Unix = Field(description="when consent was given")
    sharing: list[UnitKind] = Field(
        max_length=2, description="kinds of unit the wearer agreed their data may go to"
    )
    witnessed_by: str = Field(min_length=1, max_length=100)
    document_ref: str = Field(min_length=1, max_length=100, description="the signed form")
    review_at: Unix = Field(description="when consent is next reviewed with the wearer")


class ConsentReview(Dated):
    dated = ("review_at",)
    review_at: Unix


class Withdrawal(Dated):
    dated = ("withdrawn_at",)
    withdrawn_at: Unix = Field(description="when the wearer withdrew consent")
    note: str = Note


class Removal(Dated):
    dated = ("removed_at",)
    removed_at: Unix = Field(description="when the equipment came off")


class RemovalTaskPublic(BaseModel):
    id: int
    subject_id: int
    opened_at: float
    done_at: float | None
    removed_at: int | None


class EnrolmentPublic(BaseModel):
    id: int
    subject_id: int
    scheme: str
    consent_at: int
    sharing: list[str]
    witnessed_by: str
    document_ref: str
    review_at: int
    withdrawn_at: int | None
    withdrawal_note: str | None
    exited_at: int | None
    created_at: float
    removal: RemovalTaskPublic | None


class OpenRemovalPublic(BaseModel):
    """A removal the unit still has to do: the wearer withdrew, the equipment is on."""

    id: int
    subject_id: int
    subject_reference: str
    withdrawn_at: int
    opened_at: float


class PoolAdd(Strict):
    device: int = Field(ge=1, le=0xFFFFFFFF, description="a registered tag")
    note: str = Note


class PoolMove(Strict):
    state: PoolMoveState
    note: str = Note


class BatteryHealthPublic(BaseModel):
    assignment_id: int
    starts_at: int
    ends_at: int | None
    reports: int
    min_level: int | None
    drain_pct_per_h: float | None


class PoolTagPublic(BaseModel):
    device: int
    state: PoolState
    since: float
    assignment_id: int | None
    due_for_service: bool
    health: list[BatteryHealthPublic]


class PoolCounts(BaseModel):
    by_state: dict[str, int]
    free: int
    due_for_service: int
    summary: str


class PoolPublic(BaseModel):
    tags: list[PoolTagPublic]
    counts: PoolCounts
    removals: list[OpenRemovalPublic]


class PoolStatePublic(BaseModel):
    id: int
    device: int
    unit_id: int
    state: PoolState
    at: float
    user_id: int | None
    assignment_id: int | None
    note: str
