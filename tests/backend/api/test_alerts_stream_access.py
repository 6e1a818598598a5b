"""The alert stream's authorization is re-checked while it runs (real uvicorn): a share that
expires stops the shared subject's alerts at once; a logout or a disabled user ends the
stream within the session re-check period."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, update

from backend.api import routes_alerts
from backend.clock import ManualClock
from backend.rules.evaluator import Changes
from backend.rules.model import Episode
from backend.rules.store import SqlRepository
from backend.storage.schema import shares, users
from tests.backend.api.conftest import Server, bearer, login
from tests.backend.api.world import UNIT_B, World


class Stream:
    """One SSE subscription read in a thread: alert events and the end event on a queue."""

    def __init__(self, url: str, token: str) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.opened = threading.Event()
        self.closed = threading.Event()
        headers = {**bearer(token), "Accept": "text/event-stream"}
        self._thread = threading.Thread(target=self._read, args=(url, headers), daemon=True)
        self._thread.start()
        assert self.opened.wait(20)

    def _read(self, url: str, headers: dict[str, str]) -> None:
        kind = "message"
        with (
            httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=30)) as http,
            http.stream("GET", "/api/alerts/stream", headers=headers) as r,
        ):
            assert r.status_code == 200
            self.opened.set()
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events.put((kind, json.loads(line[6:])))
        self.closed.set()

    def next(self, timeout: float = 20) -> tuple[str, dict[str, Any]]:
        return self.events.get(timeout=timeout)


def raise_alert(engine: Engine, subject: int, start: int, now: float) -> None:
    ep = Episode(subject, "tamper", "strap_tamper", f"sensor{start}", start, 1, start)
    with engine.begin() as conn:
        SqlRepository(conn, now).apply(subject, Changes(raised=[ep]))


@pytest.fixture
def fast_session_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(routes_alerts, "SESSION_CHECK_S", 0.3)
    yield


def test_an_expired_share_stops_the_shared_subjects_alerts(
    server: Server, world: World, api_engine: Engine, api_clock: ManualClock
) -> None:
    http = httpx.Client(base_url=server.url, timeout=10)
    stream = Stream(server.url, login(http, world.user(UNIT_B, "officer")))
    now = api_clock.now()
    shared, own = world.subjects["A-2"], world.subjects["B-1"]
    raise_alert(api_engine, shared, int(now) - 100, now)
    kind, body = stream.next()
    assert (kind, body["subject_id"]) == ("alert", shared)  # shared for alerts: seen
    with api_engine.begin() as conn:  # the share A-2>B runs out after the subscription...
        conn.execute(
            update(shares).where(shares.c.id == world.shares["A-2>B"]).values(expires_at=now + 0.5)
        )
    api_clock.advance(1)  # ... and backend now moves past it
    now = api_clock.now()
    raise_alert(api_engine, shared, int(now) - 100, now)
    raise_alert(api_engine, own, int(now) - 50, now)
    kind, body = stream.next()
    # The unit's own subject comes through; the shared one raised before it never does.
    assert (kind, body["subject_id"]) == ("alert", own)
    with pytest.raises(queue.Empty):
        stream.next(timeout=0.5)


@pytest.mark.usefixtures("fast_session_check")
def test_logout_and_disabling_end_the_stream(
    server: Server, world: World, api_engine: Engine, api_clock: ManualClock
) -> None:
    http = httpx.Client(base_url=server.url, timeout=10)
    officer = login(http, world.user(UNIT_B, "officer"))
    supervisor_name = world.user(UNIT_B, "supervisor")
    supervisor = login(http, supervisor_name)
    by_logout, by_disable = Stream(server.url, officer), Stream(server.url, supervisor)
    time.sleep(0.5)  # both streams have passed a session check with the session standing
    assert not by_logout.closed.is_set() and not by_disable.closed.is_set()

    assert http.post("/api/auth/logout", headers=bearer(officer)).status_code == 204
    assert by_logout.next(timeout=20) == ("end", {"reason": "session ended"})
    assert by_logout.closed.wait(20)
    assert not by_disable.closed.is_set()  # another session is not affected

    with api_engine.begin() as conn:
        conn.execute(
            update(users)
            .where(users.c.id == world.users[supervisor_name][0])
            .values(disabled_at=api_clock.now())
        )
    assert by_disable.next(timeout=20) == ("end", {"reason": "session ended"})
    assert by_disable.closed.wait(20)
