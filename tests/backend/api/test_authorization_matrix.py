"""Every route of the app, called as every role of two police units and a partner agency,
against a subject of each unit and one shared across them. Expectations come from the
policy written out here independently of the implementation (backend/security/roles.py):

- own unit: supervisors and officers may do everything, partners read (but a victim's
  device: its link, warnings and positions), administrators, auditors and researchers see
  nothing (a researcher reads pseudonymised cohort figures only, through /api/research);
- a share grants VIEW plus its scopes to supervisors, officers and partners, never MANAGE
  and never the victim's device;
- anything else is invisible: 404, the same answer as for a subject that does not exist.

Routes added later by other issues are included automatically; for id routes that are not
subject routes the matrix checks that an unknown id is refused with 403/404, never served.

Then share scopes by object types by read/write, on stored objects (SQLite and PostgreSQL):
a subject with one of every kind of object, shared with one unit per scope, read and
written by each unit's roles through every route, map, list and stream that reaches it,
against `READ_NEEDS` below; and every read through a share leaves a disclosure record
naming the subject."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from starlette.websockets import WebSocketDisconnect

from backend.clock import ManualClock
from backend.storage.schema import audit_log
from tests.backend.api.conftest import Server, Stream, bearer, login
from tests.backend.api.probe import OBJECTS_PER_SUBJECT
from tests.backend.api.routes import PUBLIC, RouteInfo, inventory, is_id
from tests.backend.api.world import (
    CONTROL_TAG,
    PARTNER_UNIT,
    RECEIVING_ROLES,
    SPARE_TAG,
    SPARE_VICTIM_DEVICE,
    TAG,
    UNIT_A,
    UNIT_B,
    VICTIM_DEVICE,
    Scoped,
    World,
    build_scoped,
    raise_alert,
    receiver,
)
from tests.backend.conftest import ENGINES
from tests.backend.investigations.scenario import Fix, at

ALL = {"view", "live", "trail", "alerts", "reports", "conditions", "manage", "victim"}
READ = ALL - {"manage", "victim"}
OWN = {"supervisor": ALL, "officer": ALL, "partner": READ, "administrator": set(), "auditor": set(),
       "researcher": set()}  # fmt: skip
SHARE_USERS = {"supervisor", "officer", "partner"}
# What the world's shares grant: subject -> unit -> scopes.
SHARED = {"A-2": {UNIT_B: {"live", "alerts"}, PARTNER_UNIT: {"trail", "reports"}}}
OWNER = {"A-1": UNIT_A, "A-2": UNIT_A, "B-1": UNIT_B}
PURPOSE = {"purpose": "authorization matrix test"}


def expected_scopes(unit: str, role: str, subject: str) -> set[str]:
    if OWNER[subject] == unit:
        return OWN[role]
    granted = SHARED.get(subject, {}).get(unit)
    if granted and role in SHARE_USERS:
        return {"view"} | granted
    return set()


def _users(world: World) -> list[tuple[str, str, str]]:
    """(username, unit, role) for every role of both police units, and the partner."""
    out = [(name, unit, role) for name, (_, uid, role) in world.users.items()
           for unit in world.units if world.units[unit] == uid]  # fmt: skip
    assert len(out) == 13
    return out


def _fill(route: RouteInfo, value: int) -> str:
    path = route.path
    for p in route.path_params:
        path = path.replace("{" + p + "}", str(value))
    return path


def _call(client: TestClient, method: str, url: str, token: str | None) -> tuple[int, str]:
    headers = bearer(token) if token else {}
    body = {} if method in ("POST", "PUT", "PATCH") else None
    r = client.request(method, url, headers=headers, params=PURPOSE, json=body)
    return r.status_code, r.text


def _subject_object_value(route: RouteInfo, subject_id: int) -> int | None:
    """The path value that names this subject for a subject or probe-object route."""
    if route.path_params == ("subject_id",):
        return subject_id
    if route.path_params == ("object_id",) and route.path.startswith("/probe/"):
        return subject_id * OBJECTS_PER_SUBJECT + 1
    return None


@pytest.fixture
def matrix(client: TestClient, app: FastAPI, world: World) -> dict[str, Any]:
    tokens = {name: login(client, name) for name, _, _ in _users(world)}
    names = {ref: f"Subject {ref}" for ref in world.subjects}
    return {"tokens": tokens, "names": names, "routes": inventory(app)}


def _leaks(text: str, unit: str, role: str) -> list[str]:
    """Names of subjects the caller may not see that appear in an answer."""
    return [f"Subject {ref}" for ref in OWNER
            if not expected_scopes(unit, role, ref) and f"Subject {ref}" in text]  # fmt: skip


def test_unauthenticated_calls_get_401_on_every_route(
    client: TestClient, matrix: dict[str, Any]
) -> None:
    checked = 0
    for route in matrix["routes"]:
        if route.path in PUBLIC:
            continue
        url = _fill(route, 1)
        if route.websocket:
            with pytest.raises(WebSocketDisconnect) as e, client.websocket_connect(url):
                pass
            assert e.value.code == 1008, route.path
            continue
        for method in route.methods:
            status, _ = _call(client, method, url, None)
            assert status == 401, (method, route.path, status)
            checked += 1
    assert checked >= 15


def test_every_subject_route_as_every_role_of_two_units(
    client: TestClient, world: World, matrix: dict[str, Any]
) -> None:
    subject_routes = [r for r in matrix["routes"] if r.scope is not None]
    assert len(subject_routes) >= 8
    calls = 0
    for route in subject_routes:
        for ref, subject_id in world.subjects.items():
            value = _subject_object_value(route, subject_id)
            if value is None:
                continue
            url = _fill(route, value)
            for name, unit, role in _users(world):
                allowed = expected_scopes(unit, role, ref)
                token = matrix["tokens"][name]
                if route.websocket:
                    _check_websocket(client, url, token, route.scope in allowed)
                    continue
                for method in route.methods:
                    status, text = _call(client, method, url, token)
                    where = (name, method, route.path, ref, status, text[:200])
                    assert status < 500, where
                    if not allowed:
                        assert status == 404, where
                    elif route.scope not in allowed:
                        assert status == 403, where
                    else:
                        assert status not in (401, 404), where
                        if method == "GET" and route.path.startswith("/probe/"):
                            assert status == 200, where
                        elif method == "GET":
                            # Domain routes may need query parameters the matrix does not
                            # invent (a time window); authorization passed if we got here.
                            assert status in (200, 422), where
                    assert _leaks(text, unit, role) == [], where
                    calls += 1
    assert calls >= 250


def _check_websocket(client: TestClient, url: str, token: str, allowed: bool) -> None:
    if allowed:
        with client.websocket_connect(url, headers=bearer(token)) as ws:
            assert ws.receive_json()
        return
    with (
        pytest.raises(WebSocketDisconnect) as e,
        client.websocket_connect(url, headers=bearer(token)),
    ):
        pass
    assert e.value.code == 1008


def test_other_routes_as_every_role_never_fail_and_never_leak(
    client: TestClient, world: World, matrix: dict[str, Any]
) -> None:
    for route in matrix["routes"]:
        if route.path in PUBLIC or route.scope is not None or route.websocket:
            continue
        if route.path.endswith("/logout"):
            continue  # would end the session the rest of the matrix uses (tested apart)
        has_id = any(is_id(p) for p in route.path_params)
        url = _fill(route, 987_654)  # an id nobody has
        for name, unit, role in _users(world):
            for method in route.methods:
                status, text = _call(client, method, url, matrix["tokens"][name])
                where = (name, method, route.path, status, text[:200])
                assert status < 500, where
                assert status != 401, where
                if has_id:
                    assert status in (403, 404, 422), where
                assert _leaks(text, unit, role) == [], where


ON_CALL_NONE = {
    "administrator": 403,
    "auditor": 403,
    "partner": 403,
    "officer": 403,
    "researcher": 403,
}
ON_CALL_READ = {**ON_CALL_NONE, "supervisor": 200, "officer": 200}
ON_CALL_WRITE = {**ON_CALL_NONE, "supervisor": 422, "officer": 422}


def test_directory_routes_follow_the_roles(
    client: TestClient, world: World, matrix: dict[str, Any]
) -> None:
    """Units/users/audit, the tag pool and tags' broker lists: who may read and write them."""
    expect = {
        ("GET", "/api/users"): {"administrator": 200, "auditor": 200, "supervisor": 200,
                                "officer": 403, "partner": 403, "researcher": 403},
        ("GET", "/api/audit"): {"auditor": 200, "administrator": 403, "supervisor": 403,
                                "officer": 403, "partner": 403, "researcher": 403},
        ("GET", "/api/audit/verify"): {"auditor": 200, "administrator": 403,
                                       "supervisor": 403, "officer": 403, "partner": 403,
                                       "researcher": 403},
        ("GET", "/api/units"): {r: 200 for r in OWN},
        ("POST", "/api/units"): {"administrator": 422, "auditor": 403, "supervisor": 403,
                                 "officer": 403, "partner": 403, "researcher": 403},
        # On call: the unit's own rota and policies; read by those paged, kept by the
        # supervisor (422: the matrix sends an empty body, so authorization passed).
        ("GET", "/api/oncall/shifts"): ON_CALL_READ,
        ("GET", "/api/oncall/policies"): ON_CALL_READ,
        ("POST", "/api/oncall/shifts"): {**ON_CALL_NONE, "supervisor": 422},
        ("PUT", "/api/oncall/policies/strap_tamper"): {**ON_CALL_NONE, "supervisor": 422},
        ("DELETE", "/api/oncall/policies/strap_tamper"): {**ON_CALL_NONE, "supervisor": 404},
        ("DELETE", "/api/oncall/shifts/1"): {**ON_CALL_NONE, "supervisor": 404},
        ("GET", "/api/notifications/push-key"): ON_CALL_READ,
        ("POST", "/api/notifications/subscriptions"): ON_CALL_WRITE,
        ("POST", "/api/notifications/ack"): ON_CALL_WRITE,
        # The tag pool: its unit's supervisors and officers (an empty body: 422 past the guard).
        ("GET", "/api/pool"): {"supervisor": 200, "officer": 200, "administrator": 403,
                               "auditor": 403, "partner": 403, "researcher": 403},
        ("POST", "/api/pool"): {"supervisor": 422, "officer": 422, "administrator": 403,
                                "auditor": 403, "partner": 403, "researcher": 403},
        # A tag's broker list: administrators only (no tag or unit named: 422 past the guard).
        ("POST", "/api/brokers"): {"administrator": 422, "auditor": 403, "supervisor": 403,
                                   "officer": 403, "partner": 403, "researcher": 403},
        ("GET", "/api/brokers"): {"administrator": 422, "auditor": 403, "supervisor": 403,
                                  "officer": 403, "partner": 403, "researcher": 403},
    }  # fmt: skip
    for (method, path), by_role in expect.items():
        for name, _, role in _users(world):
            status, _ = _call(client, method, path, matrix["tokens"][name])
            assert status == by_role[role], (name, method, path, status)
    # A supervisor lists only its own unit's users; another unit's user is 404 to it.
    status, text = _call(client, "GET", "/api/users", matrix["tokens"]["supervisor.mosovo"])
    assert {u["unit_id"] for u in json.loads(text)} == {world.units[UNIT_B]}
    foreign_user = world.users["officer.turnaround"][0]
    status, _ = _call(
        client, "GET", f"/api/users/{foreign_user}", matrix["tokens"]["supervisor.mosovo"]
    )
    assert status == 404
    status, _ = _call(
        client, "GET", f"/api/users/{foreign_user}", matrix["tokens"]["officer.turnaround"]
    )
    assert status == 200  # oneself


# ---- share scopes x object types x read/write ------------------------------------------

SHAREABLE = ("live", "trail", "alerts", "reports", "conditions")
# The receiving units of A-3's shares: one per scope, and one with live and conditions (the
# live map then shows the subject's zones too).
GRANTS = {**{scope: {scope} for scope in SHAREABLE}, "live-conditions": {"live", "conditions"}}
# What reading each kind of object reached through a subject needs. A recipient of a share
# holds view and the share's scopes: it reads an object exactly when this scope is among
# them (view is the subject's reference and name, nothing more). No scope a share grants
# writes anything: every change needs manage, which never crosses units.
READ_NEEDS = {
    "subject": "view",
    "order": "conditions",
    "curfew": "conditions",
    "exception": "conditions",
    "zone": "conditions",
    "equipment": "conditions",
    "charging": "conditions",
    "alert": "alerts",
    "device event": "alerts",
    "position": "live",
    "presence": "live",
    "trail": "trail",
    "report": "reports",
    "share": "manage",
    "victim link": "victim",
    "victim position": "victim",
    "victim warning": "victim",
    "enrolment": "conditions",
    # What became of the episode: the owning unit's to record and correct, no one else's.
    "outcome": "manage",
    # The wearer's own data, given to them by the unit that holds it.
    "subject access": "manage",
}
# Reading these is a consultation of personal data, recorded per subject as read.<scope>
# (own unit) or disclose.<scope> (through a share).
AUDITED = {"live", "trail", "alerts", "reports", "conditions", "victim"}
SHOWN, REFUSED, HIDDEN = "shown", "refused (403)", "hidden"
PURPOSE_TEXT = PURPOSE["purpose"]


@dataclass
class Reader:
    username: str
    granted: set[str]  # what the policy above gives it over A-3
    owner: bool


def _readers(world: World) -> list[Reader]:
    out = [Reader(world.user(UNIT_A, r), OWN[r], True) for r in ("officer", "partner")]
    out += [Reader(receiver(name, role), {"view", *granted}, False)
            for name, granted in GRANTS.items() for role in RECEIVING_ROLES]  # fmt: skip
    out.append(Reader(world.user(UNIT_B, "officer"), set(), False))  # A-3 is not shared with it
    return out


@dataclass
class Matrix:
    client: TestClient
    s: Scoped

    def url(self, path: str) -> str:
        return path.format(s=self.s.subject, **self.s.ids)


@dataclass
class ReadRoute:
    name: str
    read: Callable[[Matrix, str], dict[str, str]]  # what it shows of which objects
    direct: bool = False  # a route for the subject or one object (not a list or map)
    within: str | None = None  # the scope a view needs for the subject to be on it at all


def _one(obj: str, method: str, path: str, shows: str, **kw: Any) -> ReadRoute:
    """A route for one subject or object: 200 shows it (and `shows`, its content), 403
    refuses it, 404 hides it."""

    def read(m: Matrix, token: str) -> dict[str, str]:
        r = m.client.request(method, m.url(path), headers=bearer(token), **kw)
        assert r.status_code in (200, 403, 404), (path, r.status_code, r.text[:300])
        if r.status_code == 200:
            assert shows in r.text, (path, r.text[:300])
        return {obj: {200: SHOWN, 403: REFUSED, 404: HIDDEN}[r.status_code]}

    return ReadRoute(f"{method} {path}", read, direct=True)


def _alert_list(m: Matrix, token: str) -> dict[str, str]:
    r = m.client.get("/api/alerts", headers=bearer(token))
    assert r.status_code == 200, r.text
    listed = any(a["id"] == m.s.ids["alert"] for a in r.json())
    return {"alert": SHOWN if listed else HIDDEN}


def _live_map(m: Matrix, token: str) -> dict[str, str]:
    r = m.client.get("/api/web/live", headers=bearer(token))
    assert r.status_code == 200, r.text
    view = r.json()
    mine = [x for x in view["subjects"] if x["id"] == m.s.subject]
    zones = {
        f["id"] for f in view["zones"]["features"] if f["properties"]["subject_id"] == m.s.subject
    }
    home = mine[0]["home_unit"] if mine else None
    # The home unit's place on the map is the home zone's centre: shown with the zones only.
    assert zones in (set(), {m.s.ids["zone"], m.s.ids["victim_zone"]})
    assert home is None or (home["lat"] is not None) == bool(zones)
    return {
        "position": SHOWN if mine and mine[0]["position"] else HIDDEN,
        "presence": SHOWN if mine and mine[0]["presence"] else HIDDEN,
        "zone": SHOWN if zones else HIDDEN,
    }


def _caseload(m: Matrix, token: str) -> dict[str, str]:
    params = {"from": m.s.t - 86400, "to": m.s.t + 60}
    r = m.client.get("/api/reports/caseload", headers=bearer(token), params=params)
    assert r.status_code in (200, 403), r.text  # 403: roles without reports (none here)
    listed = r.status_code == 200 and any(x["subject_id"] == m.s.subject for x in r.json())
    return {"report": SHOWN if listed else HIDDEN}


def _point(dx_m: float, dy_m: float) -> dict[str, Any]:
    """A GeoJSON Point this far east and north of A-3's fixes."""
    lat_e7, lon_e7 = at(dx_m, dy_m)
    return {"type": "Point", "coordinates": [lon_e7 / 1e7, lat_e7 / 1e7]}


def _place(s: Scoped) -> dict[str, Any]:
    return {"geometry": _point(0, 0), "radius_m": 200, "reference": "M-1",
            "from": s.t - 1800, "to": s.t + 60}  # fmt: skip


def _correlation(m: Matrix, token: str) -> dict[str, str]:
    r = m.client.post("/api/investigations/correlate", headers=bearer(token), params=PURPOSE,
                      json=_place(m.s))  # fmt: skip
    assert r.status_code in (200, 403), r.text
    hit = r.status_code == 200 and any(h["subject_id"] == m.s.subject for h in r.json()["hits"])
    return {"trail": SHOWN if hit else HIDDEN}


def _reads(s: Scoped) -> list[ReadRoute]:
    """Every read that reaches A-3 or one of its objects (the streams: below)."""
    window = {"from": s.t - 3600, "to": s.t + 60}
    day = {"from": s.t - 86400, "to": s.t + 60}
    zone = {"type": "Feature", "geometry": _point(0, 0),
            "properties": {"name": "drawn", "kind": "exclusion", "radius_m": 100}}  # fmt: skip
    return [
        _one("subject", "GET", "/api/subjects/{s}", '"reference":"A-3"'),
        _one("order", "GET", "/api/subjects/{s}/orders", "no contact with the victim"),
        _one("curfew", "GET", "/api/subjects/{s}/curfews", "19:00"),
        _one("exception", "GET", "/api/subjects/{s}/curfew-exceptions", "hospital appointment"),
        _one("zone", "GET", "/api/subjects/{s}/zones", "victim's address"),
        _one("equipment", "GET", "/api/subjects/{s}/assignments", f'"device":{TAG}'),
        _one("charging", "GET", "/api/subjects/{s}/charging", '"min_minutes":60'),
        _one("share", "GET", "/api/subjects/{s}/shares", "share-scope matrix"),
        _one("alert", "GET", "/api/alerts/{alert}", "strap_tamper"),
        _one("device event", "GET", "/api/web/subjects/{s}/events", '"battery"', params=day),
        _one("trail", "GET", "/api/subjects/{s}/trail", '"Point"', params={**PURPOSE, **window}),
        _one("trail", "POST", "/api/web/subjects/{s}/zone-preview", '"checked":2',
             params=PURPOSE, json={"zone": zone, "start": window["from"], "end": window["to"]}),
        _one("trail", "GET", "/api/exports/subjects/{s}/evidence.zip", "manifest.json",
             params={**PURPOSE, **window, "reference": "M-1"}),
        _one("trail", "POST", "/api/investigations/subjects/{s}/whereabouts", '"within"',
             params=PURPOSE, json=_place(s)),
        _one("report", "GET", "/api/reports/subjects/{s}/compliance", '"A-3"', params=day),
        _one("victim link", "GET", "/api/subjects/{s}/victim-devices", f'"device":{VICTIM_DEVICE}',
             params=PURPOSE),
        _one("victim position", "GET", "/api/victim-devices/{victim_link}/positions", '"lat"',
             params={**PURPOSE, **window}),
        _one("victim warning", "GET", "/api/victim-devices/{victim_link}/warnings", "[",
             params=PURPOSE),
        _one("enrolment", "GET", "/api/subjects/{s}/enrolments", "CF-A-3"),
        _one("outcome", "GET", "/api/subjects/{s}/outcomes", "the matrix outcome"),
        _one("subject access", "GET", "/api/exports/subjects/{s}/subject-access.zip",
             "manifest.json", params={"reference": "SAR-1"}),
        ReadRoute("GET /api/alerts", _alert_list),
        ReadRoute("GET /api/web/live", _live_map, within="live"),
        ReadRoute("GET /api/reports/caseload", _caseload),
        ReadRoute("POST /api/investigations/correlate", _correlation),
    ]  # fmt: skip


def _expected(reader: Reader, obj: str, route: ReadRoute | None = None) -> str:
    """What the policy says `reader` gets of `obj` through `route` (None: a stream)."""
    within = route is None or route.within is None or route.within in reader.granted
    if READ_NEEDS[obj] in reader.granted and within:
        return SHOWN
    return REFUSED if route is not None and route.direct and reader.granted else HIDDEN


def _last_audit_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.max(audit_log.c.id))).scalar() or 0)


def _recorded(engine: Engine, after: int, username: str, subject: int) -> tuple[set[str], int]:
    """Actions recorded since `after` by `username` that name `subject`, and the last
    record's id (what the next call's `after` is: one query per read, not two)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.id, audit_log.c.actor, audit_log.c.action, audit_log.c.subject_ids)
            .where(audit_log.c.id > after)
        ).all()  # fmt: skip
    mine = {r.action for r in rows if r.actor == username and subject in (r.subject_ids or [])}
    return mine, max((r.id for r in rows), default=after)


@pytest.fixture
def scoped(app: FastAPI, api_engine: Engine, api_clock: ManualClock, world: World) -> Scoped:
    return build_scoped(api_engine, app.state.tagwatch.passwords, api_clock, world, GRANTS)


def _reads_and_disclosures(m: Matrix, world: World, engine: Engine) -> int:
    checked = 0
    before = _last_audit_id(engine)
    for reader in _readers(world):
        token = login(m.client, reader.username)
        for route in _reads(m.s):
            got = route.read(m, token)
            recorded, before = _recorded(engine, before, reader.username, m.s.subject)
            for obj, outcome in got.items():
                where = (reader.username, route.name, obj)
                assert outcome == _expected(reader, obj, route), where
                need = READ_NEEDS[obj]
                if outcome == SHOWN and need in AUDITED:
                    # Recorded before the answer, naming the subject (per subject, not per call).
                    assert f"{'read' if reader.owner else 'disclose'}.{need}" in recorded, (
                        *where,
                        recorded,
                    )
                checked += 1
    return checked


@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)
def test_every_read_of_a_shared_subjects_objects_follows_the_share_scopes(
    client: TestClient, world: World, scoped: Scoped, api_engine: Engine
) -> None:
    checked = _reads_and_disclosures(Matrix(client, scoped), world, api_engine)
    assert checked == len(_readers(world)) * (len(_reads(scoped)) + 2)  # the map shows 3


def _writes(s: Scoped, world: World, now: float) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every change that reaches A-3 or one of its objects, with a body the owner's
    supervisor may send (in this order: the deletions last)."""
    zone = {"type": "Feature", "geometry": _point(50, 50),
            "properties": {"name": "new zone", "kind": "exclusion", "radius_m": 100}}  # fmt: skip
    share = {"unit_id": world.units[UNIT_B], "scopes": ["live"], "purpose": "another share",
             "expires_at": now + 3600}  # fmt: skip
    return [
        ("PATCH", "/api/subjects/{s}", {"name": "Subject A-3"}),
        ("POST", "/api/subjects/{s}/orders",
         {"kind": "licence", "reference": "ORD-2", "starts_at": s.t - 86400}),
        ("PATCH", "/api/orders/{order}", {"conditions": "changed"}),
        ("PATCH", "/api/assignments/{assignment}", {"ends_at": s.t + 7200}),
        ("POST", "/api/subjects/{s}/assignments",
         {"device": SPARE_TAG, "role": "tag", "starts_at": s.t + 7200}),
        ("POST", "/api/subjects/{s}/curfews", {"days": ["wed"], "start": "20:00", "end": "06:00"}),
        ("POST", "/api/subjects/{s}/curfew-exceptions",
         {"kind": "extra", "starts_at": s.t, "ends_at": s.t + 60, "reason": "court order"}),
        ("POST", "/api/subjects/{s}/zones", zone),
        ("PATCH", "/api/zones/{zone}", {"name": "home (moved)"}),
        ("PUT", "/api/subjects/{s}/charging", {"min_minutes": 90}),
        ("POST", "/api/alerts/{alert}/acknowledge", {"note": "seen"}),
        ("POST", "/api/alerts/{alert}/resolve", {"outcome": "false_alert", "note": "checked"}),
        ("POST", "/api/subjects/{s}/shares", share),
        ("POST", "/api/subjects/{s}/victim-devices",
         {"order_id": s.ids["order"], "device": SPARE_VICTIM_DEVICE, "starts_at": s.t}),
        ("PATCH", "/api/victim-devices/{victim_link}", {"ends_at": s.t + 7200}),
        ("POST", "/api/subjects/{s}/consent/review", {"review_at": s.t + 60 * 86400}),
        ("POST", "/api/subjects/{s}/consent/withdrawal", {"withdrawn_at": s.t + 7260}),
        ("POST", "/api/subjects/{s}/consent/removal", {"removed_at": s.t + 7320}),
        ("PATCH", "/api/outcomes/{outcome}", {"note": "corrected", "reason": "matrix"}),
        ("POST", "/api/outcomes/{outcome}/withdrawal", {"reason": "matrix"}),
        ("DELETE", "/api/curfews/{curfew}", None),
        ("DELETE", "/api/curfew-exceptions/{exception}", None),
        ("DELETE", "/api/zones/{victim_zone}", None),
    ]  # fmt: skip


def _snapshot(m: Matrix, token: str) -> list[str]:
    """Everything stored about A-3, as its owner reads it."""
    paths = ["/api/subjects/{s}", "/api/subjects/{s}/orders", "/api/subjects/{s}/assignments",
             "/api/subjects/{s}/curfews", "/api/subjects/{s}/curfew-exceptions",
             "/api/subjects/{s}/zones", "/api/subjects/{s}/charging", "/api/alerts/{alert}",
             "/api/subjects/{s}/shares", "/api/subjects/{s}/enrolments",
             "/api/subjects/{s}/outcomes",
             "/api/subjects/{s}/victim-devices?purpose=authorization+matrix+test"]  # fmt: skip
    return [m.client.get(m.url(p), headers=bearer(token)).text for p in paths]


@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)
def test_no_share_scope_writes_anything_of_the_owning_unit(
    client: TestClient, world: World, scoped: Scoped, api_clock: ManualClock
) -> None:
    m = Matrix(client, scoped)
    owner = login(client, world.user(UNIT_A, "supervisor"))
    before = _snapshot(m, owner)
    writes = _writes(scoped, world, api_clock.now())
    calls = 0
    for reader in _readers(world):
        assert "manage" not in reader.granted or reader.username == "officer.turnaround"
        if "manage" in reader.granted:
            continue
        token = login(client, reader.username)
        for method, path, body in writes:
            r = client.request(method, m.url(path), headers=bearer(token), json=body)
            # Visible but not writable: 403; not visible at all: 404 as if it did not exist.
            assert r.status_code == (403 if reader.granted else 404), (
                reader.username, method, path, r.status_code, r.text[:200],
            )  # fmt: skip
            calls += 1
    assert calls == (len(_readers(world)) - 1) * len(writes)
    assert _snapshot(m, owner) == before  # nothing refused left a trace in the data
    for method, path, body in writes:  # the same changes are the owner's to make
        r = client.request(method, m.url(path), headers=bearer(owner), json=body)
        assert r.status_code in (200, 201, 204), (method, path, r.status_code, r.text[:200])
    assert _snapshot(m, owner) != before


def test_the_victims_positions_reach_no_subject_read_even_the_owners(
    client: TestClient, world: World, scoped: Scoped
) -> None:
    """The victim's fixes are stored beside the tag's, but only the victim scope's route
    shows them: not the trail, the live map, the timeline, an evidence export, nor a
    correlation at the victim's own place."""
    m = Matrix(client, scoped)
    token = login(client, world.user(UNIT_A, "supervisor"))
    window = {"from": scoped.t - 3600, "to": scoped.t + 60}
    victim_place = {**_place(scoped), "geometry": _point(3000, 0)}
    answers = [
        client.get(m.url("/api/subjects/{s}/trail"), headers=bearer(token),
                   params={**PURPOSE, **window}),
        client.get("/api/web/live", headers=bearer(token)),
        client.get(m.url("/api/web/subjects/{s}/events"), headers=bearer(token), params=window),
        client.post(m.url("/api/investigations/subjects/{s}/whereabouts"), headers=bearer(token),
                    params=PURPOSE, json=victim_place),
        client.post("/api/investigations/correlate", headers=bearer(token), params=PURPOSE,
                    json=victim_place),
        client.get(m.url("/api/subjects/{s}/assignments"), headers=bearer(token)),
    ]  # fmt: skip
    for r in answers:
        assert r.status_code == 200, (r.url, r.text[:300])
        assert str(VICTIM_DEVICE) not in r.text, (r.url, r.text[:300])
    assert r.json()  # the subject's own equipment is listed
    assert not client.post("/api/investigations/correlate", headers=bearer(token),
                           params=PURPOSE, json=victim_place).json()["hits"]  # fmt: skip
    shown = client.get(m.url("/api/victim-devices/{victim_link}/positions"),
                       headers=bearer(token), params={**PURPOSE, **window})  # fmt: skip
    assert shown.status_code == 200 and len(shown.json()) == 2


@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)
def test_both_streams_send_a_shared_subject_by_the_share_scopes_and_record_each_subject(
    server: Server, world: World, scoped: Scoped, api_engine: Engine
) -> None:
    """A-3's new position and alert, then C-1's (which every reader below may see): each
    stream shows A-3's before C-1's exactly when the policy lets its reader see it."""
    http = httpx.Client(base_url=server.url, timeout=10)
    readers = [r for r in _readers(world) if r.owner or r.username.startswith("officer.")]
    paths = {"/api/web/live/stream": "position", "/api/alerts/stream": "alert"}
    streams = {
        (r.username, path): Stream(server.url, login(http, r.username), path)
        for r in readers
        for path in paths
    }
    assert all(s.status == 200 for s in streams.values())
    before = _last_audit_id(api_engine)
    stage, t = scoped.stage, scoped.t + 60
    stage.deliver(stage.fixes(TAG, [Fix(t, 0, 0)]))
    raise_alert(api_engine, scoped.subject, t, stage.clock.now())
    stage.deliver(stage.fixes(CONTROL_TAG, [Fix(t, 0, 0)]))
    raise_alert(api_engine, scoped.control, t, stage.clock.now())
    for reader in readers:
        for path, obj in paths.items():
            seen = []
            while not seen or seen[-1] != scoped.control:
                kind, body = streams[(reader.username, path)].next()
                assert kind in ("position", "alert"), (kind, body)
                seen.append(body["subject_id"])
            got = SHOWN if scoped.subject in seen else HIDDEN
            assert got == _expected(reader, obj), (reader.username, path, seen)
            if got == SHOWN:
                recorded, _ = _recorded(api_engine, before, reader.username, scoped.subject)
                need = READ_NEEDS[obj]
                assert f"{'read' if reader.owner else 'disclose'}.{need}" in recorded, recorded
