"""Evidence work in the browser (headless Chromium against the scenario on a real uvicorn):
the subject view's export and report buttons (the download captured and opened: the right
subject's data, hashes that verify, the audit record that holds them), the batch upload of
incidents (CSV and GeoJSON, each with a bad row reported by line), and the exculpatory
"where instead" answer for a named subject, listed and drawn on the map."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from backend.storage.schema import positions
from tests.backend.api.world import PARTNER_UNIT
from tests.backend.rules.scenario import offset
from tests.web.conftest import PASSWORD, Browser, focused, tab_to
from tests.web.scenario import START, TAG_A, TAG_B, UNIT_A, UNIT_B, ZONE_DX, Scenario

pytestmark = pytest.mark.timeout(120)
LONDON = ZoneInfo("Europe/London")


def _auditor(stack: Scenario) -> dict[str, str]:
    r = stack.http.post(
        "/api/auth/token",
        data={"username": stack.world.user(UNIT_A, "auditor"), "password": PASSWORD},
    )
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _audit(stack: Scenario, action: str, subject_id: int | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"action": action}
    if subject_id is not None:
        params["subject_id"] = subject_id
    r = stack.http.get("/api/audit", params=params, headers=_auditor(stack))
    assert r.status_code == 200, r.text
    records: list[dict[str, Any]] = r.json()["records"]
    return records


def _local_input(t: int) -> str:
    """A datetime-local value for Unix time t: the UI reads them in London time."""
    return datetime.fromtimestamp(t, LONDON).strftime("%Y-%m-%dT%H:%M")


def ask_where_instead(
    page: Any, subject: int, dx: float, t0: int, t1: int, reference: str, purpose: str
) -> None:
    """Ask the investigations page where `subject` was between t0 and t1, for a place of
    100 m radius `dx` m east of the scenario's origin, and wait for the answer."""
    lat, lon = offset(dx, 0.0)
    page.fill("#inv-lat", f"{lat:.6f}")
    page.fill("#inv-lon", f"{lon:.6f}")
    page.fill("#inv-radius", "100")
    page.fill("#inv-from", _local_input(t0))
    page.fill("#inv-to", _local_input(t1))
    page.fill("#inv-reference", reference)
    page.fill("#inv-purpose", purpose)
    page.select_option("#inv-subject", str(subject))
    page.click("#inv-run")
    page.wait_for_selector("#inv-summary")


def _civil(t: float) -> str:
    """Unix time t as the UI shows it: London civil time with the zone's abbreviation."""
    return datetime.fromtimestamp(t, LONDON).strftime("%Y-%m-%d %H:%M:%S %Z")


def _fixes_stored(stack: Scenario, device: int) -> int:
    with stack.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(positions).where(positions.c.device == device)
            ).scalar_one()
        )


def test_export_and_report_buttons_download_the_subjects_audited_evidence(
    tab: Browser, stack: Scenario
) -> None:
    officer = stack.world.user(UNIT_A, "officer")
    page = tab.sign_in(officer)
    a1 = stack.world.subjects["A-1"]
    page = tab.go(f"subjects/{a1}")
    page.wait_for_selector("#exports button")
    labels = page.locator("#exports button").all_inner_texts()
    assert any("(zip)" in t for t in labels), labels
    assert any("(CSV)" in t for t in labels) and any("(printable HTML)" in t for t in labels)
    bundle_button = page.locator("#exports button[data-export$='/evidence.zip']")

    # The bundle needs a reference: the screen says so beside the field, nothing is downloaded.
    page.fill("#export-purpose", "web test: disclosure to CPS")
    bundle_button.click()
    page.wait_for_selector("#export-reference-error")
    assert "needs the reference" in page.locator("#export-reference-error").inner_text()
    assert page.evaluate("document.activeElement.id") == "export-reference"

    page.fill("#export-reference", "CPS-7")
    with page.expect_download() as info:
        bundle_button.click()
    download = info.value
    data = Path(download.path()).read_bytes()
    assert download.suggested_filename.startswith("A-1-") and download.suggested_filename.endswith(
        ".zip"
    )
    page.wait_for_selector("#export-status .sha")
    # The screen shows the bundle's SHA-256 (X-Bundle-SHA256) and its audit record.
    shown = page.locator("#export-status .sha").inner_text()
    assert shown == hashlib.sha256(data).hexdigest()
    status = page.locator("#export-status").inner_text()
    audit_id = int(re.findall(r"audit record (\d+)", status)[0])
    tab.shot("subject-exports", full_page=True)

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        manifest = json.loads(z.read("manifest.json"))
        files = {f["name"]: z.read(f["name"]) for f in manifest["files"]}
        assert sorted(z.namelist()) == sorted([*files, "manifest.json"])
    assert manifest["subject_id"] == a1 and manifest["subject_reference"] == "A-1"
    assert manifest["exported_by"]["username"] == officer
    assert manifest["purpose"] == "web test: disclosure to CPS"
    assert manifest["reference"] == "CPS-7"
    assert manifest["audit_id"] == audit_id
    for entry in manifest["files"]:  # each file verifies against the manifest
        assert hashlib.sha256(files[entry["name"]]).hexdigest() == entry["sha256"]
        assert len(files[entry["name"]]) == entry["bytes"]
    # Only A-1's tag, and every fix of it stored: B-1's trail is not in A-1's bundle.
    trail = json.loads(files["trail.geojson"])
    points = [f for f in trail["features"] if f["geometry"]["type"] == "Point"]
    assert {f["properties"]["device"] for f in points} == {TAG_A}
    assert len(points) == _fixes_stored(stack, TAG_A) > 50
    assert TAG_B not in {f["properties"]["device"] for f in points}
    assert b"<gpx" in files["trail.gpx"] and b"<kml" in files["trail.kml"]
    alerts_csv = list(csv.DictReader(io.StringIO(files["alerts.csv"].decode())))
    own = stack.http.get("/api/alerts", params={"subject": a1}, headers=stack.officer(UNIT_A))
    assert {int(r["id"]) for r in alerts_csv} == {a["id"] for a in own.json()}

    # The audit record of the export holds the same hashes, and the chain verifies.
    record = next(r for r in _audit(stack, "export.create", a1) if r["id"] == audit_id)
    assert record["user_id"] == stack.world.users[officer][0]
    assert record["purpose"] == "web test: disclosure to CPS"
    assert {f["name"]: f["sha256"] for f in record["detail"]["files"]} == {
        f["name"]: f["sha256"] for f in manifest["files"]
    }
    verify = stack.http.get("/api/audit/verify", headers=_auditor(stack)).json()
    assert verify["ok"] is True

    # The compliance report, as CSV and as a printable page: A-1's, for the period asked.
    before = {r["id"] for r in _audit(stack, "read.reports", a1)}
    with page.expect_download() as info:
        page.locator("#exports button", has_text="(CSV)").click()
    rows = list(csv.reader(io.StringIO(Path(info.value.path()).read_text())))
    assert info.value.suggested_filename.startswith("compliance-A-1-")
    assert rows[0] == ["section", "item", "value", "detail"]
    assert rows[1][:3] == ["subject", "A-1", str(a1)]
    summary = {r[1]: r[2] for r in rows if r[0] == "summary"}
    period = re.findall(r"compliance-A-1-(\d+)-(\d+)\.csv", info.value.suggested_filename)[0]
    expected = stack.http.get(
        f"/api/reports/subjects/{a1}/compliance",
        params={"from": period[0], "to": period[1]},
        headers=stack.officer(UNIT_A),
    ).json()["summary"]
    assert int(summary["received_fixes"]) == expected["received_fixes"] > 0
    assert int(summary["zone_events"]) == expected["zone_events"]
    with page.expect_download() as info:
        page.locator("#exports button", has_text="(printable HTML)").click()
    html = Path(info.value.path()).read_text()
    assert "A-1" in html and "<script" not in html.lower()
    after = [r for r in _audit(stack, "read.reports", a1) if r["id"] not in before]
    assert len(after) >= 3  # the two downloads (and the check above) were each audited
    assert all(r["user_id"] == stack.world.users[officer][0] for r in after[:2])


def _csv_incidents(t: int) -> str:
    near_lat, near_lon = offset(-40.0, 40.0)  # where A-1 walked three hours in
    far_lat, far_lon = offset(6000.0, 6000.0)
    return (
        "reference,lat,lon,radius_m,from,to\n"
        f"INC-NEAR,{near_lat:.6f},{near_lon:.6f},150,{t - 600},{t + 600}\n"
        f"INC-BAD,{near_lat:.6f},{near_lon:.6f},150,2026-09-21T10:00:00,{t + 600}\n"
        f"INC-FAR,{far_lat:.6f},{far_lon:.6f},150,{t - 600},{t + 600}\n"
    )


def _geojson_incidents(t: int) -> str:
    near_lat, near_lon = offset(-40.0, 40.0)
    far_lat, far_lon = offset(6000.0, 6000.0)

    def point(ref: str, lat: float, lon: float, radius: float | None) -> dict[str, Any]:
        props: dict[str, Any] = {"reference": ref, "from": t - 600, "to": t + 600}
        if radius is not None:
            props["radius_m"] = radius
        return {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": props,
        }

    fc = {
        "type": "FeatureCollection",
        "features": [
            point("GJ-NEAR", near_lat, near_lon, 150),
            point("GJ-FAR", far_lat, far_lon, 150),
            point("GJ-NO-RADIUS", near_lat, near_lon, None),
        ],
    }
    return json.dumps(fc, indent=2)


def _upload(page: Any, path: Path, reference: str) -> None:
    page.set_input_files("#batch-file", str(path))
    page.fill("#batch-reference", reference)
    page.fill("#batch-purpose", "web test: daily crime data run")
    page.click("#batch-run")
    page.wait_for_selector("#batch-summary:has-text('record')")


def test_batch_upload_of_incidents_with_a_bad_row(
    tab: Browser, stack: Scenario, tmp_path: Path
) -> None:
    tab.sign_in(stack.world.user(UNIT_A, "officer"))
    page = tab.go("investigations")
    page.wait_for_selector("#batch-file")
    t = START + 3 * 3600  # A-1 is at (-40, 40) m from home then
    a1 = stack.world.subjects["A-1"]

    incidents = tmp_path / "crimes.csv"
    incidents.write_text(_csv_incidents(t))
    _upload(page, incidents, "DAILY-CSV")
    assert "2 incidents run, 1 rejected, 1 subject hit" in page.inner_text("#batch-summary")
    rows = page.locator("#batch-incidents tbody tr")
    assert rows.count() == 2
    near = page.locator("#batch-incidents tr[data-incident='INC-NEAR']").inner_text()
    assert "line 2" in near and "A-1" in near and "within" in near
    far = page.locator("#batch-incidents tr[data-incident='INC-FAR']").inner_text()
    assert "line 4" in far and "none" in far
    bad = page.locator("#batch-errors tbody tr")
    assert bad.count() == 1 and bad.first.get_attribute("data-line") == "3"
    assert "UTC offset" in bad.first.inner_text()
    # Each incident's place is drawn, and A-1's closest approach to INC-NEAR.
    assert page.locator("#inv-map path.leaflet-interactive").count() >= 3
    tab.shot("investigations-batch-csv", full_page=True)

    geo = tmp_path / "crimes.geojson"
    geo.write_text(_geojson_incidents(t))
    _upload(page, geo, "DAILY-GEOJSON")
    assert "2 incidents run, 1 rejected" in page.inner_text("#batch-summary")
    near = page.locator("#batch-incidents tr[data-incident='GJ-NEAR']").inner_text()
    assert "A-1" in near
    assert "none" in page.locator("#batch-incidents tr[data-incident='GJ-FAR']").inner_text()
    bad = page.locator("#batch-errors tbody tr")
    assert bad.count() == 1
    # The third feature starts on line 36 of the pretty-printed file (line numbers from 1).
    lines = geo.read_text().splitlines()
    starts = [i + 1 for i, s in enumerate(lines) if s == "    {"]
    assert bad.first.get_attribute("data-line") == str(starts[2])
    assert "radius" in bad.first.inner_text()
    cells = bad.first.locator("td").all_inner_texts()
    assert cells[1] == "3"  # the feature's number

    runs = {r["detail"]["reference"]: r for r in _audit(stack, "investigation.batch")}
    csv_run, geo_run = runs["DAILY-CSV"], runs["DAILY-GEOJSON"]
    assert csv_run["detail"]["errors"] == 1 and csv_run["detail"]["file"]["format"] == "csv"
    assert csv_run["subject_ids"] == [a1]
    assert [i["at"] for i in csv_run["detail"]["incidents"]] == ["line 2", "line 4"]
    assert geo_run["detail"]["file"]["name"] == "crimes.geojson"
    assert geo_run["purpose"] == "web test: daily crime data run"


def test_where_a_named_subject_was_instead(tab: Browser, stack: Scenario) -> None:
    tab.sign_in(stack.world.user(UNIT_A, "officer"))
    page = tab.go("investigations")
    page.wait_for_selector("#inv-subject")
    a1 = stack.world.subjects["A-1"]
    # An incident in the town centre (1 km east of A-1's home) while A-1 strolled near home.
    t0, t1 = START + 2 * 3600, START + 3 * 3600
    ask_where_instead(page, a1, ZONE_DX, t0, t1, "CRIME-77", "web test: is A-1 a suspect?")
    assert page.locator("#inv-results h2").inner_text() == "Where A-1 was instead"
    summary = page.inner_text("#inv-summary")
    assert summary.startswith("not within") and "evidence covers 100 % of the window" in summary
    facts = page.inner_text("#inv-where-facts")
    assert "all of it" in facts and "no home zone" not in facts
    # Every position in the window, each about a kilometre from the place.
    rows = page.locator("#inv-where tbody tr")
    assert rows.count() >= 55  # a fix a minute for an hour
    distances = [
        int(re.findall(r"(\d+) m from the place", c)[0])
        for c in page.locator("#inv-where tbody td:nth-child(4)").all_inner_texts()
    ]
    assert min(distances) > 900
    # Drawn on the map: the place, the path and a marker per fix (plus before/after).
    assert page.locator("#inv-map path.leaflet-interactive").count() >= rows.count() + 3
    tab.shot("investigations-where-instead", full_page=True)

    record = _audit(stack, "investigation.whereabouts", a1)[-1]
    assert record["detail"]["reference"] == "CRIME-77"
    assert record["detail"]["status"] == "not_within"
    assert record["purpose"] == "web test: is A-1 a suspect?"
    status = page.inner_text("#inv-status")
    assert f"record {record['id']}" in status
    # Every time in civil time: the summary's closest approach included, no Unix seconds.
    assert re.search(r"\b\d{9,}\b", page.inner_text("#inv-results")) is None
    assert re.search(r"at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d (BST|GMT) ", summary), summary


def test_where_instead_for_a_hit_of_the_correlation_by_keyboard(
    tab: Browser, stack: Scenario
) -> None:
    tab.sign_in(stack.world.user(UNIT_A, "officer"))
    page = tab.go("investigations")
    page.wait_for_selector("#inv-run:enabled")
    a1 = stack.world.subjects["A-1"]
    # A place on A-1's trail half-way through the window (a fix a minute, 2 m east each).
    t0, t1 = START + 2 * 3600, START + 3 * 3600
    lat, lon = offset(-400.0 + 2 * 150, 40.0)
    page.fill("#inv-lat", f"{lat:.6f}")
    page.fill("#inv-lon", f"{lon:.6f}")
    page.fill("#inv-radius", "100")
    page.fill("#inv-from", _local_input(t0))
    page.fill("#inv-to", _local_input(t1))
    page.fill("#inv-reference", "CRIME-88")
    page.fill("#inv-purpose", "web test: who was near the bus stop?")
    page.focus("#inv-purpose")
    page.keyboard.press("Enter")  # submits the correlation query (no subject chosen)
    page.wait_for_selector(f'#inv-hits tbody tr[data-subject="{a1}"]')
    assert page.locator("#inv-hits tbody tr").count() == 1
    assert page.locator("#inv-where-out").inner_text() == ""

    # From the query form, Tab reaches the row's subject link, then its labelled button.
    page.focus("#inv-run")
    assert tab_to(page, "Where instead: A-1", limit=6) == 2
    page.keyboard.press("Enter")
    page.wait_for_selector("#inv-where-out #inv-summary")
    # The answer opens under the hits (still listed), and focus is on its heading.
    assert page.locator("#inv-hits tbody tr").count() == 1
    assert focused(page) == "inv-where-title"
    # The side panel scrolled the answer up to its top, not just its heading into view.
    heading = page.locator("#inv-where-title").bounding_box()
    panel = page.locator("#inv-results").locator("xpath=ancestor::aside").bounding_box()
    assert heading is not None and panel is not None
    assert panel["y"] <= heading["y"] < panel["y"] + 60, (heading, panel)
    assert page.inner_text("#inv-where-title") == "Where A-1 was"
    summary = page.inner_text("#inv-summary")
    assert summary.startswith("within")
    tab.shot("investigations-where-instead-from-a-hit")

    # The same answer from the API gives the times the screen must show in London time.
    body = {
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "radius_m": 100,
        "reference": "CRIME-88",
        "from": t0,
        "to": t1,
    }
    r = stack.http.post(
        f"/api/investigations/subjects/{a1}/whereabouts", json=body,
        params={"purpose": "web test: the times shown"}, headers=stack.officer(UNIT_A),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    w = r.json()
    closest = w["closest"]["t"]
    assert f"at {_civil(closest)} (" in summary, summary
    assert f"t={closest}" not in summary
    assert _civil(closest) in page.inner_text("#inv-where-facts")
    times = page.locator("#inv-where tbody td:nth-child(1)").all_inner_texts()
    assert times == [_civil(f["t"]) for f in w["fixes"][: len(times)]]
    assert re.search(r"\b\d{9,}\b", page.inner_text("#inv-results")) is None
    # The zone matters: the browser runs on New York time, and London is not UTC in
    # September (what the old formatting would have shown on a CI machine).
    utc = datetime.fromtimestamp(closest, UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert not _civil(closest).startswith(utc)

    # Audited as a whereabouts query with the correlation's reference and purpose.
    record = _audit(stack, "investigation.whereabouts", a1)[-2]
    assert record["detail"]["reference"] == "CRIME-88"
    assert record["detail"]["status"] == "within"
    assert record["purpose"] == "web test: who was near the bus stop?"
    assert f"record {record['id']}" in page.inner_text("#inv-status")


def test_a_shared_subjects_exports_follow_the_share(tab: Browser, stack: Scenario) -> None:
    """A-2 is shared with probation for its trail and reports, with MOSOVO for live
    position and alerts only: probation is offered both and downloads the report (a
    disclosure, audited as such); MOSOVO is offered neither (its share would refuse them)."""
    a2 = stack.world.subjects["A-2"]
    partner = stack.world.user(PARTNER_UNIT, "partner")
    page = tab.sign_in(partner)
    page = tab.go(f"subjects/{a2}")
    page.wait_for_selector("#exports button")
    offered = page.locator("#exports button").all_inner_texts()
    assert any("(zip)" in t for t in offered) and any("(CSV)" in t for t in offered), offered
    with page.expect_download() as info:
        page.locator("#exports button", has_text="(CSV)").click()
    rows = list(csv.reader(io.StringIO(Path(info.value.path()).read_text())))
    assert rows[1][:3] == ["subject", "A-2", str(a2)]
    disclosed = _audit(stack, "disclose.reports", a2)
    assert disclosed[-1]["user_id"] == stack.world.users[partner][0]
    page.click("#sign-out")
    page.wait_for_selector("#username")

    page = tab.sign_in(stack.world.user(UNIT_B, "officer"))
    page = tab.go(f"subjects/{a2}")
    page.wait_for_selector("section[aria-label='Details']")
    assert page.locator("#exports").count() == 0
    assert page.locator("section[aria-label='Exports and reports']").count() == 0
