"""Login, refresh, logout and revocation on the `users` and `auth_sessions` tables.

A login checks the password (argon2id), the lock-out, the account state and, when enrolled,
a TOTP code (`Sessions.prove`, the one factor check: a signed-in user's re-authentication
before a security change goes through it too); it creates a session holding the SHA-256
of a fresh refresh token. The refresh token rotates on use; an old one presented again
revokes the whole session (theft signal). Disabling a user or changing its password revokes
all its sessions, which invalidates its access tokens at once because every request checks
the session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select, update

from backend.registry import KeyVault
from backend.security import totp
from backend.security.access import User
from backend.security.passwords import Passwords
from backend.security.tokens import TokenSigner, new_refresh_token, refresh_hash
from backend.settings import Settings
from backend.storage.database import IMMEDIATE
from backend.storage.schema import auth_sessions, users

# Sealing TOTP secrets reuses the device-key vault with an id space of its own.
_TOTP_AAD_BASE = 1 << 40


class LoginError(Exception):
    """A refused login or re-authentication; `reason` is for the audit log, never for the
    caller. `locked`: the failure was counted toward the lock-out, and whether it locked the
    account (None: not counted). `retry_after_s`: how long a lock-out still lasts."""

    def __init__(
        self,
        reason: str,
        user_id: int | None = None,
        unit_id: int | None = None,
        *,
        locked: bool | None = None,
        retry_after_s: int | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.user_id = user_id
        self.unit_id = unit_id
        self.locked = locked
        self.retry_after_s = retry_after_s


class OtpRequired(LoginError):
    """Password right, TOTP enrolled, no code given: the client should ask for one."""


@dataclass(frozen=True)
class Issued:
    user: User
    access_token: str
    refresh_token: str
    expires_in: int


class Sessions:
    def __init__(
        self, settings: Settings, passwords: Passwords, signer: TokenSigner, vault: KeyVault
    ) -> None:
        self.settings = settings
        self.passwords = passwords
        self.signer = signer
        self.vault = vault

    # TOTP secrets at rest ---------------------------------------------------------------
    def seal_totp(self, user_id: int, secret: bytes) -> bytes:
        return self.vault.seal(_TOTP_AAD_BASE + user_id, secret)

    def open_totp(self, user_id: int, blob: bytes) -> bytes:
        return self.vault.open(_TOTP_AAD_BASE + user_id, blob)

    # The factor check -------------------------------------------------------------------
    def prove(
        self,
        engine: Engine,
        password: str,
        otp: str | None,
        now: float,
        *,
        username: str | None = None,
        user_id: int | None = None,
        second_factor: bool = True,
    ) -> User:
        """The one check of a user's factors, for signing in (by `username`) and for a
        signed-in user proving it is still them before a security change (by `user_id`;
        `second_factor=False` where the password alone is asked): the account is enabled and
        not locked out, the password matches (argon2id) and, while TOTP is on, so does a
        current code, which is then used up. Raises LoginError (OtpRequired when a code is
        needed and none was given); a wrong password or code, or a code used twice, counts
        toward the lock-out.

        The slow argon2 verification runs outside any write transaction (on SQLite a write
        lock held that long would stall ingest); the code is used up after it by an atomic
        update that also requires the secret to be the one the code matched, so a
        concurrent use of the same code, or an authenticator replaced or reset meanwhile
        (a lost phone), loses."""
        user, _ = self._check(engine, password, otp, now, username, user_id, second_factor)
        return user

    def _check(
        self,
        engine: Engine,
        password: str,
        otp: str | None,
        now: float,
        username: str | None,
        user_id: int | None,
        second_factor: bool,
    ) -> tuple[User, Any]:
        where = users.c.username == username if user_id is None else users.c.id == user_id
        with engine.connect() as conn:
            row = conn.execute(select(users).where(where)).first()
        # Always run one argon2 verification so an unknown name costs what a known one does.
        ok = self.passwords.verify(row.password_hash if row else None, password)
        if row is None:
            raise LoginError("unknown_user")
        ids = (row.id, row.unit_id)
        if row.disabled_at is not None:
            raise LoginError("disabled", *ids)
        if row.locked_until is not None and row.locked_until > now:
            raise LoginError("locked", *ids, retry_after_s=int(row.locked_until - now) + 1)
        if not ok:
            raise LoginError("bad_password", *ids, locked=self._failed(engine, row.id, now))
        user = User(row.id, row.username, row.unit_id, row.role)
        if not second_factor or row.totp_enc is None or row.totp_confirmed_at is None:
            return user, row
        if not otp:
            # Not a guess: the form asks for the code and the user types it.
            raise OtpRequired("otp_required", *ids)
        step = totp.match(self.open_totp(row.id, row.totp_enc), otp, now, row.totp_last_step)
        if step is None:
            raise LoginError("bad_otp", *ids, locked=self._failed(engine, row.id, now))
        with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            used = conn.execute(
                update(users)
                .where(
                    users.c.id == row.id,
                    users.c.totp_enc == row.totp_enc,
                    or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step),
                )
                .values(totp_last_step=step)
            ).rowcount
        if used != 1:
            raise LoginError("otp_reused", *ids, locked=self._failed(engine, row.id, now))
        return user, row

    # Login ------------------------------------------------------------------------------
    def login(
        self, engine: Engine, username: str, password: str, otp: str | None, now: float
    ) -> Issued:
        """Check a login (`prove`) and open a session; a success clears the failure count
        and re-hashes a password stored with an older cost."""
        user, row = self._check(engine, password, otp, now, username, None, True)
        stored = row.password_hash
        rehash = self.passwords.hash(password) if self.passwords.needs_rehash(stored) else None
        with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            values: dict[str, object] = {"failed_logins": 0, "locked_until": None}
            if rehash is not None:
                values["password_hash"] = rehash
            conn.execute(update(users).where(users.c.id == user.id).values(**values))
            return self._open_session(conn, user, now)

    def _failed(self, engine: Engine, user_id: int, now: float) -> bool:
        """Count a failed password or code check in a transaction of its own (it must stand
        whatever the request does next); True if it locked the account."""
        with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            failures = conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(failed_logins=users.c.failed_logins + 1)
                .returning(users.c.failed_logins)
            ).scalar_one()
            if failures < self.settings.login_max_failures:
                return False
            conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(failed_logins=0, locked_until=now + self.settings.login_lockout_s)
            )
            return True

    def _open_session(self, conn: Connection, user: User, now: float) -> Issued:
        refresh = new_refresh_token()
        sid = conn.execute(
            insert(auth_sessions)
            .values(
                user_id=user.id,
                refresh_hash=refresh_hash(refresh),
                created_at=now,
                refreshed_at=now,
                expires_at=now + self.settings.refresh_token_ttl_s,
            )
            .returning(auth_sessions.c.id)
        ).scalar_one()
        user = User(user.id, user.username, user.unit_id, user.role, int(sid))
        return Issued(user, self.signer.issue(user.id, int(sid), now), refresh, self.signer.ttl_s)

    # Refresh ----------------------------------------------------------------------------
    def rotate(self, engine: Engine, token: str, now: float) -> Issued:
        """`refresh` in a transaction of its own, committed even when it refuses: a reused
        token revokes its session though the answer is a refusal."""
        with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            try:
                return self.refresh(conn, token, now)
            except LoginError as e:
                refused = e
        raise refused

    def refresh(self, conn: Connection, token: str, now: float) -> Issued:
        h = refresh_hash(token)
        row = conn.execute(
            select(auth_sessions, users.c.username, users.c.unit_id, users.c.role,
                   users.c.disabled_at)
            .join(users, users.c.id == auth_sessions.c.user_id)
            .where(auth_sessions.c.refresh_hash == h)
        ).first()  # fmt: skip
        if row is None:
            # A rotated-away token: someone holds a copy. Revoke the session it belonged to.
            reused = conn.execute(
                select(auth_sessions.c.id, auth_sessions.c.user_id).where(
                    auth_sessions.c.previous_hash == h
                )
            ).first()
            if reused is not None:
                self.revoke(conn, reused.id, now, "refresh_reuse")
                raise LoginError("refresh_reuse", reused.user_id)
            raise LoginError("unknown_refresh_token")
        if row.revoked_at is not None:
            raise LoginError("revoked_session", row.user_id, row.unit_id)
        if row.expires_at <= now:
            raise LoginError("expired_session", row.user_id, row.unit_id)
        if row.disabled_at is not None:
            raise LoginError("disabled", row.user_id, row.unit_id)
        fresh = new_refresh_token()
        rotated = conn.execute(
            update(auth_sessions)
            .where(auth_sessions.c.id == row.id, auth_sessions.c.refresh_hash == h)
            .values(refresh_hash=refresh_hash(fresh), previous_hash=h, refreshed_at=now)
        ).rowcount
        if rotated != 1:
            # Rotated by another request since it was read (PostgreSQL's read committed lets
            # two read it at once; SQLite's writers are serial): a copy is in use, as above.
            self.revoke(conn, row.id, now, "refresh_reuse")
            raise LoginError("refresh_reuse", row.user_id)
        user = User(row.user_id, row.username, row.unit_id, row.role, row.id)
        return Issued(user, self.signer.issue(user.id, row.id, now), fresh, self.signer.ttl_s)

    # Revocation -------------------------------------------------------------------------
    @staticmethod
    def revoke(conn: Connection, session_id: int, now: float, reason: str) -> None:
        conn.execute(
            update(auth_sessions)
            .where(auth_sessions.c.id == session_id, auth_sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )

    @staticmethod
    def revoke_user(conn: Connection, user_id: int, now: float, reason: str) -> int:
        n = conn.execute(
            update(auth_sessions)
            .where(auth_sessions.c.user_id == user_id, auth_sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        ).rowcount
        return int(n)

    # Per request ------------------------------------------------------------------------
    def authenticate(self, conn: Connection, token: str, now: float) -> User:
        """The user behind an access token, checked against the database: the session
        must be live and the user enabled; role and unit come from the database, so a
        change takes effect on the next request."""
        claims = self.signer.check(token, now)
        row = conn.execute(
            select(users.c.id, users.c.username, users.c.unit_id, users.c.role,
                   users.c.disabled_at, auth_sessions.c.revoked_at, auth_sessions.c.expires_at)
            .join(auth_sessions, auth_sessions.c.user_id == users.c.id)
            .where(users.c.id == claims.user_id, auth_sessions.c.id == claims.session_id)
        ).first()  # fmt: skip
        if row is None:
            raise LoginError("unknown_session")
        if row.revoked_at is not None or row.expires_at <= now:
            raise LoginError("revoked_session", row.id, row.unit_id)
        if row.disabled_at is not None:
            raise LoginError("disabled", row.id, row.unit_id)
        return User(row.id, row.username, row.unit_id, row.role, claims.session_id)


def session_stands(conn: Connection, user_id: int, session_id: int, now: float) -> bool:
    """Whether a session still stands: not logged out, revoked or expired, and its user not
    disabled."""
    row = conn.execute(
        select(auth_sessions.c.revoked_at, auth_sessions.c.expires_at, users.c.disabled_at)
        .join(users, users.c.id == auth_sessions.c.user_id)
        .where(auth_sessions.c.id == session_id, users.c.id == user_id)
    ).first()
    return (
        row is not None
        and row.revoked_at is None
        and row.expires_at > now
        and row.disabled_at is None
    )
