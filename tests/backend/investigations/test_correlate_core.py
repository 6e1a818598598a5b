"""The correlation engine on the staged scenario, without the API: statuses, closest
approach, interpolation, home presence, tag reassignment, visibility."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import Engine

from backend.investigations.area import Area, AreaError
from backend.investigations.correlate import Params, SubjectHit, correlate, whereabouts
from backend.security.access import User, visible_subject_ids
from tests.backend.api.world import World
from tests.backend.investigations.scenario import (
    INCIDENT,
    RADIUS_M,
    W0,
    W1,
    Truth,
    at,
)

AREA = Area.circle(INCIDENT[0], INCIDENT[1], RADIUS_M)


def _by_ref(hits: list[SubjectHit]) -> dict[str, SubjectHit]:
    return {h.reference: h for h in hits}


def test_everyone_near_the_incident_is_found_with_the_right_status(
    api_engine: Engine, truth: Truth
) -> None:
    with api_engine.connect() as conn:
        hits = correlate(conn, AREA, W0, W1)
    found = {h.reference: h.status for h in hits}
    expected = dict(truth.expected_a) | dict(truth.expected_b)
    assert found == expected
    by = _by_ref(hits)
    walk = by["INV-WALK"]
    # 50 m from the centre at the middle of the walk (t = W0 + 300 + 1500).
    assert walk.closest.source == "fix" and walk.closest.edge_m == pytest.approx(-150, abs=2)
    assert abs(walk.closest.t - (W0 + 1800)) <= 60
    assert walk.inside_s == pytest.approx(2 * (200**2 - 50**2) ** 0.5, rel=0.05)
    sparse = by["INV-SPARSE"]
    assert sparse.closest.source == "interpolated" and sparse.closest.gap_s == 600
    assert sparse.closest.distance_m == 0 and sparse.closest.edge_m == pytest.approx(-200, abs=1)
    assert sparse.closest.t == pytest.approx(W0 + 1300, abs=2)
    assert [e["t"] for e in sparse.closest.evidence] == [W0 + 1000, W0 + 1600]
    assert sparse.inside_s == pytest.approx(300, abs=3)
    edge = by["INV-EDGE"]
    assert edge.closest.distance_m == pytest.approx(30, abs=1)
    assert edge.closest.accuracy_m == 50 and edge.closest.source == "fix"
    home = by["INV-HOME"]
    assert home.closest.source == "home_presence" and home.inside_s == W1 - W0
    assert home.closest.edge_m == pytest.approx(-100, abs=1)
    moved = by["MOVED-A"]
    assert moved.devices == [truth.tags.get("MOVED-A", moved.devices[0])]
    assert "MOVED-B" not in found
    # The path runs through the window with interpolated ends.
    assert walk.path[0][2] >= W0 and walk.path[-1][2] <= W1 and len(walk.path) >= 50


def test_the_search_is_limited_to_visible_subjects(
    api_engine: Engine, truth: Truth, world: World
) -> None:
    for username, expected in (
        ("officer.turnaround", truth.expected_a),
        ("officer.mosovo", truth.expected_b),
        ("partner.probation", truth.expected_partner),
        ("administrator.turnaround", {}),
    ):
        uid, unit, role = world.users[username]
        user = User(uid, username, unit, role)
        with api_engine.connect() as conn:
            visible = visible_subject_ids(user, "trail", W1 + 7200)
            hits = correlate(conn, AREA, W0, W1, visible=visible)
        assert {h.reference: h.status for h in hits} == expected, username


def test_a_polygon_finds_the_same_as_the_circle_it_approximates(
    api_engine: Engine, truth: Truth
) -> None:
    ring = []
    for k in range(73):
        a = 2 * math.pi * (k % 72) / 72
        lat_e7, lon_e7 = at(RADIUS_M * math.cos(a), RADIUS_M * math.sin(a))
        ring.append([lon_e7 / 1e7, lat_e7 / 1e7])
    poly = Area.polygon({"type": "Polygon", "coordinates": [ring]})
    with api_engine.connect() as conn:
        circle_hits = {h.reference: h.status for h in correlate(conn, AREA, W0, W1)}
        poly_hits = {h.reference: h.status for h in correlate(conn, poly, W0, W1)}
    assert poly_hits == circle_hits


def test_accuracy_multiplier_and_gap_change_the_answer(api_engine: Engine, truth: Truth) -> None:
    with api_engine.connect() as conn:
        strict = {h.reference for h in correlate(conn, AREA, W0, W1, Params(k=0.5))}
        wide_gap = {h.reference for h in correlate(conn, AREA, W0, W1, Params(max_gap_s=3600))}
        short_gap = {h.reference for h in correlate(conn, AREA, W0, W1, Params(max_gap_s=300))}
    assert "INV-EDGE" not in strict  # 30 m out with 50 m accuracy: only with k >= 0.6
    assert "INV-GAP" in wide_gap  # 30 minutes between fixes interpolated when allowed
    assert "INV-SPARSE" not in short_gap


def test_whereabouts_gives_the_exculpatory_evidence(api_engine: Engine, truth: Truth) -> None:
    with api_engine.connect() as conn:
        far = whereabouts(conn, truth.subjects["INV-FAR"], AREA, W0, W1)
        gap = whereabouts(conn, truth.subjects["INV-GAP"], AREA, W0, W1)
        walk = whereabouts(conn, truth.subjects["INV-WALK"], AREA, W0, W1)
    assert far.status == "not_within" and far.coverage == 1.0 and far.gaps == []
    assert far.closest is not None
    assert far.closest.distance_m == pytest.approx((2000**2 * 2) ** 0.5 - 200, abs=2)
    assert far.before is not None and far.before["t"] <= W0
    assert far.after is not None and far.after["t"] >= W1
    assert far.fixes_in_window == 61 and "not within" in far.summary.lower()
    # Two lone fixes 30 minutes apart: not placed there, but the evidence covers almost
    # nothing of the window, and the answer says so.
    assert gap.status == "not_within" and gap.coverage < 0.01 and len(gap.gaps) == 3
    assert not gap.complete and far.complete and "gap" in gap.summary
    assert walk.status == "within"


def test_with_two_homes_the_stay_is_at_the_one_the_tag_walked_to(
    api_engine: Engine, truth: Truth
) -> None:
    # Its first home is 60 m from the centre, but it walked to its second, 5 km away, before
    # its home unit reported it in: the stay, its evidence and the summary are there.
    with api_engine.connect() as conn:
        out = whereabouts(conn, truth.subjects["INV-TWO-HOMES-OUT"], AREA, W0, W1)
    assert out.status == "not_within" and out.coverage == 1.0
    (stay,) = out.home_stays
    assert stay["edge_m"] == pytest.approx(5000 - RADIUS_M, abs=2)
    assert out.home_distance_m == pytest.approx(-(RADIUS_M - 60), abs=2)  # the nearest home
    assert "home 4,800 m from the area" in out.summary


def test_bad_places_are_refused() -> None:
    with pytest.raises(AreaError):
        Area.circle(91, 0, 100)
    with pytest.raises(AreaError):
        Area.circle(50, 0, -1)
    bowtie = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]
    with pytest.raises(AreaError):
        Area.polygon({"type": "Polygon", "coordinates": [bowtie]})
    with pytest.raises(AreaError):
        Area.polygon({"type": "Point", "coordinates": [0, 0]})
