"""The monitoring API over real HTTP (uvicorn on a loopback port): configure a subject's
equipment, zones and curfew; frames through ingest and the rules; the alert on the SSE
stream and in the filtered list; acknowledge and resolve; another unit sees none of it."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from backend.clock import ManualClock
from backend.ingest import DeviceDirectory, Ingest, Message
from backend.registry import KeyVault, Registry
from backend.rules.sink import MonitoringSink
from backend.rules.zones import Zones
from backend.storage.schema import HOME_UNIT, TAG
from firmware import frame as fr
from firmware import topics
from tests.backend.api.conftest import SERVER_KEY, Server, bearer, login
from tests.backend.api.world import UNIT_A, UNIT_B, World
from tests.backend.rules.scenario import offset

TAG_ID, UNIT_ID = 3001, 4001


def zone_feature(dx: float, radius: float, kind: str = "exclusion") -> dict[str, Any]:
    lat, lon = offset(dx, 0)
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {"name": "precinct", "kind": kind, "radius_m": radius},
    }


class Setup:
    def __init__(self, server: Server, world: World, engine: Engine, clock: ManualClock) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=10)
        self.officer = bearer(login(self.http, world.user(UNIT_A, "officer")))
        self.other = bearer(login(self.http, world.user(UNIT_B, "officer")))
        self.subject = world.subjects["A-1"]
        self.clock = clock
        registry = Registry(engine, KeyVault(bytes.fromhex(SERVER_KEY)), clock)
        self.unit = registry.register(UNIT_ID, HOME_UNIT)
        self.tag = registry.register(TAG_ID, TAG, home_unit=UNIT_ID)
        self.sink = MonitoringSink(engine, clock)
        self.ingest = Ingest(
            engine, DeviceDirectory(registry), lambda t, p: True, clock=clock, rules=self.sink
        )
        self.seq = 0

    def post(self, path: str, body: Any, who: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(path, json=body, headers=who or self.officer)

    def walk_in(self, t0: int) -> None:
        xs = [700 + 25 * i for i in range(10)] + [1000] * 10
        for k in range(4):
            ts = t0 + 15 * (5 * k + 4)
            recs = []
            for i in range(5):
                lat, lon = offset(xs[5 * k + i], 0)
                recs.append(
                    fr.Record(
                        fr.FIX,
                        (15 * (4 - i), round(lat * 1e7), round(lon * 1e7), 50, 2, 0, 9, 100, 0, 9),
                    )
                )
            self.seq += 1
            f = fr.Frame(fr.TAG_DATA, TAG_ID, 1, self.seq, ts, recs, fr.FLAG_TIME_VALID)
            self.clock.set(ts + 1)
            self.ingest.process([Message(topics.tag_up(TAG_ID), fr.encode(f, self.tag.key))])


@pytest.fixture
def setup(server: Server, world: World, api_engine: Engine, api_clock: ManualClock) -> Setup:
    return Setup(server, world, api_engine, api_clock)


def _configure(s: Setup, t0: int) -> int:
    base = f"/api/subjects/{s.subject}"
    for dev, role in ((TAG_ID, "tag"), (UNIT_ID, "home_unit")):
        r = s.post(f"{base}/assignments", {"device": dev, "role": role, "starts_at": t0 - 600})
        assert r.status_code == 201, r.text
    r = s.post(f"{base}/zones", zone_feature(1000, 100))
    assert r.status_code == 201, r.text
    zone = r.json()
    assert zone["properties"]["shape"] == "circle" and zone["geometry"]["type"] == "Point"
    r = s.post(
        f"{base}/orders",
        {"kind": "licence", "reference": "L-1", "starts_at": t0 - 86400, "comms_loss_s": 3600},
    )
    assert r.status_code == 201, r.text
    r = s.post(f"{base}/curfews", {"days": ["mon", "tue"], "start": "19:00", "end": "07:00"})
    assert r.status_code == 201 and r.json()["tz"] == "Europe/London"
    r = s.http.put(f"{base}/charging", json={"min_minutes": 60}, headers=s.officer)
    assert r.status_code == 200
    fc = s.http.get(f"{base}/zones", headers=s.officer).json()
    assert fc["type"] == "FeatureCollection" and fc["features"][0]["id"] == zone["id"]
    return int(zone["id"])


def test_bad_input_gets_a_clear_error_and_changes_nothing(setup: Setup) -> None:
    s = setup
    base = f"/api/subjects/{s.subject}"
    bowtie = {
        "type": "Feature",
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [[-1.88, 50.72], [-1.87, 50.73], [-1.87, 50.72], [-1.88, 50.73], [-1.88, 50.72]]
            ],
        },
        "properties": {"name": "x", "kind": "exclusion"},
    }
    assert s.post(f"{base}/zones", bowtie).status_code == 422
    assert s.post(f"{base}/zones", zone_feature(0, 0)).status_code == 422  # radius 0
    assert (
        s.post(f"{base}/curfews", {"days": ["mon"], "start": "25:00", "end": "07:00"}).status_code
        == 422
    )
    assert (
        s.post(
            f"{base}/curfews",
            {"days": ["mon"], "start": "19:00", "end": "07:00", "tz": "Mars/Olympus"},
        ).status_code
        == 422
    )
    now = int(s.clock.now())
    r = s.post(f"{base}/assignments", {"device": UNIT_ID, "role": "tag", "starts_at": now})
    assert r.status_code == 422 and "home_unit" in r.text
    assert s.http.get(f"{base}/zones", headers=s.officer).json()["features"] == []


def test_frames_to_alert_on_the_stream_then_the_workflow(setup: Setup, world: World) -> None:
    s = setup
    t0 = int(s.clock.now()) + 600
    zone_id = _configure(s, t0)
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    opened = threading.Event()

    def listen() -> None:
        headers = {**s.officer, "Accept": "text/event-stream"}
        with s.http.stream(
            "GET", "/api/alerts/stream", headers=headers, timeout=httpx.Timeout(30, read=30)
        ) as r:
            assert r.status_code == 200
            opened.set()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    body = json.loads(line[6:])
                    if body["type"] == "exclusion_entry":
                        events.put(body)
                        return

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    assert opened.wait(10)
    s.walk_in(t0)
    ev = events.get(timeout=20)
    assert ev["type"] == "exclusion_entry" and ev["action"] == "raised"
    assert ev["subject_id"] == s.subject and ev["state"] == "open"
    alert_id = ev["id"]

    listed = s.http.get(
        "/api/alerts",
        params={"type": "exclusion_entry", "state": "open", "subject": s.subject},
        headers=s.officer,
    ).json()
    assert [a["id"] for a in listed] == [alert_id]
    detail = s.http.get(f"/api/alerts/{alert_id}", headers=s.officer).json()
    (ep,) = detail["episode_list"]
    assert ep["details"]["zone"] == zone_id and ep["evidence"]
    assert ep["rule_version"] == Zones.version
    # Another unit's officer: nothing listed, the alert itself is 404.
    assert s.http.get("/api/alerts", headers=s.other).json() == []
    assert s.http.get(f"/api/alerts/{alert_id}", headers=s.other).status_code == 404
    assert s.post(f"/api/alerts/{alert_id}/acknowledge", {}, s.other).status_code == 404

    r = s.post(f"/api/alerts/{alert_id}/acknowledge", {"note": "calling the subject"})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    r = s.post(f"/api/alerts/{alert_id}/resolve", {"outcome": "breach_confirmed", "note": "seen"})
    assert r.status_code == 200 and r.json()["outcome"] == "breach_confirmed"
    assert (
        s.post(
            f"/api/alerts/{alert_id}/resolve", {"outcome": "false_alert", "note": "again"}
        ).status_code
        == 409
    )
    acts = [
        a["action"]
        for a in s.http.get(f"/api/alerts/{alert_id}", headers=s.officer).json()["actions"]
    ]
    assert acts[0] == "raised" and acts[-2:] == ["acknowledged", "resolved"]

    trail = s.http.get(
        f"/api/subjects/{s.subject}/trail",
        headers=s.officer,
        params={"from": t0, "to": t0 + 600, "purpose": "alert follow-up"},
    ).json()
    points = [f for f in trail["features"] if f["geometry"]["type"] == "Point"]
    assert len(points) == 20 and trail["features"][-1]["geometry"]["type"] == "LineString"


def test_the_stream_refuses_clients_that_do_not_accept_events(setup: Setup) -> None:
    r = setup.http.get("/api/alerts/stream", headers=setup.officer)
    assert r.status_code == 406


def test_rules_and_parameters_are_published(setup: Setup) -> None:
    rules = setup.http.get("/api/rules", headers=setup.officer).json()
    by = {r["rule"]: r for r in rules}
    assert by["curfew"]["params"]["grace_s"] == 600 and by["zones"]["version"] == Zones.version
    assert by["zones"]["params"]["exclusion_dwell_s"] == 60
    # victim_not_reached is raised by the backend's check of its warnings, not by a rule: it
    # is listed too, with the resend policy the settings hold.
    assert by["delivery"] == {"rule": "delivery", "version": 1,
                              "params": {"every_s": 60.0, "sends": 3}}  # fmt: skip


def test_openapi_documents_the_monitoring_routes(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for p in (
        "/api/subjects/{subject_id}/zones",
        "/api/alerts",
        "/api/alerts/stream",
        "/api/alerts/{alert_id}/resolve",
        "/api/subjects/{subject_id}/trail",
    ):
        assert p in paths
    body = paths["/api/alerts/{alert_id}/resolve"]["post"]["requestBody"]
    assert "AlertResolve" in json.dumps(body)
