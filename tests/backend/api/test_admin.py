"""Bootstrapping from the shell (`tagwatch backend unit/user/subject ...`, `serve` as a real
process) and the admin API on PostgreSQL as well as SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from backend.api.app import create_app
from backend.broker import free_port
from backend.clock import ManualClock
from backend.security import audit
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import audit_log, users
from tagwatch_cli import app as cli
from tests.backend.api.conftest import SERVER_KEY, api_settings, bearer
from tests.backend.conftest import T0

PASSWORD = "a long bootstrap password"


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "TAGWATCH_DATA_DIR": str(tmp_path),
        "TAGWATCH_SERVER_KEY": SERVER_KEY,
        "TAGWATCH_PASSWORD_MEMORY_KIB": "1024",
        "TAGWATCH_PASSWORD_TIME_COST": "1",
        "TAGWATCH_NEW_PASSWORD": PASSWORD,
    }


def test_bootstrap_from_the_shell_then_serve_with_uvicorn(tmp_path: Path) -> None:
    env = _env(tmp_path)
    runner = CliRunner()
    for args in (
        ["backend", "unit", "add", "Turnaround (IOM)"],
        ["backend", "unit", "add", "Probation", "--kind", "partner"],
        ["backend", "user", "add", "root", "--unit", "Turnaround (IOM)", "--role", "administrator"],
        ["backend", "subject", "add", "T-0001", "--name", "J. Smith", "--unit", "1"],
    ):
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
    refused = runner.invoke(
        cli, ["backend", "user", "add", "x", "--unit", "9", "--role", "officer"], env=env
    )
    assert refused.exit_code == 2 and "unit 9 does not exist" in refused.output
    weak = runner.invoke(
        cli, ["backend", "user", "add", "y", "--unit", "1", "--role", "officer"],
        env={**env, "TAGWATCH_NEW_PASSWORD": "short"},
    )  # fmt: skip
    assert weak.exit_code == 2 and "12 characters" in weak.output
    engine = make_engine(f"sqlite:///{tmp_path / 'tagwatch.db'}")
    with engine.connect() as conn:
        assert audit.verify(conn).ok
        actions = list(conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars())
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert actions == ["unit.create", "unit.create", "user.create", "subject.create"]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored

    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "tagwatch"), "backend", "serve", "--port", str(port)],
        env={**os.environ, **env},
        cwd=Path(__file__).resolve().parents[3],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    r = http.post(
                        "/api/auth/token", data={"username": "root", "password": PASSWORD}
                    )
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, _output(proc)
                    time.sleep(0.1)
            assert r.status_code == 200
            token = r.json()["access_token"]
            r = http.post(
                "/api/users",
                json={"username": "sup", "unit_id": 1, "role": "supervisor", "password": PASSWORD},
                headers=bearer(token),
            )
            assert r.status_code == 201
            assert "server" not in r.headers  # no version banner
    finally:
        proc.terminate()
        proc.wait(10)
    result = runner.invoke(cli, ["backend", "user", "disable", "sup"], env=env)
    assert result.exit_code == 0
    result = runner.invoke(cli, ["backend", "user", "list"], env=env)
    assert "disabled" in result.output


@pytest.mark.parametrize("engine_name", ["sqlite", "postgresql"])
def test_admin_api_on_both_engines(
    engine_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if engine_name == "sqlite":
        url = f"sqlite:///{tmp_path / 'a.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database()
    engine = make_engine(url)
    upgrade(engine)
    clock = ManualClock(T0)
    app = create_app(api_settings(tmp_path), clock, engine)
    ctx = app.state.tagwatch
    from backend.services import units
    from backend.services import users as user_records

    with engine.begin() as conn:
        unit = units.create(conn, "Turnaround", "police", clock.now())
        user_records.create(
            conn, ctx.passwords, username="root", display_name="", unit_id=unit,
            role="administrator", password=PASSWORD, now=clock.now(),
        )  # fmt: skip
    with TestClient(app) as client:
        r = client.post("/api/auth/token", data={"username": "root", "password": PASSWORD})
        h = bearer(r.json()["access_token"])
        r = client.post("/api/units", json={"name": "MOSOVO", "kind": "police"}, headers=h)
        assert r.status_code == 201
        mosovo = r.json()["id"]
        assert (
            client.post(
                "/api/units", json={"name": "MOSOVO", "kind": "police"}, headers=h
            ).status_code
            == 422
        )
        r = client.post(
            "/api/users",
            json={"username": "off", "unit_id": mosovo, "role": "officer", "password": PASSWORD},
            headers=h,
        )
        assert r.status_code == 201
        uid = r.json()["id"]
        off = client.post("/api/auth/token", data={"username": "off", "password": PASSWORD})
        oh = bearer(off.json()["access_token"])
        assert client.get("/api/auth/me", headers=oh).json()["unit_name"] == "MOSOVO"
        r = client.patch(f"/api/users/{uid}", json={"unit_id": unit}, headers=h)
        assert r.json()["unit_id"] == unit
        assert client.get("/api/auth/me", headers=oh).status_code == 401  # moved: re-login
        assert (
            client.patch(f"/api/units/{mosovo}", json={"name": "MOSOVO South"}, headers=h).json()[
                "name"
            ]
            == "MOSOVO South"
        )
        assert client.get("/api/audit/verify", headers=h).status_code == 403
        with engine.connect() as conn:
            assert audit.verify(conn).ok
    engine.dispose()


def _output(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None or proc.stdout is None:
        return "still running"
    return proc.stdout.read().decode(errors="replace")
