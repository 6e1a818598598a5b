"""Orders and licence conditions: their span is when a subject is monitored; the rules
read their thresholds (comms loss, curfew grace)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select, update

from backend import bounds
from backend.services import monitoring
from backend.services.errors import Invalid
from backend.storage.schema import orders


def of_subject(conn: Connection, subject_id: int) -> list[Any]:
    q = select(orders).where(orders.c.subject_id == subject_id).order_by(orders.c.id)
    return list(conn.execute(q))


def get(conn: Connection, order_id: int) -> Any:
    return conn.execute(select(orders).where(orders.c.id == order_id)).one()


def create(conn: Connection, subject_id: int, values: Mapping[str, Any], now: float) -> int:
    return monitoring.add(conn, orders, subject_id, values, now, bounds.MAX_ORDERS, "orders")


def update_order(
    conn: Connection, subject_id: int, order_id: int, changes: Mapping[str, Any], now: float
) -> None:
    row = get(conn, order_id)
    ends = changes.get("ends_at", row.ends_at)
    if ends is not None and ends <= row.starts_at:
        raise Invalid("ends_at must be after starts_at")
    if changes:
        conn.execute(update(orders).where(orders.c.id == order_id).values(**changes))
    monitoring.changed(conn, subject_id, now)
