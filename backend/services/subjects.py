"""Subjects: the monitored people. A subject belongs to one unit; its supervisors and
officers create and change it; others see it through a share (security/access.py).

Every change to what the rules read (here the subject's time zone) bumps the subject's
configuration version (`monitoring.changed`), so the rule engine re-reads it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Select, insert, select, update

from backend.security import access
from backend.security.access import SubjectAccess, User
from backend.services import monitoring, units
from backend.services.errors import Conflict, Invalid, NotFound
from backend.storage.schema import subjects


def create(
    conn: Connection,
    *,
    reference: str,
    name: str,
    unit_id: int,
    risk_notes: str,
    now: float,
    tz: str | None = None,
) -> int:
    reference = reference.strip()
    if not reference:
        raise Invalid("a subject needs a reference")
    if not units.exists(conn, unit_id):
        raise Invalid(f"unit {unit_id} does not exist")
    if conn.execute(select(subjects.c.id).where(subjects.c.reference == reference)).first():
        raise Conflict(f"subject reference {reference!r} already exists")
    new_id = int(
        conn.execute(
            insert(subjects)
            .values(reference=reference, name=name, unit_id=unit_id, risk_notes=risk_notes,
                    created_at=now)
            .returning(subjects.c.id)
        ).scalar_one()
    )  # fmt: skip
    if tz is not None:
        # Created through the API with its time zone: the rules read it from here on.
        monitoring.changed(conn, new_id, now, tz)
    return new_id


def listing(
    conn: Connection, user: User, visible: Select[Any], now: float, limit: int, offset: int
) -> list[SubjectAccess]:
    """A page of the subjects in `visible` (the caller's, as SQL), each with the caller's
    access to it: a fixed number of queries, whatever the page's length."""
    ids = list(
        conn.execute(
            select(subjects.c.id)
            .where(subjects.c.id.in_(visible))
            .order_by(subjects.c.id)
            .limit(limit)
            .offset(offset)
        ).scalars()
    )
    found = access.subject_accesses(conn, user, ids, now)
    return [found[i] for i in ids if i in found]


def own(conn: Connection, user: User, subject_id: int, now: float) -> SubjectAccess:
    """A subject of the caller's own unit, as the caller now sees it (after creating or
    changing it: the guard has already established that the caller manages it)."""
    found = access.subject_access(conn, user, subject_id, now)
    if found is None:
        raise NotFound("subject not found")
    return found


def update_subject(
    conn: Connection, subject_id: int, changes: Mapping[str, Any], now: float
) -> None:
    """Change the fields sent (name, risk_notes, tz)."""
    values = {k: v for k, v in changes.items() if k != "tz"}
    if values:
        conn.execute(update(subjects).where(subjects.c.id == subject_id).values(**values))
    monitoring.changed(conn, subject_id, now, changes.get("tz"))
