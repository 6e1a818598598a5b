"""The place an investigation asks about: a circle (point + radius) or a polygon (GeoJSON),
in metres on a local plane centred on the place.

The projection is the rules' equirectangular one (backend/rules/geo.py) about the place's
centre: over the few kilometres a query reaches, its distortion is far below GNSS error, and
every distance becomes a plain Euclidean one that shapely 2 vectorizes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from backend.rules.geo import Projection
from backend.storage.schema import CELL_E7, cell_of

F64 = npt.NDArray[np.float64]
MAX_RADIUS_M = 50_000.0
# A smaller circle is below any position's accuracy, and a subnormal radius makes GEOS fail.
MIN_RADIUS_M = 1.0
MAX_VERTICES = 10_000
# Circles become 256-gon polygons: the chord error is r * (1 - cos(pi / 256)), under
# 0.01 % of the radius, so an analytic circle and this polygon agree to centimetres.
CIRCLE_QUAD_SEGS = 64
# Past this many 0.01-degree cells the query scans the time window with a bounding box.
MAX_CELLS = 400


class AreaError(ValueError):
    """A place that cannot be queried (bad coordinates, invalid polygon...)."""


@dataclass(frozen=True)
class Area:
    """A place in local metres (`geom`, prepared) and as given (`geojson`, for the record)."""

    geom: BaseGeometry
    proj: Projection
    geojson: dict[str, Any]
    radius_m: float | None = None  # set for circles

    @classmethod
    def circle(cls, lat: float, lon: float, radius_m: float) -> Area:
        _check_point(lon, lat)
        if not (MIN_RADIUS_M <= radius_m <= MAX_RADIUS_M) or not math.isfinite(radius_m):
            raise AreaError(f"radius_m must be {MIN_RADIUS_M:.0f} to {MAX_RADIUS_M:.0f} metres")
        proj = Projection(lat, lon)
        geom = shapely.Point(0.0, 0.0).buffer(radius_m, quad_segs=CIRCLE_QUAD_SEGS)
        shapely.prepare(geom)
        gj = {"type": "Point", "coordinates": [lon, lat]}
        return cls(geom, proj, {"geometry": gj, "radius_m": radius_m}, radius_m)

    @classmethod
    def polygon(cls, geometry: Mapping[str, Any]) -> Area:
        """A GeoJSON Polygon or MultiPolygon ([lon, lat] coordinates)."""
        kind = geometry.get("type")
        coords: Any = geometry.get("coordinates")
        if kind == "Polygon":
            polys = [coords]
        elif kind == "MultiPolygon":
            polys = coords
        else:
            raise AreaError("the area must be a GeoJSON Polygon or MultiPolygon")
        if not isinstance(polys, list) or not polys:
            raise AreaError("the polygon has no coordinates")
        flat = [pt for poly in polys for ring in _rings(poly) for pt in ring]
        if len(flat) > MAX_VERTICES:
            raise AreaError(f"at most {MAX_VERTICES} vertices")
        for pt in flat:
            _check_point(*_lonlat(pt))
        lons = [_lonlat(p)[0] for p in flat]
        lats = [_lonlat(p)[1] for p in flat]
        if max(lons) - min(lons) > 180:
            raise AreaError("polygons across the antimeridian are not supported")
        proj = Projection((min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2)
        parts = []
        for poly in polys:
            rings = [_to_xy(proj, ring) for ring in _rings(poly)]
            parts.append(shapely.Polygon(rings[0], rings[1:]))
        geom: BaseGeometry = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
        if not geom.is_valid or geom.is_empty or geom.area <= 0:
            raise AreaError("the polygon is not valid (self-intersecting, degenerate or empty)")
        xmin, ymin, xmax, ymax = geom.bounds
        if max(xmax - xmin, ymax - ymin) > 2 * MAX_RADIUS_M:
            raise AreaError(f"the polygon spans more than {2 * MAX_RADIUS_M / 1000:.0f} km")
        shapely.prepare(geom)
        return cls(geom, proj, {"geometry": dict(geometry)})

    # ---- geometry ------------------------------------------------------------------------

    def xy(self, lat_e7: npt.NDArray[Any], lon_e7: npt.NDArray[Any]) -> tuple[F64, F64]:
        x, y = self.proj.xy(lat_e7 / 1e7, lon_e7 / 1e7)
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def lonlat(self, x: float, y: float) -> tuple[float, float]:
        return self.proj.lonlat(x, y)

    def signed_distance(self, x: F64, y: F64) -> F64:
        """Distance of each point to the area's edge in metres, negative inside."""
        if len(x) == 0:
            return np.zeros(0)
        if self.radius_m is not None:
            return np.asarray(np.hypot(x, y) - self.radius_m, dtype=np.float64)
        pts: Any = shapely.points(x, y)
        inside = shapely.contains_xy(self.geom, x, y)
        edge = shapely.distance(self.geom.boundary, pts)
        return np.asarray(np.where(inside, -edge, edge), dtype=np.float64)

    def bounds_e7(self, margin_m: float) -> tuple[int, int, int, int]:
        """(lat_lo, lat_hi, lon_lo, lon_hi) in 1e-7 degree around the area plus a margin."""
        xmin, ymin, xmax, ymax = self.geom.bounds
        lon_lo, lat_lo = self.proj.lonlat(xmin - margin_m, ymin - margin_m)
        lon_hi, lat_hi = self.proj.lonlat(xmax + margin_m, ymax + margin_m)
        return (
            max(math.floor(lat_lo * 1e7), -900_000_000),
            min(math.ceil(lat_hi * 1e7), 900_000_000),
            max(math.floor(lon_lo * 1e7), -1_800_000_000),
            min(math.ceil(lon_hi * 1e7), 1_800_000_000),
        )

    def cells(self, margin_m: float) -> list[int] | None:
        """The 0.01-degree cells (positions.cell) covering the area plus a margin; None when
        there are too many for an IN list to beat a bounding-box scan."""
        lat_lo, lat_hi, lon_lo, lon_hi = self.bounds_e7(margin_m)
        rows = range(lat_lo // CELL_E7, lat_hi // CELL_E7 + 1)
        cols = range(lon_lo // CELL_E7, lon_hi // CELL_E7 + 1)
        if len(rows) * len(cols) > MAX_CELLS:
            return None
        return [cell_of(a * CELL_E7, o * CELL_E7) for a in rows for o in cols]

    def describe(self) -> dict[str, Any]:
        """The place as recorded in results, audit records and manifests."""
        return dict(self.geojson)


def _lonlat(pt: Any) -> tuple[float, float]:
    if not isinstance(pt, Sequence) or isinstance(pt, str) or len(pt) < 2:
        raise AreaError(f"bad coordinate {pt!r} (GeoJSON positions are [lon, lat])")
    try:
        return float(pt[0]), float(pt[1])
    except (TypeError, ValueError) as e:
        raise AreaError(f"bad coordinate {pt!r}") from e


def _check_point(lon: float, lat: float) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise AreaError("coordinates must be finite numbers")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise AreaError(f"({lon}, {lat}) is not a [lon, lat] position")
    if abs(lat) > 85:
        raise AreaError("latitudes beyond 85 degrees are not supported")


def _rings(poly: Any) -> list[Any]:
    if not isinstance(poly, list) or not poly:
        raise AreaError("a polygon is a list of linear rings")
    for ring in poly:
        if not isinstance(ring, list) or len(ring) < 4:
            raise AreaError("a linear ring has at least 4 positions")
        if _lonlat(ring[0]) != _lonlat(ring[-1]):
            raise AreaError("a linear ring must end where it starts")
    return list(poly)


def _to_xy(proj: Projection, ring: Sequence[Any]) -> list[tuple[float, float]]:
    out = []
    for pt in ring:
        lon, lat = _lonlat(pt)
        x, y = proj.xy(lat, lon)
        out.append((float(x), float(y)))
    return out
