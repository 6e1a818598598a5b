"""Login (OAuth2 password flow, plus refresh), logout, the caller's identity, password
change and TOTP enrolment."""

from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import select, update

from backend.api.deps import DB, Audit, Context, CurrentUser, RequestId
from backend.security import audit, totp
from backend.security.passwords import PasswordPolicyError
from backend.security.sessions import Issued, LoginError, OtpRequired
from backend.storage.database import IMMEDIATE
from backend.storage.schema import units, users

# 422 by number: Starlette renamed the constant (UNPROCESSABLE_CONTENT, RFC 9110).
UNPROCESSABLE = 422
router = APIRouter(prefix="/api/auth", tags=["auth"])


class TokenPublic(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds the access token is valid")
    refresh_token: str


class UserSelf(BaseModel):
    id: int
    username: str
    display_name: str
    unit_id: int
    unit_name: str
    role: str
    totp_enabled: bool


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(min_length=12, max_length=1024)


class TotpEnrolment(BaseModel):
    secret: str = Field(description="base32, for manual entry")
    uri: str = Field(description="otpauth:// URI, for a QR code")


class TotpCode(BaseModel):
    code: str = Field(min_length=6, max_length=8)


class PasswordConfirm(BaseModel):
    password: str = Field(max_length=1024)


def _refused(detail: str = "invalid credentials") -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _audit_login(
    ctx: Context,
    request_id: str,
    actor: str,
    action: str,
    e: LoginError | None,
    issued: Issued | None,
) -> None:
    user_id = issued.user.id if issued else (e.user_id if e else None)
    unit_id = issued.user.unit_id if issued else (e.unit_id if e else None)
    detail = {"reason": e.reason} if e else {"session_id": issued.user.session_id if issued else 0}
    audit.append_now(
        ctx.engine,
        audit.Entry(
            actor=actor[:64],
            action=action,
            detail=detail,
            user_id=user_id,
            unit_id=unit_id,
            request_id=request_id,
        ),
        ctx.clock.now(),
    )


@router.post(
    "/token",
    response_model=TokenPublic,
    responses={401: {"description": "refused"}, 429: {"description": "too many attempts"}},
)
def token(
    request: Request,
    ctx: Context,
    request_id: RequestId,
    grant_type: Annotated[Literal["password", "refresh_token"], Form()] = "password",
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    otp: Annotated[str | None, Form(max_length=8, description="TOTP code if enrolled")] = None,
    refresh_token: Annotated[str | None, Form(max_length=128)] = None,
) -> TokenPublic:
    """OAuth2 token endpoint: `grant_type=password` (username, password, and `otp` when
    TOTP is enrolled) or `grant_type=refresh_token` (rotates the refresh token)."""
    now = ctx.clock.now()
    if grant_type == "refresh_token":
        if not refresh_token:
            raise _refused("refresh_token required")
        refused: LoginError | None = None
        with ctx.engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            try:
                issued = ctx.sessions.refresh(conn, refresh_token, now)
            except LoginError as e:
                # Committed: a reuse revokes the session even though the answer is 401.
                refused = e
        if refused is not None:
            _audit_login(ctx, request_id, "anonymous", "auth.refresh_refused", refused, None)
            raise _refused("invalid refresh token")
        return TokenPublic(
            access_token=issued.access_token,
            expires_in=issued.expires_in,
            refresh_token=issued.refresh_token,
        )

    client = request.client.host if request.client else "unknown"
    wait = ctx.login_limiter.hit(f"ip:{client}", f"user:{username.lower()}")
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many login attempts",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    try:
        issued = ctx.sessions.login(ctx.engine, username, password, otp, now)
    except OtpRequired as e:
        _audit_login(ctx, request_id, username, "auth.login_otp_required", e, None)
        raise _refused("one-time code required") from e
    except LoginError as e:
        _audit_login(ctx, request_id, username, "auth.login_failed", e, None)
        # A wrong or reused code is only judged after the password (and lock-out) passed,
        # which "one-time code required" already told this caller: naming the code reveals
        # nothing more and tells the user what to retype.
        if e.reason in ("bad_otp", "otp_reused"):
            raise _refused("one-time code not accepted") from e
        raise _refused() from e
    _audit_login(ctx, request_id, username, "auth.login", None, issued)
    return TokenPublic(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(user: CurrentUser, db: DB, ctx: Context, log: Audit) -> None:
    """Revoke this session: its access and refresh tokens stop working at once."""
    ctx.sessions.revoke(db, user.session_id, ctx.clock.now(), "logout")
    log.record("auth.logout", detail={"session_id": user.session_id})


@router.get("/me", response_model=UserSelf)
def me(user: CurrentUser, db: DB) -> UserSelf:
    row = db.execute(
        select(users, units.c.name.label("unit_name"))
        .join(units, units.c.id == users.c.unit_id)
        .where(users.c.id == user.id)
    ).one()
    return UserSelf(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        unit_id=row.unit_id,
        unit_name=row.unit_name,
        role=row.role,
        totp_enabled=row.totp_confirmed_at is not None,
    )


def _check_password(ctx: Context, db: DB, user_id: int, password: str) -> None:
    stored = db.execute(select(users.c.password_hash).where(users.c.id == user_id)).scalar_one()
    if not ctx.passwords.verify(stored, password):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "password does not match")


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
def change_password(
    body: PasswordChange, user: CurrentUser, db: DB, ctx: Context, log: Audit
) -> None:
    """Change one's own password; every other session of the user is revoked."""
    _check_password(ctx, db, user.id, body.current_password)
    try:
        new_hash = ctx.passwords.hash(body.new_password)
    except PasswordPolicyError as e:
        raise HTTPException(UNPROCESSABLE, str(e)) from e
    now = ctx.clock.now()
    db.execute(update(users).where(users.c.id == user.id).values(password_hash=new_hash))
    revoked = ctx.sessions.revoke_user(db, user.id, now, "password_change")
    log.record("auth.password_changed", detail={"sessions_revoked": revoked})


@router.post("/totp/enroll", response_model=TotpEnrolment)
def totp_enroll(
    body: PasswordConfirm, user: CurrentUser, db: DB, ctx: Context, log: Audit
) -> TotpEnrolment:
    """Start TOTP enrolment: returns a new secret; it takes effect after /totp/confirm."""
    _check_password(ctx, db, user.id, body.password)
    secret = totp.new_secret()
    db.execute(
        update(users)
        .where(users.c.id == user.id)
        .values(
            totp_enc=ctx.sessions.seal_totp(user.id, secret),
            totp_confirmed_at=None,
            totp_last_step=None,
        )
    )
    log.record("auth.totp_enroll_started")
    return TotpEnrolment(
        secret=totp.b32(secret), uri=totp.uri(secret, user.username, ctx.settings.totp_issuer)
    )


@router.post("/totp/confirm", status_code=status.HTTP_204_NO_CONTENT)
def totp_confirm(body: TotpCode, user: CurrentUser, db: DB, ctx: Context, log: Audit) -> None:
    """Finish enrolment with a code from the authenticator: logins then require a code."""
    row = db.execute(select(users).where(users.c.id == user.id)).one()
    if row.totp_enc is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "no TOTP enrolment in progress")
    now = ctx.clock.now()
    step = totp.match(ctx.sessions.open_totp(user.id, row.totp_enc), body.code, now)
    if step is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "code does not match")
    db.execute(
        update(users)
        .where(users.c.id == user.id)
        .values(totp_confirmed_at=now, totp_last_step=step)
    )
    log.record("auth.totp_enabled")


@router.post("/totp/disable", status_code=status.HTTP_204_NO_CONTENT)
def totp_disable(
    body: PasswordConfirm, user: CurrentUser, db: DB, ctx: Context, log: Audit
) -> None:
    _check_password(ctx, db, user.id, body.password)
    db.execute(
        update(users)
        .where(users.c.id == user.id)
        .values(totp_enc=None, totp_confirmed_at=None, totp_last_step=None)
    )
    log.record("auth.totp_disabled")
