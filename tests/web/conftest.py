"""Fixtures for the web UI tests: the scenario served by a real uvicorn (tests/web/
scenario.py), and Debian's headless Chromium driven by Playwright — never a browser
download: `make setup` installs the `chromium` package. Screenshots of each screen are kept
in build/screenshots/ as test artifacts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web import scenario, simday

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# The browser's computer is set to a zone far from London: the UI shows and reads every time
# in Europe/London whatever the computer's zone (docs/web.md), and a test that reads a time
# off the screen would pass by accident in a browser that happened to run on London time.
BROWSER_TIME_ZONE = "America/New_York"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[scenario.Scenario]:
    s = scenario.start(tmp_path_factory.mktemp("web"))
    yield s
    scenario.stop(s)


@pytest.fixture(scope="session")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[simday.SimDay]:
    """The simulated day (tests/web/simday.py), built once and shared by every module."""
    d = simday.start(tmp_path_factory.mktemp("simday"))
    yield d
    simday.stop(d)


# Per module, not per session: while Playwright's sync API is open it keeps an event loop
# running on the test thread, so a later module's asyncio.run() on the same pytest worker
# would fail ("cannot be called from a running event loop").
@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: run `make setup`")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user-data dir
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1366, "height": 900},
            timezone_id=BROWSER_TIME_ZONE,
        )
        context.set_default_timeout(30_000)  # a loaded 2-core CI machine is slow
        yield context
        context.close()


class Browser:
    """A tab signed in (or not) with every console error and page error collected: a
    Content-Security-Policy violation or a script error fails the test."""

    def __init__(self, context: Any, base: str) -> None:
        self.page = context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("response", self._response)

    def _console(self, message: Any) -> None:
        # A refused API call (a 404 for a foreign subject) is logged by Chromium as a
        # failed resource: _response judges those by URL instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def _response(self, response: Any) -> None:
        api = "/api/" in response.url
        if response.status >= 500 or (response.status >= 400 and not api):
            self.errors.append(f"{response.status} {response.url}")

    def submit_credentials(self, username: str, password: str = PASSWORD) -> Any:
        page = self.page
        page.goto(f"{self.base}/")
        # Keyboard only: the username field has focus, Tab to the password, Enter submits.
        page.wait_for_selector("#username:focus")
        page.keyboard.type(username)
        page.keyboard.press("Tab")
        page.keyboard.type(password)
        page.keyboard.press("Enter")
        return page

    def sign_in(self, username: str, password: str = PASSWORD) -> Any:
        page = self.submit_credentials(username, password)
        page.wait_for_selector("#top:not([hidden])")
        return page

    def go(self, screen: str) -> Any:
        self.page.goto(f"{self.base}/web/#/{screen}")
        self.page.wait_for_selector(".screen[data-ready] h1")
        return self.page

    def shot(self, name: str, full_page: bool = False) -> None:
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)

    def close(self) -> None:
        self.page.close()


def focused(page: Any) -> str:
    """The focused element, described: its id, or its accessible label, or its text."""
    described: str = page.evaluate(
        """() => { const e = document.activeElement;
                   return e.id || e.getAttribute('aria-label') || e.textContent.trim(); }"""
    )
    return described


def tab_to(page: Any, wanted: str, key: str = "Tab", limit: int = 80) -> int:
    """Press Tab (or Shift+Tab) until the focused element is described by `wanted`."""
    for presses in range(1, limit + 1):
        page.keyboard.press(key)
        if focused(page) == wanted:
            return presses
    raise AssertionError(f"{wanted!r} not reached with {limit} x {key} (at {focused(page)!r})")


@pytest.fixture
def tab(browser_context: Any, stack: scenario.Scenario) -> Iterator[Browser]:
    b = Browser(browser_context, stack.url)
    yield b
    errors = list(b.errors)
    b.close()
    assert errors == [], errors


class DayBrowser(Browser):
    """A tab on the simulated day, signing in with the demo logins' passwords."""

    def __init__(self, context: Any, day: simday.SimDay) -> None:
        super().__init__(context, day.url)
        self.day = day

    def sign_in(self, username: str, password: str | None = None) -> Any:
        return super().sign_in(username, password or self.day.password(username))


@pytest.fixture
def day_tab(browser_context: Any, day: simday.SimDay) -> Iterator[DayBrowser]:
    b = DayBrowser(browser_context, day)
    yield b
    errors = list(b.errors)
    b.close()
    assert errors == [], errors
