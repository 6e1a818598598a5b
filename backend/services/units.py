"""Units: police units and partner agencies. Every user may list them (to know whom a share
goes to); administrators create and rename them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from backend.security import roles
from backend.services.errors import Invalid
from backend.storage.schema import units


def create(conn: Connection, name: str, kind: str, now: float) -> int:
    if kind not in roles.UNIT_KINDS:
        raise Invalid(f"unit kind must be one of {roles.UNIT_KINDS}, not {kind!r}")
    name = name.strip()
    if not name:
        raise Invalid("a unit needs a name")
    if conn.execute(select(units.c.id).where(units.c.name == name)).first():
        raise Invalid(f"unit {name!r} already exists")
    new_id = conn.execute(
        insert(units).values(name=name, kind=kind, created_at=now).returning(units.c.id)
    ).scalar_one()
    return int(new_id)


def exists(conn: Connection, unit_id: int) -> bool:
    return conn.execute(select(units.c.id).where(units.c.id == unit_id)).first() is not None


def by_name(conn: Connection, name: str) -> int | None:
    found = conn.execute(select(units.c.id).where(units.c.name == name)).scalar()
    return int(found) if found is not None else None


def name_of(conn: Connection, unit_id: int) -> str | None:
    found = conn.execute(select(units.c.name).where(units.c.id == unit_id)).scalar()
    return None if found is None else str(found)


def listing(conn: Connection) -> list[Any]:
    return list(conn.execute(select(units).order_by(units.c.name)))


def get(conn: Connection, unit_id: int) -> Any:
    return conn.execute(select(units).where(units.c.id == unit_id)).one()


def rename(conn: Connection, unit_id: int, name: str) -> str:
    """Rename a unit; the name as stored."""
    name = name.strip()
    clash = conn.execute(
        select(units.c.id).where(units.c.name == name, units.c.id != unit_id)
    ).first()
    if clash or not name:
        raise Invalid("unit name taken or empty")
    conn.execute(update(units).where(units.c.id == unit_id).values(name=name))
    return name
