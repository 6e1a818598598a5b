"""Login (OAuth2 password flow, plus refresh), logout, the caller's identity, password
change and TOTP enrolment. Signing in and every re-authentication before a security change
go through the one factor check, `Sessions.prove` (backend/security/sessions.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Request, status
from pydantic import BaseModel, Field

from backend.api.deps import DB, Audit, Context, CurrentUser, RequestId
from backend.security import audit, totp
from backend.security.sessions import Issued, LoginError, OtpRequired
from backend.services import accounts

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
    totp_pending: bool = Field(description="a new authenticator awaits /totp/confirm")


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(min_length=12, max_length=1024)


class TotpEnrolment(BaseModel):
    secret: str = Field(description="base32, for manual entry")
    uri: str = Field(description="otpauth:// URI, for a QR code")


class TotpCode(BaseModel):
    code: str = Field(min_length=6, max_length=8)


class FactorsConfirm(BaseModel):
    password: str = Field(max_length=1024)
    code: str | None = Field(
        default=None,
        max_length=8,
        description="a current code from the enrolled authenticator; required while TOTP is on",
    )


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
        try:
            issued = ctx.sessions.rotate(ctx.engine, refresh_token, now)
        except LoginError as e:
            _audit_login(ctx, request_id, "anonymous", "auth.refresh_refused", e, None)
            raise _refused("invalid refresh token") from e
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
    row = accounts.me(db, user.id)
    return UserSelf(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        unit_id=row.unit_id,
        unit_name=row.unit_name,
        role=row.role,
        totp_enabled=row.totp_enc is not None and row.totp_confirmed_at is not None,
        totp_pending=row.totp_pending_enc is not None,
    )


def _refusal(log: Audit, action: str, detail: dict[str, object]) -> None:
    """Record a refused check before answering. Nothing has been written in the request's
    transaction yet, so the record goes in one of its own and stands though the request
    fails (as does the failure count, which `Sessions.prove` keeps)."""
    log.record(action, detail=detail)


# How a refused re-authentication is answered (the reasons of Sessions.prove).
_REAUTH_REFUSED = {
    "bad_password": "password does not match",
    "otp_required": "one-time code required",
    "bad_otp": "one-time code not accepted",
    "otp_reused": "one-time code not accepted",
}


def _check_factors(
    ctx: Context,
    log: Audit,
    user_id: int,
    password: str,
    code: str | None,
    *,
    refused_action: str,
    operation: str,
    totp_too: bool,
) -> None:
    """A signed-in user proves it is still them before a security change, through the same
    factor check as signing in (`Sessions.prove`): the account is not locked out, the
    password matches and (`totp_too`, while TOTP is on) so does a current code from the
    enrolled authenticator, which is then used up. A stolen session alone, or with the
    password, is not enough to remove the second factor. A wrong password or code counts
    toward the lock-out like a failed sign-in (else a session would be an unlimited guessing
    oracle); every refusal is audited."""
    try:
        ctx.sessions.prove(
            ctx.engine, password, code, ctx.clock.now(), user_id=user_id, second_factor=totp_too
        )
    except LoginError as e:
        detail: dict[str, object] = {"operation": operation, "reason": e.reason}
        if e.locked is not None:
            detail["locked"] = e.locked
        _refusal(log, refused_action, detail)
        if e.retry_after_s is not None:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "account locked after repeated failed attempts",
                headers={"Retry-After": str(e.retry_after_s)},
            ) from e
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, _REAUTH_REFUSED.get(e.reason, "not accepted")
        ) from e


_SECURITY_REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"description": "password, or (TOTP on) the current one-time code, refused"},
    429: {"description": "account locked after repeated failures (Retry-After)"},
}


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT, responses=_SECURITY_REFUSALS)
def change_password(
    body: PasswordChange, user: CurrentUser, db: DB, ctx: Context, log: Audit
) -> None:
    """Change one's own password; every other session of the user is revoked."""
    _check_factors(
        ctx,
        log,
        user.id,
        body.current_password,
        None,
        refused_action="auth.password_change_refused",
        operation="password",
        totp_too=False,
    )
    revoked = accounts.change_password(
        db, ctx.passwords, user.id, body.new_password, ctx.clock.now()
    )
    log.record("auth.password_changed", detail={"sessions_revoked": revoked})


def _check_totp_change(
    ctx: Context, log: Audit, user_id: int, body: FactorsConfirm, op: str
) -> None:
    """Password and, while TOTP is on, a current code: both needed to change the factor."""
    _check_factors(
        ctx,
        log,
        user_id,
        body.password,
        body.code,
        refused_action="auth.totp_refused",
        operation=op,
        totp_too=True,
    )


@router.post("/totp/enroll", response_model=TotpEnrolment, responses=_SECURITY_REFUSALS)
def totp_enroll(
    body: FactorsConfirm, user: CurrentUser, db: DB, ctx: Context, log: Audit
) -> TotpEnrolment:
    """Start enrolling an authenticator: returns a new secret, held as pending. It takes
    effect only after /totp/confirm with a code from it; until then an authenticator
    already confirmed stays in force. While TOTP is on this needs a current `code` from
    that authenticator as well as the password (a lost device: an administrator resets
    TOTP, `PATCH /api/users/{id}` `{"reset_totp": true}`)."""
    _check_totp_change(ctx, log, user.id, body, "enroll")
    secret, replacing = accounts.start_enrolment(db, ctx.sessions, user.id)
    log.record("auth.totp_enroll_started", detail={"replacing": replacing})
    return TotpEnrolment(
        secret=totp.b32(secret), uri=totp.uri(secret, user.username, ctx.settings.totp_issuer)
    )


@router.post(
    "/totp/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        403: {"description": "the code does not match the pending secret"},
        409: {"description": "no enrolment in progress, or it changed meanwhile"},
    },
)
def totp_confirm(body: TotpCode, user: CurrentUser, db: DB, ctx: Context, log: Audit) -> None:
    """Finish enrolment with a code from the new authenticator: its secret replaces any
    previous one, and logins then require a code from it."""
    replaced = accounts.confirm_enrolment(
        ctx.engine, db, ctx.sessions, user.id, body.code, ctx.clock.now()
    )
    if replaced is None:
        # Audited, not counted toward the lock-out: guessing the code of a secret only its
        # enroller was shown gains nobody anything, and the usual cause is a mistyped key,
        # whose owner should not be locked out of signing in for it.
        _refusal(log, "auth.totp_refused", {"operation": "confirm", "reason": "bad_otp"})
        raise HTTPException(status.HTTP_403_FORBIDDEN, "code does not match")
    log.record("auth.totp_enabled", detail={"replaced": replaced})


@router.post("/totp/disable", status_code=status.HTTP_204_NO_CONTENT, responses=_SECURITY_REFUSALS)
def totp_disable(body: FactorsConfirm, user: CurrentUser, db: DB, ctx: Context, log: Audit) -> None:
    """Turn TOTP off (and drop an enrolment in progress). While it is on this needs a
    current `code` from the authenticator as well as the password; a lost device is an
    administrator's reset (`PATCH /api/users/{id}` `{"reset_totp": true}`)."""
    _check_totp_change(ctx, log, user.id, body, "disable")
    accounts.disable_totp(db, user.id)
    log.record("auth.totp_disabled")
