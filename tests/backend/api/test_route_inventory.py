"""Every route of the app that takes an id goes through the guard of the resource its path
names (backend/api/deps.py), and changes nothing through a guard that only lets it read;
every route but login authenticates; and no route module holds SQL or reaches storage (the
services do: backend/services/). Routes added later are covered without touching this
test."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI

from backend.api import routes as route_package
from backend.api.app import create_app
from backend.api.deps import (
    CurrentUser,
    ObjectAccess,
    SubjectAccess,
    object_guard,
    object_scope,
    subject_scope,
)
from backend.clock import ManualClock
from backend.security import roles
from backend.security.access import SUBJECT_OBJECTS
from tests.backend.api import probe
from tests.backend.api.conftest import api_settings
from tests.backend.api.routes import guard_problems, inventory, problems
from tests.backend.conftest import T0

ROUTE_DIR = Path(route_package.__file__).parent
ALERT_OF = SUBJECT_OBJECTS["alert"].subject_of


def _app(tmp_path: Path) -> FastAPI:
    return create_app(api_settings(tmp_path), ManualClock(T0))


def test_every_route_with_an_id_goes_through_the_scoped_dependency(tmp_path: Path) -> None:
    app = _app(tmp_path)
    routes = inventory(app)
    # The walk sees the routes it must: the ones with ids are there and guarded.
    with_ids = [r for r in routes if any(p.endswith("_id") for p in r.path_params)]
    assert len(with_ids) >= 7
    assert problems(app) == []
    assert problems(probe.mount(_app(tmp_path))) == []


def test_the_inventory_catches_a_route_that_skips_the_guard(tmp_path: Path) -> None:
    app = _app(tmp_path)

    @app.get("/api/leaky/{subject_id}")
    def leaky(subject_id: int, user: CurrentUser) -> dict[str, int]:
        return {"id": subject_id}

    @app.get("/api/anonymous")
    def anonymous() -> dict[str, str]:
        return {}

    @app.get("/api/wrong-param/{alert_id}")
    def wrong(subject: Annotated[SubjectAccess, Depends(subject_scope("view"))]) -> None:
        return None

    found = problems(app)
    assert len(found) == 3
    assert "/api/leaky/{subject_id}" in found[0] and "'subject_id'" in found[0]
    assert "/api/anonymous: does not authenticate" in found[1]
    assert "'alert_id'" in found[2]


def test_every_id_is_guarded_by_its_own_resources_guard(tmp_path: Path) -> None:
    app = probe.mount(_app(tmp_path))
    routes = inventory(app)
    kinds = {g.resource for r in routes for g in r.guards}
    # Every kind of guard is in use, so the check below is not vacuous.
    assert {"subject", "unit", "user", "share", *SUBJECT_OBJECTS} <= kinds
    assert guard_problems(app) == []


def test_the_inventory_catches_a_guard_of_another_resource_or_a_write_through_a_read_guard(
    tmp_path: Path,
) -> None:
    app = _app(tmp_path)

    # (The annotations name module globals only: they are evaluated there.)
    @app.get("/api/zones/{zone_id}/leaky")
    def other_resource(
        obj: Annotated[
            ObjectAccess, Depends(object_guard("zone_id", ALERT_OF, roles.ALERTS, "alert"))
        ],
    ) -> None:
        return None

    @app.delete("/api/orders/{order_id}/leaky")
    def read_guard(
        obj: Annotated[ObjectAccess, Depends(object_scope("order", roles.CONDITIONS))],
    ) -> None:
        return None

    found = guard_problems(app)
    assert len(found) == 2, found
    assert "/api/zones/{zone_id}/leaky: 'zone_id' needs the zone guard, has ['alert']" in found[0]
    assert "['DELETE'] /api/orders/{order_id}/leaky: changes through a read-only guard" in found[1]


# What a route module may import from SQLAlchemy: the types it passes on, never a statement.
SQL_TYPES = {"Connection", "Engine"}


def storage_problems(source: str, name: str) -> list[str]:
    """SQL or storage in a route module: an import of backend.storage, a SQLAlchemy import
    other than SQL_TYPES, or a statement executed."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            mod = node.module
            if mod.startswith("backend.storage"):
                found.append(f"{name}:{node.lineno}: imports {mod}")
            if mod.split(".")[0] == "sqlalchemy":
                extra = sorted({a.name for a in node.names} - SQL_TYPES)
                if extra or mod != "sqlalchemy":
                    found.append(f"{name}:{node.lineno}: imports {mod} {extra}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(("backend.storage", "sqlalchemy")):
                    found.append(f"{name}:{node.lineno}: imports {alias.name}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("execute", "scalar", "scalars", "exec_driver_sql")
        ):
            found.append(f"{name}:{node.lineno}: executes SQL")
    return found


def test_route_modules_hold_no_sql_and_no_storage() -> None:
    modules = sorted(ROUTE_DIR.glob("*.py"))
    assert len(modules) >= 20  # one per resource
    found = [p for m in modules for p in storage_problems(m.read_text(), m.name)]
    assert found == []


def test_the_storage_check_catches_sql_in_a_route() -> None:
    leaky = """
from sqlalchemy import Connection, select
from backend.storage.schema import zones
import sqlalchemy.orm

def route(db: Connection) -> None:
    db.execute(select(zones))
"""
    found = storage_problems(leaky, "leaky.py")
    assert found == [
        "leaky.py:2: imports sqlalchemy ['select']",
        "leaky.py:3: imports backend.storage.schema",
        "leaky.py:4: imports sqlalchemy.orm",
        "leaky.py:7: executes SQL",
    ]
