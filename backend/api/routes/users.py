"""User accounts: administrators create and change them; an account is visible to itself,
administrators, auditors and its unit's supervisors (the guards: backend/api/deps.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import (
    DB,
    Administrator,
    Audit,
    Context,
    CurrentUser,
    DirectoryReader,
    UserRead,
    UserWrite,
)
from backend.api.models_monitoring import optional
from backend.services import users

router = APIRouter(prefix="/api/users", tags=["admin"])

Role = Literal["administrator", "supervisor", "officer", "partner", "auditor", "researcher"]


class UserCreate(BaseModel):
    model_config = ConfigDict(strict=True)  # JSON true is not 1, nor 1 true

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    display_name: str = Field(default="", max_length=100)
    unit_id: int = Field(ge=1, le=2**62)
    role: Role
    password: str = Field(min_length=12, max_length=1024)


class UserUpdate(BaseModel):
    """Only the fields sent change."""

    model_config = ConfigDict(strict=True)  # JSON true is not 1, nor 1 true

    display_name: str = optional(max_length=100)
    unit_id: int = optional(ge=1, le=2**62)
    role: Role = optional()
    disabled: bool = optional(description="disable (revokes all sessions)")
    unlock: bool = Field(default=False, description="clear a lock-out")
    reset_totp: bool = Field(default=False, description="remove the TOTP enrolment")
    password: str = optional(min_length=12, max_length=1024)


class UserPublic(BaseModel):
    id: int
    username: str
    display_name: str
    unit_id: int
    role: str
    disabled: bool
    locked: bool
    totp_enabled: bool
    created_at: float


def _public(r: Any, now: float) -> UserPublic:
    return UserPublic(
        id=r.id,
        username=r.username,
        display_name=r.display_name,
        unit_id=r.unit_id,
        role=r.role,
        disabled=r.disabled_at is not None,
        locked=r.locked_until is not None and r.locked_until > now,
        totp_enabled=r.totp_confirmed_at is not None,
        created_at=r.created_at,
    )


@router.get("", response_model=list[UserPublic])
def list_users(
    viewer: DirectoryReader,
    db: DB,
    ctx: Context,
    unit_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> list[UserPublic]:
    now = ctx.clock.now()
    return [_public(r, now) for r in users.listing(db, viewer, unit_id)]


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserCreate, admin: Administrator, db: DB, ctx: Context, log: Audit
) -> UserPublic:
    now = ctx.clock.now()
    new_id = users.create(
        db,
        ctx.passwords,
        username=body.username,
        display_name=body.display_name,
        unit_id=body.unit_id,
        role=body.role,
        password=body.password,
        now=now,
    )
    log.record(
        "user.create",
        detail={"user_id": new_id, "username": body.username, "unit_id": body.unit_id,
                "role": body.role},
    )  # fmt: skip
    return _public(users.get(db, new_id), now)


@router.get("/{user_id}", response_model=UserPublic)
def get_user(user_id: UserRead, db: DB, ctx: Context) -> UserPublic:
    return _public(users.get(db, user_id), ctx.clock.now())


@router.patch("/{user_id}", response_model=UserPublic)
def update_user(
    user_id: UserWrite, body: UserUpdate, admin: CurrentUser, db: DB, ctx: Context, log: Audit
) -> UserPublic:
    """Change an account. Disabling it, or changing its role, unit or password, revokes
    all of its sessions: its tokens stop working on their next request."""
    now = ctx.clock.now()
    changes = body.model_dump(exclude_unset=True)
    done = users.update_account(db, ctx.passwords, user_id, changes, actor_id=admin.id, now=now)
    detail: dict[str, object] = {
        "user_id": user_id,
        "changed": done.changed,
        "sessions_revoked": done.sessions_revoked,
    }
    for key in ("role", "unit_id"):
        if key in changes:
            detail[key] = changes[key]
    log.record("user.update", detail=detail)
    return _public(users.get(db, user_id), now)
