"""Every route of the app that takes an id goes through a guard dependency from
backend/api/deps.py, and every route but login authenticates. Routes added later (rules,
alerts, investigations, the web UI's API) are covered without touching this test."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI

from backend.api.app import create_app
from backend.api.deps import CurrentUser, SubjectAccess, subject_scope
from backend.clock import ManualClock
from tests.backend.api import probe
from tests.backend.api.conftest import api_settings
from tests.backend.api.routes import inventory, problems
from tests.backend.conftest import T0


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
