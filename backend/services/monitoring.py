"""What every change to a subject's monitoring records (orders, equipment, curfews, zones,
charging) shares: the bump that makes the rule engine re-read the subject, and the
per-subject bounds on how many of each it may hold (backend/bounds.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table, func, insert, select

from backend.rules.store import bump_config
from backend.services.errors import Conflict


def changed(conn: Connection, subject_id: int, now: float, tz: str | None = None) -> None:
    """Something the rules read has changed (a new configuration version: the engine
    starts the subject afresh)."""
    bump_config(conn, subject_id, now, tz)


def room(conn: Connection, table: Table, subject_id: int, limit: int, what: str) -> None:
    """Refuse a new record when the subject holds `limit` already: its every evaluation
    reads them all."""
    n = conn.execute(
        select(func.count()).select_from(table).where(table.c.subject_id == subject_id)
    ).scalar_one()
    if n >= limit:
        raise Conflict(f"a subject has at most {limit} {what}")


def add(
    conn: Connection,
    table: Table,
    subject_id: int,
    values: Mapping[str, Any],
    now: float,
    limit: int,
    what: str,
) -> int:
    """Store a new record of the subject (an order, a curfew window or exception, a zone)
    within its per-subject bound, and bump the subject's configuration; its id."""
    room(conn, table, subject_id, limit, what)
    new_id = conn.execute(
        insert(table).values(subject_id=subject_id, created_at=now, **values).returning(table.c.id)
    ).scalar_one()
    changed(conn, subject_id, now)
    return int(new_id)
