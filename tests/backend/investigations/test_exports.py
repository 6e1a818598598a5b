"""Evidence exports: the bundle's files round-trip (GPX through gpxpy, GeoJSON through a
strict validator, KML as XML), the manifest's hashes verify and match the audit record,
scopes decide what is included, other units get nothing."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from typing import Any
from xml.etree import ElementTree as ET

import gpxpy
from fastapi.testclient import TestClient
from geojson_pydantic import FeatureCollection
from sqlalchemy import Engine, select

from backend.csv_cells import table
from backend.investigations.exports import GX_NS, KML_NS
from backend.storage.schema import alerts, audit_log
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import World
from tests.backend.investigations.scenario import P0, P1, ComplianceTruth

PURPOSE = "disclosure to CPS, case 44/2026"


def _export(client: TestClient, user: str, subject: int, **extra: Any) -> Any:
    params = {"from": P0, "to": P1 - 1, "purpose": PURPOSE, "reference": "CPS-44", **extra}
    return client.get(
        f"/api/exports/subjects/{subject}/evidence.zip",
        params=params,
        headers=bearer(login(client, user)),
    )


def test_the_bundle_round_trips_and_its_manifest_verifies(
    client: TestClient, compliance: ComplianceTruth, api_engine: Engine, world: World
) -> None:
    r = _export(client, "officer.turnaround", compliance.subject)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(z.namelist())
    assert names == {"trail.geojson", "trail.gpx", "trail.kml", "events.csv", "alerts.csv",
                     "manifest.json"}  # fmt: skip
    man = json.loads(z.read("manifest.json"))
    assert man["format"] == "tagwatch-export/1" and man["purpose"] == PURPOSE
    assert man["exported_by"]["username"] == "officer.turnaround"
    assert (man["from"], man["to"], man["reference"]) == (P0, P1 - 1, "CPS-44")
    for f in man["files"]:
        data = z.read(f["name"])
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
    rows = {f["name"]: f["rows"] for f in man["files"]}
    assert rows["trail.geojson"] == rows["trail.gpx"] == compliance.fixes_in_period

    # GeoJSON: a valid FeatureCollection (strict models), one Point per fix plus the path.
    fc = FeatureCollection.model_validate_json(z.read("trail.geojson"))
    points = [f for f in fc.features if f.geometry is not None and f.geometry.type == "Point"]
    assert len(points) == compliance.fixes_in_period
    times = [p.properties["t"] for p in points]  # type: ignore[index]
    assert times == sorted(times) and times[0] >= P0 and times[-1] < P1

    # GPX: parsed back by gpxpy, the same points and times; split at the hour-long gap.
    gpx = gpxpy.parse(z.read("trail.gpx").decode())
    gpts = [p for seg in gpx.tracks[0].segments for p in seg.points]
    assert len(gpts) == compliance.fixes_in_period
    assert [int(p.time.timestamp()) for p in gpts] == times  # type: ignore[union-attr]
    first = points[0].geometry.coordinates  # type: ignore[union-attr]
    assert (round(gpts[0].longitude, 7), round(gpts[0].latitude, 7)) == (first[0], first[1])
    assert len(gpx.tracks[0].segments) >= 5  # each day out, the evening out, the gap

    # KML: a gx:Track per segment with one <when> and one <gx:coord> per fix.
    kml = ET.fromstring(z.read("trail.kml"))
    whens = kml.findall(f".//{{{GX_NS}}}Track/{{{KML_NS}}}when")
    coords = kml.findall(f".//{{{GX_NS}}}Track/{{{GX_NS}}}coord")
    assert len(whens) == len(coords) == compliance.fixes_in_period

    events = list(csv.DictReader(io.StringIO(z.read("events.csv").decode())))
    kinds = [e["kind"] for e in events]
    assert kinds.count("tamper") == compliance.tamper_records and "presence" in kinds
    with api_engine.connect() as conn:
        n_alerts = len(conn.execute(select(alerts.c.id)).all())
        rec = conn.execute(select(audit_log).where(audit_log.c.id == man["audit_id"])).one()
        reads = (
            conn.execute(select(audit_log.c.purpose).where(audit_log.c.action == "read.trail"))
            .scalars()
            .all()
        )
    assert len(list(csv.DictReader(io.StringIO(z.read("alerts.csv").decode())))) == n_alerts
    # The audit record holds the same hashes the manifest lists.
    assert rec.action == "export.create" and rec.purpose == PURPOSE
    assert rec.detail["files"] == man["files"] and rec.subject_ids == [compliance.subject]
    assert PURPOSE in reads
    assert hashlib.sha256(r.content).hexdigest() == r.headers["x-bundle-sha256"]


def test_scopes_decide_what_is_exported(
    client: TestClient, compliance: ComplianceTruth, world: World
) -> None:
    # Probation holds A-2's trail through a share but not its alerts: alerts are omitted.
    r = _export(client, "partner.probation", world.subjects["A-2"])
    assert r.status_code == 200, r.text
    man = json.loads(zipfile.ZipFile(io.BytesIO(r.content)).read("manifest.json"))
    assert "alerts" not in man["include"] and man["omitted"][0]["file"] == "alerts"
    assert man["disclosure"] is True
    # MOSOVO's share of A-2 has no trail: refused. Other units' subjects: not found.
    assert _export(client, "officer.mosovo", world.subjects["A-2"]).status_code == 403
    assert _export(client, "officer.mosovo", compliance.subject).status_code == 404
    assert _export(client, "administrator.turnaround", compliance.subject).status_code == 404
    # A purpose is required; bad ranges and formats are refused.
    r = client.get(
        f"/api/exports/subjects/{compliance.subject}/evidence.zip",
        params={"from": P0, "to": P1, "reference": "x"},
        headers=bearer(login(client, "officer.turnaround")),
    )
    assert r.status_code == 422
    assert (
        _export(client, "officer.turnaround", compliance.subject, include="pdf").status_code == 422
    )
    r = _export(client, "officer.turnaround", compliance.subject, to=P0 + 40 * 86400)
    assert r.status_code == 422


def test_only_requested_files_and_csv_cells_are_not_formulas(
    client: TestClient, compliance: ComplianceTruth
) -> None:
    r = _export(client, "officer.turnaround", compliance.subject, include="gpx")
    assert set(zipfile.ZipFile(io.BytesIO(r.content)).namelist()) == {"trail.gpx", "manifest.json"}
    out = table([{"a": '=HYPERLINK("x")', "b": -1.5, "c": "+1"}], ["a", "b", "c"]).decode()
    assert out.splitlines()[1] == '"\'=HYPERLINK(""x"")",-1.5,\'+1'
