"""The charging schedule: at least `min_minutes` of charging each local day."""

from __future__ import annotations

from sqlalchemy import Connection, delete, insert, select

from backend.services import monitoring
from backend.storage.schema import charging_schedules


def minutes(conn: Connection, subject_id: int) -> int | None:
    found = conn.execute(
        select(charging_schedules.c.min_minutes).where(
            charging_schedules.c.subject_id == subject_id
        )
    ).scalar()
    return None if found is None else int(found)


def set_minutes(conn: Connection, subject_id: int, min_minutes: int, now: float) -> None:
    conn.execute(delete(charging_schedules).where(charging_schedules.c.subject_id == subject_id))
    conn.execute(
        insert(charging_schedules).values(
            subject_id=subject_id, min_minutes=min_minutes, created_at=now
        )
    )
    monitoring.changed(conn, subject_id, now)
