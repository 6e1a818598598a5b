"""Shares: a subject's owning unit lets another unit see it, for some scopes, a stated
purpose and until an expiry (docs/security.md). Every use of a share is a disclosure,
audited per subject by the guards (backend/api/deps.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, insert, select, update

from backend.security import access, roles
from backend.security.access import User
from backend.services import consent, units
from backend.services.errors import Invalid
from backend.storage.schema import shares, subjects


def create(
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
        raise Invalid(f"a share grants a non-empty subset of {roles.SHAREABLE}")
    if len(purpose.strip()) < 3:
        raise Invalid("a share needs a stated purpose")
    if expires_at <= now:
        raise Invalid("a share must expire in the future")
    owner = conn.execute(select(subjects.c.unit_id).where(subjects.c.id == subject_id)).scalar()
    if owner is None:
        raise Invalid(f"subject {subject_id} does not exist")
    if owner == unit_id:
        raise Invalid("a subject is not shared with its own unit")
    if not units.exists(conn, unit_id):
        raise Invalid(f"unit {unit_id} does not exist")
    consent.may_share(conn, subject_id, unit_id)
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


def revoke(conn: Connection, share_id: int, now: float) -> bool:
    n = conn.execute(
        update(shares)
        .where(shares.c.id == share_id, shares.c.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount
    return n == 1


def _with_owner() -> Select[Any]:
    return select(shares, subjects.c.unit_id.label("owner_unit_id")).join(
        subjects, subjects.c.id == shares.c.subject_id
    )


def get(conn: Connection, share_id: int) -> Any:
    """The share with its subject's owning unit (`owner_unit_id`)."""
    return conn.execute(_with_owner().where(shares.c.id == share_id)).one()


def of_subject(conn: Connection, subject_id: int) -> list[Any]:
    q = _with_owner().where(shares.c.subject_id == subject_id).order_by(shares.c.id)
    return list(conn.execute(q))


def visible_to(conn: Connection, user: User, now: float, active_only: bool) -> list[Any]:
    """The shares `user` may see (its unit gave or received), only those in force if asked."""
    q = _with_owner().where(access.visible_shares(user)).order_by(shares.c.id)
    if active_only:
        q = q.where(shares.c.revoked_at.is_(None), shares.c.expires_at > now)
    return list(conn.execute(q))
