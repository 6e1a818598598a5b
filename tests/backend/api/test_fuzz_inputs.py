"""Hypothesis over the two kinds of input the probe broke the API with — GeoJSON and times
— sent where they reach the routes' own code (an officer's own subject and order), not only
their schema: zones and the zone preview, correlation places, whereabouts and incident
files; order, exception and assignment dates, query and report windows, curfew times.

Whatever is sent: never a 5xx; an answer either refuses (4xx, nothing stored changes) or
accepts something within the documented bounds (docs/security.md, "Plausibility bounds").
The strategies mix well-formed values near the world's subjects with the shapes that broke
it (strings, nulls, numbers where a position belongs, NaN, 1e308, subnormals, huge integers,
other scripts' digits, deep nesting). Derandomized, with a fixed example budget."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from backend import bounds
from backend.clock import ManualClock
from backend.storage.schema import curfew_exceptions, curfews, orders, zones
from tests.backend.api import fuzz
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import UNIT_A, World

LON, LAT = -1.88, 50.72
FUZZ = settings(
    max_examples=80,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# ---- numbers and positions ------------------------------------------------------------------

nasty_numbers = st.one_of(
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 999.0, 180.0000001, -90.0000001, 2.0**53]),
    st.sampled_from([math.nan, math.inf, -math.inf, 10**400 // 10**380, True]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
)
near = st.tuples(st.floats(-0.05, 0.05), st.floats(-0.05, 0.05)).map(
    lambda d: [round(LON + d[0], 7), round(LAT + d[1], 7)]
)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    nasty_numbers,
    st.lists(nasty_numbers, max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
bad_position = st.one_of(
    # What broke it: a later vertex that is a string, null or number; positions off the globe.
    st.sampled_from(
        [None, "x", 5, True, [], [LON], [999, 999], [1e308, -1e308], [math.nan, math.nan]]
    ),
    st.sampled_from([[str(LON), str(LAT)], [LON, LAT, "\ud800"], [LON, LAT, *[0.0] * 1000]]),
    st.lists(nasty_numbers, min_size=2, max_size=3),
    st.tuples(near, st.lists(st.one_of(nasty_numbers, st.text(max_size=2)), max_size=3)).map(
        lambda p: p[0] + p[1]
    ),
    junk,
)
position = st.one_of(near, bad_position)


@st.composite
def ring(draw: st.DrawFn) -> list[Any]:
    """A closed ring near the subject, often with one later vertex spoiled."""
    points = draw(st.lists(near, min_size=3, max_size=6))
    out: list[Any] = [*points, points[0]]
    if draw(st.booleans()):
        out[draw(st.integers(1, len(out) - 1))] = draw(bad_position)
    return out


@st.composite
def line(draw: st.DrawFn) -> list[Any]:
    out: list[Any] = draw(st.lists(near, min_size=2, max_size=5))
    if draw(st.booleans()):
        out[draw(st.integers(0, len(out) - 1))] = draw(bad_position)
    return out


geometry = st.one_of(
    st.builds(lambda c: {"type": "Point", "coordinates": c}, position),
    st.builds(lambda r: {"type": "Polygon", "coordinates": r}, st.lists(ring(), max_size=3)),
    st.builds(lambda c: {"type": "LineString", "coordinates": c}, line()),
    st.builds(
        lambda p: {"type": "MultiPolygon", "coordinates": p},
        st.lists(st.lists(ring(), max_size=2), max_size=2),
    ),
    st.builds(lambda t, c: {"type": t, "coordinates": c}, st.text(max_size=8), junk),
    st.recursive(junk, lambda inner: st.lists(inner, max_size=3), max_leaves=12),
)
size = st.one_of(st.sampled_from([100.0, 250]), st.floats(-1, 200_000), nasty_numbers, junk)

# ---- times ----------------------------------------------------------------------------------

NOW = 1_790_000_000  # tests.backend.conftest.T0, the API fixtures' clock
time_value = st.one_of(
    st.integers(NOW - 12 * bounds.YEAR_S, NOW + 12 * bounds.YEAR_S),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 2**32 - 1, 2**40, bounds.LATEST_S, bounds.LATEST_S - 1, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.integers(NOW - 86400, NOW).map(str),
)
# Windows: any two times, or a short window at a place on the time line that broke something
# (2^40 is past year 9999 in the local calendar).
window = st.one_of(
    st.builds(
        lambda t, d: (t, t + d),
        st.sampled_from([2**40 - 86400, bounds.LATEST_S - 3600, 2**33, 2**31, NOW - 3600, 0]),
        st.integers(1, 86400),
    ),
    st.tuples(time_value, time_value),
)
DIGIT_ZEROS = [0x30, 0xFF10, 0x0660, 0x06F0, 0x0966, 0x1D7CE]
hhmm = st.one_of(
    st.builds(
        lambda h, m, z1, z2: (
            "".join(chr(z1 + int(c)) for c in f"{h:02d}")
            + ":"
            + "".join(chr(z2 + int(c)) for c in f"{m:02d}")
        ),
        st.integers(0, 30),
        st.integers(0, 70),
        st.sampled_from(DIGIT_ZEROS),
        st.sampled_from(DIGIT_ZEROS),
    ),
    st.text(max_size=6),
)


@dataclass
class Site:
    client: TestClient
    engine: Engine
    headers: dict[str, str]
    own: dict[str, int]

    def post(self, path: str, body: Any, method: str = "POST", **kw: Any) -> httpx.Response:
        # json.dumps writes NaN, Infinity and lone surrogates (escaped) as a careless client does.
        content = json.dumps(body).encode()
        headers = {**self.headers, "content-type": "application/json"}
        return self.client.request(method, path, content=content, headers=headers, **kw)

    def stored(self) -> tuple[int, ...]:
        with self.engine.connect() as conn:
            return tuple(
                int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (orders, curfews, curfew_exceptions, zones)
            )


@pytest.fixture
def site(
    client: TestClient, app: FastAPI, world: World, api_engine: Engine, api_clock: ManualClock
) -> Iterator[Site]:
    own = fuzz.own_objects(client, world, api_engine, api_clock)
    headers = bearer(login(client, world.user(UNIT_A, "officer")))
    yield Site(client, api_engine, headers, own)


def answered(r: httpx.Response) -> int:
    assert r.status_code < 500, r.text[:300]
    return r.status_code


def _in_bounds(coords: Any) -> bool:
    """Every position in a stored geometry is finite and on the globe."""
    if coords and isinstance(coords[0], (int, float)):
        lon, lat = coords[0], coords[1]
        return math.isfinite(lon) and math.isfinite(lat) and abs(lon) <= 180 and abs(lat) <= 90
    return all(_in_bounds(c) for c in coords)


@FUZZ
@given(geom=geometry, radius=size, width=size)
def test_any_geojson_zone_is_stored_within_bounds_or_refused(
    site: Site, geom: Any, radius: Any, width: Any
) -> None:
    s = site.own["subject_id"]
    feature = {
        "type": "Feature",
        "geometry": geom,
        "properties": {"name": "z", "kind": "exclusion", "radius_m": radius, "width_m": width},
    }
    before = site.stored()
    preview = site.post(
        f"/api/web/subjects/{s}/zone-preview", {"zone": feature}, params={"purpose": "fuzz"}
    )
    answered(preview)
    r = site.post(f"/api/subjects/{s}/zones", feature)
    if answered(r) == 201:
        assert preview.status_code == 200  # one validation for both
        stored = r.json()["geometry"]
        assert _in_bounds(stored["coordinates"])
        site.client.delete(f"/api/zones/{r.json()['id']}", headers=site.headers)
    else:
        assert site.stored() == before


@FUZZ
@given(geom=geometry, radius=size, span=window)
def test_any_place_and_window_for_an_investigation_is_answered_or_refused(
    site: Site, geom: Any, radius: Any, span: tuple[Any, Any]
) -> None:
    start, end = span
    place = {"geometry": geom, "radius_m": radius}
    query = {"reference": "X", "from": start, "to": end, **place}
    answered(site.post("/api/investigations/correlate", query, params={"purpose": "fuzz"}))
    s = site.own["subject_id"]
    where = f"/api/investigations/subjects/{s}/whereabouts"
    answered(site.post(where, query, params={"purpose": "fuzz"}))
    feature = {
        "type": "Feature",
        "geometry": geom,
        "properties": {"reference": "X", "radius_m": radius, "from": start, "to": end},
    }
    doc = json.dumps({"type": "FeatureCollection", "features": [feature]})
    r = site.client.post(
        "/api/investigations/batch",
        params={"purpose": "fuzz", "reference": "daily"},
        files={"file": ("incidents.geojson", doc.encode(), "application/geo+json")},
        headers=site.headers,
    )
    answered(r)


@FUZZ
@given(start=time_value, end=time_value, hm=hhmm, other=hhmm)
def test_any_date_or_time_of_day_is_stored_within_bounds_or_refused(
    site: Site, start: Any, end: Any, hm: Any, other: Any
) -> None:
    s = site.own["subject_id"]
    before = site.stored()
    created = []
    order = {"kind": "bail", "reference": "F", "starts_at": start, "ends_at": end}
    r = site.post(f"/api/subjects/{s}/orders", order)
    if answered(r) == 201:
        created.append(r.json())
    r = site.post(
        f"/api/subjects/{s}/curfew-exceptions",
        {"kind": "extra", "starts_at": start, "ends_at": end, "reason": "fuzz"},
    )
    if answered(r) == 201:
        created.append(r.json())
    for body in created:
        for key in ("starts_at", "ends_at"):
            t = body[key]
            assert t is None or (type(t) is int and abs(t - NOW) <= 10 * bounds.YEAR_S), body
    answered(site.post(f"/api/orders/{site.own['order_id']}", {"ends_at": end}, "PATCH"))
    r = site.post(f"/api/subjects/{s}/curfews", {"days": ["mon"], "start": hm, "end": other})
    if answered(r) == 201:
        assert r.json()["start"].isascii() and r.json()["end"].isascii()
        site.client.delete(f"/api/curfews/{r.json()['id']}", headers=site.headers)
    if not created:
        assert site.stored()[:3] == before[:3]


@FUZZ
@given(span=window)
def test_any_query_window_is_answered_or_refused(site: Site, span: tuple[Any, Any]) -> None:
    start, end = span
    s = site.own["subject_id"]
    window = {"from": start, "to": end}
    for path, extra in (
        (f"/api/subjects/{s}/trail", {"purpose": "fuzz"}),
        (f"/api/reports/subjects/{s}/compliance", {}),
        (f"/api/web/subjects/{s}/events", {}),
        (f"/api/exports/subjects/{s}/evidence.zip", {"purpose": "fuzz"}),
    ):
        params = {k: v for k, v in {**window, **extra}.items() if v is not None}
        answered(site.client.get(path, params=params, headers=site.headers))
    params = {k: v for k, v in {"since": start, "until": end}.items() if v is not None}
    answered(site.client.get("/api/alerts", params=params, headers=site.headers))
