"""The officers' web application end to end in headless Chromium against the backend on a
real uvicorn, with a scenario built through ingest and the rules (tests/web/scenario.py):
sign in, subjects on the live map, an alert arriving live, acknowledge and resolve, trail
playback, drawing zones, a correlation query, admin and audit screens, the tag pool and a
wearer's consent through to its withdrawal — and an officer of another unit who does not see
the subject. Screenshots land in build/screenshots/."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.backend.api.world import raise_alert
from tests.web.conftest import Browser
from tests.web.scenario import TAG_A, UNIT_A, UNIT_B, Scenario

pytestmark = pytest.mark.timeout(120)


def _box(page: Any, selector: str) -> dict[str, float]:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    return dict(box)


def test_sign_in_and_see_subjects_on_the_live_map(tab: Browser, stack: Scenario) -> None:
    page = tab.sign_in(stack.world.user(UNIT_A, "officer"))
    page.wait_for_selector(".screen[data-ready]")
    assert page.locator("h1").first.inner_text() == "Needs attention"  # officers land here
    page = tab.go("map")
    page.wait_for_selector("#live-subjects li[data-subject]")
    a1 = stack.world.subjects["A-1"]
    item = page.locator(f'#live-subjects li[data-subject="{a1}"]')
    assert "A-1" in item.inner_text() and "ago" in item.inner_text()
    # B-1 belongs to the other unit and is not shared: not on this map.
    assert (
        page.locator(f'#live-subjects li[data-subject="{stack.world.subjects["B-1"]}"]').count()
        == 0
    )
    # The last fix (a marker and its accuracy circle), the home unit and both zones.
    assert page.locator("#live-map .subject-marker").count() == 1
    assert page.locator("#live-map path").count() >= 3
    assert page.locator("#live-map .home-handle").count() == 1
    item.get_by_role("button", name="Show A-1 on the map").click()
    page.wait_for_selector(".leaflet-popup-content")
    assert "Last fix" in page.locator(".leaflet-popup-content").inner_text()
    tab.shot("live-map")
    # Each screen keeps to the CSP: nothing inline, nothing from elsewhere.
    csp = stack.http.get("/web/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_an_alert_arrives_live_then_is_acknowledged_and_resolved(
    tab: Browser, stack: Scenario
) -> None:
    tab.sign_in(stack.world.user(UNIT_A, "officer"))
    page = tab.go("alerts")
    page.wait_for_selector("#stream-state:text('open')")
    before = page.locator("#alerts-table tbody tr[data-alert]").count()
    stack.walk_into_zone()  # frames through ingest: the zone rule raises exclusion_entry
    row = page.locator("#alerts-table tbody tr.new", has_text="exclusion entry")
    row.wait_for()
    assert page.locator("#alerts-table tbody tr[data-alert]").count() == before + 1
    assert "A-1" in row.inner_text() and "open" in row.inner_text()
    alert_id = int(row.get_attribute("data-alert") or 0)
    tab.shot("alert-queue-new-alert")

    row.get_by_role("button").click()
    page.wait_for_selector("#alert-title:focus")
    # Evidence: the fixes that confirmed the entry, on the map with the zone.
    page.wait_for_selector("#evidence-map path.leaflet-interactive[stroke='#b3261e']")
    assert page.locator("#alert-detail .evidence li li").count() >= 2
    page.fill("#ack-note", "looking into it")
    page.click("#acknowledge")
    page.wait_for_selector("#alert-state:text('acknowledged')")
    page.select_option("#resolve-outcome", "breach_confirmed")
    page.click("#resolve")  # without a note: the form refuses, nothing is sent
    assert page.locator("#resolve-note:invalid").count() == 1
    assert page.locator("#alert-state").inner_text() == "acknowledged"
    page.fill("#resolve-note", "seen on CCTV in the town centre")
    page.click("#resolve")
    page.click("#resolve-confirm-yes")  # A-1 is still in the zone: confirmed
    page.wait_for_selector("#alert-state:text('resolved')")
    tab.shot("alert-resolved", full_page=True)

    r = stack.http.get(f"/api/alerts/{alert_id}", headers=stack.officer(UNIT_A)).json()
    assert r["state"] == "resolved" and r["outcome"] == "breach_confirmed"
    assert r["note"] == "seen on CCTV in the town centre"
    assert [a["action"] for a in r["actions"]][-2:] == ["acknowledged", "resolved"]


def test_trail_playback_with_the_time_slider(tab: Browser, stack: Scenario) -> None:
    tab.sign_in(stack.world.user(UNIT_A, "officer"))
    a1 = stack.world.subjects["A-1"]
    page = tab.go(f"subjects/{a1}")
    page.wait_for_selector(".calendar .window")  # the curfew calendar (sat, sun nights)
    assert "19:00 to 07:00" in page.locator(".calendar").get_attribute("aria-label")
    page.fill("#trail-purpose", "web test: trail review")
    page.click("#trail-load")
    page.wait_for_selector("#trail-status:has-text('positions')")
    count = int(re.findall(r"(\d+) positions", page.locator("#trail-status").inner_text())[0])
    assert count >= 50
    slider = page.locator("#trail-slider")
    first = page.locator("#trail-time").inner_text()
    slider.focus()
    page.keyboard.press("End")
    last = page.locator("#trail-time").inner_text()
    assert last > first
    page.keyboard.press("Home")
    assert page.locator("#trail-time").inner_text() == first
    page.click("#trail-play")
    page.wait_for_function(
        "first => document.getElementById('trail-time').textContent !== first", arg=first
    )
    page.click("#trail-play")  # pause
    assert page.locator("#trail-play").get_attribute("aria-pressed") == "false"
    tab.shot("subject-trail-playback", full_page=True)
    # The look at the trail was audited with its stated purpose.
    auditor = {"Authorization": _token(stack, stack.world.user(UNIT_A, "auditor"))}
    records = stack.http.get(
        "/api/audit", params={"action": "read.trail", "subject_id": a1}, headers=auditor
    ).json()["records"]
    assert any(r["purpose"] == "web test: trail review" for r in records)


def _token(stack: Scenario, username: str) -> str:
    r = stack.http.post(
        "/api/auth/token", data={"username": username, "password": "correct horse battery staple"}
    )
    return f"Bearer {r.json()['access_token']}"


def test_draw_zones_on_the_map(tab: Browser, stack: Scenario) -> None:
    tab.sign_in(stack.world.user(UNIT_A, "officer"))
    a1 = stack.world.subjects["A-1"]
    page = tab.go(f"zones/{a1}")
    page.wait_for_selector("#zone-list li[data-zone]")
    box = _box(page, "#zones-map")
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    # A circle: click the centre, then the edge.
    page.click("#draw-circle")
    assert page.locator("#draw-circle").get_attribute("aria-pressed") == "true"
    page.mouse.click(cx - 150, cy - 120)
    page.mouse.move(cx - 100, cy - 120)
    page.mouse.click(cx - 90, cy - 120)
    radius = float(page.input_value("#zone-radius"))
    assert radius > 0
    assert len(page.input_value("#zone-coords").splitlines()) == 1
    page.fill("#zone-name", "drawn circle")
    page.fill("#preview-purpose", "web test: checking a new zone")
    page.click("#zone-preview")
    page.wait_for_selector("#preview-summary")
    assert "fixes checked" in page.locator("#preview-summary").inner_text()
    page.click("#zone-save")
    page.wait_for_selector("#zone-list li:has-text('drawn circle')")

    # A polygon with a schedule: three clicks, then Finish.
    page.click("#draw-polygon")
    for dx, dy in ((60, 60), (180, 60), (120, 160)):
        page.mouse.click(cx + dx, cy + dy)
    page.click("#draw-finish")
    assert len(page.input_value("#zone-coords").splitlines()) == 3
    page.fill("#zone-name", "drawn polygon")
    page.select_option("#zone-kind", "inclusion")
    page.click("#zone-add-window")
    page.fill("#win-1-start", "08:00")
    page.fill("#win-1-end", "18:00")
    tab.shot("zone-drawing")
    page.click("#zone-save")
    page.wait_for_selector("#zone-list li:has-text('drawn polygon')")

    zones = stack.http.get(f"/api/subjects/{a1}/zones", headers=stack.officer(UNIT_A)).json()
    by_name = {z["properties"]["name"]: z for z in zones["features"]}
    circle, polygon = by_name["drawn circle"], by_name["drawn polygon"]
    assert circle["geometry"]["type"] == "Point"
    assert abs(circle["properties"]["radius_m"] - radius) < 1
    assert polygon["geometry"]["type"] == "Polygon"
    assert len(polygon["geometry"]["coordinates"][0]) == 4  # closed ring of three vertices
    assert polygon["properties"]["kind"] == "inclusion"
    sched = polygon["properties"]["schedule"]
    assert sched[0]["start"] == "08:00" and sched[0]["end"] == "18:00"
    assert sched[0]["days"] == ["mon", "tue", "wed", "thu", "fri"]

    # Edit the circle's name in place.
    page.get_by_role("button", name="Edit zone drawn circle").click()
    page.fill("#zone-name", "renamed circle")
    page.click("#zone-save")
    page.wait_for_selector("#zone-list li:has-text('renamed circle')")
    zones = stack.http.get(f"/api/subjects/{a1}/zones", headers=stack.officer(UNIT_A)).json()
    renamed = [z for z in zones["features"] if z["properties"]["name"] == "renamed circle"]
    assert len(renamed) == 1 and renamed[0]["id"] == circle["id"]


def test_correlation_query_on_the_map(tab: Browser, stack: Scenario) -> None:
    tab.sign_in(stack.world.user(UNIT_A, "officer"))
    page = tab.go("investigations")
    box = _box(page, "#inv-map")
    page.wait_for_selector("#inv-lat")
    # A-1's last positions are ~300 m east of home: place the incident there by a click
    # after centring the map on A-1 through the live data.
    live = stack.http.get("/api/web/live", headers=stack.officer(UNIT_A)).json()
    a1 = next(s for s in live["subjects"] if s["reference"] == "A-1")
    page.fill("#inv-lat", f"{a1['position']['lat']:.6f}")
    page.fill("#inv-lon", f"{a1['position']['lon']:.6f}")
    page.fill("#inv-radius", "300")
    page.fill("#inv-reference", "CRIME-42")
    page.fill("#inv-purpose", "web test: burglary near the scene")
    page.mouse.move(box["x"] + 10, box["y"] + 10)
    page.click("#inv-run")
    page.wait_for_selector("#inv-hits")
    assert "A-1" in page.locator("#inv-hits").inner_text()
    assert "B-1" not in page.locator("#inv-hits").inner_text()
    tab.shot("investigations")


def test_an_officer_of_another_unit_does_not_see_the_subject(tab: Browser, stack: Scenario) -> None:
    tab.sign_in(stack.world.user(UNIT_B, "officer"))
    page = tab.go("map")
    page.wait_for_selector("#live-subjects li[data-subject]")
    listed = page.locator("#live-subjects").inner_text()
    assert "B-1" in listed and "A-2" in listed  # its own, and the one shared with it
    assert "A-1" not in listed
    tab.shot("live-map-other-unit")
    page = tab.go(f"subjects/{stack.world.subjects['A-1']}")
    assert "not visible to your unit" in page.locator(".screen").inner_text()
    page = tab.go("alerts")
    page.wait_for_selector("#alerts-table tbody tr")
    assert "A-1" not in page.locator("#alerts-table").inner_text()


def test_a_shared_subject_shows_what_its_share_grants_and_nothing_to_work(
    tab: Browser, stack: Scenario
) -> None:
    """A-2 is shared with MOSOVO for live position and alerts: its officer sees A-2's alert
    but no acknowledge or resolve (its unit cannot change the owning unit's alerts), and
    the subject's page shows its orders, curfews and equipment as not shared, without even
    asking for them (nor for its zones)."""
    a2 = stack.world.subjects["A-2"]
    now = stack.clock.now()
    alert_id = raise_alert(stack.engine, a2, int(now) - 60, now)
    page = tab.sign_in(stack.world.user(UNIT_B, "officer"))
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page = tab.go(f"alerts/{alert_id}")
    page.wait_for_selector("#alert-title:has-text('A-2')")
    page.wait_for_selector("#evidence-map")
    assert page.locator("#acknowledge").count() == 0 and page.locator("#resolve").count() == 0
    page = tab.go(f"subjects/{a2}")
    for title in ("Orders and conditions", "Curfew", "Equipment"):
        panel = page.locator(f"section[aria-label='{title}']")
        panel.locator("text=Not shared with your unit.").wait_for()
    page.locator("#timeline, section[aria-label='Timeline'] p").first.wait_for()
    tab.shot("shared-subject")
    reads = ("/orders", "/curfews", "/curfew-exceptions", "/assignments", "/charging", "/zones")
    assert [u for u in asked if f"/subjects/{a2}/" in u and u.split("?")[0].endswith(reads)] == []


def test_admin_and_audit_screens(tab: Browser, stack: Scenario) -> None:
    page = tab.sign_in(stack.world.user(UNIT_A, "administrator"))
    page.wait_for_selector("section[aria-label='Users'] tbody tr")
    assert "MOSOVO" in page.locator("section[aria-label='Units']").inner_text()
    # No subject data screens: Admin, and the account's own sign-in settings.
    assert page.locator("nav a").all_inner_texts() == ["Admin", "Security"]
    tab.shot("admin", full_page=True)
    page.click("#sign-out")
    page.wait_for_selector("#username")

    # An officer looks at the live map: a consultation the auditor then finds.
    assert stack.http.get("/api/web/live", headers=stack.officer(UNIT_A)).status_code == 200
    page = tab.sign_in(stack.world.user(UNIT_A, "auditor"))
    page.wait_for_selector("#audit-table tbody tr")
    page.fill("#audit-action", "read.")
    page.click("text=Search")
    page.wait_for_function(
        """() => {
            const cells = [...document.querySelectorAll('#audit-table tbody td:nth-child(4)')];
            return cells.length > 0 && cells.every((c) => c.textContent.startsWith('read.'));
        }"""
    )
    actions = page.locator("#audit-table tbody td:nth-child(4)").all_inner_texts()
    assert "read.live" in actions
    page.click("#audit-verify")
    page.wait_for_selector("#audit-verify-result:has-text('Chain intact')")
    tab.shot("audit", full_page=True)


def test_supervisor_shares_and_the_tablet_layout(
    browser_context: Any, stack: Scenario, tab: Browser
) -> None:
    page = tab.sign_in(stack.world.user(UNIT_A, "supervisor"))
    page = tab.go("admin")
    page.wait_for_selector("section[aria-label='Shares'] tbody tr")
    assert "joint MAPPA case" in page.locator("section[aria-label='Shares']").inner_text()
    # Portrait tablet (820 px): the panel drops below the map.
    page.set_viewport_size({"width": 820, "height": 1180})
    page = tab.go("map")
    page.wait_for_selector("#live-subjects li[data-subject]")
    map_box, panel = _box(page, "#live-map"), _box(page, "aside.panel")
    assert panel["y"] >= map_box["y"] + map_box["height"] - 1
    assert page.locator("#nav").is_visible()
    tab.shot("live-map-tablet", full_page=True)
    # A smaller tablet (768 px): the navigation folds behind a menu button.
    page.set_viewport_size({"width": 768, "height": 1024})
    assert page.locator("#menu-toggle").is_visible()
    assert not page.locator("#nav").is_visible()
    page.click("#menu-toggle")
    assert page.locator("#menu-toggle").get_attribute("aria-expanded") == "true"
    page.get_by_role("link", name="Alerts").click()
    page.wait_for_selector("#alerts-table")
    assert not page.locator("#nav").is_visible()  # the menu closes on navigation


def _pool_row(page: Any, device: int) -> Any:
    return page.locator(f'#pool-tags tr[data-device="{device}"]')


def test_the_pool_view_takes_a_fitted_tag_and_counts_it(tab: Browser, stack: Scenario) -> None:
    """A-1's tag, taken into the pool while fitted, shows as fitted: nothing is free."""
    tab.sign_in(stack.world.user(UNIT_A, "officer"))
    page = tab.go("pool")
    page.wait_for_selector("#pool-summary:has-text('0 free')")
    page.fill("#pool-device", str(TAG_A))
    page.click("text=Add tag")
    page.wait_for_selector(f'#pool-tags tr[data-device="{TAG_A}"][data-state="fitted"]')
    assert page.locator("#pool-summary").inner_text() == "0 free, 0 due for service"
    assert not _pool_row(page, TAG_A).locator("select").is_enabled()  # follows the equipment
    page.fill("#pool-device", str(TAG_A))
    page.click("text=Add tag")
    page.wait_for_selector("#pool-status:has-text('already in a pool')")
    tab.shot("tag-pool")


def test_consent_withdrawal_and_removal_on_the_subject_page(tab: Browser, stack: Scenario) -> None:
    """Consent recorded, then withdrawn (a removal task in the pool view), the wearer's
    subject access bundle, then the removal: the equipment ends and the pool's tag comes
    back to be cleaned and re-issued."""
    officer = stack.officer(UNIT_A)
    added = stack.http.post("/api/pool", json={"device": TAG_A}, headers=officer)
    assert added.status_code in (201, 409), added.text  # the pool test may have added it
    a1 = stack.world.subjects["A-1"]
    tab.sign_in(stack.world.user(UNIT_A, "officer"))
    page = tab.go(f"subjects/{a1}")
    consent = page.locator("#consent")
    consent.get_by_text("Not enrolled on a voluntary scheme.").wait_for()
    page.fill("#consent-witnessed_by", "Sgt Example")
    page.click("form[aria-label='Record consent'] button[type=submit]")
    page.wait_for_selector("#consent-document_ref[aria-invalid=true]")  # required, said there
    page.fill("#consent-document_ref", "CF-2026-21")
    page.click("form[aria-label='Record consent'] button[type=submit]")
    consent.locator(".consent-status:has-text('Consent in force')").wait_for()
    assert "CF-2026-21" in consent.inner_text() and "police units" in consent.inner_text()
    page.fill("#consent-note", "no longer wishes to take part")
    page.click("form[aria-label='Record withdrawal'] button[type=submit]")
    consent.locator(".consent-status:has-text('Withdrawn')").wait_for()
    tab.shot("consent-withdrawn")

    # The wearer asks for their data: the subject access bundle, audited as a disclosure.
    page.fill("#export-reference", "SAR-2026-1")
    with page.expect_download() as info:
        page.click("#exports button[data-export$='/subject-access.zip']")
    bundle = zipfile.ZipFile(Path(info.value.path()))
    manifest = json.loads(bundle.read("manifest.json"))
    assert manifest["kind"] == "subject_access" and manifest["reference"] == "SAR-2026-1"
    assert "CF-2026-21" in bundle.read("enrolments.csv").decode()
    page.wait_for_selector(f"#export-status:has-text('audit record {manifest['audit_id']}')")

    page = tab.go("pool")
    page.wait_for_selector("section[aria-label='Removals to do'] li:has-text('A-1')")
    page = tab.go(f"subjects/{a1}")
    page.click("form[aria-label='Record removal'] button[type=submit]")
    # Ended: no consent in force, the enrolment among the earlier ones.
    page.locator("#consent li:has-text('CF-2026-21'):has-text('equipment removed')").wait_for()
    assert "Not enrolled on a voluntary scheme." in page.locator("#consent").inner_text()

    page = tab.go("pool")
    page.wait_for_selector(f'#pool-tags tr[data-device="{TAG_A}"][data-state="removed"]')
    assert "No removals to do." in page.locator("section[aria-label='Removals to do']").inner_text()
    for state in ("cleaning", "in_stock"):
        _pool_row(page, TAG_A).locator("select").select_option(state)
        page.wait_for_selector(f'#pool-tags tr[data-device="{TAG_A}"][data-state="{state}"]')
    assert page.locator("#pool-summary").inner_text() == "1 free, 0 due for service"
    page = tab.go(f"subjects/{a1}")  # the equipment came off when the removal was recorded
    equipment = page.locator("section[aria-label='Equipment']")
    equipment.locator("tbody tr").first.wait_for()
    assert "in use" not in equipment.inner_text()
