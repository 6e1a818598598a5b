"""Security headers, CORS closed by default, body size limits, errors that echo no input
and leak no internals, device keys absent from every answer; over real HTTP (uvicorn on a
loopback port) as well as in-process."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from backend.api.app import create_app
from backend.clock import ManualClock
from backend.registry import KeyVault, Registry
from tests.backend.api.conftest import SERVER_KEY, Server, api_settings, bearer, login
from tests.backend.api.world import PASSWORD, World


def test_every_answer_carries_the_security_headers(client: TestClient, world: World) -> None:
    for r in (
        client.get("/api/auth/me"),
        client.post("/api/auth/token", data={"username": "x", "password": "y"}),
        client.get("/api/units", headers=bearer(login(client, "officer.turnaround"))),
    ):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["referrer-policy"] == "no-referrer"
        assert len(r.headers["x-request-id"]) == 32
    # A caller's well-formed request id is kept (to correlate with a proxy's logs).
    r = client.get("/api/auth/me", headers={"X-Request-ID": "proxy-1234-abcd"})
    assert r.headers["x-request-id"] == "proxy-1234-abcd"
    r = client.get("/api/auth/me", headers={"X-Request-ID": "bad id\r\nx"})
    assert r.headers["x-request-id"] != "bad id\r\nx"


def test_cors_is_closed_by_default_and_open_only_to_configured_origins(
    client: TestClient, tmp_path: Path, api_engine: Engine, api_clock: ManualClock
) -> None:
    pre = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    r = client.options("/api/units", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/api/units", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    app = create_app(
        api_settings(tmp_path, cors_origins=["https://map.force.example"]), api_clock, api_engine
    )
    with TestClient(app) as open_client:
        ok = {**pre, "Origin": "https://map.force.example"}
        r = open_client.options("/api/units", headers=ok)
        assert r.headers["access-control-allow-origin"] == "https://map.force.example"
        r = open_client.options("/api/units", headers=pre)
        assert "access-control-allow-origin" not in r.headers


def test_large_bodies_are_refused_before_they_are_read(
    tmp_path: Path, api_engine: Engine, api_clock: ManualClock, world: World
) -> None:
    app = create_app(api_settings(tmp_path, max_request_bytes=2048), api_clock, api_engine)
    with TestClient(app) as client:
        big = "x" * 5000
        r = client.post("/api/auth/token", data={"username": "u", "password": big})
        assert r.status_code == 413
        assert r.json()["detail"] == "request body too large"
        assert r.headers["x-content-type-options"] == "nosniff"

        # Without a Content-Length (chunked), the limit applies as the body streams in.
        def chunks() -> object:
            for _ in range(10):
                yield b"y" * 1000

        r = client.post(
            "/api/auth/token",
            content=chunks(),  # type: ignore[arg-type]
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 413


def test_validation_errors_do_not_echo_the_input(client: TestClient, world: World) -> None:
    token = login(client, "officer.turnaround")
    secret = "my secret password that is long" * 40
    r = client.post(
        "/api/auth/password",
        json={"current_password": secret, "new_password": "tiny-pw"},
        headers=bearer(token),
    )
    assert r.status_code == 422
    assert "tiny-pw" not in r.text and secret not in r.text
    assert r.json()["detail"][0]["loc"] == ["body", "current_password"]


def test_an_unexpected_error_answers_500_without_internals(
    tmp_path: Path, api_engine: Engine, api_clock: ManualClock
) -> None:
    app = create_app(api_settings(tmp_path), api_clock, api_engine)

    @app.get("/api/boom")
    def boom() -> None:
        raise RuntimeError("database password is hunter2")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/api/boom")
    assert r.status_code == 500
    assert "hunter2" not in r.text and "RuntimeError" not in r.text
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_device_keys_appear_in_no_answer_and_no_log(
    client: TestClient, world: World, api_engine: Engine, app: FastAPI, capsys: object
) -> None:
    registry = Registry(api_engine, KeyVault(bytes.fromhex(SERVER_KEY)))
    dev = registry.register(4242, "tag")
    key_hex = dev.key.hex()
    assert key_hex not in repr(dev)
    texts = []
    for user in ("administrator.turnaround", "auditor.turnaround", "supervisor.turnaround"):
        t = login(client, user)
        for path in ("/api/units", "/api/users", "/api/shares", "/api/audit", "/api/openapi.json"):
            texts.append(client.get(path, headers=bearer(t)).text)
    assert all(key_hex not in t and dev.key.hex().upper() not in t for t in texts)
    out = capsys.readouterr()  # type: ignore[attr-defined]
    assert key_hex not in out.out + out.err


def test_login_and_scoped_reads_over_real_http(server: Server, world: World) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        r = http.post("/api/auth/token", data={"username": "officer.mosovo", "password": PASSWORD})
        assert r.status_code == 200
        token = r.json()["access_token"]
        h = bearer(token)
        assert http.get("/api/auth/me", headers=h).json()["username"] == "officer.mosovo"
        a1, a2 = world.subjects["A-1"], world.subjects["A-2"]
        assert http.get(f"/probe/subjects/{a1}/live", headers=h).status_code == 404
        assert http.get(f"/probe/subjects/{a2}/live", headers=h).status_code == 200
        assert http.get("/api/auth/me").status_code == 401
        assert http.post("/api/auth/logout", headers=h).status_code == 204
        assert http.get("/api/auth/me", headers=h).status_code == 401
        # A raw oversized request over the socket is cut off with 413.
        r = http.post(
            "/api/auth/token",
            content=b"a=" + b"b" * 2_000_000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 413


def test_app_from_environment_settings(tmp_path: Path, monkeypatch: object) -> None:
    """`tagwatch backend serve` builds the app from TAGWATCH_* alone (uvicorn factory)."""
    mp = monkeypatch
    mp.setenv("TAGWATCH_DATA_DIR", str(tmp_path))  # type: ignore[attr-defined]
    mp.setenv("TAGWATCH_SERVER_KEY", SERVER_KEY)  # type: ignore[attr-defined]
    with TestClient(create_app()) as client:
        assert client.get("/api/auth/me").status_code == 401
        assert client.get("/api/openapi.json").json()["components"]["securitySchemes"]
    assert (tmp_path / "tagwatch.db").exists()
