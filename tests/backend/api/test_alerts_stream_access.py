"""The streams' authorization is decided when they send, not only when they open (real
uvicorn): a share that expires stops the shared subject's alerts at once, even for an alert
the stream had already read; each subject whose alerts it sends is recorded; a logout or a
disabled user ends the stream within the session re-check period. A `Last-Event-ID` that is
not an event id of the stream is refused before the stream starts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from backend.api import sse
from backend.clock import ManualClock
from backend.storage.schema import audit_log, shares, users
from tests.backend.api.conftest import Server, Stream, bearer, login
from tests.backend.api.world import UNIT_B, World, raise_alert
from tests.backend.conftest import ENGINES, T0


class SteppedClock(ManualClock):
    """A manual clock that can run one action right after it next answers `now()`: the
    caller holds that time while the action changes the world and moves the clock on,
    exactly the interleaving a busy machine produces by chance."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self._then: Callable[[], None] | None = None
        self._armed = threading.Lock()

    def after_next_now(self, action: Callable[[], None]) -> None:
        with self._armed:
            self._then = action

    def now(self) -> float:
        t = super().now()
        with self._armed:
            action, self._then = self._then, None
        if action is not None:
            action()
        return t


@pytest.fixture
def api_clock() -> ManualClock:
    return SteppedClock(T0)


@pytest.fixture
def quiet_session_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The stream's only calls of the clock are then its polls and its delivery checks.
    monkeypatch.setattr(sse, "SESSION_CHECK_S", 1e9)
    yield


@pytest.fixture
def fast_session_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sse, "SESSION_CHECK_S", 0.3)
    yield


@pytest.mark.usefixtures("quiet_session_check")
@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)
def test_an_alert_read_before_its_share_expired_is_not_sent_after(
    server: Server, world: World, api_engine: Engine, api_clock: SteppedClock
) -> None:
    http = httpx.Client(base_url=server.url, timeout=10)
    officer = world.user(UNIT_B, "officer")
    stream = Stream(server.url, login(http, officer))
    now = api_clock.now()
    shared, own = world.subjects["A-2"], world.subjects["B-1"]
    raise_alert(api_engine, shared, int(now) - 100, now)
    kind, body = stream.next()
    assert (kind, body["subject_id"]) == ("alert", shared)  # shared for alerts: seen
    with api_engine.begin() as conn:  # the share A-2>B runs out half a second from now
        conn.execute(
            update(shares).where(shares.c.id == world.shares["A-2>B"]).values(expires_at=now + 0.5)
        )

    def meanwhile() -> None:
        # The stream's next poll has taken its time (the share still stands); before its
        # query runs, a new alert of the shared subject is raised, backend time moves past
        # the expiry, and then one of the unit's own subject.
        raise_alert(api_engine, shared, int(now) - 90, now)
        t = api_clock.advance(1)
        raise_alert(api_engine, own, int(t) - 50, t)

    api_clock.after_next_now(meanwhile)
    kind, body = stream.next()
    # Both were read by that poll; only the unit's own subject's is sent.
    assert (kind, body["subject_id"]) == ("alert", own)
    with api_engine.connect() as conn:
        records = conn.execute(
            select(audit_log.c.action, audit_log.c.subject_ids, audit_log.c.detail)
            .where(audit_log.c.actor == officer, audit_log.c.action.like("%.alerts"))
            .order_by(audit_log.c.id)
        ).all()
    # What it sent, recorded per subject before it was sent; nothing of what it withheld.
    assert [(r.action, r.subject_ids, r.detail["via"]) for r in records[1:]] == [
        ("disclose.alerts", [shared], "alert stream"),
        ("read.alerts", [own], "alert stream"),
    ]
    assert records[0].action == "stream.alerts"
    assert records[1].detail["share_ids"] == [world.shares["A-2>B"]]


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


STREAMS = ("/api/alerts/stream", "/api/web/live/stream")


@pytest.mark.parametrize(
    "value",
    # superscript two, full-width one and two, Arabic-Indic three: digits to str.isdigit
    [
        "\u00b2",
        "\uff11\uff12",
        "\u0663",
        "-1",
        "+1",
        "1 ",
        "1_0",
        "",
        "9" * 20,
        str(sse.MAX_EVENT_ID + 1),
    ],
)
def test_a_last_event_id_that_is_no_event_id_is_refused_before_the_stream(
    client: TestClient, world: World, value: str
) -> None:
    token = login(client, world.user(UNIT_B, "officer"))
    for path in STREAMS:
        headers = {**bearer(token), "Accept": "text/event-stream"}
        # As bytes: what a client sends on the wire, UTF-8 digits included.
        r = client.get(path, headers={**headers, "Last-Event-ID": value.encode()})
        assert r.status_code == 422, (path, value, r.status_code, r.text[:200])
        assert "last-event-id" in r.text.lower(), r.text


@pytest.fixture
def fast_keepalive(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sse, "KEEPALIVE_S", 0.2)
    yield


@pytest.mark.usefixtures("fast_keepalive")
@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)
def test_both_streams_resume_from_any_event_id_in_the_bound(
    server: Server, world: World, api_engine: Engine, api_clock: ManualClock
) -> None:
    http = httpx.Client(base_url=server.url, timeout=10)
    officer = login(http, world.user(UNIT_B, "officer"))
    now = api_clock.now()
    raise_alert(api_engine, world.subjects["B-1"], int(now) - 10, now)
    first = Stream(server.url, officer, STREAMS[0], {"Last-Event-ID": "0"})
    kind, body = first.next()
    assert (kind, body["subject_id"]) == ("alert", world.subjects["B-1"])  # resumed from the start
    for path in STREAMS:
        stream = Stream(server.url, officer, path, {"Last-Event-ID": str(sse.MAX_EVENT_ID)})
        assert stream.status == 200, path
        # Idle polls past the largest cursor ran without a database error: a keep-alive.
        assert stream.next(keepalive=True) == ("keep-alive", {})
        assert not stream.closed.is_set()


def test_a_server_stopping_closes_its_open_streams(app: FastAPI, world: World) -> None:
    """A stream never ends by itself: a stopping server must close it rather than wait for
    it (a restart would otherwise hang until the service manager kills the process)."""
    server = Server(app)
    server.start()
    http = httpx.Client(base_url=server.url, timeout=10)
    officer = login(http, world.user(UNIT_B, "officer"))
    streams = [Stream(server.url, officer, path) for path in STREAMS]
    server.stop()  # raises if uvicorn is still waiting for the streams
    assert all(s.closed.wait(20) for s in streams)
