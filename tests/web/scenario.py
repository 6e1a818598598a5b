"""A small monitored world for the web tests, built through the real parts: the API's
multi-agency world (two police units with every role, a partner, subjects A-1, A-2 and B-1,
shares), devices in the registry, monitoring configured through the HTTP API, and signed
frames through ingest and the rules — so positions, the alert and its evidence are what the
running system would store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine

from backend.api.app import create_app
from backend.clock import ManualClock
from backend.ingest import DeviceDirectory, Ingest, Message
from backend.registry import KeyVault, Registry
from backend.rules.sink import MonitoringSink
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import HOME_UNIT, TAG
from backend.web.settings import WebSettings
from firmware import frame as fr
from firmware import topics
from tests.backend.api.conftest import SERVER_KEY, Server, api_settings, bearer, login
from tests.backend.api.world import UNIT_A, UNIT_B, World, build
from tests.backend.conftest import T0
from tests.backend.rules.scenario import offset

# Devices: A-1's tag and home unit, B-1's tag.
TAG_A, UNIT_A_DEV, TAG_B = 3001, 4001, 3002
# The exclusion zone: 100 m around a point 1 km east of A-1's home.
ZONE_DX, ZONE_R = 1000.0, 100.0
START = T0 - 6 * 3600  # equipment fitted, history starts


def fix_record(dt: int, dx: float, dy: float = 0.0, acc_dm: int = 50) -> fr.Record:
    lat, lon = offset(dx, dy)
    return fr.Record(fr.FIX, (dt, round(lat * 1e7), round(lon * 1e7), acc_dm, 2, 0, 9, 100, 0, 9))


@dataclass
class Scenario:
    app: FastAPI
    engine: Engine
    clock: ManualClock
    world: World
    server: Server
    http: httpx.Client
    ingest: Ingest
    keys: dict[int, bytes]
    zone_id: int = 0
    seq: dict[int, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def officer(self, unit: str = UNIT_A) -> dict[str, str]:
        return bearer(login(self.http, self.world.user(unit, "officer")))

    def send(self, device: int, ts: int, records: list[fr.Record], kind: int = fr.TAG_DATA) -> None:
        """One signed frame (a tag's TAG_DATA, or a home unit's HOME_DATA) through ingest and
        the rules, at backend time ts + 1; none of its records refused."""
        self.seq[device] = self.seq.get(device, 0) + 1
        f = fr.Frame(kind, device, 1, self.seq[device], ts, records, fr.FLAG_TIME_VALID)
        self.clock.set(max(self.clock.now(), ts + 1))
        topic = topics.home_up(device) if kind == fr.HOME_DATA else topics.tag_up(device)
        result = self.ingest.process([Message(topic, fr.encode(f, self.keys[device]))])
        assert not result.rejected, result.rejected

    def history(self, device: int, t0: int, t1: int, dx0: float, step_dx: float) -> None:
        """A fix a minute from t0 to t1 (frames of five), walking east from dx0."""
        t, dx = t0, dx0
        while t <= t1:
            recs = [fix_record(60 * (4 - i), dx + step_dx * i, 40.0) for i in range(5)]
            self.send(device, t + 240, recs)
            t += 300
            dx += step_dx * 5

    def walk_into_zone(self) -> int:
        """A-1 walks into the exclusion zone and stays: an exclusion_entry alert. Returns
        the event time of the last fix."""
        t0 = int(self.clock.now()) + 60
        xs = [ZONE_DX - 300 + 25 * i for i in range(10)] + [ZONE_DX] * 10
        ts = t0
        for k in range(4):
            ts = t0 + 15 * (5 * k + 4)
            recs = [fix_record(15 * (4 - i), xs[5 * k + i]) for i in range(5)]
            self.send(TAG_A, ts, recs)
        return ts


def _api(s: Scenario, method: str, path: str, who: dict[str, str], body: Any = None) -> Any:
    r = s.http.request(method, path, json=body, headers=who)
    assert r.status_code < 300, (path, r.status_code, r.text)
    return r.json()


def configure(s: Scenario) -> None:
    a1, b1 = s.world.subjects["A-1"], s.world.subjects["B-1"]
    off_a, off_b = s.officer(UNIT_A), s.officer(UNIT_B)
    for sid, dev, role, who in (
        (a1, TAG_A, "tag", off_a),
        (a1, UNIT_A_DEV, "home_unit", off_a),
        (b1, TAG_B, "tag", off_b),
    ):
        _api(s, "POST", f"/api/subjects/{sid}/assignments", who,
             {"device": dev, "role": role, "starts_at": START})  # fmt: skip
    home_lat, home_lon = offset(0, 0)
    _api(s, "POST", f"/api/subjects/{a1}/zones", off_a, {
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [home_lon, home_lat]},
        "properties": {"name": "home", "kind": "home", "radius_m": 60},
    })  # fmt: skip
    zlat, zlon = offset(ZONE_DX, 0)
    zone = _api(s, "POST", f"/api/subjects/{a1}/zones", off_a, {
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [zlon, zlat]},
        "properties": {"name": "town centre", "kind": "exclusion", "radius_m": ZONE_R},
    })  # fmt: skip
    s.zone_id = int(zone["id"])
    _api(s, "POST", f"/api/subjects/{a1}/orders", off_a, {
        "kind": "licence", "reference": "LIC-1", "starts_at": START - 86400,
        "conditions": "exclusion from the town centre; curfew 19:00-07:00",
    })  # fmt: skip
    _api(s, "POST", f"/api/subjects/{a1}/curfews", off_a,
         {"days": ["sat", "sun"], "start": "19:00", "end": "07:00"})  # fmt: skip
    # Trails: A-1 strolls around home (never near the zone), B-1 elsewhere in town.
    s.history(TAG_A, START, T0 - 600, -400.0, 2.0)
    s.history(TAG_B, START, T0 - 600, -3000.0, 3.0)


def start(tmp_path: Path, web: WebSettings | None = None) -> Scenario:
    clock = ManualClock(START - 60)
    engine = make_engine(f"sqlite:///{tmp_path / 'web.db'}")
    upgrade(engine)
    app = create_app(api_settings(tmp_path), clock, engine)
    if web is not None:
        app.state.tagwatch_web = web
    world = build(engine, app.state.tagwatch.passwords, clock)
    registry = Registry(engine, KeyVault(bytes.fromhex(SERVER_KEY)), clock)
    keys = {
        UNIT_A_DEV: registry.register(UNIT_A_DEV, HOME_UNIT).key,
        TAG_A: registry.register(TAG_A, TAG, home_unit=UNIT_A_DEV).key,
        TAG_B: registry.register(TAG_B, TAG).key,
    }
    ingest = Ingest(
        engine,
        DeviceDirectory(registry),
        lambda t, p: True,
        clock=clock,
        rules=MonitoringSink(engine, clock),
    )
    server = Server(app)
    server.start()
    s = Scenario(app, engine, clock, world, server, httpx.Client(base_url=server.url, timeout=10),
                 ingest, keys)  # fmt: skip
    configure(s)
    return s


def stop(s: Scenario) -> None:
    s.http.close()
    s.server.stop()
    s.engine.dispose()
