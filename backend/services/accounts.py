"""The signed-in user's own account: who it is, its password and its authenticator (TOTP).
Every change here follows a re-authentication (`Sessions.prove`, which the route asks for
first)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, select, update

from backend.security import totp
from backend.security.passwords import PasswordPolicyError, Passwords
from backend.security.sessions import Sessions
from backend.services.errors import Conflict, Invalid
from backend.storage.schema import units, users


def me(conn: Connection, user_id: int) -> Any:
    """The user's row with its unit's name (`unit_name`)."""
    return conn.execute(
        select(users, units.c.name.label("unit_name"))
        .join(units, units.c.id == users.c.unit_id)
        .where(users.c.id == user_id)
    ).one()


def change_password(
    conn: Connection, passwords: Passwords, user_id: int, new_password: str, now: float
) -> int:
    """Set a new password; every session of the user is revoked (their number)."""
    try:
        new_hash = passwords.hash(new_password)
    except PasswordPolicyError as e:
        raise Invalid(str(e)) from e
    conn.execute(update(users).where(users.c.id == user_id).values(password_hash=new_hash))
    return Sessions.revoke_user(conn, user_id, now, "password_change")


def start_enrolment(conn: Connection, sessions: Sessions, user_id: int) -> tuple[bytes, bool]:
    """A new secret, held as pending until confirmed (an authenticator already confirmed
    stays in force meanwhile); and whether it would replace one."""
    secret = totp.new_secret()
    replacing = conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(totp_pending_enc=sessions.seal_totp(user_id, secret))
        .returning(users.c.totp_confirmed_at)
    ).scalar_one()
    return secret, replacing is not None


def confirm_enrolment(
    engine: Engine, conn: Connection, sessions: Sessions, user_id: int, code: str, now: float
) -> bool | None:
    """Finish an enrolment with a code from the pending secret: it replaces any previous
    one. None when the code does not match it; True when it replaced a confirmed one."""
    # Read, and match, outside the request's write transaction.
    with engine.connect() as read:
        row = read.execute(
            select(users.c.totp_pending_enc, users.c.totp_enc, users.c.totp_confirmed_at).where(
                users.c.id == user_id
            )
        ).one()
    pending = row.totp_pending_enc
    if pending is None:
        raise Conflict("no TOTP enrolment in progress")
    step = totp.match(sessions.open_totp(user_id, pending), code, now)
    if step is None:
        return None
    swapped = conn.execute(
        update(users)
        .where(users.c.id == user_id, users.c.totp_pending_enc == pending)
        .values(totp_enc=pending, totp_pending_enc=None, totp_confirmed_at=now, totp_last_step=step)
    ).rowcount
    if swapped != 1:
        # Another window started a new enrolment (or turned TOTP off) since the read.
        raise Conflict("the TOTP enrolment changed: start again")
    return row.totp_enc is not None and row.totp_confirmed_at is not None


def disable_totp(conn: Connection, user_id: int) -> None:
    """TOTP off, and an enrolment in progress dropped."""
    conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(totp_enc=None, totp_pending_enc=None, totp_confirmed_at=None, totp_last_step=None)
    )
