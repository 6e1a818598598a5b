"""API fixtures: an app on a fresh migrated database with the small multi-agency world,
a TestClient, and a real uvicorn on a free loopback port."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from backend.api.app import create_app
from backend.api.sse import SHUTDOWN_GRACE_S
from backend.broker import free_port
from backend.clock import ManualClock
from backend.settings import Settings
from tests.backend.api import probe
from tests.backend.api.world import PASSWORD, World, build
from tests.backend.conftest import T0, migrated

SERVER_KEY = bytes(range(32)).hex()


def api_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "server_key": SERVER_KEY,
        # Cheap argon2 for tests; production uses the defaults (docs/security.md).
        "password_memory_kib": 1024,
        "password_time_cost": 1,
        "login_rate_per_minute": 10_000,
        # Tests step the notification dispatcher themselves (tests/backend/notify).
        "notify_dispatch": False,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def api_clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def api_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """SQLite; a test that stores what it checks runs on both engines with
    `@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)`."""
    if getattr(request, "param", "sqlite") == "sqlite":
        url = f"sqlite:///{tmp_path / 'api.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database()
    eng = migrated(request, url)
    yield eng
    eng.dispose()


@pytest.fixture
def app(tmp_path: Path, api_clock: ManualClock, api_engine: Engine) -> FastAPI:
    """The real app plus the probe routes that exercise every guard (tests/backend/api/
    probe.py)."""
    return probe.mount(create_app(api_settings(tmp_path), api_clock, api_engine))


@pytest.fixture
def world(app: FastAPI, api_engine: Engine, api_clock: ManualClock) -> World:
    ctx = app.state.tagwatch
    return build(api_engine, ctx.passwords, api_clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def login(client: TestClient | httpx.Client, username: str, password: str = PASSWORD) -> str:
    r = client.post("/api/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Server:
    """uvicorn serving an app in a thread on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        if self.thread.is_alive():
            raise RuntimeError("uvicorn did not stop")


@pytest.fixture
def server(app: FastAPI, world: World) -> Iterator[Server]:
    s = Server(app)
    s.start()
    yield s
    s.stop()


class Stream:
    """One Server-Sent Events subscription read in a thread: (event name, data) pairs and
    keep-alives on a queue, the status, and `closed` when the server ends it."""

    def __init__(
        self,
        url: str,
        token: str,
        path: str = "/api/alerts/stream",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.opened = threading.Event()
        self.closed = threading.Event()
        self.status = 0
        sent = {**bearer(token), "Accept": "text/event-stream", **(headers or {})}
        self._thread = threading.Thread(target=self._read, args=(url, path, sent), daemon=True)
        self._thread.start()
        assert self.opened.wait(20)

    def _read(self, url: str, path: str, headers: dict[str, str]) -> None:
        kind = "message"
        try:
            with (
                httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=30)) as http,
                http.stream("GET", path, headers=headers) as r,
            ):
                self.status = r.status_code
                self.opened.set()
                if r.status_code != 200:
                    return
                for line in r.iter_lines():
                    if line.startswith(": keep-alive"):
                        self.events.put(("keep-alive", {}))
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        self.events.put((kind, json.loads(line[6:])))
        except httpx.TransportError:
            pass  # the server went away (the test is over): the stream has ended
        finally:
            self.closed.set()

    def next(self, timeout: float = 20, keepalive: bool = False) -> tuple[str, dict[str, Any]]:
        """The next event (keep-alives only when asked for)."""
        while True:
            kind, body = self.events.get(timeout=timeout)
            if keepalive or kind != "keep-alive":
                return kind, body
