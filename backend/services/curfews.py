"""Curfews: weekly windows in local civil time when a subject must be at home, and one-off
exceptions (an authorised absence, extra curfew time)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete, select

from backend import bounds
from backend.services import monitoring
from backend.storage.schema import curfew_exceptions, curfews


def of_subject(conn: Connection, subject_id: int) -> list[Any]:
    q = select(curfews).where(curfews.c.subject_id == subject_id).order_by(curfews.c.id)
    return list(conn.execute(q))


def create(
    conn: Connection,
    subject_id: int,
    days: Sequence[str],
    start: str,
    end: str,
    tz: str,
    now: float,
) -> Any:
    """A weekly window (an end at or before the start runs into the next day)."""
    values = {"days": ",".join(days), "start": start, "end": end, "tz": tz}
    new_id = monitoring.add(
        conn, curfews, subject_id, values, now, bounds.MAX_CURFEWS, "curfew windows"
    )
    return conn.execute(select(curfews).where(curfews.c.id == new_id)).one()


def remove(conn: Connection, subject_id: int, curfew_id: int, now: float) -> None:
    conn.execute(delete(curfews).where(curfews.c.id == curfew_id))
    monitoring.changed(conn, subject_id, now)


def exceptions_of(conn: Connection, subject_id: int) -> list[Any]:
    q = (
        select(curfew_exceptions)
        .where(curfew_exceptions.c.subject_id == subject_id)
        .order_by(curfew_exceptions.c.starts_at)
    )
    return list(conn.execute(q))


def add_exception(conn: Connection, subject_id: int, values: Mapping[str, Any], now: float) -> Any:
    new_id = monitoring.add(
        conn, curfew_exceptions, subject_id, values, now, bounds.MAX_EXCEPTIONS,
        "curfew exceptions",
    )  # fmt: skip
    return conn.execute(select(curfew_exceptions).where(curfew_exceptions.c.id == new_id)).one()


def remove_exception(conn: Connection, subject_id: int, exception_id: int, now: float) -> None:
    conn.execute(delete(curfew_exceptions).where(curfew_exceptions.c.id == exception_id))
    monitoring.changed(conn, subject_id, now)
