"""Compliance reports against the scenario's truth (data through ingest and the rules),
the caseload summary, fleet health and who may see which."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from backend.rules import store
from backend.storage.schema import alerts, audit_log
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import World
from tests.backend.investigations.scenario import P0, P1, RPT_TAG, RPT_UNIT, ComplianceTruth


def _get(client: TestClient, user: str, url: str, **params: object) -> object:
    r = client.get(url, params=params, headers=bearer(login(client, user)))
    return r


def test_compliance_numbers_match_the_scenario(
    client: TestClient, compliance: ComplianceTruth, api_engine: Engine, world: World
) -> None:
    # Officers worked two of the alerts.
    with api_engine.begin() as conn:
        rows = {r.type: r.id for r in conn.execute(select(alerts))}
        officer = world.users["officer.turnaround"][0]
        store.resolve(conn, rows["curfew_breach"], officer, "breach_confirmed", "seen", P1)
        store.resolve(conn, rows["strap_tamper"], officer, "false_alert", "strap refit", P1)
    url = f"/api/reports/subjects/{compliance.subject}/compliance"
    r = _get(client, "officer.turnaround", url, **{"from": P0, "to": P1})
    assert r.status_code == 200, r.text  # type: ignore[attr-defined]
    rep = r.json()  # type: ignore[attr-defined]
    nights = {n["night"]: (n["kept"], n["minutes_away"]) for n in rep["nights"]}
    assert nights == compliance.nights
    s = rep["summary"]
    assert (s["curfew_nights_kept"], s["curfew_nights_broken"]) == (2, 1)
    assert s["curfew_minutes_away"] == pytest.approx(45, abs=0.5)
    assert [(d["day"], d["minutes"], d["compliant"]) for d in rep["charging"]] == [
        (day, m, ok) for day, (m, ok) in compliance.charging.items()
    ]
    c = rep["completeness"]
    assert c["expected_fixes"] == compliance.expected_fixes
    assert c["received_fixes"] == compliance.received_fixes
    assert c["longest_gap_s"] == compliance.longest_gap_s
    assert c["frames_expected"] == c["frames_received"] > 0
    assert len(rep["tamper_events"]) == compliance.tamper_records
    assert [e["state"] for e in rep["tamper_events"]] == ["open", "closed"]
    (zone,) = rep["zone_events"]
    assert zone["type"] == "exclusion_entry"
    assert zone["duration_s"] == pytest.approx(compliance.zone_minutes * 60, abs=120)
    assert [e["type"] for e in rep["battery_events"]] == ["battery_low"]
    assert rep["alerts_by_outcome"]["breach_confirmed"] == 1
    assert rep["alerts_by_outcome"]["false_alert"] == 1
    assert rep["alerts_by_type"]["not_charged"] == 1
    # The consultation is audited under the reports scope.
    with api_engine.connect() as conn:
        last = conn.execute(select(audit_log).where(audit_log.c.action == "read.reports")).all()[-1]
    assert last.subject_ids == [compliance.subject]


def test_compliance_html_and_csv(client: TestClient, compliance: ComplianceTruth) -> None:
    url = f"/api/reports/subjects/{compliance.subject}/compliance"
    h = _get(client, "officer.turnaround", url, **{"from": P0, "to": P1, "format": "html"})
    assert h.status_code == 200  # type: ignore[attr-defined]
    html = h.text  # type: ignore[attr-defined]
    assert html.startswith("<!doctype html>") and "RPT-1" in html and "broken" in html
    assert "http://" not in html and "https://" not in html  # self-contained: no CDN
    assert "attachment" in h.headers["content-disposition"]  # type: ignore[attr-defined]
    c = _get(client, "officer.turnaround", url, **{"from": P0, "to": P1, "format": "csv"})
    table = list(csv.reader(io.StringIO(c.text)))  # type: ignore[attr-defined]
    summary = {r[1]: r[2] for r in table if r[0] == "summary"}
    assert summary["curfew_nights_broken"] == "1"
    assert summary["received_fixes"] == str(compliance.received_fixes)
    nights = [r for r in table if r[0] == "curfew_night"]
    assert [r[2] for r in nights] == ["kept", "broken", "kept"]


def test_reports_follow_the_scopes(client: TestClient, compliance: ComplianceTruth) -> None:
    url = f"/api/reports/subjects/{compliance.subject}/compliance"
    window = {"from": P0, "to": P1}
    assert _get(client, "officer.mosovo", url, **window).status_code == 404  # type: ignore[attr-defined]
    assert _get(client, "administrator.turnaround", url, **window).status_code == 404  # type: ignore[attr-defined]
    assert _get(client, "partner.turnaround", url, **window).status_code == 200  # type: ignore[attr-defined]
    bad = _get(client, "officer.turnaround", url, **{"from": P1, "to": P0})
    assert bad.status_code == 422  # type: ignore[attr-defined]


def test_caseload_lists_the_units_subjects(
    client: TestClient, compliance: ComplianceTruth, world: World
) -> None:
    r = _get(client, "supervisor.turnaround", "/api/reports/caseload", **{"from": P0, "to": P1})
    rows = {x["reference"]: x for x in r.json()}  # type: ignore[attr-defined]
    assert set(rows) == {"A-1", "A-2", "RPT-1"}
    assert rows["RPT-1"]["curfew_nights_broken"] == 1 and rows["RPT-1"]["open_alerts"] >= 1
    # MOSOVO sees its own subject only (A-2's share with it has no reports scope); the
    # partner sees A-2 through its share, marked as not owned.
    r = _get(client, "officer.mosovo", "/api/reports/caseload", **{"from": P0, "to": P1})
    assert [x["reference"] for x in r.json()] == ["B-1"]  # type: ignore[attr-defined]
    r = _get(client, "partner.probation", "/api/reports/caseload", **{"from": P0, "to": P1})
    assert [(x["reference"], x["owned"]) for x in r.json()] == [("A-2", False)]  # type: ignore[attr-defined]
    for user in ("administrator.turnaround", "auditor.turnaround"):
        r = _get(client, user, "/api/reports/caseload", **{"from": P0, "to": P1})
        assert r.status_code == 403  # type: ignore[attr-defined]


def test_fleet_health_shows_devices_not_subjects_to_operators(
    client: TestClient, compliance: ComplianceTruth
) -> None:
    r = _get(client, "administrator.turnaround", "/api/reports/fleet")
    assert r.status_code == 200  # type: ignore[attr-defined]
    rows = {x["device"]: x for x in r.json()}  # type: ignore[attr-defined]
    tag = rows[RPT_TAG]
    assert tag["battery_pct"] == 45 and tag["charging"] is False
    assert tag["subject_id"] is None and "RPT-1" not in r.text  # type: ignore[attr-defined]
    assert rows[RPT_UNIT]["kind"] == "home_unit"
    # The officer of the owning unit sees the same devices with the subject.
    r = _get(client, "officer.turnaround", "/api/reports/fleet")
    mine = {x["device"]: x for x in r.json()}  # type: ignore[attr-defined]
    assert set(mine) == {RPT_TAG, RPT_UNIT}
    assert mine[RPT_TAG]["subject_id"] == compliance.subject
    # Another unit's officer sees none of them; partners and auditors are refused.
    r = _get(client, "officer.mosovo", "/api/reports/fleet")
    assert r.json() == []  # type: ignore[attr-defined]
    for user in ("partner.probation", "auditor.turnaround"):
        assert _get(client, user, "/api/reports/fleet").status_code == 403  # type: ignore[attr-defined]
    csv_text = _get(client, "administrator.turnaround", "/api/reports/fleet", format="csv").text  # type: ignore[attr-defined]
    assert csv_text.splitlines()[0].startswith("device,kind")
