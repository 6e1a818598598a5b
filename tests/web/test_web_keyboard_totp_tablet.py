"""Sign-in with a second factor, keyboard-only work and the tablet layout, in headless
Chromium against the scenario on a real uvicorn: a user with TOTP enabled signs in with a
code computed here by the backend's own RFC 6238 helper (after a wrong code is refused with
a plain message); an alert is opened, acknowledged and resolved with the keyboard alone; and
every main screen is laid out for a portrait tablet (screenshots in build/screenshots/)."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from backend.security import roles, totp
from backend.services import users
from tests.web.conftest import PASSWORD, Browser, focused, tab_to
from tests.web.scenario import UNIT_A, Scenario

pytestmark = pytest.mark.timeout(120)


def _totp_user(stack: Scenario, name: str = "officer.totp") -> tuple[str, bytes]:
    """An officer of unit A with TOTP enrolled and confirmed through the API."""
    with stack.engine.begin() as conn:
        users.create(
            conn, stack.app.state.tagwatch.passwords, username=name, display_name="Officer TOTP",
            unit_id=stack.world.units[UNIT_A], role=roles.OFFICER, password=PASSWORD,
            now=stack.clock.now(),
        )  # fmt: skip
    token = stack.http.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    enrol = stack.http.post("/api/auth/totp/enroll", json={"password": PASSWORD}, headers=auth)
    assert enrol.status_code == 200, enrol.text
    b32 = enrol.json()["secret"]
    secret = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    code = totp.totp(secret, stack.clock.now())
    confirmed = stack.http.post("/api/auth/totp/confirm", json={"code": code}, headers=auth)
    assert confirmed.status_code == 204, confirmed.text
    # The confirming code's step is used up: sign-in needs the next one.
    stack.clock.set(stack.clock.now() + totp.STEP_S)
    return name, secret


def test_an_administrator_resets_a_lost_authenticator(tab: Browser, stack: Scenario) -> None:
    name, _secret = _totp_user(stack, "officer.lostphone")
    token = stack.http.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    assert token.status_code == 401  # the password alone is not enough ...
    page = tab.sign_in(stack.world.user(UNIT_A, "administrator"))
    button = page.locator(f"button[aria-label='Reset two-step sign-in for {name}']")
    button.wait_for()
    asked: list[str] = []

    def confirm(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    button.click()
    page.wait_for_selector(f"#announce:has-text('{name} updated')")
    assert "sign them out everywhere" in asked[0]
    # The list is read again after the announcement: its button goes once it shows the reset.
    button.wait_for(state="detached")
    assert page.locator(f"button[aria-label='Reset two-step sign-in for {name}']").count() == 0
    # ... until the reset: the user signs in with the password and can enrol a new one.
    token = stack.http.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    assert token.status_code == 200, token.text


def test_sign_in_with_a_one_time_code(tab: Browser, stack: Scenario) -> None:
    name, secret = _totp_user(stack)
    page = tab.submit_credentials(name, PASSWORD)
    # The password was right: the form asks for the code and puts the cursor there.
    page.wait_for_selector("#otp:focus")
    assert "one-time code" in page.inner_text("#signin-error")
    assert page.locator("#top").is_hidden()

    now = stack.clock.now()
    good = totp.totp(secret, now)
    valid = {totp.hotp(secret, int(now // totp.STEP_S) + d) for d in (-1, 0, 1)}
    wrong = next(
        c for c in (f"{(int(good) + k) % 10**6:06d}" for k in range(1, 9)) if c not in valid
    )
    page.keyboard.type(wrong)
    page.keyboard.press("Enter")
    page.wait_for_selector("#signin-error:has-text('not accepted')")
    assert "one-time code was not accepted" in page.inner_text("#signin-error")
    assert page.locator("#top").is_hidden()
    assert page.evaluate("document.activeElement.id") == "otp"
    assert page.input_value("#otp") == ""
    tab.shot("sign-in-totp-refused")

    page.keyboard.type(good)
    page.keyboard.press("Enter")
    page.wait_for_selector("#top:not([hidden])")
    assert "Officer TOTP" in page.inner_text("#who")
    page.wait_for_selector(".screen[data-ready] #attention-open")

    records = _audit(stack, "auth.login")
    mine = [(r["action"], r["detail"].get("reason")) for r in records if r["actor"] == name]
    # The enrolment's password login, the code asked for, the wrong code, the right one.
    assert mine[-3:] == [
        ("auth.login_otp_required", "otp_required"),
        ("auth.login_failed", "bad_otp"),
        ("auth.login", None),
    ]


def _audit(stack: Scenario, action: str) -> list[dict[str, Any]]:
    """The audit records whose action starts with `action`, as unit A's auditor sees them."""
    auditor = stack.http.post(
        "/api/auth/token",
        data={"username": stack.world.user(UNIT_A, "auditor"), "password": PASSWORD},
    ).json()["access_token"]
    answer = stack.http.get(
        "/api/audit", params={"action": action}, headers={"Authorization": f"Bearer {auditor}"}
    )
    records: list[dict[str, Any]] = answer.json()["records"]
    return records


def _me(stack: Scenario, name: str, otp: str | None = None) -> dict[str, Any]:
    data = {"username": name, "password": PASSWORD}
    if otp is not None:
        data["otp"] = otp
    token = stack.http.post("/api/auth/token", data=data)
    assert token.status_code == 200, token.text
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    me: dict[str, Any] = stack.http.get("/api/auth/me", headers=auth).json()
    return me


def _wrong_code(secret: bytes, now: float) -> str:
    """A six-digit code no step of the accepted window gives."""
    valid = {totp.hotp(secret, int(now // totp.STEP_S) + d) for d in (-1, 0, 1)}
    return next(c for c in (f"{k:06d}" for k in range(123456, 123500)) if c not in valid)


def _shown_secret(page: Any) -> bytes:
    """The set-up key as shown (groups of four), decoded; the otpauth URI must carry it."""
    shown = page.inner_text("#totp-secret")
    assert re.fullmatch(r"[A-Z2-7]{4}( [A-Z2-7]{1,4})+", shown), shown
    b32 = shown.replace(" ", "")
    uri = page.input_value("#totp-uri")
    assert uri.startswith("otpauth://totp/tagwatch%3Aofficer.enrol?"), uri
    assert f"secret={b32}&" in uri and "issuer=tagwatch" in uri
    return base64.b32decode(b32 + "=" * (-len(b32) % 8))


def test_enrol_an_authenticator_in_the_browser_then_sign_in_with_it(
    tab: Browser, stack: Scenario
) -> None:
    name = "officer.enrol"
    with stack.engine.begin() as conn:
        users.create(
            conn, stack.app.state.tagwatch.passwords, username=name, display_name="Officer Enrol",
            unit_id=stack.world.units[UNIT_A], role=roles.OFFICER, password=PASSWORD,
            now=stack.clock.now(),
        )  # fmt: skip
    page = tab.sign_in(name)
    page.wait_for_selector(".screen h1:focus")
    # Keyboard only: back up to the navigation's Security link, then the set-up form.
    tab_to(page, "Security", key="Shift+Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector(".screen h1:focus:text-is('Security')")
    assert "off" in page.inner_text("#totp-state")
    tab_to(page, "totp-password", limit=6)
    assert page.locator("label[for='totp-password']").inner_text() == "Your password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert focused(page) == "totp-start"
    page.keyboard.press("Enter")
    page.wait_for_selector("#totp-secret")
    secret = _shown_secret(page)
    # Focus is at the top of the steps; Tab goes to the set-up address, then the code.
    assert focused(page) == "totp-title"
    page.keyboard.press("Tab")
    assert focused(page) == "totp-uri"
    page.keyboard.press("Tab")
    assert focused(page) == "totp-code"
    assert "setting up" in page.inner_text("#totp-state")
    tab.shot("security-totp-setup", full_page=True)

    # A wrong code: a plain message, the field cleared for the next try, nothing turned on.
    page.keyboard.type(_wrong_code(secret, stack.clock.now()))
    page.keyboard.press("Enter")
    page.wait_for_selector("#totp-error:has-text('did not match')")
    assert focused(page) == "totp-code" and page.input_value("#totp-code") == ""
    assert _me(stack, name)["totp_enabled"] is False

    # The code the app would show, from the backend's own RFC 6238 code at its clock.
    page.keyboard.type(totp.totp(secret, stack.clock.now()))
    page.keyboard.press("Enter")
    page.wait_for_selector("#totp-state .badge:text('on')")
    assert focused(page) == "totp-title"
    tab.shot("security-totp-on", full_page=True)

    # Signing in now needs a code: the confirming step is used, so the next one.
    page.click("#sign-out")
    page.wait_for_selector("#username:focus")
    stack.clock.set(stack.clock.now() + totp.STEP_S)
    page = tab.submit_credentials(name, PASSWORD)
    page.wait_for_selector("#otp:focus")
    page.keyboard.type(totp.totp(secret, stack.clock.now()))
    page.keyboard.press("Enter")
    page.wait_for_selector("#top:not([hidden])")
    assert "Officer Enrol" in page.inner_text("#who")

    # A new authenticator needs the password and the code the app in use shows now;
    # keyboard only: the password, Tab, the code, Enter (the first button: a new app).
    page = tab.go("account")
    page.wait_for_selector("#totp-manage-password")
    tab_to(page, "totp-manage-password", limit=6)
    assert "Your password" in page.inner_text("label[for='totp-manage-password']")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert focused(page) == "totp-current-code"
    # A wrong code first: refused in place, the code cleared and focused, the password kept.
    page.keyboard.type(_wrong_code(secret, stack.clock.now()))
    page.keyboard.press("Enter")
    page.wait_for_selector("#totp-error:has-text('not accepted')")
    assert focused(page) == "totp-current-code" and page.input_value("#totp-current-code") == ""
    assert page.input_value("#totp-manage-password") == PASSWORD
    # The sign-in used this step's code: the app's next one.
    stack.clock.set(stack.clock.now() + totp.STEP_S)
    page.keyboard.type(totp.totp(secret, stack.clock.now()))
    page.keyboard.press("Enter")
    page.wait_for_selector("#totp-secret")
    second = _shown_secret(page)
    assert second != secret
    assert "setting up" in page.inner_text("#totp-state")
    assert focused(page) == "totp-title"
    # Pending: sign-in still needs a code from the app in use, never the password alone.
    alone = stack.http.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    assert (alone.status_code, alone.json()) == (401, {"detail": "one-time code required"})
    tab.shot("security-totp-replace", full_page=True)
    tab_to(page, "totp-code", limit=3)
    page.keyboard.type(totp.totp(second, stack.clock.now()))
    page.keyboard.press("Enter")
    page.wait_for_selector("#totp-manage-password")
    assert "on" in page.inner_text("#totp-state .badge")
    assert "setting up" not in page.inner_text("#totp-state")
    assert focused(page) == "totp-title"
    # Swapped: the new app's codes sign in, the old app's do not.
    stack.clock.set(stack.clock.now() + totp.STEP_S)
    old = stack.http.post(
        "/api/auth/token",
        data={"username": name, "password": PASSWORD, "otp": totp.totp(secret, stack.clock.now())},
    )
    assert old.status_code == 401
    assert _me(stack, name, totp.totp(second, stack.clock.now()))["totp_enabled"] is True

    # Turning it off asks for the password and a current code: a wrong password is refused
    # in place (both fields cleared: the code may have changed by the next try) ...
    tab_to(page, "totp-manage-password", limit=6)
    page.keyboard.type("not my password at all")
    page.keyboard.press("Tab")
    page.keyboard.type(totp.totp(second, stack.clock.now()))
    tab_to(page, "totp-disable", limit=3)
    page.keyboard.press("Enter")
    page.wait_for_selector("#totp-error:has-text('password is not right')")
    assert focused(page) == "totp-manage-password"
    assert page.input_value("#totp-current-code") == ""
    # ... the code used to sign in just now is spent: refused as well ...
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    page.keyboard.type(totp.totp(second, stack.clock.now()))
    tab_to(page, "totp-disable", limit=3)
    page.keyboard.press("Enter")
    page.wait_for_selector("#totp-error:has-text('not accepted')")
    assert focused(page) == "totp-current-code"
    alone = stack.http.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    assert (alone.status_code, alone.json()) == (401, {"detail": "one-time code required"})
    # ... and the app's next code turns it off.
    stack.clock.set(stack.clock.now() + totp.STEP_S)
    page.keyboard.type(totp.totp(second, stack.clock.now()))
    tab_to(page, "totp-disable", limit=3)
    page.keyboard.press("Enter")
    page.wait_for_selector("#totp-state .badge:text('off')")
    assert focused(page) == "totp-title"
    assert _me(stack, name)["totp_enabled"] is False  # a password alone signs in again

    records = _audit(stack, "auth.totp")
    mine = [
        (r["action"], r["detail"].get("operation"), r["detail"].get("reason"))
        for r in records
        if r["actor"] == name
    ]
    assert mine == [
        ("auth.totp_enroll_started", None, None),
        ("auth.totp_refused", "confirm", "bad_otp"),
        ("auth.totp_enabled", None, None),
        ("auth.totp_refused", "enroll", "bad_otp"),
        ("auth.totp_enroll_started", None, None),
        ("auth.totp_enabled", None, None),
        ("auth.totp_refused", "disable", "bad_password"),
        ("auth.totp_refused", "disable", "bad_otp"),  # the code spent signing in
        ("auth.totp_disabled", None, None),
    ]


def test_acknowledge_and_resolve_an_alert_with_the_keyboard_only(
    tab: Browser, stack: Scenario
) -> None:
    tab.sign_in(stack.world.user(UNIT_A, "officer"))  # typed, Tab, Enter
    page = tab.page
    page.wait_for_selector(".screen[data-ready] #attention-open")
    stack.walk_into_zone()  # an exclusion_entry alert for A-1
    a1 = stack.world.subjects["A-1"]
    alerts = stack.http.get("/api/alerts", params={"subject": a1}, headers=stack.officer(UNIT_A))
    alert = next(a for a in alerts.json() if a["type"] == "exclusion_entry")

    # The new alert arrives on Needs attention; from its heading, Tab to the alert's Open.
    page.wait_for_selector(f"#attention-open tr[data-alert='{alert['id']}']")
    assert page.evaluate("document.activeElement.tagName") == "H1"
    tab_to(page, f"Open alert {alert['id']}: exclusion entry for A-1")
    page.keyboard.press("Enter")
    page.wait_for_selector("#alert-title:focus")
    tab_to(page, "ack-note")
    page.keyboard.type("on it, by keyboard")
    page.keyboard.press("Tab")
    assert focused(page) == "acknowledge"
    page.keyboard.press("Enter")
    page.wait_for_selector("#alert-state:text('acknowledged')")
    # Focus comes back to the alert's heading, so the next Tab continues in the detail.
    page.wait_for_selector("#alert-title:focus")
    tab_to(page, "resolve-outcome")
    assert page.input_value("#resolve-outcome") == ""  # no outcome chosen for the officer
    page.keyboard.press("ArrowDown")  # -> breach confirmed
    page.keyboard.press("ArrowDown")  # -> false alert
    assert page.input_value("#resolve-outcome") == "false_alert"
    page.keyboard.press("Tab")
    page.keyboard.type("tag strap checked, no breach")
    page.keyboard.press("Tab")
    assert focused(page) == "resolve"
    page.keyboard.press("Enter")
    # A-1 is still in the zone: the confirmation takes the focus, Enter resolves.
    page.wait_for_selector("#resolve-confirm-yes:focus")
    page.keyboard.press("Enter")
    page.wait_for_selector("#alert-state:text('resolved')")
    tab.shot("alert-resolved-by-keyboard", full_page=True)

    done = stack.http.get(f"/api/alerts/{alert['id']}", headers=stack.officer(UNIT_A)).json()
    assert done["state"] == "resolved" and done["outcome"] == "false_alert"
    assert done["note"] == "tag strap checked, no breach"
    (ack, ack_note), (res, res_note) = [(a["action"], a.get("note")) for a in done["actions"]][-2:]
    assert (ack, ack_note) == ("acknowledged", "on it, by keyboard")
    assert res == "resolved" and res_note.endswith("tag strap checked, no breach")


TABLET = {"width": 820, "height": 1180}  # a portrait 10.9-inch tablet


def test_main_screens_on_a_portrait_tablet(tab: Browser, stack: Scenario) -> None:
    page = tab.page
    page.set_viewport_size(TABLET)
    tab.sign_in(stack.world.user(UNIT_A, "officer"))
    a1 = stack.world.subjects["A-1"]
    screens = [
        ("attention", "#attention-open"),
        ("map", "#live-subjects li[data-subject]"),
        ("alerts", "#alerts-table tbody tr"),
        (f"subjects/{a1}", "#exports button"),
        (f"zones/{a1}", "#zone-list li[data-zone]"),
        ("investigations", "#batch-file"),
    ]
    for screen, ready in screens:
        page = tab.go(screen)
        page.wait_for_selector(ready)
        # Nothing wider than the screen: no sideways scrolling on a tablet.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= TABLET["width"], (screen, width)
        # The navigation stays reachable (inline at 820 px, behind Menu below 800 px).
        assert page.locator("#nav").is_visible()
        split = page.locator(".split:has(> .map)")
        if split.count():  # a map's side panel drops below it
            box = split.first.locator("> .map").bounding_box()
            panel = split.first.locator("> .panel").bounding_box()
            assert box is not None and panel is not None
            assert panel["y"] >= box["y"] + box["height"] - 1, screen
            assert box["width"] > TABLET["width"] * 0.8, screen
        tab.shot(f"tablet-{screen.split('/')[0]}", full_page=True)
