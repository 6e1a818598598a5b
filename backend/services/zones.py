"""Zones: inclusion, exclusion and home zones as GeoJSON (circle, polygon, corridor), with
an optional weekly schedule and dwell (docs/rules.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Select, delete, select, update

from backend import bounds
from backend.services import monitoring
from backend.storage.schema import zones


def of_subject(conn: Connection, subject_id: int) -> list[Any]:
    q = select(zones).where(zones.c.subject_id == subject_id).order_by(zones.c.id)
    return list(conn.execute(q))


def of_subjects(conn: Connection, subject_ids: Iterable[int], visible: Select[Any]) -> list[Any]:
    """The zones of these subjects among those in `visible` (the caller's, as SQL)."""
    q = (
        select(zones)
        .where(zones.c.subject_id.in_(list(subject_ids)), zones.c.subject_id.in_(visible))
        .order_by(zones.c.id)
    )
    return list(conn.execute(q))


def get(conn: Connection, zone_id: int) -> Any:
    return conn.execute(select(zones).where(zones.c.id == zone_id)).one()


def create(conn: Connection, subject_id: int, values: Mapping[str, Any], now: float) -> Any:
    """`values`: name, kind, shape, geometry, radius_m, width_m, buffer_m, victim, schedule,
    dwell_s."""
    new_id = monitoring.add(conn, zones, subject_id, values, now, bounds.MAX_ZONES, "zones")
    return get(conn, new_id)


def update_zone(
    conn: Connection, subject_id: int, zone_id: int, changes: Mapping[str, Any], now: float
) -> Any:
    if changes:
        conn.execute(update(zones).where(zones.c.id == zone_id).values(**changes))
    monitoring.changed(conn, subject_id, now)
    return get(conn, zone_id)


def remove(conn: Connection, subject_id: int, zone_id: int, now: float) -> None:
    conn.execute(delete(zones).where(zones.c.id == zone_id))
    monitoring.changed(conn, subject_id, now)
