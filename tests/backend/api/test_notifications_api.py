"""The notification routes through the real app: a supervisor keeps the unit's rota and
policies; an officer's browser subscribes; a page's link acknowledges the alert only for
the signed-in officer it was sent to, once. Pages go to a real SMTP server and the push
service stand-in (sim/notify_peers.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from backend.api.app import create_app
from backend.clock import ManualClock
from sim.notify_peers import Mailbox, PushService
from tests.backend.api.conftest import api_settings, bearer, login
from tests.backend.api.world import UNIT_A, UNIT_B, World, build, raise_alert

LINK = re.compile(r"/web/#/ack/([A-Za-z0-9_.-]+)")


@pytest.fixture
def peers(api_clock: ManualClock) -> Iterator[tuple[Mailbox, PushService]]:
    box, svc = Mailbox(api_clock.now).start(), PushService(api_clock.now).start()
    yield box, svc
    box.stop()
    svc.stop()


@pytest.fixture
def notify_app(
    tmp_path: Path, api_clock: ManualClock, api_engine: Engine, peers: tuple[Mailbox, PushService]
) -> FastAPI:
    settings = api_settings(
        tmp_path, smtp_host="127.0.0.1", smtp_port=peers[0].port, push_hosts=["127.0.0.1"]
    )
    return create_app(settings, api_clock, api_engine)


@pytest.fixture
def notify_world(notify_app: FastAPI, api_engine: Engine, api_clock: ManualClock) -> World:
    return build(api_engine, notify_app.state.tagwatch.passwords, api_clock)


def test_a_supervisor_keeps_the_rota_an_officer_is_paged_and_acknowledges_from_the_link(
    notify_app: FastAPI,
    notify_world: World,
    api_engine: Engine,
    api_clock: ManualClock,
    peers: tuple[Mailbox, PushService],
) -> None:
    mailbox, push_service = peers
    w = notify_world
    client = TestClient(notify_app)
    sup = bearer(login(client, w.user(UNIT_A, "supervisor")))
    officer_name = w.user(UNIT_A, "officer")
    officer = bearer(login(client, officer_name))
    officer_id = w.users[officer_name][0]
    now = api_clock.now()

    # The officer's browser subscribes with the server's VAPID key.
    key = client.get("/api/notifications/push-key", headers=officer).json()["public_key"]
    browser, endpoint = push_service.subscribe("officer-a", key)
    r = client.post(
        "/api/notifications/subscriptions", headers=officer, json=browser.subscription(endpoint)
    )
    assert r.status_code == 201, r.text
    evil = browser.subscription("https://attacker.example/push/1")
    r = client.post("/api/notifications/subscriptions", headers=officer, json=evil)
    assert r.status_code == 422 and "push service" in r.text

    shift = {
        "user_id": officer_id, "rank": 1, "starts_at": now - 60, "ends_at": now + 8 * 3600,
        "channels": ["email", "push"], "email": "pc.a@example.org",
    }  # fmt: skip
    assert client.post("/api/oncall/shifts", headers=officer, json=shift).status_code == 403
    r = client.post("/api/oncall/shifts", headers=sup, json=shift)
    assert r.status_code == 201, r.text
    # Another unit's officer is never on this unit's rota.
    foreign = {**shift, "user_id": w.users[w.user(UNIT_B, "officer")][0]}
    r = client.post("/api/oncall/shifts", headers=sup, json=foreign)
    assert r.status_code == 422 and "active user of the unit" in r.text
    policy = {"min_severity": "high", "escalate_after_s": 600, "dedup_s": 1800, "tz": "UTC"}
    r = client.put("/api/oncall/policies/strap_tamper", headers=sup, json=policy)
    assert r.status_code == 200 and r.json()["webhook_key"] is None, r.text
    listed = client.get("/api/oncall/shifts", headers=officer).json()
    assert [s["user_id"] for s in listed] == [officer_id]
    # The other unit sees its own (empty) rota, never this one.
    other = bearer(login(client, w.user(UNIT_B, "supervisor")))
    assert client.get("/api/oncall/shifts", headers=other).json() == []
    assert client.get("/api/oncall/policies", headers=other).json() == []

    alert = raise_alert(api_engine, w.subjects["A-1"], int(now) - 10, now)
    d = notify_app.state.tagwatch.dispatcher
    d.step()
    d.step()
    (mail,) = mailbox.to("pc.a@example.org")
    (pushed,) = push_service.for_subscription("officer-a")
    assert "Subject A-1" not in mail.body and "A-1" not in str(pushed.payload)
    m = LINK.search(mail.body)
    assert m is not None and LINK.search(pushed.payload["url"]) is not None
    token = {"token": m.group(1)}

    # Another officer of the same unit, or a bad token: refused; the officer paged: once.
    colleague = bearer(login(client, w.user(UNIT_A, "supervisor")))
    r = client.post("/api/notifications/ack", headers=colleague, json=token)
    assert r.status_code == 403 and "another officer" in r.text
    r = client.post("/api/notifications/ack", headers=officer, json={"token": "not.a.token"})
    assert r.status_code == 422 and "not valid" in r.text
    r = client.post("/api/notifications/ack", headers=officer, json=token)
    assert r.status_code == 200 and r.json() == {"alert_id": alert, "result": "acknowledged"}
    # The same link again (a double tap): answered with how the alert stands, not refused.
    r = client.post("/api/notifications/ack", headers=officer, json=token)
    assert r.status_code == 200 and r.json() == {"alert_id": alert, "result": "already"}
    got = client.get(f"/api/alerts/{alert}", headers=officer).json()
    assert got["state"] == "acknowledged"

    # The browser unsubscribes; the supervisor removes the shift and the policy.
    r = client.delete(
        "/api/notifications/subscriptions", headers=officer, params={"endpoint": endpoint}
    )
    assert r.status_code == 204
    assert client.delete(f"/api/oncall/shifts/{listed[0]['id']}", headers=other).status_code == 404
    assert client.delete(f"/api/oncall/shifts/{listed[0]['id']}", headers=sup).status_code == 204
    assert client.delete("/api/oncall/policies/strap_tamper", headers=sup).status_code == 204
    assert client.get("/api/oncall/shifts", headers=sup).json() == []


def test_a_policy_with_a_webhook_shows_its_signing_key_once(
    notify_app: FastAPI, notify_world: World
) -> None:
    client = TestClient(notify_app)
    sup = bearer(login(client, notify_world.user(UNIT_A, "supervisor")))
    body = {
        "min_severity": "critical", "escalate_after_s": 300, "dedup_s": 0, "tz": "Europe/London",
        "quiet_start": "23:00", "quiet_end": "07:00", "webhook_url": "https://paging.example/hook",
    }  # fmt: skip
    r = client.put("/api/oncall/policies/*", headers=sup, json=body)
    assert r.status_code == 200, r.text
    assert re.fullmatch(r"[0-9a-f]{64}", r.json()["webhook_key"])
    listed = client.get("/api/oncall/policies", headers=sup).json()
    assert "webhook_key" not in listed[0] and listed[0]["webhook_url"] == body["webhook_url"]
    for bad in (
        {**body, "webhook_url": "http://10.0.0.1/hook"},
        {**body, "quiet_end": None},
        {**body, "escalate_after_s": 5},
        {**body, "tz": "Nowhere/Special"},
    ):
        r = client.put("/api/oncall/policies/*", headers=sup, json=bad)
        assert r.status_code == 422, (bad, r.text)
    r = client.put("/api/oncall/policies/" + "x" * 49, headers=sup, json=body)
    assert r.status_code == 422
