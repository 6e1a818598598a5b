"""Units, users and shares. Administrators manage units and accounts (and see no subject
data); supervisors share their unit's subjects with other units."""

from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, select, update
from starlette.requests import HTTPConnection

from backend.api.deps import (
    DB,
    Audit,
    Context,
    CurrentUser,
    SubjectManage,
    User,
    guard,
    require_role,
)
from backend.security import access, roles
from backend.security.passwords import PasswordPolicyError
from backend.storage.schema import shares, subjects, units, users

# 422 by number: Starlette renamed the constant (UNPROCESSABLE_CONTENT, RFC 9110).
UNPROCESSABLE = 422
router = APIRouter(prefix="/api", tags=["admin"])

Administrator = Annotated[User, Depends(require_role(roles.ADMINISTRATOR))]
DirectoryReader = Annotated[
    User, Depends(require_role(roles.ADMINISTRATOR, roles.AUDITOR, roles.SUPERVISOR))
]
Id = Annotated[int, Path(ge=1, le=2**62)]

UnitKind = Literal["police", "partner"]
Role = Literal["administrator", "supervisor", "officer", "partner", "auditor"]
Scope = Literal["live", "trail", "alerts", "reports", "conditions"]
# The schema spells the shareable scopes out for OpenAPI; roles.SHAREABLE is the definition.
assert set(get_args(Scope)) == set(roles.SHAREABLE)


def _refused(e: Exception) -> HTTPException:
    return HTTPException(UNPROCESSABLE, str(e))


# Units ----------------------------------------------------------------------------------


class UnitCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    kind: UnitKind


class UnitUpdate(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class UnitPublic(BaseModel):
    id: int
    name: str
    kind: str


@guard("unit_id")
def unit_guard(unit_id: Id, user: CurrentUser, db: DB) -> int:
    """Every user may see the unit list (to know whom a share goes to); ids that do not
    exist answer 404."""
    if not access.unit_exists(db, unit_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unit not found")
    return unit_id


UnitId = Annotated[int, Depends(unit_guard)]


@router.get("/units", response_model=list[UnitPublic], tags=["admin"])
def list_units(user: CurrentUser, db: DB) -> list[UnitPublic]:
    rows = db.execute(select(units).order_by(units.c.name)).all()
    return [UnitPublic(id=r.id, name=r.name, kind=r.kind) for r in rows]


@router.post("/units", response_model=UnitPublic, status_code=status.HTTP_201_CREATED)
def create_unit(
    body: UnitCreate, admin: Administrator, db: DB, ctx: Context, log: Audit
) -> UnitPublic:
    try:
        new_id = access.create_unit(db, body.name, body.kind, ctx.clock.now())
    except access.DirectoryError as e:
        raise _refused(e) from e
    log.record("unit.create", detail={"unit_id": new_id, "name": body.name, "kind": body.kind})
    return UnitPublic(id=new_id, name=body.name.strip(), kind=body.kind)


@router.get("/units/{unit_id}", response_model=UnitPublic)
def get_unit(unit_id: UnitId, db: DB) -> UnitPublic:
    r = db.execute(select(units).where(units.c.id == unit_id)).one()
    return UnitPublic(id=r.id, name=r.name, kind=r.kind)


@router.patch("/units/{unit_id}", response_model=UnitPublic)
def update_unit(
    unit_id: UnitId, body: UnitUpdate, admin: Administrator, db: DB, log: Audit
) -> UnitPublic:
    name = body.name.strip()
    clash = db.execute(
        select(units.c.id).where(units.c.name == name, units.c.id != unit_id)
    ).first()
    if clash or not name:
        raise HTTPException(UNPROCESSABLE, "unit name taken or empty")
    db.execute(update(units).where(units.c.id == unit_id).values(name=name))
    log.record("unit.update", detail={"unit_id": unit_id, "name": name})
    return get_unit(unit_id, db)


# Users ----------------------------------------------------------------------------------


class UserCreate(BaseModel):
    model_config = ConfigDict(strict=True)  # JSON true is not 1, nor 1 true

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    display_name: str = Field(default="", max_length=100)
    unit_id: int = Field(ge=1, le=2**62)
    role: Role
    password: str = Field(min_length=12, max_length=1024)


class UserUpdate(BaseModel):
    model_config = ConfigDict(strict=True)  # JSON true is not 1, nor 1 true

    display_name: str | None = Field(default=None, max_length=100)
    unit_id: int | None = Field(default=None, ge=1, le=2**62)
    role: Role | None = None
    disabled: bool | None = Field(default=None, description="disable (revokes all sessions)")
    unlock: bool = Field(default=False, description="clear a lock-out")
    reset_totp: bool = Field(default=False, description="remove the TOTP enrolment")
    password: str | None = Field(default=None, min_length=12, max_length=1024)


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


def _user_public(r: Any, now: float) -> UserPublic:
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


def _may_see_user(viewer: User, unit_id: int, user_id: int) -> bool:
    if viewer.id == user_id or roles.may_read_directory(viewer.role):
        return True
    return viewer.role == roles.SUPERVISOR and viewer.unit_id == unit_id


@guard("user_id")
def user_guard(user_id: Id, viewer: CurrentUser, db: DB) -> int:
    """A user record is visible to itself, administrators, auditors, and its unit's
    supervisors; to anyone else it does not exist."""
    unit_id = db.execute(select(users.c.unit_id).where(users.c.id == user_id)).scalar()
    if unit_id is None or not _may_see_user(viewer, unit_id, user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    return user_id


UserId = Annotated[int, Depends(user_guard)]


@router.get("/users", response_model=list[UserPublic])
def list_users(
    viewer: DirectoryReader,
    db: DB,
    ctx: Context,
    unit_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> list[UserPublic]:
    q = select(users).order_by(users.c.username)
    if viewer.role == roles.SUPERVISOR:
        q = q.where(users.c.unit_id == viewer.unit_id)
    if unit_id is not None:
        q = q.where(users.c.unit_id == unit_id)
    now = ctx.clock.now()
    return [_user_public(r, now) for r in db.execute(q)]


@router.post("/users", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserCreate, admin: Administrator, db: DB, ctx: Context, log: Audit
) -> UserPublic:
    now = ctx.clock.now()
    try:
        new_id = access.create_user(
            db,
            ctx.passwords,
            username=body.username,
            display_name=body.display_name,
            unit_id=body.unit_id,
            role=body.role,
            password=body.password,
            now=now,
        )
    except (access.DirectoryError, PasswordPolicyError) as e:
        raise _refused(e) from e
    log.record(
        "user.create",
        detail={"user_id": new_id, "username": body.username, "unit_id": body.unit_id,
                "role": body.role},
    )  # fmt: skip
    return _user_public(db.execute(select(users).where(users.c.id == new_id)).one(), now)


@router.get("/users/{user_id}", response_model=UserPublic)
def get_user(user_id: UserId, db: DB, ctx: Context) -> UserPublic:
    r = db.execute(select(users).where(users.c.id == user_id)).one()
    return _user_public(r, ctx.clock.now())


@router.patch("/users/{user_id}", response_model=UserPublic)
def update_user(
    user_id: UserId, body: UserUpdate, admin: Administrator, db: DB, ctx: Context, log: Audit
) -> UserPublic:
    """Change an account. Disabling it, or changing its role, unit or password, revokes
    all of its sessions: its tokens stop working on their next request."""
    now = ctx.clock.now()
    values: dict[str, object] = {}
    changed: list[str] = []
    revoke = False
    if body.display_name is not None:
        values["display_name"] = body.display_name
        changed.append("display_name")
    if body.unit_id is not None:
        if not access.unit_exists(db, body.unit_id):
            raise HTTPException(UNPROCESSABLE, "unit does not exist")
        values["unit_id"] = body.unit_id
        changed.append("unit_id")
        revoke = True
    if body.role is not None:
        values["role"] = body.role
        changed.append("role")
        revoke = True
    if body.disabled is not None:
        if body.disabled and user_id == admin.id:
            raise HTTPException(status.HTTP_409_CONFLICT, "an administrator cannot disable itself")
        values["disabled_at"] = now if body.disabled else None
        changed.append("disabled")
        revoke = revoke or body.disabled
    if body.unlock:
        values.update(locked_until=None, failed_logins=0)
        changed.append("unlock")
    if body.reset_totp:
        # The recovery path for a lost authenticator: a set-up in progress goes too, and the
        # user's sessions end (whoever holds the device may hold a session).
        values.update(
            totp_enc=None, totp_confirmed_at=None, totp_last_step=None, totp_pending_enc=None
        )
        changed.append("reset_totp")
        revoke = True
    if body.password is not None:
        try:
            values["password_hash"] = ctx.passwords.hash(body.password)
        except PasswordPolicyError as e:
            raise _refused(e) from e
        changed.append("password")
        revoke = True
    if values:
        db.execute(update(users).where(users.c.id == user_id).values(**values))
    revoked = ctx.sessions.revoke_user(db, user_id, now, "account_change") if revoke else 0
    detail: dict[str, object] = {
        "user_id": user_id,
        "changed": changed,
        "sessions_revoked": revoked,
    }
    if body.role is not None:
        detail["role"] = body.role
    if body.unit_id is not None:
        detail["unit_id"] = body.unit_id
    log.record("user.update", detail=detail)
    return get_user(user_id, db, ctx)


# Shares ---------------------------------------------------------------------------------


class ShareCreate(BaseModel):
    model_config = ConfigDict(strict=True)  # JSON true is not 1, nor 1 true

    unit_id: int = Field(ge=1, le=2**62, description="the unit the subject is shared with")
    scopes: list[Scope] = Field(min_length=1, max_length=4)
    purpose: str = Field(min_length=3, max_length=500)
    expires_at: float = Field(gt=0, lt=1e11, description="Unix seconds")


class SharePublic(BaseModel):
    id: int
    subject_id: int
    owner_unit_id: int
    unit_id: int
    scopes: list[str]
    purpose: str
    created_by: int
    created_at: float
    expires_at: float
    revoked_at: float | None
    active: bool


def _share_public(r: Any, now: float) -> SharePublic:
    return SharePublic(
        id=r.id,
        subject_id=r.subject_id,
        owner_unit_id=r.owner_unit_id,
        unit_id=r.unit_id,
        scopes=sorted(roles.parse_scopes(r.scopes)),
        purpose=r.purpose,
        created_by=r.created_by,
        created_at=r.created_at,
        expires_at=r.expires_at,
        revoked_at=r.revoked_at,
        active=r.revoked_at is None and r.expires_at > now,
    )


def _load_share(db: Connection, share_id: int) -> Any:
    q = select(shares, subjects.c.unit_id.label("owner_unit_id")).join(
        subjects, subjects.c.id == shares.c.subject_id
    )
    return db.execute(q.where(shares.c.id == share_id)).first()


@guard("share_id")
def share_guard(conn: HTTPConnection, share_id: Id, user: CurrentUser, db: DB) -> int:
    """A share is visible to the supervisors and officers of the owning unit and to the
    users of the unit it is granted to; to anyone else it does not exist."""
    visible = db.execute(
        select(shares.c.id).where(shares.c.id == share_id, access.visible_share_clause(user))
    ).first()
    if visible is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "share not found")
    return share_id


ShareId = Annotated[int, Depends(share_guard)]


@router.get("/subjects/{subject_id}/shares", response_model=list[SharePublic], tags=["shares"])
def list_subject_shares(subject: SubjectManage, db: DB, ctx: Context) -> list[SharePublic]:
    """Shares of one subject (its owning unit only)."""
    q = select(shares, subjects.c.unit_id.label("owner_unit_id")).join(
        subjects, subjects.c.id == shares.c.subject_id
    )
    rows = db.execute(q.where(shares.c.subject_id == subject.id).order_by(shares.c.id))
    now = ctx.clock.now()
    return [_share_public(r, now) for r in rows]


@router.post(
    "/subjects/{subject_id}/shares",
    response_model=SharePublic,
    status_code=status.HTTP_201_CREATED,
    tags=["shares"],
)
def create_share(
    subject: SubjectManage, body: ShareCreate, user: CurrentUser, db: DB, ctx: Context, log: Audit
) -> SharePublic:
    """Share a subject with another unit (supervisors of the owning unit). Every use of
    the share is then recorded as a disclosure."""
    if not roles.may_share(user.role):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only a supervisor shares a subject")
    now = ctx.clock.now()
    try:
        share_id = access.create_share(
            db,
            subject_id=subject.id,
            unit_id=body.unit_id,
            scopes=frozenset(body.scopes),
            purpose=body.purpose,
            expires_at=body.expires_at,
            created_by=user.id,
            now=now,
        )
    except access.DirectoryError as e:
        raise _refused(e) from e
    log.record(
        "share.create",
        subject_ids=[subject.id],
        purpose=body.purpose,
        detail={"share_id": share_id, "to_unit_id": body.unit_id,
                "scopes": sorted(body.scopes), "expires_at": body.expires_at},
    )  # fmt: skip
    row = _load_share(db, share_id)
    return _share_public(row, now)


@router.get("/shares", response_model=list[SharePublic], tags=["shares"])
def list_shares(
    user: CurrentUser,
    db: DB,
    ctx: Context,
    active: Annotated[bool, Query(description="only unrevoked, unexpired shares")] = True,
) -> list[SharePublic]:
    """Shares the caller's unit gave (supervisors, officers) or received."""
    now = ctx.clock.now()
    q = select(shares, subjects.c.unit_id.label("owner_unit_id")).join(
        subjects, subjects.c.id == shares.c.subject_id
    )
    q = q.where(access.visible_share_clause(user)).order_by(shares.c.id)
    if active:
        q = q.where(shares.c.revoked_at.is_(None), shares.c.expires_at > now)
    return [_share_public(r, now) for r in db.execute(q)]


@router.get("/shares/{share_id}", response_model=SharePublic, tags=["shares"])
def get_share(share_id: ShareId, db: DB, ctx: Context) -> SharePublic:
    return _share_public(_load_share(db, share_id), ctx.clock.now())


@router.delete("/shares/{share_id}", response_model=SharePublic, tags=["shares"])
def revoke_share(
    share_id: ShareId, user: CurrentUser, db: DB, ctx: Context, log: Audit
) -> SharePublic:
    """Revoke a share (supervisors of the owning unit); the other unit loses access at once."""
    row = _load_share(db, share_id)
    owner = row.owner_unit_id
    if not (roles.may_share(user.role) and user.unit_id == owner):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only the owning unit's supervisor")
    now = ctx.clock.now()
    access.revoke_share(db, share_id, now)
    log.record(
        "share.revoke",
        subject_ids=[row.subject_id],
        detail={"share_id": share_id, "to_unit_id": row.unit_id},
    )
    return _share_public(_load_share(db, share_id), now)
