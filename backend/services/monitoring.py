"""What every change to a subject's monitoring records (orders, equipment, curfews, zones,
charging) shares: the bump that makes the rule engine re-read the subject, and the
per-subject bounds on how many of each it may hold (backend/bounds.py)."""

from __future__ import annotations

from sqlalchemy import Connection, Table, func, select

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
