"""A subject with two home addresses in the browser's "where instead" answer: a stay at home
is at the home the tag walked to, and the page says how far that home is from the place —
not the nearer address, where he was not. Built through the real parts: a new subject,
devices in the registry, two home zones through the API, signed frames from the tag and
its paired home unit through ingest."""

from __future__ import annotations

import re

import pytest

from backend.registry import KeyVault, Registry
from backend.storage.schema import HOME_UNIT, TAG
from firmware import frame as fr
from tests.backend.api.conftest import SERVER_KEY
from tests.backend.rules.scenario import offset
from tests.web.conftest import Browser
from tests.web.scenario import UNIT_A, ZONE_DX, Scenario, _api, fix_record
from tests.web.test_web_evidence import ask_where_instead

pytestmark = pytest.mark.timeout(120)

TAG_C, UNIT_C = 3101, 4101
NEAR_HOME_DX = ZONE_DX + 160.0  # 60 m beyond the place's 100 m radius
FAR_HOME_DX = ZONE_DX + 5000.0


def _two_homes(stack: Scenario) -> tuple[int, int, int]:
    """Subject A-9 with homes 60 m and 4.9 km from the place; its tag walks home to the far
    one and its unit reports it in for three hours. Returns (subject, window from, to)."""
    registry = Registry(stack.engine, KeyVault(bytes.fromhex(SERVER_KEY)), stack.clock)
    stack.keys[UNIT_C] = registry.register(UNIT_C, HOME_UNIT).key
    stack.keys[TAG_C] = registry.register(TAG_C, TAG, home_unit=UNIT_C).key
    who = stack.officer(UNIT_A)
    sid = int(_api(stack, "POST", "/api/subjects", who,
                   {"reference": "A-9", "name": "Two Addresses"})["id"])  # fmt: skip
    t0 = int(stack.clock.now()) + 60
    for dev, role in ((TAG_C, "tag"), (UNIT_C, "home_unit")):
        _api(stack, "POST", f"/api/subjects/{sid}/assignments", who,
             {"device": dev, "role": role, "starts_at": t0 - 60})  # fmt: skip
    for name, dx in (("flat", NEAR_HOME_DX), ("mother's house", FAR_HOME_DX)):
        lat, lon = offset(dx, 0)
        _api(stack, "POST", f"/api/subjects/{sid}/zones", who, {
            "type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"name": name, "kind": "home", "radius_m": 50},
        })  # fmt: skip
    # Walks west to the far home over 20 minutes, a fix a minute, the last 40 m from it.
    xs = [FAR_HOME_DX + 40 + 58 * (19 - i) for i in range(20)]
    for k in range(0, 20, 5):
        ts = t0 + 60 * (k + 4)
        stack.send(TAG_C, ts, [fix_record(60 * (4 - i), xs[k + i]) for i in range(5)])
    home_at = t0 + 60 * 25
    for t, state in ((home_at, fr.HOME), (home_at + 3 * 3600, fr.AWAY)):
        rec = fr.Record(fr.PRESENCE, (0, UNIT_C, TAG_C, state, -60))
        stack.send(UNIT_C, t, [rec], kind=fr.HOME_DATA)
    return sid, home_at + 1800, home_at + 1800 + 3600


def test_a_stay_at_the_far_home_says_how_far_that_home_is(tab: Browser, stack: Scenario) -> None:
    sid, w0, w1 = _two_homes(stack)
    tab.sign_in(stack.world.user(UNIT_A, "officer"))
    page = tab.go("investigations")
    page.wait_for_selector("#inv-subject")
    ask_where_instead(page, sid, ZONE_DX, w0, w1, "CRIME-90", "web test: A-9 at either address?")
    # At his mother's house all the window: not at the place, although his flat is 60 m
    # from it (placed at the flat, he would be "within").
    assert page.inner_text("#inv-summary").startswith("not within")
    facts = page.inner_text("#inv-where-facts")
    nearest, stays = facts.split("; at home ", 1)
    assert re.search(r"\b60 m from the place", nearest), facts
    (far,) = re.findall(r"\((\d+) m from the place\)", stays)
    assert abs(int(far) - (FAR_HOME_DX - ZONE_DX - 100)) <= 5, facts
    tab.shot("investigations-two-homes", full_page=True)
