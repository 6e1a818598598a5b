"""Local metric frame and the real geography."""

from __future__ import annotations

import numpy as np
import shapely

from sim import geo


def test_frame_round_trip_and_distances_match_haversine() -> None:
    f = geo.LocalFrame(50.72, -1.8795)
    rng = np.random.default_rng(1)
    lat = 50.72 + rng.uniform(-0.06, 0.06, 1000)
    lon = -1.8795 + rng.uniform(-0.16, 0.16, 1000)
    x, y = f.to_xy(lat, lon)
    lat2, lon2 = f.to_latlon(x, y)
    assert np.allclose(lat, lat2, atol=1e-12) and np.allclose(lon, lon2, atol=1e-12)
    d_frame = np.hypot(x, y)
    d_true = geo.haversine_m(50.72, -1.8795, lat, lon)
    # Within 0.5 % over the conurbation (haversine uses a sphere, the frame the ellipsoid).
    assert np.max(np.abs(d_frame - d_true) / np.maximum(d_true, 1)) < 0.005


def test_bournemouth_to_poole_is_about_seven_km() -> None:
    (b_lat, b_lon), (p_lat, p_lon) = (
        geo.TOWN_CENTRES["bournemouth-centre"],
        geo.TOWN_CENTRES["poole-centre"],
    )
    f = geo.LocalFrame(b_lat, b_lon)
    x, y = f.to_xy(p_lat, p_lon)
    assert 7000 < float(np.hypot(x, y)) < 7600


def test_land_polygon_has_towns_on_land_and_water_off_it() -> None:
    land = geo.land_polygon_lonlat()
    for lat, lon in [*geo.TOWN_CENTRES.values(), geo.PROBATION_OFFICE]:
        assert shapely.contains_xy(land, lon, lat)
    for lat, lon, _ in geo.OPEN_SPACES.values():
        assert shapely.contains_xy(land, lon, lat)
    sea_off_pier = (50.705, -1.875)
    poole_harbour = (50.695, -1.980)
    holes_bay = (50.728, -1.997)
    for lat, lon in (sea_off_pier, poole_harbour, holes_bay):
        assert not shapely.contains_xy(land, lon, lat)
