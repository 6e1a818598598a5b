"""The web UI's own API (backend/api/routes/: live.py, events.py, zones.py, web.py) over
real HTTP: the live view and its scoping and audit, the position stream, device events, the
zone preview against the zone rule, the configuration with its tile source in the pages'
CSP, the world layer from a generated simulator world, and the demo accounts for `make
demo`."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from backend.ingest import Message
from backend.web.demo_accounts import format_logins, seed_demo_accounts
from backend.web.settings import WebSettings
from backend.web.world_layer import write_world_layer
from firmware import frame as fr
from firmware import topics
from sim.world import WorldSpec, generate_world
from tests.backend.rules.scenario import offset
from tests.web.scenario import (
    TAG_A,
    TAG_B,
    UNIT_A,
    UNIT_A_DEV,
    UNIT_B,
    ZONE_DX,
    Scenario,
    fix_record,
)

PURPOSE = {"purpose": "web API test"}


def _as(s: Scenario, role: str) -> dict[str, str]:
    r = s.http.post(
        "/api/auth/token",
        data={"username": s.world.user(UNIT_A, role), "password": "correct horse battery staple"},
    )
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _audit(s: Scenario, action: str) -> list[dict[str, Any]]:
    page = s.http.get("/api/audit", params={"action": action}, headers=_as(s, "auditor"))
    records: list[dict[str, Any]] = page.json()["records"]
    return records


def test_live_view_shows_what_the_unit_may_see_and_is_audited(stack: Scenario) -> None:
    a1, a2, b1 = (stack.world.subjects[k] for k in ("A-1", "A-2", "B-1"))
    view = stack.http.get("/api/web/live", headers=stack.officer(UNIT_A)).json()
    by_id = {s["id"]: s for s in view["subjects"]}
    assert set(by_id) == {a1, a2}
    s = by_id[a1]
    assert s["tag"] == TAG_A and s["owner"] is True
    assert s["position"]["accuracy_m"] == 5.0 and s["position"]["source"] == "gnss"
    assert s["position"]["t"] <= view["now"]
    assert s["home_unit"]["device"] == 4001 and s["home_unit"]["lat"] is not None
    assert by_id[a2]["position"] is None and by_id[a2]["tag"] is None
    kinds = sorted(f["properties"]["kind"] for f in view["zones"]["features"])
    assert kinds == ["exclusion", "home"]

    other = stack.http.get("/api/web/live", headers=stack.officer(UNIT_B)).json()
    ids = {x["id"] for x in other["subjects"]}
    assert ids == {b1, a2} and a1 not in ids  # A-2 is shared with MOSOVO for live
    assert all(f["properties"]["subject_id"] != a1 for f in other["zones"]["features"])
    assert "Subject A-1" not in json.dumps(other)

    reads = _audit(stack, "read.live")
    assert any(r["subject_ids"] == [a1, a2] for r in reads)
    disclosed = _audit(stack, "disclose.live")
    assert any(r["subject_ids"] == [a2] for r in disclosed)
    # Administrators and auditors see no subject data.
    admin = _as(stack, "administrator")
    assert stack.http.get("/api/web/live", headers=admin).json()["subjects"] == []


def test_live_view_of_one_subject_with_its_freshness(stack: Scenario) -> None:
    a1, b1 = stack.world.subjects["A-1"], stack.world.subjects["B-1"]
    who = stack.officer(UNIT_A)
    view = stack.http.get("/api/web/live", params={"subject": a1}, headers=who).json()
    (s,) = view["subjects"]
    assert s["id"] == a1
    # A fix a minute: moving, judged against its batches (10 minutes), with the order's or
    # the comms rule's threshold for silence.
    f = s["freshness"]
    assert f["mode"] == "moving" and f["expected_s"] == 600
    assert f["last_contact"] >= s["position"]["t"] and f["silent_after_s"] == 7200
    assert f["state"] in ("on_time", "late", "silent")
    # A subject the unit may not see live is simply not there.
    hidden = stack.http.get("/api/web/live", params={"subject": b1}, headers=who).json()
    assert hidden["subjects"] == []


def _follow(stack: Scenario, headers: dict[str, str], out: queue.Queue[Any]) -> threading.Thread:
    def run() -> None:
        h = {**headers, "Accept": "text/event-stream"}
        with (
            httpx.Client(base_url=stack.url, timeout=30) as c,
            c.stream("GET", "/api/web/live/stream", headers=h) as r,
        ):
            out.put(("status", r.status_code))
            event = ""
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "position":
                    out.put(("position", json.loads(line[5:])))
                    return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_the_position_stream_sends_each_unit_only_its_subjects(stack: Scenario) -> None:
    a1, b1 = stack.world.subjects["A-1"], stack.world.subjects["B-1"]
    qa: queue.Queue[Any] = queue.Queue()
    qb: queue.Queue[Any] = queue.Queue()
    _follow(stack, stack.officer(UNIT_A), qa)
    _follow(stack, stack.officer(UNIT_B), qb)
    assert qa.get(timeout=10) == ("status", 200) and qb.get(timeout=10) == ("status", 200)
    t = int(stack.clock.now()) + 30
    stack.send(TAG_A, t, [fix_record(0, 123.0)])
    stack.send(TAG_B, t + 5, [fix_record(0, -2000.0)])
    kind, pa = qa.get(timeout=10)
    assert kind == "position" and pa["subject_id"] == a1 and pa["t"] == t
    lat, lon = offset(123.0, 0.0)
    assert abs(pa["lat"] - lat) < 1e-6 and abs(pa["lon"] - lon) < 1e-6
    kind, pb = qb.get(timeout=10)
    assert kind == "position" and pb["subject_id"] == b1  # never A-1's fix
    # Without the SSE Accept header the stream is refused, not left hanging.
    r = stack.http.get("/api/web/live/stream", headers=stack.officer(UNIT_A))
    assert r.status_code == 406


def test_device_events_for_the_timeline(stack: Scenario) -> None:
    a1 = stack.world.subjects["A-1"]
    t = int(stack.clock.now()) + 30
    battery = fr.Record(fr.BATTERY, (0, 17, 0, 3600, 20))
    stack.send(TAG_A, t, [battery])
    events = stack.http.get(f"/api/web/subjects/{a1}/events", headers=stack.officer(UNIT_A)).json()
    mine = [e for e in events if e["kind"] == "battery" and e["t"] == t]
    assert mine and mine[0]["data"]["level"] == 17 and mine[0]["device"] == TAG_A
    # The home unit's presence reports about the tag are in the timeline too.
    stack.seq[UNIT_A_DEV] = stack.seq.get(UNIT_A_DEV, 0) + 1
    home = fr.Record(fr.PRESENCE, (0, UNIT_A_DEV, TAG_A, fr.HOME, -60))
    frame = fr.Frame(fr.HOME_DATA, UNIT_A_DEV, 1, stack.seq[UNIT_A_DEV], t + 5, [home],
                     fr.FLAG_TIME_VALID)  # fmt: skip
    stack.clock.set(max(stack.clock.now(), t + 6))
    payload = fr.encode(frame, stack.keys[UNIT_A_DEV])
    stack.ingest.process([Message(topics.home_up(UNIT_A_DEV), payload)])
    events = stack.http.get(f"/api/web/subjects/{a1}/events", headers=stack.officer(UNIT_A)).json()
    presence = [e for e in events if e["kind"] == "presence"]
    assert presence[0]["t"] == t + 5 and presence[0]["device"] == UNIT_A_DEV
    assert presence[0]["data"] == {"state": fr.HOME, "rssi": -60, "tag": TAG_A}
    # Another unit's officer cannot see the subject at all.
    other = stack.http.get(f"/api/web/subjects/{a1}/events", headers=stack.officer(UNIT_B))
    assert other.status_code == 404


def _circle(dx: float, radius: float, kind: str) -> dict[str, Any]:
    lat, lon = offset(dx, 40.0)
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {"name": "preview", "kind": kind, "radius_m": radius},
    }


def test_zone_preview_follows_the_zone_rule(stack: Scenario) -> None:
    a1 = stack.world.subjects["A-1"]
    who = stack.officer(UNIT_A)
    url = f"/api/web/subjects/{a1}/zone-preview"
    end = int(stack.clock.now())
    window = {"start": end - 8 * 3600, "end": end}

    # An exclusion zone on A-1's stroll (it walked east from -400 m): breach samples and an
    # episode long enough to alert.
    r = stack.http.post(url, json={"zone": _circle(0.0, 150.0, "exclusion"), **window},
                        params=PURPOSE, headers=who)  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["checked"] > 100
    breach = [f for f in body["fixes"] if f["breach"]]
    assert breach and all(f["distance_m"] <= -f["accuracy_m"] for f in breach)
    assert any(e["would_alert"] for e in body["episodes"])
    # Far away: nothing breaches.
    far = stack.http.post(url, json={"zone": _circle(20_000.0, 100.0, "exclusion"), **window},
                          params=PURPOSE, headers=who).json()  # fmt: skip
    assert far["checked"] == body["checked"] and far["fixes"] == [] and far["episodes"] == []
    # An inclusion zone far away: every fix is outside it.
    incl = stack.http.post(url, json={"zone": _circle(20_000.0, 100.0, "inclusion"), **window},
                           params=PURPOSE, headers=who).json()  # fmt: skip
    assert len([f for f in incl["fixes"] if f["breach"]]) == incl["checked"]
    # The preview reads the trail: a purpose is required, and it is audited.
    r = stack.http.post(url, json={"zone": _circle(0.0, 150.0, "exclusion")}, headers=who)
    assert r.status_code == 422
    assert any(x["purpose"] == PURPOSE["purpose"] for x in _audit(stack, "read.trail"))
    # A bad zone is a clear 422, and the other unit gets 404.
    bad = _circle(0.0, 0.0, "exclusion")
    assert stack.http.post(url, json={"zone": bad}, params=PURPOSE, headers=who).status_code == 422
    r = stack.http.post(url, json={"zone": _circle(0.0, 150.0, "exclusion")}, params=PURPOSE,
                        headers=stack.officer(UNIT_B))  # fmt: skip
    assert r.status_code == 404
    assert ZONE_DX > 150  # the scenario's own zone is elsewhere


def test_config_tiles_in_the_csp_and_the_world_layer(stack: Scenario, tmp_path: Path) -> None:
    app: FastAPI = stack.app
    who = stack.officer(UNIT_A)
    cfg = stack.http.get("/api/web/config", headers=who).json()
    assert cfg["tile_url"] == "" and cfg["world_layer"] is False
    assert abs(cfg["now"] - stack.clock.now()) < 1
    assert stack.http.get("/api/web/world", headers=who).status_code == 404
    assert stack.http.get("/api/web/config").status_code == 401

    world = generate_world(WorldSpec(homes=4), seed=3)
    path = write_world_layer(world, tmp_path / "world.geojson")
    previous = app.state.tagwatch_web
    app.state.tagwatch_web = WebSettings(
        tile_url="https://tiles.example.test/{z}/{x}/{y}.png", world_layer=path
    )
    try:
        cfg = stack.http.get("/api/web/config", headers=who).json()
        assert cfg["world_layer"] is True and cfg["tile_url"].startswith("https://tiles.")
        r = stack.http.get("/api/web/world", headers=who)
        assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
        layers = {f["properties"]["layer"] for f in r.json()["features"]}
        assert layers == {"land", "roads", "place"}
        kinds = {f["properties"].get("kind") for f in r.json()["features"]}
        assert "home" not in kinds and "victim" not in kinds  # no personal addresses
        names = {f["properties"].get("name") for f in r.json()["features"]}
        assert {"Bournemouth Centre", "Meyrick Park", "Probation Office"} <= names
        page = stack.http.get("/web/")
        assert page.status_code == 200 and "<title>tagwatch</title>" in page.text
        csp = page.headers["content-security-policy"]
        assert "img-src 'self' data: blob: https://tiles.example.test;" in csp
        assert "frame-ancestors 'none'" in csp
        # The API keeps its own policy: a page's policy never reaches an /api answer.
        api_csp = stack.http.get("/api/web/config", headers=who).headers
        assert api_csp["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    finally:
        app.state.tagwatch_web = previous
    assert stack.http.get("/", follow_redirects=False).headers["location"] == "/web/"
    for script in ("leaflet/leaflet.js", "markercluster/leaflet.markercluster.js"):
        served = stack.http.get(f"/web/vendor/{script}")
        assert served.status_code == 200 and "javascript" in served.headers["content-type"]


def test_tile_url_settings_are_checked() -> None:
    for bad in ("ftp://x/{z}/{x}/{y}", "https://x/tiles.png", "https://x/{z}/{x}/{y}';"):
        try:
            WebSettings(tile_url=bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")
    ok = WebSettings(tile_url="https://{s}.tiles.example.test/{z}/{x}/{y}.png")
    assert ok.tile_origin() == "https://*.tiles.example.test"
    # A WMTS address (Web Mercator matrix set), given to the page as XYZ.
    wmts = WebSettings(
        tile_url="https://maps.example.test/wmts?service=WMTS&request=GetTile&layer=Road_3857"
        "&tileMatrixSet=EPSG:3857&tileMatrix=EPSG:3857:{TileMatrix}&tileRow={TileRow}"
        "&tileCol={TileCol}"
    )
    assert wmts.tile_template().endswith("tileMatrix=EPSG:3857:{z}&tileRow={y}&tileCol={x}")
    assert wmts.tile_origin() == "https://maps.example.test"
    try:
        WebSettings(tile_url="https://maps.example.test/wmts?tileMatrix={TileMatrix}")
    except ValueError as e:
        assert "{TileMatrix}, {TileRow} and {TileCol}" in str(e)
    else:
        raise AssertionError("accepted a WMTS address without row and column")


def test_demo_accounts_for_two_units(stack: Scenario) -> None:
    ctx = stack.app.state.tagwatch
    now = stack.clock.now()
    logins = seed_demo_accounts(stack.engine, ctx.passwords, now, owner_unit=UNIT_A)
    units = {x.unit for x in logins}
    assert units == {UNIT_A, "MOSOVO (demo)"}
    officers = {x.unit: x for x in logins if x.role == "officer"}
    for unit, x in officers.items():
        r = stack.http.post(
            "/api/auth/token", data={"username": x.username, "password": x.password}
        )
        assert r.status_code == 200, (unit, r.text)
        token = {"Authorization": f"Bearer {r.json()['access_token']}"}
        live = stack.http.get("/api/web/live", headers=token).json()
        refs = {s["reference"] for s in live["subjects"]}
        if unit == UNIT_A:
            assert {"A-1", "A-2"} <= refs
        else:
            assert refs == {"A-1", "A-2"}  # the owner unit's first two subjects, shared
    again = seed_demo_accounts(stack.engine, ctx.passwords, now, owner_unit=UNIT_A, share=0)
    assert [x.username for x in again] == [x.username for x in logins]
    assert all(a.password != b.password for a, b in zip(again, logins, strict=True))
    lines = format_logins(again, "http://127.0.0.1:8080")
    assert lines[0] == "Web application: http://127.0.0.1:8080/web/"
    assert len(lines) == len(again) + 1 and again[0].password in lines[1]


def test_streams_open_while_requests_write_the_audit_log(stack: Scenario) -> None:
    """Opening a stream writes its audit record; done on the event loop, waiting for
    SQLite's write lock there blocked the loop that the lock's holder (a request committing
    its transaction) needed, until the busy timeout gave "database is locked". Streams and
    audited reads now run side by side without a single failure."""
    officer = stack.officer(UNIT_A)
    failures: list[tuple[str, int, str]] = []
    counts = {"reads": 0, "streams": 0}
    done = threading.Event()

    def read() -> None:
        with httpx.Client(base_url=stack.url, timeout=60) as c:
            while not done.is_set():
                r = c.get("/api/web/live", headers=officer)  # audited in its transaction
                counts["reads"] += 1
                if r.status_code != 200:
                    failures.append(("live", r.status_code, r.text[:200]))

    def open_streams(path: str) -> None:
        headers = {**officer, "Accept": "text/event-stream"}
        with httpx.Client(base_url=stack.url, timeout=60) as c:
            for _ in range(15):
                with c.stream("GET", path, headers=headers) as r:
                    if r.status_code != 200:
                        failures.append((path, r.status_code, r.read().decode()[:200]))
                        continue
                    next(r.iter_bytes())  # the stream's opening comment
                counts["streams"] += 1

    readers = [threading.Thread(target=read) for _ in range(3)]
    streamers = [
        threading.Thread(target=open_streams, args=(p,))
        for p in ("/api/alerts/stream", "/api/web/live/stream")
    ]
    for t in readers + streamers:
        t.start()
    for t in streamers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert failures == []
    assert counts["streams"] == 30 and counts["reads"] > 0
    opened = [r for r in _audit(stack, "stream.") if r["user_id"] is not None]
    assert len(opened) >= 30
