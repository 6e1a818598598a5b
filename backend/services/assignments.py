"""Equipment assignments: which tag and home unit a subject wears, with their history. A
device serves one subject at a time; fitting a new one ends the previous one of its role."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from backend.services import consent, monitoring, pool
from backend.services.errors import Conflict, Invalid
from backend.storage.schema import VICTIM, assignments, devices


def of_subject(conn: Connection, subject_id: int) -> list[Any]:
    """The subject's equipment: its tags and home units. A victim's device assigned through
    a link to its order is the victim's, listed with the victim scope (victims.py)."""
    q = (
        select(assignments)
        .where(assignments.c.subject_id == subject_id, assignments.c.role != VICTIM)
        .order_by(assignments.c.starts_at, assignments.c.id)
    )
    return list(conn.execute(q))


def get(conn: Connection, assignment_id: int) -> Any:
    return conn.execute(select(assignments).where(assignments.c.id == assignment_id)).one()


def fit(
    conn: Connection,
    subject_id: int,
    device: int,
    role: str,
    starts_at: int,
    now: float,
    user_id: int | None = None,
) -> int:
    """Fit a device from `starts_at`: the subject's previous device of the same role is
    unassigned from then; a device serving another subject at that time is refused, and so
    is any fitting once the subject has withdrawn consent. A tag of the unit's pool must be
    free, and becomes fitted (pool.py); the one it replaces, removed."""
    kind = conn.execute(select(devices.c.kind).where(devices.c.id == device)).scalar()
    if kind is None:
        raise Invalid(f"device {device} is not registered")
    if kind != role:
        raise Invalid(f"device {device} is a {kind}, not a {role}")
    a = assignments.c
    busy = conn.execute(
        select(a.id).where(
            a.device == device,
            a.subject_id != subject_id,
            (a.ends_at.is_(None)) | (a.ends_at > starts_at),
        )
    ).first()
    if busy is not None:
        raise Conflict(f"device {device} is assigned to another subject")
    consent.may_fit(conn, subject_id)
    for swapped in conn.execute(
        select(a.id).where(
            a.subject_id == subject_id,
            a.role == role,
            a.ends_at.is_(None),
            a.starts_at < starts_at,
        )
    ).scalars():
        pool.remove(conn, swapped, starts_at, user_id, now)
    new_id = conn.execute(
        insert(assignments)
        .values(subject_id=subject_id, device=device, role=role, starts_at=starts_at,
                created_at=now)
        .returning(a.id)
    ).scalar_one()  # fmt: skip
    pool.assignment_started(conn, device, new_id, user_id, now)
    monitoring.changed(conn, subject_id, now)
    return int(new_id)


def end(
    conn: Connection,
    subject_id: int,
    assignment_id: int,
    ends_at: int,
    now: float,
    user_id: int | None = None,
) -> None:
    """Remove a device: the assignment ends at `ends_at` (a pool tag is then removed)."""
    row = get(conn, assignment_id)
    if row.role == VICTIM:
        raise Invalid("a victim's device is unlinked through its link (/api/victim-devices)")
    if ends_at <= row.starts_at:
        raise Invalid("ends_at must be after starts_at")
    pool.remove(conn, assignment_id, ends_at, user_id, now)
    monitoring.changed(conn, subject_id, now)


def tags_of(conn: Connection, subject_id: int) -> list[tuple[int, int, int | None]]:
    """(device, starts_at, ends_at) of every tag the subject has worn."""
    a = assignments.c
    q = select(a.device, a.starts_at, a.ends_at).where(a.subject_id == subject_id, a.role == "tag")
    return [(int(d), int(s), e) for d, s, e in conn.execute(q)]


def within(span: tuple[int, int | None], start: int, end: int) -> tuple[int, int] | None:
    """The part of [start, end] an assignment [starts_at, ends_at) covers (None: none)."""
    lo, hi = max(start, span[0]), min(end, (span[1] - 1) if span[1] is not None else end)
    return (lo, hi) if lo <= hi else None
