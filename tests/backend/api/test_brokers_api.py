"""Setting a tag's broker list through the API (administrators only) and the shell
(`tagwatch backend brokers set|status`): a bad list is refused with a sentence (422; exit
code 2), a good one is queued for each tag, audited in the hash chain, and shows as queued."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from backend.registry import KeyVault, Registry
from backend.security import audit, roles
from backend.storage.database import make_engine
from backend.storage.schema import TAG, audit_log, command_queue
from tagwatch_cli import app as cli
from tests.backend.api.conftest import SERVER_KEY, bearer, login
from tests.backend.api.test_admin import _env
from tests.backend.api.world import UNIT_A, World

DEVICE = 6001
A, B = "mqtt-a.example:8883", "mqtt-b.example:8883"


def test_administrators_queue_a_checked_list_and_see_it_pending(
    client: TestClient, world: World, api_engine: Engine
) -> None:
    Registry(api_engine, KeyVault(bytes.fromhex(SERVER_KEY))).register(DEVICE, TAG)
    admin = bearer(login(client, world.user(UNIT_A, roles.ADMINISTRATOR)))
    for body, sentence in (
        ({"brokers": [A, B, A], "tag": DEVICE}, f"Broker {A} is listed twice."),
        ({"brokers": ["mqtt-a.example"], "tag": DEVICE},
         "Broker 'mqtt-a.example' must be host:port with a port from 1 to 65535, "
         "at most 64 characters."),
        ({"brokers": [A, B, "c:1", "d:2", "e:3"], "tag": DEVICE},
         "A tag holds at most 4 brokers; 5 were given."),
        ({"brokers": [], "tag": DEVICE}, "Give at least one broker as host:port."),
        ({"brokers": [A]}, "Name either one tag or one unit."),
    ):  # fmt: skip
        r = client.post("/api/brokers", json=body, headers=admin)
        assert (r.status_code, r.json()["detail"]) == (422, sentence), body
    r = client.post("/api/brokers", json={"brokers": [A], "tag": 9999}, headers=admin)
    assert (r.status_code, r.json()["detail"]) == (404, "No tag 9999 is registered.")
    officer = bearer(login(client, world.user(UNIT_A, roles.SUPERVISOR)))
    r = client.post("/api/brokers", json={"brokers": [A], "tag": DEVICE}, headers=officer)
    assert r.status_code == 403
    with api_engine.connect() as conn:
        assert conn.execute(select(command_queue)).first() is None  # nothing refused queued

    r = client.post("/api/brokers", json={"brokers": [B, A], "tag": DEVICE}, headers=admin)
    assert r.status_code == 202, r.text
    (queued,) = r.json()
    assert (queued["tag"], queued["brokers"], queued["state"]) == (DEVICE, [B, A], "queued")
    r = client.get("/api/brokers", params={"tag": DEVICE}, headers=admin)
    assert [d["state"] for d in r.json()] == ["queued"]
    with api_engine.connect() as conn:
        assert audit.verify(conn).ok
        row = conn.execute(
            select(audit_log).where(audit_log.c.action == "tag.brokers")
        ).one()  # fmt: skip
    assert row.actor == world.user(UNIT_A, roles.ADMINISTRATOR)


def test_the_shell_refuses_a_bad_list_with_a_sentence_and_queues_a_good_one(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["backend", "register", str(DEVICE)], env=env).exit_code == 0
    for args, sentence in (
        ([A, A, "--tag", str(DEVICE)], f"Broker {A} is listed twice."),
        (["mqtt-a.example:0", "--tag", str(DEVICE)], "with a port from 1 to 65535"),
        (["--tag", str(DEVICE)], "Give at least one broker as host:port."),
        ([A], "Name either one tag or one unit."),
        ([A, "--tag", "9999"], "No tag 9999 is registered."),
        ([A, "--unit", "Nowhere"], "no unit 'Nowhere'"),
    ):
        result = runner.invoke(cli, ["backend", "brokers", "set", *args], env=env)
        assert result.exit_code == 2, (args, result.output)
        assert sentence in " ".join(result.output.split()), (args, result.output)
    result = runner.invoke(cli, ["backend", "brokers", "set", B, A, "--tag", str(DEVICE)], env=env)
    assert result.exit_code == 0, result.output
    status = runner.invoke(cli, ["backend", "brokers", "status", "--tag", str(DEVICE)], env=env)
    assert status.exit_code == 0, status.output
    (shown,) = json.loads(status.output)
    assert (shown["tag"], shown["brokers"], shown["state"]) == (DEVICE, [B, A], "queued")
    engine = make_engine(f"sqlite:///{tmp_path / 'tagwatch.db'}")
    with engine.connect() as conn:
        assert audit.verify(conn).ok
        detail = conn.execute(
            select(audit_log.c.detail).where(audit_log.c.action == "tag.brokers")
        ).scalar_one()
        assert conn.execute(select(command_queue.c.body)).scalars().all() == [[B, A]]
    engine.dispose()
    assert detail == {"brokers": [B, A], "tags": [DEVICE], "unit": None, "queued": [1]}
