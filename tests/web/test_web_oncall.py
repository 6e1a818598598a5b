"""On call in the browser: the supervisor puts an officer on the rota and sets a policy on
the On call screen; an alert pages the officer; the page's link, opened signed out, asks
the officer to sign in and then acknowledges the alert (docs/web.md, "Notifications")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.storage.schema import notification_pages
from tests.backend.api.world import raise_alert
from tests.web.conftest import Browser
from tests.web.scenario import UNIT_A, Scenario


def test_the_supervisor_sets_the_rota_and_the_officer_acknowledges_from_the_link(
    tab: Browser, stack: Scenario
) -> None:
    sup = stack.world.user(UNIT_A, "supervisor")
    officer = stack.world.user(UNIT_A, "officer")
    page = tab.sign_in(sup)
    page = tab.go("oncall")
    page.select_option("#shift-user", label=f"{officer} (officer)")
    page.fill("#shift-email", "officer.a@example.org")
    page.click("text=Add shift")
    row = page.locator("section[aria-label=Rota] tbody tr")
    row.first.wait_for()
    assert officer in row.first.inner_text() and "email, push" in row.first.inner_text()
    page.fill("#policy-type", "strap_tamper")
    page.fill("#policy-escalate", "5")
    page.click("text=Save policy")
    page.wait_for_selector("#policy-form-status:has-text('Saved.')")
    policies = page.locator("section[aria-label='Notification policies'] tbody")
    assert "strap_tamper" in policies.inner_text() and "5 min" in policies.inner_text()
    # The officer's own browser: the screen says whether this browser gets pages.
    assert page.locator("#push-state").inner_text() != ""
    tab.shot("oncall")
    # Signing out on a busy server: its answer to the logout comes only after the page's
    # link has been opened, and must not take the officer away from it.
    held: list[Any] = []
    page.route("**/api/auth/logout", lambda route: held.append(route))
    with page.expect_request("**/api/auth/logout"):
        page.click("#sign-out")

    now = stack.clock.now()
    alert = raise_alert(stack.engine, stack.world.subjects["A-1"], int(now) - 30, now)
    d = stack.app.state.tagwatch.dispatcher
    d.step()
    with stack.engine.connect() as conn:
        p = conn.execute(
            select(notification_pages).where(notification_pages.c.alert_id == alert)
        ).one()
    link = d.link(p.id, p.token_expires_at)
    path = link[link.index("/web/") :]

    acks: list[int] = []
    page.on(
        "response",
        lambda r: acks.append(r.status) if r.url.endswith("/notifications/ack") else None,
    )
    page.goto(f"{stack.url}{path}")
    page.wait_for_selector("#username:focus")
    (logout,) = held
    logout.continue_()
    page.unroute("**/api/auth/logout")
    page.keyboard.type(officer)
    page.keyboard.press("Tab")
    page.keyboard.type("correct horse battery staple")
    page.keyboard.press("Enter")
    page.wait_for_selector("#ack-status:has-text('Alert acknowledged')")
    tab.shot("ack")
    page.click("#ack-open")
    page.wait_for_selector(".screen[data-ready] h1")
    assert (
        stack.http.get(f"/api/alerts/{alert}", headers=stack.officer(UNIT_A)).json()["state"]
        == "acknowledged"
    )
    # The link again: it says how the alert stands, not an error. Then the screen drawn
    # twice at once (a double tap): one request between them.
    page.goto(f"{stack.url}{path}")
    page.wait_for_selector("#ack-status:not(.error):has-text('already been acknowledged')")
    page.evaluate(
        "() => { for (const _ of [1, 2]) dispatchEvent(new HashChangeEvent('hashchange')); }"
    )
    page.wait_for_selector(
        ".screen[data-ready] #ack-status:not(.error):has-text('already been acknowledged')"
    )
    assert acks == [200, 200, 200], acks
