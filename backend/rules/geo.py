"""Zones as shapely 2 geometries in metres, and the spatial index the zone rule queries.

Positions are projected onto a local plane (equirectangular about an origin near the
subject's zones): over the tens of kilometres a subject's zones span, the distortion is well
under 0.1 %, far below GNSS error, and it keeps every distance a plain Euclidean one that
shapely can vectorize. Zone geometry comes in as GeoJSON (lon, lat) and is stored that way."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from backend.rules.schedule import Weekly

EARTH_RADIUS_M = 6_371_008.8
M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180

INCLUSION = "inclusion"
EXCLUSION = "exclusion"
HOME = "home"  # the subject's home: a circle the curfew rule uses for GPS presence
ZONE_KINDS = (INCLUSION, EXCLUSION, HOME)
SHAPES = ("circle", "polygon", "corridor")
# How far from its home unit a tag is heard (REFERENCES.md: a bracelet's RF range ~23-30 m):
# where a tag the unit hears may be, around its home's point (home_point).
HOME_RANGE_M = 30.0
# With several home zones (two addresses), the home a unit's presence report speaks for is
# the one nearest the tag's last fix before it, if at most this far (which_home): a tag in a
# car or on a bus fixing at its moving cadence (60 s) goes up to ~1.8 km between its last fix
# and its unit's range.
HOME_FIX_M = 2000.0

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Projection:
    lat0: float
    lon0: float

    @property
    def kx(self) -> float:
        return M_PER_DEG_LAT * math.cos(math.radians(self.lat0))

    def xy(self, lat: F64 | float, lon: F64 | float) -> tuple[Any, Any]:
        return (np.asarray(lon) - self.lon0) * self.kx, (np.asarray(lat) - self.lat0) * (
            M_PER_DEG_LAT
        )

    def lonlat(self, x: float, y: float) -> tuple[float, float]:
        return self.lon0 + x / self.kx, self.lat0 + y / M_PER_DEG_LAT


def home_point(shape: str, geometry: Any) -> tuple[float, float] | None:
    """(lon, lat) of a home zone, where its home unit is taken to be: a circle's centre, else
    the mean of its first ring (None for geometry that is not a zone's)."""
    try:
        coords = geometry["coordinates"]
        if shape == "circle":
            return float(coords[0]), float(coords[1])
        ring = coords[0] if shape == "polygon" else coords
        pts = ring[:-1] if shape == "polygon" and len(ring) > 1 else ring
        return (
            sum(float(p[0]) for p in pts) / len(pts),
            sum(float(p[1]) for p in pts) / len(pts),
        )
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError):
        return None


def great_circle(lat0: float, lon0: float, lat1: float, lon1: float) -> float:
    """Haversine metres between two (lat, lon) points in degrees."""
    p0, p1 = math.radians(lat0), math.radians(lat1)
    a = (
        math.sin((p1 - p0) / 2) ** 2
        + math.cos(p0) * math.cos(p1) * math.sin(math.radians(lon1 - lon0) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def which_home(
    homes: Sequence[tuple[float, float]],
    fix: tuple[float, float] | None,
    max_m: float = HOME_FIX_M,
) -> int | None:
    """Index in `homes` ((lat, lon) each) of the home whose unit reported the tag in: the only
    one; with several, the one nearest `fix` (lat, lon: the tag's last fix before the report)
    if at most `max_m` from it. None without a home, or with several and no such fix: which
    zone a unit sits in is not configured, and the tag came into its range since that fix."""
    if len(homes) <= 1:
        return 0 if homes else None
    if fix is None:
        return None
    d, i = min((great_circle(fix[0], fix[1], lat, lon), i) for i, (lat, lon) in enumerate(homes))
    return i if d <= max_m else None


@dataclass(frozen=True)
class ZoneSpec:
    """A zone as configured. `geometry` is GeoJSON: a Point (circle centre, with radius_m), a
    Polygon, or a LineString (corridor, with width_m). `buffer_m` grows it (a victim's
    address zone: the address plus a buffer). `schedule` empty = always active."""

    id: int
    kind: str
    shape: str
    geometry: Mapping[str, Any]
    radius_m: float = 0.0
    width_m: float = 0.0
    buffer_m: float = 0.0
    schedule: tuple[Weekly, ...] = ()
    dwell_s: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ZONE_KINDS:
            raise ValueError(f"zone kind must be one of {ZONE_KINDS}")
        if self.shape not in SHAPES:
            raise ValueError(f"zone shape must be one of {SHAPES}")
        want = {"circle": "Point", "polygon": "Polygon", "corridor": "LineString"}[self.shape]
        if self.geometry.get("type") != want:
            raise ValueError(f"a {self.shape} zone needs a GeoJSON {want}")
        # At least a metre: less is below any fix's accuracy, and a subnormal size makes
        # GEOS fail when the zone is built.
        if self.shape == "circle" and not self.radius_m >= 1:
            raise ValueError("a circle zone needs radius_m of at least 1 m")
        if self.shape == "corridor" and not self.width_m >= 1:
            raise ValueError("a corridor zone needs width_m of at least 1 m")
        if self.buffer_m < 0:
            raise ValueError("buffer_m must be >= 0")

    def anchor(self) -> tuple[float, float]:
        """(lat, lon) of a point of the zone, for choosing a projection origin."""
        coords: Any = self.geometry["coordinates"]
        while isinstance(coords[0], (list, tuple)):
            coords = coords[0]
        return float(coords[1]), float(coords[0])

    def to_metres(self, proj: Projection) -> BaseGeometry:
        coords: Any = self.geometry["coordinates"]
        if self.shape == "circle":
            x, y = proj.xy(float(coords[1]), float(coords[0]))
            geom = shapely.Point(float(x), float(y)).buffer(self.radius_m, quad_segs=16)
        elif self.shape == "polygon":
            rings = [_ring(proj, ring) for ring in coords]
            geom = shapely.Polygon(rings[0], rings[1:])
            if not geom.is_valid:
                raise ValueError("polygon is not valid (self-intersecting or degenerate)")
        else:
            line = shapely.LineString(_ring(proj, coords))
            geom = line.buffer(self.width_m / 2, quad_segs=8)
        if self.buffer_m:
            geom = geom.buffer(self.buffer_m, quad_segs=16)
        return geom


def _ring(proj: Projection, ring: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    if len(ring) < 2:
        raise ValueError("too few coordinates")
    out = []
    for pt in ring:
        if len(pt) < 2 or not (-180 <= pt[0] <= 180 and -90 <= pt[1] <= 90):
            raise ValueError(f"bad coordinate {pt!r} (GeoJSON is [lon, lat])")
        x, y = proj.xy(float(pt[1]), float(pt[0]))
        out.append((float(x), float(y)))
    return out


@dataclass
class ZoneIndex:
    """Zones compiled to metres, with an STRtree over them and their boundaries."""

    proj: Projection
    specs: list[ZoneSpec]
    geoms: list[BaseGeometry] = field(default_factory=list)
    tree: shapely.STRtree | None = None

    @classmethod
    def build(cls, specs: Sequence[ZoneSpec], proj: Projection | None = None) -> ZoneIndex:
        if proj is None:
            lat, lon = specs[0].anchor() if specs else (0.0, 0.0)
            proj = Projection(lat, lon)
        geoms = [s.to_metres(proj) for s in specs]
        for g in geoms:
            shapely.prepare(g)
        tree = shapely.STRtree(geoms) if geoms else None
        return cls(proj, list(specs), geoms, tree)

    def near(
        self, x: F64, y: F64, reach: F64 | float
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], F64]:
        """Every (point, zone) pair within `reach` metres, with the signed distance of the
        point to the zone's edge (negative inside). One vectorized tree query."""
        if self.tree is None or len(x) == 0:
            empty = np.zeros(0, dtype=np.intp)
            return empty, empty, np.zeros(0)
        pts: Any = shapely.points(x, y)
        pi, zi = self.tree.query(pts, predicate="dwithin", distance=reach)
        if len(pi) == 0:
            return pi, zi, np.zeros(0)
        zones = np.asarray(self.geoms, dtype=object)[zi]
        inside = shapely.contains_xy(zones, x[pi], y[pi])
        edge = shapely.distance(shapely.boundary(zones), pts[pi])
        return pi, zi, np.where(inside, -edge, edge)

    def crossings(self, x0: F64, y0: F64, x1: F64, y1: F64) -> list[tuple[int, int, float, float]]:
        """Segments between consecutive fixes that pass through a zone: (segment, zone,
        fraction along the segment where it enters, where it leaves)."""
        if self.tree is None or len(x0) == 0:
            return []
        segs: Any = shapely.linestrings(
            np.stack([np.stack([x0, y0], axis=1), np.stack([x1, y1], axis=1)], axis=1)
        )
        si, zi = self.tree.query(segs, predicate="intersects")
        if len(si) == 0:
            return []
        # Vectorized: the part of each segment inside each zone it meets, and where its
        # points lie along the segment (dot product with the direction, as a fraction).
        parts = shapely.intersection(segs[si], np.asarray(self.geoms, dtype=object)[zi])
        coords, which = shapely.get_coordinates(parts, return_index=True)
        if len(which) == 0:
            return []
        ax, ay, bx, by = x0[si], y0[si], x1[si], y1[si]
        dx, dy = bx - ax, by - ay
        norm = dx * dx + dy * dy
        safe = np.where(norm > 0, norm, 1.0)
        f = ((coords[:, 0] - ax[which]) * dx[which] + (coords[:, 1] - ay[which]) * dy[which]) / (
            safe[which]
        )
        f = np.clip(f, 0.0, 1.0)
        lo = np.full(len(si), np.inf)
        hi = np.full(len(si), -np.inf)
        np.minimum.at(lo, which, f)
        np.maximum.at(hi, which, f)
        ok = (norm > 0) & np.isfinite(lo)
        return [
            (int(s_), int(z_), float(a), float(b))
            for s_, z_, a, b, good in zip(si, zi, lo, hi, ok, strict=True)
            if good
        ]
