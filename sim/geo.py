"""Local metric frame and the real geography of Bournemouth, Poole and Christchurch.

The simulator works in metres east/north (ENU, up ignored) of a reference point and converts
to WGS84 only at its edges (NMEA, maps, the backend). Over the ~25 km of the conurbation an
equirectangular projection about the reference latitude is within a few centimetres of the
ellipsoidal distance, far below GNSS error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry import Polygon

# WGS84 radii: meridional and prime-vertical radii of curvature at the reference latitude.
_A = 6_378_137.0
_E2 = 6.694379990141316e-3

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class LocalFrame:
    """Equirectangular ENU frame tangent at (lat0, lon0), degrees."""

    lat0: float
    lon0: float

    @property
    def _scale(self) -> tuple[float, float]:
        phi = math.radians(self.lat0)
        w = 1.0 - _E2 * math.sin(phi) ** 2
        m = _A * (1.0 - _E2) / w**1.5  # metres per radian of latitude
        n = _A / math.sqrt(w)  # metres per radian of longitude, times cos(lat)
        return m * math.pi / 180.0, n * math.cos(phi) * math.pi / 180.0

    def to_xy(self, lat: ArrayLike, lon: ArrayLike) -> tuple[F64, F64]:
        """Degrees -> metres east, north of the reference point (vectorized)."""
        my, mx = self._scale
        return (
            (np.asarray(lon, dtype=np.float64) - self.lon0) * mx,
            (np.asarray(lat, dtype=np.float64) - self.lat0) * my,
        )

    def to_latlon(self, x: ArrayLike, y: ArrayLike) -> tuple[F64, F64]:
        """Metres east, north -> (lat, lon) degrees (vectorized)."""
        my, mx = self._scale
        return (
            self.lat0 + np.asarray(y, dtype=np.float64) / my,
            self.lon0 + np.asarray(x, dtype=np.float64) / mx,
        )

    def polygon_to_xy(self, poly: Polygon) -> Polygon:
        """A lon/lat shapely polygon -> the same polygon in this frame's metres."""
        return shapely.transform(poly, lambda c: np.column_stack(self.to_xy(c[:, 1], c[:, 0])))


def haversine_m(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> F64:
    """Great-circle distance in metres (mean Earth radius), for checking the frame."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * 6_371_008.8 * np.arcsin(np.sqrt(h)), dtype=np.float64)


# The land between Poole Harbour and Christchurch Harbour, north to Ferndown's southern edge,
# as (lon, lat): the Poole Bay shore from Mudeford to the Sandbanks ferry, the inner shore of
# Poole Harbour past Poole Quay, and Holes Bay cut out. Traced by hand at roughly 200 m
# resolution from the positions of named landmarks (piers, chines, quays), good enough for a
# simulated road network; it is not a survey.
LAND_LONLAT: tuple[tuple[float, float], ...] = (
    (-2.030, 50.775),  # north-west: Upton / Creekmoor
    (-1.720, 50.775),  # north-east: Hurn / Bransgore side
    (-1.720, 50.7380),  # Highcliffe shore
    (-1.7380, 50.7280),  # Mudeford quay
    (-1.7520, 50.7265),  # Christchurch Harbour north shore
    (-1.7750, 50.7290),
    (-1.7870, 50.7250),  # Tuckton / Wick
    (-1.7880, 50.7195),  # Southbourne cliffs, east end
    (-1.8000, 50.7205),
    (-1.8200, 50.7212),
    (-1.8430, 50.7197),  # Boscombe Pier
    (-1.8600, 50.7185),
    (-1.8755, 50.7163),  # Bournemouth Pier
    (-1.8850, 50.7145),  # Durley Chine
    (-1.9050, 50.7090),  # Branksome Chine
    (-1.9250, 50.6995),  # Canford Cliffs
    (-1.9360, 50.6900),
    (-1.9490, 50.6800),  # Sandbanks ferry
    (-1.9530, 50.6830),  # harbour side of Sandbanks
    (-1.9460, 50.6930),
    (-1.9500, 50.7000),  # Lilliput
    (-1.9580, 50.7060),
    (-1.9660, 50.7115),  # Whitecliff
    (-1.9780, 50.7110),
    (-1.9880, 50.7110),  # Poole Quay
    (-1.9920, 50.7140),  # Poole bridge, east side of the mouth of Holes Bay
    (-1.9900, 50.7250),  # Holes Bay east shore
    (-1.9920, 50.7350),  # Holes Bay north end
    (-2.0030, 50.7320),  # Holes Bay west shore
    (-2.0020, 50.7200),
    (-1.9970, 50.7140),  # Hamworthy, west side of the bridge
    (-2.0050, 50.7070),  # Rockley / Hamworthy shore
    (-2.0200, 50.7060),
    (-2.0300, 50.7120),  # Lytchett Bay side
)

# Town centres (exclusion zones and urban canyons), lat/lon of the shopping street.
TOWN_CENTRES: dict[str, tuple[float, float]] = {
    "bournemouth-centre": (50.7200, -1.8795),  # The Square
    "poole-centre": (50.7165, -1.9830),  # High Street / Dolphin Centre
    "boscombe": (50.7255, -1.8420),  # Christchurch Road precinct
    "christchurch": (50.7345, -1.7785),  # High Street
    "westbourne": (50.7215, -1.9035),  # Poole Road
}

# Large open spaces (open-sky environment): centre lat/lon and radius in metres.
OPEN_SPACES: dict[str, tuple[float, float, float]] = {
    "canford-heath": (50.7500, -1.9500, 900.0),
    "talbot-heath": (50.7380, -1.9050, 450.0),
    "meyrick-park": (50.7290, -1.8850, 350.0),
    "kings-park": (50.7330, -1.8450, 350.0),
    "poole-park": (50.7190, -1.9710, 300.0),
    "southbourne-overcliff": (50.7225, -1.8100, 200.0),
    "hurn-fields": (50.7650, -1.7650, 900.0),
}

# The probation office: placed near Bournemouth town centre (illustrative location).
PROBATION_OFFICE: tuple[float, float] = (50.7235, -1.8710)


def land_polygon_lonlat() -> Polygon:
    poly = Polygon(LAND_LONLAT)
    if not poly.is_valid:
        raise ValueError(f"land polygon invalid: {shapely.is_valid_reason(poly)}")
    return poly
