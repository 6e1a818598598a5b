"""An officer's shift on a simulated day (tests/web/simday.py: `make demo`'s own run and
serving path, a dozen subjects through the whole stack), in Chromium at laptop (1440 x 900)
and tablet (768 x 1024) sizes: from sign-in to the most severe open alert, the queue
filtered by state, type and subject, acknowledging and resolving with the safeguards, the
map (who is where, at home or not, a subject found by name, a popup that survives the
refresh, the base layer, a configured tile server), the subject's timeline, a compliance
report for a subject fitted after the report's period began, validation messages beside
their fields, and the controls each role and share may use. Every test fails on a console
error, a page error or a failed asset (tests/web/conftest.py)."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from backend.web.settings import WebSettings
from tests.web.conftest import DayBrowser
from tests.web.simday import SimDay

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]

DESKTOP = {"width": 1440, "height": 900}
TABLET = {"width": 768, "height": 1024}
SIZES = pytest.mark.parametrize("size", [DESKTOP, TABLET], ids=["desktop", "tablet"])
RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
OFFICER = "iom.officer"


def by_attention(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(alerts, key=lambda a: (RANK[a["severity"]], a["start"], a["id"]))


def subject_refs(day: SimDay) -> dict[int, str]:
    return {s["id"]: s["reference"] for s in day.get("/api/subjects", limit=1000)}


def no_screen_failure(page: Any) -> None:
    failed = page.locator(".screen p.error[role=alert]:not(:empty)")
    assert failed.count() == 0, failed.all_inner_texts()


def no_sideways_scroll(page: Any) -> None:
    """Nothing wider than the window, and nothing wider than the panel it sits in."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], width
    overflowing = page.evaluate(
        """() => [...document.querySelectorAll('.screen .panel')]
              .filter((p) => p.scrollWidth > p.clientWidth + 1)
              .map((p) => [p.getAttribute('aria-label'), p.scrollWidth - p.clientWidth])"""
    )
    assert overflowing == [], overflowing


@SIZES
def test_sign_in_lands_on_who_needs_attention_and_opens_the_most_severe_alert(
    day_tab: DayBrowser, day: SimDay, size: dict[str, int]
) -> None:
    day_tab.page.set_viewport_size(size)
    open_alerts = by_attention(day.get("/api/alerts", state="open", limit=1000))
    assert open_alerts and open_alerts[0]["severity"] == "critical"  # the day's strap cut
    refs = subject_refs(day)
    page = day_tab.sign_in(OFFICER)  # action 1
    page.wait_for_selector("#attention-open tbody tr[data-alert]")
    assert page.locator("h1").first.inner_text() == "Needs attention"
    rows = page.locator("#attention-open tbody tr[data-alert]")
    shown = [int(x) for x in rows.evaluate_all("rs => rs.map((r) => r.dataset.alert)")]
    assert shown == [a["id"] for a in open_alerts]  # most severe, then longest waiting
    first = rows.first
    assert refs[open_alerts[0]["subject_id"]] in first.inner_text()
    assert "critical" in first.inner_text() and "strap tamper" in first.inner_text()
    # Where the subject was last seen, in words about the map's named places.
    assert " of " in first.locator("td").nth(4).inner_text() or "at " in first.inner_text()
    count = page.locator("#nav-list a[data-screen=alerts] .count")
    assert count.inner_text() == str(len(open_alerts))
    first.get_by_role("button", name="Open").click()  # action 2
    page.wait_for_selector("#alert-title:focus")
    assert page.url.endswith(f"#/alerts/{open_alerts[0]['id']}")
    assert "strap tamper" in page.locator("#alert-title").inner_text()
    no_screen_failure(page)
    no_sideways_scroll(page)
    day_tab.shot(f"day-attention-then-alert-{size['width']}")


def test_filter_the_queue_by_each_state_type_and_subject(day_tab: DayBrowser, day: SimDay) -> None:
    # The day's alerts are all open at its end: work two of them so every state but
    # cleared has rows (chosen so the other tests' alerts stay open).
    who = day.token(OFFICER)
    alerts = day.get("/api/alerts", limit=1000)
    medium = next(a for a in alerts if a["severity"] == "medium" and a["state"] == "open")
    ended = next(
        a for a in alerts if a["type"] == "exclusion_entry" and a["end"] and a["state"] == "open"
    )
    assert day.http.post(f"/api/alerts/{medium['id']}/acknowledge", json={}, headers=who).is_success
    r = day.http.post(
        f"/api/alerts/{ended['id']}/resolve",
        json={"outcome": "false_alert", "note": "web test: filters"},
        headers=who,
    )
    assert r.is_success, r.text
    alerts = day.get("/api/alerts", limit=1000)
    page = day_tab.sign_in(OFFICER)
    page.set_viewport_size(DESKTOP)
    page = day_tab.go("alerts")
    page.wait_for_selector("#alerts-table tbody tr[data-alert]")

    def shown() -> set[int]:
        ids = page.locator("#alerts-table tbody tr[data-alert]").evaluate_all(
            "rs => rs.map((r) => Number(r.dataset.alert))"
        )
        return set(ids)

    def expect(wanted: set[int]) -> None:
        page.wait_for_function(
            """wanted => {
                const ids = [...document.querySelectorAll('#alerts-table tbody tr[data-alert]')]
                  .map((r) => Number(r.dataset.alert)).sort((a, b) => a - b);
                return JSON.stringify(ids) === JSON.stringify(wanted);
            }""",
            arg=sorted(wanted),
        )
        assert shown() == wanted

    expect({a["id"] for a in alerts if a["state"] in ("open", "acknowledged")})
    states = ("open", "acknowledged", "resolved", "cleared")
    for state in states:  # each state alone
        for other in states:
            page.set_checked(f"#state-{other}", other == state)
        expect({a["id"] for a in alerts if a["state"] == state})
    for other in states:
        page.set_checked(f"#state-{other}", True)
    expect({a["id"] for a in alerts})
    assert len({a["state"] for a in alerts}) >= 3  # the list really changed state by state
    for kind in sorted({a["type"] for a in alerts}):
        page.select_option("#filter-type", kind)
        expect({a["id"] for a in alerts if a["type"] == kind})
    page.select_option("#filter-type", "")
    for sid in sorted({a["subject_id"] for a in alerts}):
        page.select_option("#filter-subject", str(sid))
        expect({a["id"] for a in alerts if a["subject_id"] == sid})
    page.select_option("#filter-subject", "")
    expect({a["id"] for a in alerts})
    day_tab.shot("day-alert-filters")


def test_resolve_an_ongoing_alert_with_the_safeguards_while_a_colleague_acknowledges(
    day_tab: DayBrowser, day: SimDay
) -> None:
    ongoing = next(a for a in day.get("/api/alerts", state="open", limit=1000) if a["end"] is None)
    page = day_tab.sign_in(OFFICER)
    page.set_viewport_size(DESKTOP)
    page = day_tab.go(f"alerts/{ongoing['id']}")
    page.wait_for_selector("#alert-title")
    # The detail says where the subject was last seen and links to the map and the trail.
    assert "±" in page.locator("#alert-last-known").inner_text()
    assert page.get_attribute("#alert-live-link", "href") == f"#/map/{ongoing['subject_id']}"
    trail = page.get_attribute("#alert-trail-link", "href")
    assert trail == f"#/subjects/{ongoing['subject_id']}/trail/{ongoing['start']}"
    assert "still going on" in page.locator("#alert-condition").inner_text()
    # No outcome is chosen for the officer.
    assert page.input_value("#resolve-outcome") == ""
    page.fill("#resolve-note", "web test: seen at home by the response car")
    page.click("#resolve")
    page.wait_for_selector("#resolve-outcome-error")
    assert page.locator("#alert-state").inner_text() == "open"
    page.select_option("#resolve-outcome", "false_alert")
    assert page.locator("#resolve-outcome-error").count() == 0  # cleared once fixed
    page.click("#resolve")
    # Still going on: resolving asks first and says it reopens if the condition recurs.
    confirm = page.locator("#resolve-confirm")
    confirm.wait_for()
    assert "reopens if the condition recurs" in confirm.inner_text()
    # A colleague acknowledges meanwhile: the detail redraws with the new state, and the
    # question the officer is answering stays open with what they wrote (before, the redraw
    # closed it and the officer's "Resolve" did nothing).
    colleague = day.token("iom.supervisor")
    acked = day.http.post(f"/api/alerts/{ongoing['id']}/acknowledge", json={}, headers=colleague)
    assert acked.is_success, acked.text
    page.wait_for_selector("#alert-state:text('acknowledged')")
    assert confirm.is_visible() and "reopens if the condition recurs" in confirm.inner_text()
    assert page.input_value("#resolve-note") == "web test: seen at home by the response car"
    assert page.input_value("#resolve-outcome") == "false_alert"
    page.click("#resolve-confirm-yes")
    page.wait_for_selector("#alert-state:text('resolved')")
    condition = page.locator("#alert-condition").inner_text()
    assert "resolved while it was going on" in condition and "reopens" in condition
    r = day.get(f"/api/alerts/{ongoing['id']}")
    assert r["state"] == "resolved" and r["outcome"] == "false_alert"
    assert [x["action"] for x in r["actions"]][-2:] == ["acknowledged", "resolved"]
    day_tab.shot("day-alert-resolved-ongoing", full_page=True)
    # The trail at the alert's start, from the alert.
    page.click("#alert-trail-link")
    page.wait_for_selector("#trail-purpose:focus")
    page.fill("#trail-purpose", "web test: the breach's hour")
    page.click("#trail-load")
    page.wait_for_selector("#trail-status:has-text('positions')")


@SIZES
def test_the_evidence_map_frames_the_evidence(
    day_tab: DayBrowser, day: SimDay, size: dict[str, int]
) -> None:
    entry = next(a for a in day.get("/api/alerts", limit=1000) if a["type"] == "exclusion_entry")
    page = day_tab.sign_in(OFFICER)
    page.set_viewport_size(size)
    page = day_tab.go(f"alerts/{entry['id']}")
    page.wait_for_selector("#evidence-map .leaflet-control-scale-line")
    page.wait_for_selector("#evidence-map path.leaflet-interactive[stroke='#b3261e']")
    # Framed on the fixes (a few hundred metres), not on every zone of the subject (km).
    scale = page.locator("#evidence-map .leaflet-control-scale-line").inner_text()
    assert scale.endswith(" m"), scale
    box = page.locator("#evidence-map").bounding_box()
    assert box is not None
    marks = page.locator("#evidence-map path.leaflet-interactive[stroke='#b3261e']")
    assert marks.count() >= 2
    for i in range(marks.count()):
        b = marks.nth(i).bounding_box()
        assert b is not None
        assert box["x"] <= b["x"] + b["width"] / 2 <= box["x"] + box["width"]
        assert box["y"] <= b["y"] + b["height"] / 2 <= box["y"] + box["height"]


@SIZES
def test_the_map_shows_every_subject_on_a_named_base_map(
    day_tab: DayBrowser, day: SimDay, size: dict[str, int]
) -> None:
    live = day.get("/api/web/live")
    page = day_tab.sign_in(OFFICER)
    page.set_viewport_size(size)
    page = day_tab.go("map")
    page.wait_for_selector("#live-subjects li[data-subject]")
    # A base map with places to locate people by, a scale bar and a legend.
    labels = page.locator("#live-map .place-label").evaluate_all(
        "ls => ls.map((l) => l.textContent)"
    )
    assert {"Boscombe", "Bournemouth Centre", "Poole Centre"} <= set(labels)
    assert page.locator("#live-map .leaflet-control-scale-line").is_visible()
    assert page.locator("#map-legend").count() == 1
    assert "Simulated world" in page.locator("#live-map .leaflet-control-attribution").inner_text()
    # Badges: a subject with open alerts shows their count on its row.
    active = day.get("/api/alerts", state=["open", "acknowledged"], limit=1000)
    per_subject: dict[int, int] = {}
    for a in active:
        per_subject[a["subject_id"]] = per_subject.get(a["subject_id"], 0) + 1
    for sid, n in per_subject.items():
        badge = page.locator(f'#live-subjects li[data-subject="{sid}"] .alert-count')
        assert badge.inner_text().startswith(f"{n} alert"), sid
    # Freshness judged by mode: at home with the home unit heard lately is on time.
    home = [s for s in live["subjects"] if s["freshness"] and s["freshness"]["mode"] == "home"]
    assert home, "a night's end: most subjects are at home"
    for s in home:
        assert s["freshness"]["state"] == "on_time", s
        fresh = page.locator(f'#live-subjects li[data-subject="{s["id"]}"] .fresh')
        assert "on time" in fresh.inner_text() and "at home" in fresh.inner_text()
    # No marker hides another: each subject, shown, is on top at its own spot — above its
    # home unit when it is at home.
    for s in [x for x in live["subjects"] if x["position"]]:
        page.get_by_role("button", name=f"Show {s['reference']} on the map").click()
        popup = page.locator(".leaflet-popup-content .subject-popup")
        popup.wait_for()
        assert popup.get_attribute("data-subject") == str(s["id"])
        page.click(".leaflet-popup-close-button")
        popup.wait_for(state="detached")
        on_top = page.evaluate(
            """ref => {
                const m = [...document.querySelectorAll('#live-map .subject-marker')]
                  .find((e) => e.title.startsWith(ref + ' '));
                if (!m) return 'no marker';
                const r = m.getBoundingClientRect();
                const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
                return m.contains(hit) ? 'marker' : hit.className;
            }""",
            s["reference"],
        )
        assert on_top == "marker", (s["reference"], on_top)
    no_sideways_scroll(page)
    day_tab.shot(f"day-live-map-{size['width']}")


def test_a_subject_shown_on_the_map_opens_its_popup_once_whatever_the_cluster_calls_back(
    day_tab: DayBrowser, day: SimDay
) -> None:
    first, second = [x for x in day.get("/api/web/live")["subjects"] if x["position"]][:2]
    page = day_tab.sign_in(OFFICER)
    page = day_tab.go("map")
    page.wait_for_selector("#live-subjects li[data-subject]")
    # markercluster calls back when its zoom or fan-out ends, and may call again later: the
    # test holds the callbacks and makes those calls itself.
    page.evaluate(
        """() => {
            window.shownCallbacks = [];
            L.MarkerClusterGroup.prototype.zoomToShowLayer = function (layer, callback) {
                window.shownCallbacks.push(callback);
            };
        }"""
    )
    for s in (first, second):
        page.get_by_role("button", name=f"Show {s['reference']} on the map").click()
    popups = "() => [...document.querySelectorAll('.leaflet-popup .subject-popup')]"
    open_ids = f"() => ({popups})().map((p) => p.dataset.subject)"
    page.evaluate("() => window.shownCallbacks[1]()")
    assert page.evaluate(open_ids) == [str(second["id"])]
    page.evaluate("() => window.shownCallbacks[0]()")  # the first request's, late
    assert page.evaluate(open_ids) == [str(second["id"])]
    page.click(".leaflet-popup-close-button")
    page.locator(".leaflet-popup").wait_for(state="detached")
    page.evaluate("() => window.shownCallbacks[1]()")  # the same request's, again
    assert page.evaluate(open_ids) == []


@SIZES
def test_find_a_subject_by_name_and_its_popup_survives_the_refresh(
    day_tab: DayBrowser, day: SimDay, size: dict[str, int]
) -> None:
    app = day.served.app
    before = app.state.tagwatch_web
    app.state.tagwatch_web = before.model_copy(update={"live_refresh_s": 2})
    try:
        live = day.get("/api/web/live")
        target = next(
            s for s in live["subjects"] if s["position"] and s["name"].endswith("(compliant)")
        )
        page = day_tab.sign_in(OFFICER)
        page.set_viewport_size(size)
        page = day_tab.go("map")
        page.wait_for_selector("#live-subjects li[data-subject]")
        page.fill("#live-search", target["name"].split(" (")[0].lower())
        visible = page.locator("#live-subjects li[data-subject]:not([hidden])")
        assert visible.count() == 1 and target["reference"] in visible.inner_text()
        page.press("#live-search", "Enter")
        popup = page.locator(".leaflet-popup-content .subject-popup")
        popup.wait_for()
        assert popup.get_attribute("data-subject") == str(target["id"])
        selected = page.locator("#live-subjects li.selected")
        assert selected.get_attribute("data-subject") == str(target["id"])
        # Two refreshes of every subject later, the popup is still open on the same subject
        # and the subject still selected.
        for _ in range(2):
            with page.expect_response(lambda r: r.url.endswith("/api/web/live")):
                pass
        page.wait_for_function(
            "() => document.getElementById('live-status').textContent.includes('updated')"
        )
        assert popup.is_visible() and popup.get_attribute("data-subject") == str(target["id"])
        assert selected.get_attribute("data-subject") == str(target["id"])
        # By reference too.
        page.fill("#live-search", target["reference"])
        assert visible.count() == 1
    finally:
        app.state.tagwatch_web = before


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (256, 256), (200, 220, 200)).save(out, "PNG")
    return out.getvalue()


class _Tiles(BaseHTTPRequestHandler):
    """A tile server: the same tile for every address, and every address it was asked."""

    PNG = _png()
    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.PNG)))
        self.end_headers()
        self.wfile.write(self.PNG)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def tile_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Tiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Tiles.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "template",
    [
        "/osm/{z}/{x}/{y}.png",
        "/wmts?SERVICE=WMTS&REQUEST=GetTile&LAYER=Road_3857&TILEMATRIXSET=EPSG:3857"
        "&TILEMATRIX={TileMatrix}&TILEROW={TileRow}&TILECOL={TileCol}",
    ],
    ids=["xyz", "wmts"],
)
def test_a_configured_tile_server_is_the_base_map(
    day_tab: DayBrowser, day: SimDay, tile_server: str, template: str
) -> None:
    app = day.served.app
    before = app.state.tagwatch_web
    app.state.tagwatch_web = WebSettings(
        **{**before.model_dump(), "tile_url": tile_server + template,
           "tile_attribution": "© Test Mapping"}
    )  # fmt: skip
    try:
        page = day_tab.sign_in(OFFICER)
        page.set_viewport_size(DESKTOP)
        page = day_tab.go("map")
        page.wait_for_selector("#live-map img.leaflet-tile-loaded")
        assert (
            "© Test Mapping" in page.locator("#live-map .leaflet-control-attribution").inner_text()
        )
        assert page.locator("#live-map .place-label").count() == 0  # tiles instead of the world
        assert _Tiles.seen
        first = _Tiles.seen[0]
        if "{z}" in template:
            assert first.startswith("/osm/")
        else:
            assert "TILEMATRIX=" in first and "{" not in first
    finally:
        app.state.tagwatch_web = before


@SIZES
def test_the_subject_timeline_reads_as_events_in_london_time(
    day_tab: DayBrowser, day: SimDay, size: dict[str, int]
) -> None:
    refs = {v: k for k, v in subject_refs(day).items()}
    sid = refs["SIM-0-00001"]  # the persistent breacher: curfew, exclusion zone, home and away
    page = day_tab.sign_in(OFFICER)
    page.set_viewport_size(size)
    page = day_tab.go(f"subjects/{sid}")
    page.wait_for_selector("#timeline li.tl")
    text = page.locator("#timeline").inner_text()
    assert "{" not in text and '"type"' not in text  # no raw records
    rows = page.locator("#timeline > li.tl:not(.folded)")
    times = rows.locator("time").all_inner_texts()
    assert times and all(t.endswith((" BST", " GMT")) for t in times)
    whats = rows.locator(".what").all_inner_texts()
    assert any(w.startswith("Alert: curfew breach") for w in whats)
    assert any(w.startswith("Away:") for w in whats) and any("GPS mode" in w for w in whats)
    # The routine reports are folded, a run to a row, and can be filtered out.
    folded = page.locator("#timeline > li.folded")
    assert folded.count() >= 1
    assert folded.count() < len(whats)  # hundreds of status reports, a handful of rows
    assert not page.locator("#timeline > li.folded details").first.evaluate("d => d.open")
    page.uncheck("#tl-routine")
    assert page.locator("#timeline > li.folded").count() == 0
    page.uncheck("#tl-alert")
    assert not any(
        w.startswith("Alert:") for w in page.locator("#timeline .what").all_inner_texts()
    )
    day_tab.shot(f"day-subject-timeline-{size['width']}", full_page=True)


def test_a_compliance_report_counts_only_the_fitted_period(
    day_tab: DayBrowser, day: SimDay, tmp_path: Path
) -> None:
    refs = {v: k for k, v in subject_refs(day).items()}
    sid = refs["SIM-0-00002"]
    fitted = min(x["starts_at"] for x in day.get(f"/api/subjects/{sid}/assignments"))
    page = day_tab.sign_in(OFFICER)
    page.set_viewport_size(DESKTOP)
    page = day_tab.go(f"subjects/{sid}")
    page.wait_for_selector("#exports button[data-format=csv]")
    # The default period is the last 7 days: the tag was fitted on the last of them.
    with page.expect_download() as got:
        page.click("#exports button[data-export*=compliance][data-format=csv]")
    path = tmp_path / "compliance.csv"
    got.value.save_as(path)
    rows = list(csv.reader(io.StringIO(path.read_text())))
    nights = [r for r in rows if r[0] == "curfew_night"]
    monitored = [r for r in rows if r[0] == "monitored"]
    assert len(monitored) == 1 and monitored[0][1] == "2025-06-09 00:00 BST", monitored
    # The night before the fitting (its window ran into the fitting day) counts from the
    # fitting; the night under way when the day ended is in progress; none before it.
    assert [r[1] for r in nights] == ["2025-06-08", "2025-06-09"], nights
    assert nights[0][2] in ("kept", "broken") and "from=2025-06-09 00:00 BST" in nights[0][3]
    assert nights[1][2] == "in_progress"
    period = next(r for r in rows if r[0] == "period")
    assert period[1].endswith((" BST", " GMT")) and period[3] == "Europe/London"
    report = day.get(
        f"/api/reports/subjects/{sid}/compliance",
        **{"from": fitted - 6 * 86400, "to": fitted + 86400},
    )
    assert report["monitored"][0][0] == fitted
    assert report["summary"]["curfew_nights_in_progress"] == 1


def test_validation_errors_are_sentences_beside_their_fields(
    day_tab: DayBrowser, day: SimDay
) -> None:
    refs = {v: k for k, v in subject_refs(day).items()}
    page = day_tab.sign_in(OFFICER)
    page.set_viewport_size(DESKTOP)
    page = day_tab.go(f"zones/{refs['SIM-0-00004']}")
    page.wait_for_selector("#zone-list li")
    page.fill("#zone-coords", "50.7300, -1.8500")
    page.dispatch_event("#zone-coords", "change")
    page.fill("#zone-radius", "150")
    page.dispatch_event("#zone-radius", "input")
    page.fill("#zone-name", "web test: schedule without days")
    page.click("#zone-add-window")
    for d in ("mon", "tue", "wed", "thu", "fri"):
        page.uncheck(f"#win-1-{d}")
    page.click("#zone-save")
    error = page.locator("#win-1-days-error")
    error.wait_for()
    assert error.inner_text() == "Days of window 1: choose at least one."
    assert page.get_attribute("#win-1-days", "aria-invalid") == "true"
    screen = page.locator(".screen").inner_text()
    assert "List should have" not in screen and "properties.schedule" not in screen
    page.check("#win-1-wed")
    assert error.count() == 0  # cleared as soon as it is fixed
    page.click("#zone-save")
    page.wait_for_selector("#zone-list li:has-text('web test: schedule without days')")

    # A user the administrator adds with a bad username and a short password.
    page.click("#sign-out")
    page = day_tab.sign_in("demo.administrator")
    page.wait_for_selector("#user-username")
    page.fill("#user-username", "not ok!")
    assert page.evaluate("document.getElementById('user-username').validity.patternMismatch")
    page.fill("#user-username", "web.test")
    page.fill("#user-password", "short")
    page.evaluate("document.querySelector('form[aria-label=\"New user\"]').noValidate = true")
    page.click("form[aria-label='New user'] button[type=submit]")
    message = page.locator("#user-password-error")
    message.wait_for()
    assert message.inner_text() == "Initial password needs at least 12 characters."
    page.fill("#user-password", "long enough password")
    assert message.count() == 0


def test_controls_a_role_or_share_cannot_use_are_not_shown(
    day_tab: DayBrowser, day: SimDay
) -> None:
    shared = day.get("/api/subjects", "mosovo.officer", limit=1000)
    assert shared and all(not s["owner"] for s in shared)
    page = day_tab.sign_in("mosovo.officer")
    page.set_viewport_size(DESKTOP)
    sid = shared[0]["id"]
    page = day_tab.go(f"subjects/{sid}")
    page.wait_for_selector("#exports button")
    # The share gives live, trail and alerts: the evidence bundle, not the reports.
    assert "reports" not in shared[0]["scopes"]
    offered = page.locator("#exports button").evaluate_all("bs => bs.map((b) => b.dataset.export)")
    assert offered and all("/api/exports/" in p for p in offered), offered
    # A unit with no subjects of its own gets no zone editor.
    page = day_tab.go("zones")
    page.wait_for_selector("#zones-none")
    assert page.locator("#zones-map").count() == 0 and page.locator("#zone-save").count() == 0
    no_screen_failure(page)


def test_the_audit_log_by_username_and_subject_reference(day_tab: DayBrowser, day: SimDay) -> None:
    day.get("/api/web/live")  # an officer's look at the map, to find
    page = day_tab.sign_in("demo.auditor")
    page.set_viewport_size(DESKTOP)
    page.wait_for_selector("#audit-table tbody tr")
    page.fill("#audit-user", OFFICER)
    page.fill("#audit-subject", "SIM-0-00001")
    # The first page may already be all the officer's: empty the table so that the rows
    # waited for are the search's own.
    page.evaluate("document.querySelector('#audit-table tbody').replaceChildren()")
    page.click("text=Search")
    page.wait_for_selector("#audit-table tbody tr")
    who = page.locator("#audit-table tbody td:nth-child(3)").all_inner_texts()
    assert who and set(who) == {OFFICER}
    subjects = page.locator("#audit-table tbody td:nth-child(5)").all_inner_texts()
    assert subjects and all("SIM-0-00001" in s for s in subjects)
    no_sideways_scroll(page)
    day_tab.shot("day-audit", full_page=True)


ROLES_SCREENS = {
    OFFICER: ["attention", "map", "alerts", "subjects", "zones", "investigations", "account"],
    "iom.supervisor": ["attention", "alerts", "admin"],
    "mosovo.officer": ["attention", "map", "alerts", "subjects", "investigations"],
    "demo.administrator": ["admin", "account"],
    "demo.auditor": ["audit", "account"],
}


@SIZES
def test_no_screen_fails_or_logs_an_error_for_any_role(
    day_tab: DayBrowser, day: SimDay, size: dict[str, int]
) -> None:
    refs = {v: k for k, v in subject_refs(day).items()}
    for user, screens in ROLES_SCREENS.items():
        page = day_tab.sign_in(user)
        page.set_viewport_size(size)
        for screen in [*screens, *([f"subjects/{refs['SIM-0-00001']}"] if user == OFFICER else [])]:
            page = day_tab.go(screen)
            no_screen_failure(page)
            no_sideways_scroll(page)
        page.click("#sign-out")
        page.wait_for_selector("#username")
    assert day_tab.errors == []
