"""API fixtures: an app on a fresh migrated database with the small multi-agency world,
a TestClient, and a real uvicorn on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from backend.api.app import create_app
from backend.broker import free_port
from backend.clock import ManualClock
from backend.settings import Settings
from backend.storage.database import make_engine, upgrade
from tests.backend.api import probe
from tests.backend.api.world import PASSWORD, World, build
from tests.backend.conftest import T0

SERVER_KEY = bytes(range(32)).hex()


def api_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "server_key": SERVER_KEY,
        # Cheap argon2 for tests; production uses the defaults (docs/security.md).
        "password_memory_kib": 1024,
        "password_time_cost": 1,
        "login_rate_per_minute": 10_000,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def api_clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def api_engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'api.db'}")
    upgrade(eng)
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
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
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
        self.thread.join(10)


@pytest.fixture
def server(app: FastAPI, world: World) -> Iterator[Server]:
    s = Server(app)
    s.start()
    yield s
    s.stop()
