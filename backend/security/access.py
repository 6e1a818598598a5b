"""Who may see which subject: the one place where unit ownership, shares and roles are
turned into answers (for one subject) and SQL (for lists). Plus the directory operations
on units, users, subjects and shares that the admin API and CLI share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    false,
    insert,
    literal,
    or_,
    select,
    union,
    update,
)

from backend.security import roles
from backend.security.passwords import Passwords
from backend.storage.schema import shares, subjects, units, users


class DirectoryError(ValueError):
    """A refused directory change (unknown unit, duplicate name, bad role...)."""


@dataclass(frozen=True)
class User:
    """The authenticated caller."""

    id: int
    username: str
    unit_id: int
    role: str
    session_id: int = 0

    @property
    def actor(self) -> str:
        return self.username


@dataclass(frozen=True)
class SubjectAccess:
    """A subject the caller may see, and what it may do with it."""

    id: int
    reference: str
    name: str
    unit_id: int
    risk_notes: str
    created_at: float
    scopes: frozenset[str]
    # True when the caller's unit owns the subject; False when it sees it through a share
    # (every consultation is then also a disclosure to another unit, audited as such).
    owner: bool
    share_ids: tuple[int, ...] = field(default=())

    def can(self, scope: str) -> bool:
        return scope in self.scopes


def _active_share(unit_id: int, now: float) -> ColumnElement[bool]:
    return (
        (shares.c.unit_id == unit_id) & shares.c.revoked_at.is_(None) & (shares.c.expires_at > now)
    )


def _grants(scope: str) -> ColumnElement[bool]:
    # scopes is "a,b,c": pad with commas so that "live" cannot match a longer name.
    return (literal(",") + shares.c.scopes + literal(",")).like(f"%,{scope},%")


def visible_subject_ids(user: User, scope: str, now: float) -> Select[Any]:
    """SELECT of the ids of every subject `user` may use with `scope` at `now`: use it as
    `column.in_(visible_subject_ids(...))` in any list query so lists never leak."""
    if scope not in roles.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    parts: list[Select[Any]] = []
    if scope in roles.own_scopes(user.role):
        parts.append(select(subjects.c.id).where(subjects.c.unit_id == user.unit_id))
    if scope in roles.shared_scopes(user.role, frozenset(roles.SHAREABLE)):
        q = select(shares.c.subject_id).where(_active_share(user.unit_id, now))
        if scope != roles.VIEW:
            q = q.where(_grants(scope))
        parts.append(q)
    if not parts:
        return select(subjects.c.id).where(false())
    if len(parts) == 1:
        return parts[0]
    return select(union(*parts).subquery().c[0])


def subject_access(
    conn: Connection, user: User, subject_id: int, now: float
) -> SubjectAccess | None:
    """The subject with the caller's scopes, or None when the caller may not see it at all
    (the API answers 404 then, whether or not it exists)."""
    row = conn.execute(select(subjects).where(subjects.c.id == subject_id)).first()
    if row is None:
        return None
    share_ids: tuple[int, ...] = ()
    if row.unit_id == user.unit_id:
        scopes = roles.own_scopes(user.role)
        owner = True
    else:
        owner = False
        active = conn.execute(
            select(shares.c.id, shares.c.scopes).where(
                shares.c.subject_id == subject_id, _active_share(user.unit_id, now)
            )
        ).all()
        granted: frozenset[str] = frozenset()
        for s in active:
            granted |= roles.parse_scopes(s.scopes)
        scopes = roles.shared_scopes(user.role, granted)
        share_ids = tuple(s.id for s in active)
    if not scopes:
        return None
    return SubjectAccess(
        row.id,
        row.reference,
        row.name,
        row.unit_id,
        row.risk_notes,
        row.created_at,
        scopes,
        owner,
        share_ids,
    )


def permitted(
    conn: Connection, user: User, scope: str, subject_ids: Iterable[int], now: float
) -> set[int]:
    """The subjects among `subject_ids` that `user` may use with `scope` at `now` (a stream
    asks at the moment it sends, so what it read before a share ended is not sent after)."""
    ids = sorted(set(subject_ids))
    if not ids:
        return set()
    found = conn.execute(
        select(subjects.c.id).where(
            subjects.c.id.in_(ids), subjects.c.id.in_(visible_subject_ids(user, scope, now))
        )
    ).scalars()
    return {int(i) for i in found}


def owned_and_shared(
    conn: Connection, user: User, subject_ids: Iterable[int], now: float
) -> tuple[list[int], dict[int, list[int]]]:
    """Split subjects the caller was shown into its own unit's and those it sees through a
    share (each with the ids of the shares in force at `now`): a use of the latter is a
    disclosure to another unit."""
    ids = sorted(set(subject_ids))
    owned = {
        int(i)
        for i in conn.execute(
            select(subjects.c.id).where(subjects.c.id.in_(ids), subjects.c.unit_id == user.unit_id)
        ).scalars()
    }
    shared: dict[int, list[int]] = {i: [] for i in ids if i not in owned}
    if shared:
        for share_id, subject_id in conn.execute(
            select(shares.c.id, shares.c.subject_id)
            .where(shares.c.subject_id.in_(list(shared)), _active_share(user.unit_id, now))
            .order_by(shares.c.id)
        ):
            shared[int(subject_id)].append(int(share_id))
    return sorted(owned), shared


# Directory operations -----------------------------------------------------------------


def create_unit(conn: Connection, name: str, kind: str, now: float) -> int:
    if kind not in roles.UNIT_KINDS:
        raise DirectoryError(f"unit kind must be one of {roles.UNIT_KINDS}, not {kind!r}")
    name = name.strip()
    if not name:
        raise DirectoryError("a unit needs a name")
    if conn.execute(select(units.c.id).where(units.c.name == name)).first():
        raise DirectoryError(f"unit {name!r} already exists")
    new_id = conn.execute(
        insert(units).values(name=name, kind=kind, created_at=now).returning(units.c.id)
    ).scalar_one()
    return int(new_id)


def unit_exists(conn: Connection, unit_id: int) -> bool:
    return conn.execute(select(units.c.id).where(units.c.id == unit_id)).first() is not None


def unit_by_name(conn: Connection, name: str) -> int | None:
    found = conn.execute(select(units.c.id).where(units.c.name == name)).scalar()
    return int(found) if found is not None else None


def create_user(
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
        raise DirectoryError(f"role must be one of {roles.ROLES}, not {role!r}")
    username = username.strip()
    if not username or len(username) > 64:
        raise DirectoryError("a username has 1 to 64 characters")
    if not unit_exists(conn, unit_id):
        raise DirectoryError(f"unit {unit_id} does not exist")
    if conn.execute(select(users.c.id).where(users.c.username == username)).first():
        raise DirectoryError(f"user {username!r} already exists")
    new_id = conn.execute(
        insert(users)
        .values(
            username=username,
            display_name=display_name.strip() or username,
            unit_id=unit_id,
            role=role,
            password_hash=passwords.hash(password),
            failed_logins=0,
            created_at=now,
        )
        .returning(users.c.id)
    ).scalar_one()
    return int(new_id)


def create_subject(
    conn: Connection, *, reference: str, name: str, unit_id: int, risk_notes: str, now: float
) -> int:
    reference = reference.strip()
    if not reference:
        raise DirectoryError("a subject needs a reference")
    if not unit_exists(conn, unit_id):
        raise DirectoryError(f"unit {unit_id} does not exist")
    if conn.execute(select(subjects.c.id).where(subjects.c.reference == reference)).first():
        raise DirectoryError(f"subject reference {reference!r} already exists")
    new_id = conn.execute(
        insert(subjects)
        .values(reference=reference, name=name, unit_id=unit_id, risk_notes=risk_notes,
                created_at=now)
        .returning(subjects.c.id)
    ).scalar_one()  # fmt: skip
    return int(new_id)


def create_share(
    conn: Connection,
    *,
    subject_id: int,
    unit_id: int,
    scopes: frozenset[str],
    purpose: str,
    expires_at: float,
    created_by: int,
    now: float,
) -> int:
    bad = scopes - frozenset(roles.SHAREABLE)
    if bad or not scopes:
        raise DirectoryError(f"a share grants a non-empty subset of {roles.SHAREABLE}")
    if len(purpose.strip()) < 3:
        raise DirectoryError("a share needs a stated purpose")
    if expires_at <= now:
        raise DirectoryError("a share must expire in the future")
    owner = conn.execute(select(subjects.c.unit_id).where(subjects.c.id == subject_id)).scalar()
    if owner is None:
        raise DirectoryError(f"subject {subject_id} does not exist")
    if owner == unit_id:
        raise DirectoryError("a subject is not shared with its own unit")
    if not unit_exists(conn, unit_id):
        raise DirectoryError(f"unit {unit_id} does not exist")
    new_id = conn.execute(
        insert(shares)
        .values(
            subject_id=subject_id,
            unit_id=unit_id,
            scopes=roles.format_scopes(scopes),
            purpose=purpose.strip(),
            created_by=created_by,
            created_at=now,
            expires_at=expires_at,
        )
        .returning(shares.c.id)
    ).scalar_one()
    return int(new_id)


def revoke_share(conn: Connection, share_id: int, now: float) -> bool:
    n = conn.execute(
        update(shares)
        .where(shares.c.id == share_id, shares.c.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount
    return n == 1


def visible_share_clause(user: User) -> ColumnElement[bool]:
    """Shares a user may list: those of its unit's subjects (supervisors and officers) and
    those granted to its unit (any role that uses shares)."""
    owned = shares.c.subject_id.in_(select(subjects.c.id).where(subjects.c.unit_id == user.unit_id))
    received = shares.c.unit_id == user.unit_id
    if user.role in (roles.SUPERVISOR, roles.OFFICER):
        return or_(owned, received)
    if user.role == roles.PARTNER:
        return received
    return false()
