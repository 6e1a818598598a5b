"""Requests that arrive together, on SQLite and PostgreSQL, through a served app (uvicorn
runs the routes on a thread pool, so they overlap as a control room's do): a route that
checks, then writes what it checked (a reference not taken, an alert still open, room under
a per-subject bound) answers as if they came one after another. On PostgreSQL, before the
API's changes were made serial (`storage.database.SERIAL_CHANGES`), eight at once gave
500s for duplicates, a charging PUT answered 500, one alert was acknowledged up to three
times (timing decides: that test alone does not always fail without the lock) and up to all
eight took the one place left under a bound of 20 (27 orders)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from backend.bounds import MAX_ORDERS
from backend.clock import ManualClock
from backend.storage.schema import alerts, auth_sessions, orders, subjects, units, users
from tests.backend.api.conftest import Server, bearer, login
from tests.backend.api.world import PASSWORD, UNIT_A, World, raise_alert
from tests.backend.conftest import ENGINES, T0

AT_ONCE = 8


@dataclass
class Served:
    server: Server
    world: World
    engine: Engine
    clock: ManualClock
    tokens: dict[str, dict[str, str]]

    def at_once(
        self,
        role: str | None,
        method: str,
        path: str,
        body: Callable[[int], Any],
        form: bool = False,
    ) -> list[int]:
        """AT_ONCE requests released together (as JSON, or a form); their statuses, sorted."""
        start = threading.Barrier(AT_ONCE)
        headers = self.tokens[role] if role else {}

        def one(n: int) -> int:
            sent = {"data": body(n)} if form else {"json": body(n)}
            with httpx.Client(base_url=self.server.url, headers=headers) as c:
                start.wait()
                return c.request(method, path, **sent, timeout=120).status_code

        with ThreadPoolExecutor(AT_ONCE) as pool:
            return sorted(pool.map(one, range(AT_ONCE)))

    def count(self, table: Any, *where: Any) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
            )


@pytest.fixture
def served(
    app: FastAPI, world: World, api_engine: Engine, api_clock: ManualClock
) -> Iterator[Served]:
    with TestClient(app) as client:
        tokens = {
            role: bearer(login(client, world.user(UNIT_A, role)))
            for role in ("officer", "administrator")
        }
    server = Server(app)
    server.start()
    try:
        yield Served(server, world, api_engine, api_clock, tokens)
    finally:
        server.stop()


pytestmark = pytest.mark.parametrize("api_engine", ENGINES, indirect=True)


def test_the_same_record_created_at_once_is_stored_once(served: Served) -> None:
    codes = served.at_once("officer", "POST", "/api/subjects", lambda n: {
        "reference": "TWICE", "name": f"try {n}"})  # fmt: skip
    assert codes == [201] + [409] * (AT_ONCE - 1), codes
    assert served.count(subjects, subjects.c.reference == "TWICE") == 1

    codes = served.at_once("administrator", "POST", "/api/units", lambda n: {
        "name": "Night team", "kind": "police"})  # fmt: skip
    assert codes == [201] + [422] * (AT_ONCE - 1), codes
    assert served.count(units, units.c.name == "Night team") == 1

    codes = served.at_once("administrator", "POST", "/api/users", lambda n: {
        "username": "new.officer", "unit_id": served.world.units[UNIT_A], "role": "officer",
        "password": "a long enough password"})  # fmt: skip
    assert codes == [201] + [422] * (AT_ONCE - 1), codes
    assert served.count(users, users.c.username == "new.officer") == 1


def test_an_alert_acknowledged_at_once_is_acknowledged_once(served: Served) -> None:
    subject = served.world.subjects["A-1"]
    alert = raise_alert(served.engine, subject, int(T0) - 60, served.clock.now())
    codes = served.at_once(
        "officer", "POST", f"/api/alerts/{alert}/acknowledge", lambda n: {"note": f"on it {n}"}
    )
    assert codes == [200] + [409] * (AT_ONCE - 1), codes
    assert served.count(alerts, alerts.c.id == alert, alerts.c.state == "acknowledged") == 1


def test_the_last_place_under_a_bound_is_taken_once(served: Served) -> None:
    subject = served.world.subjects["A-1"]
    path = f"/api/subjects/{subject}/orders"
    with httpx.Client(base_url=served.server.url, headers=served.tokens["officer"]) as c:
        for n in range(MAX_ORDERS - 1):
            body = {"kind": "bail", "reference": f"R{n}", "starts_at": T0}
            assert c.post(path, json=body, timeout=60).status_code == 201
    codes = served.at_once("officer", "POST", path, lambda n: {
        "kind": "bail", "reference": f"L{n}", "starts_at": T0})  # fmt: skip
    assert codes == [201] + [409] * (AT_ONCE - 1), codes
    assert served.count(orders, orders.c.subject_id == subject) == MAX_ORDERS


def test_the_same_setting_put_at_once_is_answered_alike(served: Served) -> None:
    subject = served.world.subjects["A-1"]
    codes = served.at_once(
        "officer", "PUT", f"/api/subjects/{subject}/charging", lambda n: {"min_minutes": 30 + n}
    )
    assert codes == [200] * AT_ONCE, codes


def test_a_refresh_token_used_at_once_is_taken_as_a_copy_in_use(served: Served) -> None:
    """A refresh token rotates once; a second use is a copy in someone else's hands, and
    revokes the session. Used by eight at once, PostgreSQL let several rotations read the
    token before the first wrote: three answered 200 with new tokens, none was taken as a
    reuse, and the session stood, so a stolen copy raced with its owner went unnoticed."""
    form = {"username": served.world.user(UNIT_A, "officer"), "password": PASSWORD}
    with httpx.Client(base_url=served.server.url) as c:
        issued = c.post("/api/auth/token", data=form, timeout=60).json()
    again = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    codes = served.at_once(None, "POST", "/api/auth/token", lambda n: again, form=True)
    assert codes == [200] + [401] * (AT_ONCE - 1), codes
    with served.engine.connect() as conn:
        reason = conn.execute(
            select(auth_sessions.c.revoked_reason).where(
                auth_sessions.c.id == _session_of(issued["access_token"])
            )
        ).scalar_one()
    assert reason == "refresh_reuse"


def _session_of(access_token: str) -> int:
    claims = jwt.decode(access_token, options={"verify_signature": False})
    return int(claims["sid"])
