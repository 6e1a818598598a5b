"""User accounts: created and changed by administrators (and the shell), read by whom
`access.visible_users` allows. Disabling an account, or changing its role, unit, password
or second factor, revokes all of its sessions: its tokens stop working on their next
request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, select, update

from backend.security import access, roles
from backend.security.passwords import PasswordPolicyError, Passwords
from backend.security.sessions import Sessions
from backend.services import units
from backend.services.errors import Conflict, Invalid, NotFound
from backend.storage.schema import users


def create(
    conn: Connection,
    passwords: Passwords,
    *,
    username: str,
    display_name: str,
    unit_id: int,
    role: str,
    password: str,
    now: float,
) -> int:
    if role not in roles.ROLES:
        raise Invalid(f"role must be one of {roles.ROLES}, not {role!r}")
    username = username.strip()
    if not username or len(username) > 64:
        raise Invalid("a username has 1 to 64 characters")
    if not units.exists(conn, unit_id):
        raise Invalid(f"unit {unit_id} does not exist")
    if conn.execute(select(users.c.id).where(users.c.username == username)).first():
        raise Invalid(f"user {username!r} already exists")
    new_id = conn.execute(
        insert(users)
        .values(
            username=username,
            display_name=display_name.strip() or username,
            unit_id=unit_id,
            role=role,
            password_hash=_hash(passwords, password),
            failed_logins=0,
            created_at=now,
        )
        .returning(users.c.id)
    ).scalar_one()
    return int(new_id)


def _hash(passwords: Passwords, password: str) -> str:
    try:
        return passwords.hash(password)
    except PasswordPolicyError as e:
        raise Invalid(str(e)) from e


def by_username(conn: Connection, username: str) -> int | None:
    found = conn.execute(select(users.c.id).where(users.c.username == username)).scalar()
    return None if found is None else int(found)


def listing(conn: Connection, viewer: access.User, unit_id: int | None = None) -> list[Any]:
    """The accounts `viewer` may see (access.visible_users), of one unit if given."""
    q = select(users).where(access.visible_users(viewer)).order_by(users.c.username)
    if unit_id is not None:
        q = q.where(users.c.unit_id == unit_id)
    return list(conn.execute(q))


def get(conn: Connection, user_id: int) -> Any:
    return conn.execute(select(users).where(users.c.id == user_id)).one()


@dataclass
class Change:
    """What an update did, for its audit record."""

    changed: list[str] = field(default_factory=list)
    sessions_revoked: int = 0


def update_account(
    conn: Connection,
    passwords: Passwords,
    user_id: int,
    changes: Mapping[str, Any],
    *,
    actor_id: int | None,
    now: float,
    reason: str = "account_change",
) -> Change:
    """Apply the fields sent: display_name, unit_id, role, disabled, unlock, reset_totp,
    password. `actor_id`: the administrator making the change (it cannot disable itself)."""
    values: dict[str, object] = {}
    done = Change()
    revoke = False
    if "display_name" in changes:
        values["display_name"] = changes["display_name"]
    if "unit_id" in changes:
        if not units.exists(conn, changes["unit_id"]):
            raise Invalid("unit does not exist")
        values["unit_id"] = changes["unit_id"]
        revoke = True
    if "role" in changes:
        values["role"] = changes["role"]
        revoke = True
    if "disabled" in changes:
        if changes["disabled"] and user_id == actor_id:
            raise Conflict("an administrator cannot disable itself")
        values["disabled_at"] = now if changes["disabled"] else None
        revoke = revoke or changes["disabled"]
    if changes.get("unlock"):
        values.update(locked_until=None, failed_logins=0)
    if changes.get("reset_totp"):
        # The recovery path for a lost authenticator: a set-up in progress goes too, and the
        # user's sessions end (whoever holds the device may hold a session).
        values.update(
            totp_enc=None, totp_confirmed_at=None, totp_last_step=None, totp_pending_enc=None
        )
        revoke = True
    if "password" in changes:
        values["password_hash"] = _hash(passwords, changes["password"])
        revoke = True
    done.changed = [
        k for k in ("display_name", "unit_id", "role", "disabled", "unlock", "reset_totp",
                    "password") if k in changes and (k not in _FLAGS or changes[k])
    ]  # fmt: skip
    if values:
        n = conn.execute(update(users).where(users.c.id == user_id).values(**values)).rowcount
        if n != 1:
            raise NotFound(f"no user {user_id}")
    if revoke:
        done.sessions_revoked = Sessions.revoke_user(conn, user_id, now, reason)
    return done


# Actions, not fields: false means "do nothing", not "record that it was set".
_FLAGS = ("unlock", "reset_totp")
