"""Plausibility bounds at the API (backend/bounds.py, docs/security.md "Plausibility
bounds"), on SQLite and PostgreSQL: every time, size and count a user sends outside its
bound gets a 4xx with a sentence saying what is wrong, and nothing stored changes. Each case
here answered 500 or was accepted (and stored) before the bounds existed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from backend.api.app import create_app
from backend.bounds import LATEST_S
from backend.clock import ManualClock
from backend.security import totp
from backend.storage.schema import (
    curfew_exceptions,
    curfews,
    orders,
    subject_monitoring,
    zones,
)
from tests.backend.api.conftest import api_settings, bearer, login
from tests.backend.api.world import PASSWORD, UNIT_A, World, build
from tests.backend.conftest import T0

YEAR = 365 * 86400
FULLWIDTH, ARABIC_INDIC = 0xFF10, 0x0660  # where each script's digit zero is
SUPERSCRIPT = "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"


def digits(text: str, zero: int) -> str:
    """`text` with its ASCII digits written in another script (str.isdigit() is True)."""
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in text)


def superscript(text: str) -> str:
    return "".join(SUPERSCRIPT[int(c)] if c.isdigit() else c for c in text)


LON, LAT = -1.88, 50.72
PURPOSE = {"purpose": "checking a zone"}


@dataclass
class Api:
    client: TestClient
    world: World
    clock: ManualClock
    engine: Engine
    headers: dict[str, str]

    @property
    def subject(self) -> int:
        return self.world.subjects["A-1"]

    def post(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        return self.client.post(path, json=body, headers=self.headers, **kw)

    def raw(self, method: str, path: str, text: str, **kw: Any) -> httpx.Response:
        """A body sent as written (NaN, lone surrogates: what json.dumps will not send)."""
        headers = {**self.headers, "content-type": "application/json"}
        return self.client.request(method, path, content=text.encode(), headers=headers, **kw)

    def stored(self) -> tuple[int, ...]:
        """What a refused request must not change: row counts and the config version."""
        with self.engine.connect() as conn:
            counts = [
                conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (orders, curfews, curfew_exceptions, zones)
            ]
            version = conn.execute(
                select(func.coalesce(func.sum(subject_monitoring.c.config_version), 0))
            ).scalar_one()
        return (*counts, int(version))


@pytest.fixture
def api(engine: Engine, tmp_path: Path) -> Iterator[Api]:
    clock = ManualClock(T0)
    app = create_app(api_settings(tmp_path), clock, engine)
    world = build(engine, app.state.tagwatch.passwords, clock)
    with TestClient(app) as client:
        token = login(client, world.user(UNIT_A, "supervisor"))
        yield Api(client, world, clock, engine, bearer(token))


def refused(r: httpx.Response, *words: str, status: int = 422) -> None:
    """A 4xx whose detail is a sentence naming what is wrong (and not an echo of the input)."""
    assert r.status_code == status, (r.status_code, r.text[:400])
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(str(e["msg"]) for e in detail)
    assert len(text) > 10, text
    for w in words:
        assert w in text, (w, text)


# ---- times ----------------------------------------------------------------------------------


def test_order_dates_are_strict_integers_within_ten_years_of_now(api: Api) -> None:
    url = f"/api/subjects/{api.subject}/orders"
    base = {"kind": "bail", "reference": "T"}
    before = api.stored()
    # The probe's order: 1970 (and JSON true, which was read as 1).
    refused(api.post(url, {**base, "starts_at": 0}), "ten years")
    refused(api.post(url, {**base, "starts_at": True}), "integer")
    refused(api.post(url, {**base, "starts_at": str(T0)}), "integer")
    refused(api.post(url, {**base, "starts_at": float(T0)}), "integer")
    refused(api.post(url, {**base, "starts_at": T0 - 11 * YEAR}), "ten years")
    refused(api.post(url, {**base, "starts_at": T0 + 11 * YEAR}), "ten years")
    refused(api.post(url, {**base, "starts_at": T0, "ends_at": T0 + 11 * YEAR}), "ten years")
    refused(api.post(url, {**base, "starts_at": T0, "comms_loss_s": True}), "integer")
    refused(api.post(url, {**base, "starts_at": 2**40}))
    assert api.stored() == before
    # A case entered years after it began is plausible.
    r = api.post(url, {**base, "starts_at": T0 - 5 * YEAR})
    assert r.status_code == 201, r.text
    order = r.json()["id"]
    before = api.stored()
    patch = f"/api/orders/{order}"
    refused(api.client.patch(patch, json={"conditions": None}, headers=api.headers), "string")
    refused(api.client.patch(patch, json={"ends_at": T0 + 11 * YEAR}, headers=api.headers))
    refused(api.client.patch(patch, json={"ends_at": False}, headers=api.headers), "integer")
    assert api.stored() == before
    r = api.client.patch(patch, json={"conditions": "curfew 19-07"}, headers=api.headers)
    assert r.status_code == 200 and r.json()["conditions"] == "curfew 19-07"


def test_assignment_and_exception_dates_are_bounded(api: Api) -> None:
    url = f"/api/subjects/{api.subject}/assignments"
    for bad in (0, True, T0 - 11 * YEAR, T0 + 11 * YEAR):
        refused(api.post(url, {"device": 1101, "role": "tag", "starts_at": bad}))
    refused(api.post(url, {"device": True, "role": "tag", "starts_at": T0}), "integer")
    url = f"/api/subjects/{api.subject}/curfew-exceptions"
    before = api.stored()
    body = {"kind": "excused", "reason": "hospital", "starts_at": T0, "ends_at": T0 + 3600}
    refused(api.post(url, {**body, "starts_at": 0, "ends_at": 3600}), "ten years")
    refused(api.post(url, {**body, "ends_at": True}), "integer")
    refused(api.post(url, {**body, "ends_at": T0 + 400 * 86400}), "366 days")
    assert api.stored() == before
    assert api.post(url, body).status_code == 201


@pytest.mark.parametrize(
    "hhmm",
    [
        digits("19:00", FULLWIDTH),
        "19:" + digits("0", FULLWIDTH) + "0",
        superscript("19") + ":00",
        digits("19:00", ARABIC_INDIC),
        "19:00 ",
        "1900",
        "24:00",
        "19:60",
    ],
)
def test_curfew_times_are_ascii_hh_mm(api: Api, hhmm: str) -> None:
    before = api.stored()
    url = f"/api/subjects/{api.subject}/curfews"
    refused(api.post(url, {"days": ["mon"], "start": hhmm, "end": "07:00"}))
    refused(api.post(url, {"days": ["mon"], "start": "07:00", "end": hhmm}))
    zone = circle([LON, LAT])
    zone["properties"]["schedule"] = [{"days": ["mon"], "start": hhmm, "end": "07:00"}]
    refused(api.post(f"/api/subjects/{api.subject}/zones", zone))
    assert api.stored() == before
    ok = api.post(url, {"days": ["mon"], "start": "19:00", "end": "07:00"})
    assert ok.status_code == 201 and ok.json()["start"] == "19:00"


def test_report_and_query_times_end_before_2100(api: Api) -> None:
    s = api.subject
    # The probe's compliance report at 2^40 (a year past 9999 in the local calendar).
    r = api.client.get(
        f"/api/reports/subjects/{s}/compliance",
        params={"from": 2**40 - 86400, "to": 2**40},
        headers=api.headers,
    )
    refused(r, "less than 4102444800")
    for path, params in (
        (f"/api/subjects/{s}/trail", {"from": 2**40 - 3600, "to": 2**40, **PURPOSE}),
        ("/api/alerts", {"since": 2**40}),
        (f"/api/web/subjects/{s}/events", {"from": 2**40 - 3600, "to": 2**40}),
        (f"/api/exports/subjects/{s}/evidence.zip", {"from": 2**40 - 3600, "to": 2**40, **PURPOSE}),
    ):
        refused(api.client.get(path, params=params, headers=api.headers))
    r = api.client.get(
        f"/api/reports/subjects/{s}/compliance",
        params={"from": LATEST_S - 86400 - 1, "to": LATEST_S - 1},
        headers=api.headers,
    )
    assert r.status_code == 200, r.text


# ---- zone geometry --------------------------------------------------------------------------


def circle(coordinates: Any, radius: float = 100.0) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": coordinates},
        "properties": {"name": "z", "kind": "exclusion", "radius_m": radius},
    }


def polygon(ring: list[Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"name": "z", "kind": "exclusion"},
    }


def corridor(line: list[Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": line},
        "properties": {"name": "z", "kind": "inclusion", "width_m": 50},
    }


SQUARE = [[LON, LAT], [LON + 0.01, LAT], [LON + 0.01, LAT + 0.01], [LON, LAT + 0.01], [LON, LAT]]
BAD_ZONES: dict[str, Any] = {
    "circle at [999, 999]": circle([999, 999]),
    "circle at [1e308, 0]": circle([1e308, 0]),
    "circle at [1e308, -1e308]": circle([1e308, -1e308]),
    "circle with string coordinates": circle([str(LON), str(LAT)]),
    "circle with boolean coordinates": circle([True, False]),
    "circle with 100,000 extra coordinates": circle([LON, LAT] + [0.0] * 100_000),
    "circle with one coordinate": circle([LON]),
    "circle with a nested position": circle([[LON, LAT]]),
    "polygon with a string vertex": polygon([*SQUARE[:2], "x", *SQUARE[2:]]),
    "polygon with a null vertex": polygon([*SQUARE[:2], None, *SQUARE[2:]]),
    "polygon with a number vertex": polygon([*SQUARE[:2], 5, *SQUARE[2:]]),
    "polygon not closed": polygon([*SQUARE[:-1], [LON + 0.005, LAT]]),
    "polygon with 10,000 vertices": polygon(
        [[LON + i * 1e-7, LAT + (i % 2) * 1e-7] for i in range(10_000)] + [[LON, LAT]]
    ),
    "polygon with 100 holes": {
        **polygon(SQUARE),
        "geometry": {"type": "Polygon", "coordinates": [SQUARE] * 101},
    },
    "corridor with a string vertex": corridor([[LON, LAT], "x"]),
    "corridor out of range": corridor([[LON, LAT], [LON, 91.0]]),
}


@pytest.mark.parametrize("name", sorted(BAD_ZONES))
def test_invalid_zone_geometry_is_refused(api: Api, name: str) -> None:
    before = api.stored()
    feature = BAD_ZONES[name]
    refused(api.post(f"/api/subjects/{api.subject}/zones", feature))
    preview = f"/api/web/subjects/{api.subject}/zone-preview"
    refused(api.post(preview, {"zone": feature}, params=PURPOSE))
    assert api.stored() == before


def test_non_finite_and_surrogate_coordinates_are_refused(api: Api) -> None:
    before = api.stored()
    s = api.subject
    for coords in ("[NaN, NaN]", "[Infinity, 50.7]", f'[{LON}, {LAT}, "\\ud800"]'):
        body = json.dumps(circle([0, 0])).replace("[0, 0]", coords)
        refused(api.raw("POST", f"/api/subjects/{s}/zones", body))
        preview = f"/api/web/subjects/{s}/zone-preview"
        refused(api.raw("POST", preview, f'{{"zone": {body}}}', params=PURPOSE))
    # A lone surrogate as a key: the error names the field without breaking the answer.
    body = json.dumps(circle([LON, LAT])).replace('"name"', '"\\ud800", "name"', 1)
    r = api.raw("POST", f"/api/subjects/{s}/zones", body)
    assert r.status_code == 422
    assert api.stored() == before


def test_valid_zones_of_every_shape_are_accepted_and_zone_names_cannot_be_cleared(
    api: Api,
) -> None:
    url = f"/api/subjects/{api.subject}/zones"
    for feature in (
        circle([LON, LAT]),
        circle([LON, LAT, 12.5]),  # GeoJSON allows an altitude
        polygon(SQUARE),
        corridor([[LON, LAT], [LON + 0.01, LAT]]),
    ):
        r = api.post(url, feature)
        assert r.status_code == 201, r.text
    zone = r.json()["id"]
    before = api.stored()
    r = api.client.patch(f"/api/zones/{zone}", json={"name": None}, headers=api.headers)
    refused(r, "string")
    assert api.stored() == before
    r = api.client.patch(f"/api/zones/{zone}", json={"name": "route"}, headers=api.headers)
    assert r.status_code == 200 and r.json()["properties"]["name"] == "route"


def test_a_subject_holds_a_bounded_number_of_zones(api: Api) -> None:
    from backend.bounds import MAX_ZONES

    url = f"/api/subjects/{api.subject}/zones"
    for _ in range(MAX_ZONES):
        assert api.post(url, circle([LON, LAT])).status_code == 201
    before = api.stored()
    refused(api.post(url, circle([LON, LAT])), str(MAX_ZONES), status=409)
    assert api.stored() == before


# ---- incident files -------------------------------------------------------------------------


def _batch(api: Api, text: str) -> httpx.Response:
    return api.client.post(
        "/api/investigations/batch",
        params={"purpose": "crime data", "reference": "daily"},
        files={"file": ("incidents.geojson", text.encode(), "application/geo+json")},
        headers=api.headers,
    )


def test_incident_files_nested_deeply_or_with_huge_numbers_are_refused(api: Api) -> None:
    deep = '{"type": "FeatureCollection", "features": [' + "[" * 50_000 + "]" * 50_000 + "]}"
    refused(_batch(api, deep), "nested")
    feature = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [LON, LAT]},
        "properties": {"reference": "X", "radius_m": 100, "from": T0 - 3600, "to": T0},
    }
    doc = json.dumps({"type": "FeatureCollection", "features": [feature]})
    refused(_batch(api, doc.replace(str(LON), "1" + "0" * 5000)), "digits")
    refused(_batch(api, doc.replace(str(LON), "1." + "0" * 5000)), "digits")
    r = _batch(api, doc)
    assert r.status_code == 200 and r.json()["errors"] == [], r.text


# ---- text -----------------------------------------------------------------------------------

NUL = "a\x00b"


def test_text_with_a_nul_character_is_refused_on_both_engines_and_changes_nothing(
    api: Api,
) -> None:
    """PostgreSQL cannot store U+0000 in text (it answered 500 to each of these; SQLite stored
    it), so no engine takes it: a 422 sentence, whichever field or query brings it."""
    url = f"/api/subjects/{api.subject}"
    name = api.client.get(url, headers=api.headers).json()["name"]
    before = api.stored()
    refused(api.client.patch(url, json={"name": NUL}, headers=api.headers), "NUL")
    refused(api.client.patch(url, json={"risk_notes": NUL}, headers=api.headers), "NUL")
    refused(api.client.patch(url, json={"tz": NUL}, headers=api.headers))
    refused(api.post("/api/subjects", {"reference": NUL, "name": "x"}), "NUL")
    refused(api.post(f"{url}/orders", {"kind": "bail", "reference": NUL, "starts_at": T0}), "NUL")
    refused(api.post(f"{url}/zones", {**circle([LON, LAT]), "properties": {
        **circle([LON, LAT])["properties"], "name": NUL}}), "NUL")  # fmt: skip
    refused(api.client.get("/api/alerts", params={"type": NUL}, headers=api.headers), "NUL")
    form = {"username": NUL, "password": "x"}
    refused(api.client.post("/api/auth/token", data=form), "NUL")
    assert api.stored() == before
    assert api.client.get(url, headers=api.headers).json()["name"] == name
    listing = api.client.get("/api/subjects", headers=api.headers).json()
    assert not any("\x00" in s["reference"] for s in listing)


def test_no_string_query_parameter_of_any_operation_answers_5xx_to_a_nul(api: Api) -> None:
    """Every GET whose query takes text, its path ids the world's own, each such parameter a
    text with U+0000 in turn."""
    ids = {"subject_id": api.subject}
    asked = 0
    for path, ops in api.client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        op = ops.get("get")
        if op is None or path.endswith("/stream"):
            continue
        params = op.get("parameters", [])
        if any(p["in"] == "path" and p["name"] not in ids for p in params):
            continue
        for p in params:
            schema = p.get("schema", {})
            kinds = {s.get("type") for s in [schema, *schema.get("anyOf", [])]}
            items = {s.get("items", {}).get("type") for s in [schema, *schema.get("anyOf", [])]}
            if p["in"] != "query" or not ({"string"} & (kinds | items)):
                continue
            r = api.client.get(path.format(**ids), params={p["name"]: NUL}, headers=api.headers)
            asked += 1
            assert r.status_code < 500, (path, p["name"], r.status_code, r.text[:200])
    assert asked > 10, asked


# ---- one-time codes -------------------------------------------------------------------------


def test_one_time_codes_in_non_ascii_digits_are_refused_not_a_500(api: Api) -> None:
    """hmac.compare_digest raises TypeError on non-ASCII strings: sign-in, confirm and
    enrol each answered 500 for a code of full-width or Arabic-Indic digits."""
    name = api.world.user(UNIT_A, "officer")
    me = bearer(login(api.client, name))
    r = api.client.post("/api/auth/totp/enroll", json={"password": PASSWORD}, headers=me)
    secret = _b32(r.json()["secret"])
    codes = [digits("123456", FULLWIDTH), digits("123456", ARABIC_INDIC), superscript("123456")]
    for code in codes:
        r = api.client.post("/api/auth/totp/confirm", json={"code": code}, headers=me)
        refused(r, "code does not match", status=403)
    code = totp.totp(secret, api.clock.now())
    assert api.client.post("/api/auth/totp/confirm", json={"code": code}, headers=me).is_success
    api.clock.advance(totp.STEP_S)
    # Each refusal counts toward the lock-out (five): two sign-ins and two enrolments.
    for code in codes[:2]:
        form = {"username": name, "password": PASSWORD, "otp": code}
        refused(api.client.post("/api/auth/token", data=form), "not accepted", status=401)
        body = {"password": PASSWORD, "code": code}
        r = api.client.post("/api/auth/totp/enroll", json=body, headers=me)
        refused(r, "not accepted", status=403)


def _b32(text: str) -> bytes:
    import base64

    return base64.b32decode(text + "=" * (-len(text) % 8))


def test_an_update_changes_the_fields_sent_clears_those_sent_as_null_and_refuses_a_null_name(
    api: Api,
) -> None:
    url = f"/api/subjects/{api.subject}"
    r = api.client.patch(url, json={"risk_notes": "dog at the address"}, headers=api.headers)
    assert r.status_code == 200, r.text
    name = r.json()["name"]
    # A subject's fields cannot be cleared: null is refused, not taken as left out.
    for field in ("name", "risk_notes", "tz"):
        refused(api.client.patch(url, json={field: None}, headers=api.headers), "string")
    r = api.client.patch(url, json={"name": "Renamed"}, headers=api.headers)
    assert (r.json()["name"], r.json()["risk_notes"]) == ("Renamed", "dog at the address")
    assert name != "Renamed"

    r = api.post(
        f"{url}/orders",
        {"kind": "bail", "reference": "U", "starts_at": T0, "ends_at": T0 + YEAR,
         "comms_loss_s": 600, "conditions": "curfew"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    order = f"/api/orders/{r.json()['id']}"
    # Left out: unchanged. Sent as null: cleared (back to the default threshold).
    r = api.client.patch(order, json={"comms_loss_s": None}, headers=api.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["comms_loss_s"], r.json()["ends_at"]) == (None, T0 + YEAR)
    r = api.client.patch(order, json={"ends_at": None}, headers=api.headers)
    assert (r.json()["ends_at"], r.json()["conditions"]) == (None, "curfew")

    r = api.post(f"{url}/zones", {**circle([LON, LAT]), "properties": {
        **circle([LON, LAT])["properties"], "dwell_s": 300}})  # fmt: skip
    assert r.status_code == 201, r.text
    zone = f"/api/zones/{r.json()['id']}"
    r = api.client.patch(zone, json={"dwell_s": None}, headers=api.headers)
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["dwell_s"] is None
