"""List routes make a fixed number of queries, whatever the length of the page (no query per
row): the subject list, the live map, the alert list and the share list, counted on both
engines as the statements the API sends while answering, with two subjects and with three
times as many (own and shared, each with a tag, a home unit, a home zone, fixes, presence, an
alert)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from backend.clock import ManualClock
from backend.security import roles
from backend.services import shares
from backend.storage.schema import HOME_UNIT, TAG
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import UNIT_A, UNIT_B, World, raise_alert
from tests.backend.conftest import ENGINES
from tests.backend.investigations.scenario import Fix, Stage

LISTS = ("/api/subjects", "/api/web/live", "/api/alerts", "/api/shares")


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    sent: list[str] = []

    def count(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        sent.append(sql)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _add_subjects(
    stage: Stage, world: World, engine: Engine, first: int, n: int, now: float
) -> None:
    """`n` subjects of unit A, every other one shared with unit B for live and alerts, each
    wearing a tag and a home unit with a fix, a presence report and an alert."""
    t = int(now) - 600
    sup_a = world.users[world.user(UNIT_A, roles.SUPERVISOR)][0]
    for k in range(first, first + n):
        sid = stage.subject(f"L-{k}", world.units[UNIT_A])
        tag, unit = 60_000 + k, 70_000 + k
        stage.device(unit, HOME_UNIT)
        stage.device(tag, TAG, home_unit=unit)
        stage.assign(sid, tag, TAG, t - 3600)
        stage.assign(sid, unit, HOME_UNIT, t - 3600)
        stage.home_zone(sid, 0, 0)
        stage.deliver(stage.fixes(tag, [Fix(t, 10.0 * k, 0)]))
        stage.deliver([stage.presence(unit, tag, t + 5, home=False)])
        raise_alert(engine, sid, t, now)
        if k % 2:
            with engine.begin() as conn:
                shares.create(
                    conn, subject_id=sid, unit_id=world.units[UNIT_B],
                    scopes=frozenset({roles.LIVE, roles.ALERTS}), purpose="list queries",
                    expires_at=now + 86400, created_by=sup_a, now=now,
                )  # fmt: skip


@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)
def test_list_routes_make_the_same_number_of_queries_for_2_or_6_subjects(
    client: TestClient, world: World, api_engine: Engine, api_clock: ManualClock
) -> None:
    stage = Stage(api_engine, api_clock)
    readers = [login(client, world.user(unit, "officer")) for unit in (UNIT_A, UNIT_B)]

    def counts() -> dict[tuple[int, str], int]:
        out = {}
        for i, token in enumerate(readers):
            for path in LISTS:
                with statements(api_engine) as sent:
                    r = client.get(path, headers=bearer(token))
                assert r.status_code == 200, (path, r.text[:200])
                out[(i, path)] = len(sent)
        return out

    now = api_clock.now()
    _add_subjects(stage, world, api_engine, 0, 2, now)
    few = counts()
    _add_subjects(stage, world, api_engine, 2, 4, now)
    many = counts()
    # The lists did grow: unit B's officer sees the shared half on the map.
    live = client.get("/api/web/live", headers=bearer(readers[1])).json()["subjects"]
    assert len([s for s in live if s["reference"].startswith("L-")]) == 3
    assert all(s["position"] and s["presence"] and s["freshness"] for s in live
               if s["reference"].startswith("L-"))  # fmt: skip
    assert many == few
