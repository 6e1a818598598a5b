"""The investigations API on the staged scenario: ad-hoc and batch correlation, the
exculpatory answer, purpose and audit, visibility across units and roles, bad input."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from backend.storage.schema import audit_log
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import World
from tests.backend.investigations.scenario import INCIDENT, RADIUS_M, W0, W1, Truth, at

BOWTIE = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]
PURPOSE = {"purpose": "burglary investigation, 12 High St"}


def _query(ref: str = "CR-2026-0001", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": ref,
        "geometry": {"type": "Point", "coordinates": [INCIDENT[1], INCIDENT[0]]},
        "radius_m": RADIUS_M,
        "from": W0,
        "to": W1,
    }
    body.update(over)
    return body


def _as(client: TestClient, user: str) -> dict[str, str]:
    return bearer(login(client, user))


def test_correlate_returns_the_staged_truth_and_is_audited(
    client: TestClient, truth: Truth, api_engine: Engine, world: World
) -> None:
    h = _as(client, "officer.turnaround")
    r = client.post("/api/investigations/correlate", json=_query(), params=PURPOSE, headers=h)
    assert r.status_code == 200, r.text
    out = r.json()
    assert {x["reference"]: x["status"] for x in out["hits"]} == truth.expected_a
    assert out["from"] == W0 and out["to"] == W1 and out["count"] == len(truth.expected_a)
    first = out["hits"][0]
    assert first["status"] == "within" and first["closest"]["evidence"]
    with api_engine.connect() as conn:
        rec = conn.execute(select(audit_log).where(audit_log.c.id == out["audit_id"])).one()
    assert rec.action == "investigation.correlate" and rec.purpose == PURPOSE["purpose"]
    assert sorted(rec.subject_ids) == sorted(truth.subjects[r] for r in truth.expected_a)
    assert rec.detail["reference"] == "CR-2026-0001" and rec.detail["from"] == W0
    assert rec.detail["area"]["radius_m"] == RADIUS_M
    assert rec.detail["disclosed"] == []
    assert rec.scope == "trail" and rec.user_id == world.users["officer.turnaround"][0]


def test_each_caller_gets_only_what_it_may_see(client: TestClient, truth: Truth) -> None:
    for user, expected in (
        ("officer.mosovo", truth.expected_b),
        ("supervisor.mosovo", truth.expected_b),
        ("partner.probation", truth.expected_partner),
    ):
        r = client.post("/api/investigations/correlate", json=_query(), params=PURPOSE,
                        headers=_as(client, user))  # fmt: skip
        assert r.status_code == 200, (user, r.text)
        assert {x["reference"]: x["status"] for x in r.json()["hits"]} == expected, user
        assert "INV-WALK" not in r.text and "Subject INV-WALK" not in r.text
    # Separation of duties: administrators and auditors see no subject data at all.
    for user in ("administrator.turnaround", "auditor.mosovo"):
        r = client.post("/api/investigations/correlate", json=_query(), params=PURPOSE,
                        headers=_as(client, user))  # fmt: skip
        assert r.status_code == 403, user


def test_a_partner_query_records_the_disclosure(
    client: TestClient, truth: Truth, api_engine: Engine
) -> None:
    h = _as(client, "partner.probation")
    r = client.post("/api/investigations/correlate", json=_query(), params=PURPOSE, headers=h)
    with api_engine.connect() as conn:
        rec = conn.execute(select(audit_log).where(audit_log.c.id == r.json()["audit_id"])).one()
    assert rec.detail["disclosed"] == [truth.subjects["A-2"]]


def test_purpose_and_reference_are_required_and_bad_places_refused(
    client: TestClient, truth: Truth
) -> None:
    h = _as(client, "officer.turnaround")
    url = "/api/investigations/correlate"
    assert client.post(url, json=_query(), headers=h).status_code == 422  # no purpose
    assert client.post(url, json=_query(), params={"purpose": "x"}, headers=h).status_code == 422
    body = _query()
    del body["reference"]
    assert client.post(url, json=body, params=PURPOSE, headers=h).status_code == 422
    for bad in (
        _query(radius_m=None),
        _query(**{"from": W1, "to": W0}),
        _query(**{"to": W0 + 8 * 86400}),
        _query(geometry={"type": "Point", "coordinates": [500, 0]}),
        _query(
            radius_m=None,
            geometry={"type": "Polygon", "coordinates": [BOWTIE]},
        ),
    ):
        r = client.post(url, json=bad, params=PURPOSE, headers=h)
        assert r.status_code == 422, (bad, r.text)
    assert client.post(url, json=_query(), params=PURPOSE).status_code == 401


def test_whereabouts_answers_for_a_named_subject(
    client: TestClient, truth: Truth, api_engine: Engine
) -> None:
    h = _as(client, "officer.turnaround")
    sid = truth.subjects["INV-FAR"]
    url = f"/api/investigations/subjects/{sid}/whereabouts"
    r = client.post(url, json=_query(), params=PURPOSE, headers=h)
    assert r.status_code == 200, r.text
    w = r.json()
    assert w["status"] == "not_within" and w["complete"] is True and w["coverage"] == 1.0
    assert w["before"]["t"] <= W0 <= W1 <= w["after"]["t"]
    assert len(w["fixes"]) == w["fixes_in_window"] == 61
    assert all(f["edge_m"] > 2000 for f in w["fixes"])
    with api_engine.connect() as conn:
        actions = [
            (a.action, a.purpose)
            for a in conn.execute(select(audit_log).where(audit_log.c.id >= w["audit_id"] - 1))
        ]
    assert ("read.trail", PURPOSE["purpose"]) in actions
    assert ("investigation.whereabouts", PURPOSE["purpose"]) in actions
    # Another unit cannot ask about this subject: 404, as if it did not exist.
    r = client.post(url, json=_query(), params=PURPOSE, headers=_as(client, "officer.mosovo"))
    assert r.status_code == 404
    # Without a purpose: refused.
    assert client.post(url, json=_query(), headers=h).status_code == 422


CSV = f"""reference,lat,lon,radius_m,from,to
INC-1,{INCIDENT[0]},{INCIDENT[1]},{RADIUS_M},{W0},{W1}
INC-2,{INCIDENT[0]},{INCIDENT[1]},not-a-number,{W0},{W1}
INC-3,{INCIDENT[0]},{INCIDENT[1]},{RADIUS_M},2026-09-22T10:00:00,{W1}

INC-4,{at(2000, 2000)[0] / 1e7},{at(2000, 2000)[1] / 1e7},100,{W0},{W1}
,{INCIDENT[0]},{INCIDENT[1]},{RADIUS_M},{W0},{W1}
INC-6,95,{INCIDENT[1]},{RADIUS_M},{W0},{W1}
"""


def test_batch_csv_reports_bad_lines_and_runs_the_good_ones(
    client: TestClient, truth: Truth, api_engine: Engine
) -> None:
    h = _as(client, "officer.turnaround")
    r = client.post(
        "/api/investigations/batch",
        params={**PURPOSE, "reference": "daily run 2026-09-21"},
        files={"file": ("incidents.csv", CSV.encode(), "text/csv")},
        headers=h,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["format"] == "csv"
    assert [(i["at"], i["reference"]) for i in out["incidents"]] == [
        ("line 2", "INC-1"), ("line 6", "INC-4")]  # fmt: skip
    inc1, inc4 = out["incidents"]
    assert {x["reference"]: x["status"] for x in inc1["hits"]} == truth.expected_a
    assert {x["reference"] for x in inc4["hits"]} == {"INV-FAR"}
    errors = {e["line"]: e["reason"] for e in out["errors"]}
    assert set(errors) == {3, 4, 7, 8}
    assert "radius_m" in errors[3] and "UTC offset" in errors[4]
    assert "reference" in errors[7] and "position" in errors[8]
    with api_engine.connect() as conn:
        rec = conn.execute(select(audit_log).where(audit_log.c.id == out["audit_id"])).one()
    assert rec.action == "investigation.batch" and rec.purpose == PURPOSE["purpose"]
    assert rec.detail["errors"] == 4 and len(rec.detail["incidents"]) == 2
    assert set(rec.subject_ids) == {truth.subjects[x] for x in [*truth.expected_a, "INV-FAR"]}


def test_batch_geojson_with_a_polygon_and_bad_features(client: TestClient, truth: Truth) -> None:
    square = [[list(reversed([c / 1e7 for c in at(dx, dy)])) for dx, dy in
               ((-250, -250), (250, -250), (250, 250), (-250, 250), (-250, -250))]]  # fmt: skip
    doc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square},
             "properties": {"reference": "SQ-1", "from": W0, "to": W1}},
            {"type": "Feature", "geometry": {"type": "Point",
                                             "coordinates": [INCIDENT[1], INCIDENT[0]]},
             "properties": {"reference": "PT-1", "from": W0, "to": W1}},
            {"type": "Feature", "geometry": None, "properties": {"reference": "X"}},
        ],
    }  # fmt: skip
    text = json.dumps(doc, indent=2)
    # With indent=2 each feature opens on a line of its own, four spaces in.
    starts = [n for n, ln in enumerate(text.splitlines(), start=1) if ln == "    {"]
    r = client.post(
        "/api/investigations/batch",
        params={**PURPOSE, "reference": "geojson run"},
        files={"file": ("incidents.geojson", text.encode(), "application/geo+json")},
        headers=_as(client, "officer.turnaround"),
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["format"] == "geojson" and [i["reference"] for i in out["incidents"]] == ["SQ-1"]
    found = {x["reference"] for x in out["incidents"][0]["hits"]}
    assert set(truth.expected_a) <= found  # the square contains the circle
    errors = [(e["feature"], e["line"], "radius_m" in e["reason"]) for e in out["errors"]]
    assert errors == [(2, starts[1], True), (3, starts[2], False)]
    assert out["incidents"][0]["at"] == f"feature 1 (line {starts[0]})"


def test_a_file_that_is_not_incidents_is_refused(client: TestClient, truth: Truth) -> None:
    h = _as(client, "officer.turnaround")
    for name, data in (("x.csv", b"a,b\n1,2\n"), ("x.geojson", b"{not json"),
                       ("x.csv", b"\xff\xfe\x00")):  # fmt: skip
        r = client.post(
            "/api/investigations/batch",
            params={**PURPOSE, "reference": "bad"},
            files={"file": (name, data, "text/plain")},
            headers=h,
        )
        assert r.status_code == 422, (name, r.text)
