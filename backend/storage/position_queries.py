"""The two position queries everything else builds on: a device's trail in a time range
((device, ts) index) and everyone within R metres of a point in a time window ((cell, ts)
index: the grid cells covering the circle, then an exact distance test). docs/scaling.md
has the measurement behind the index choice."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Connection, Row, select

from backend.storage.schema import CELL_E7, cell_of, positions

EARTH_RADIUS_M = 6_371_008.8
M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180
# Past this many cells a plain time-window scan with a bounding box is as good.
MAX_CELLS = 400


@dataclass(frozen=True)
class Hit:
    device: int
    ts: int
    lat_e7: int
    lon_e7: int
    acc_dm: int
    distance_m: float


def distance_m(lat1_e7: int, lon1_e7: int, lat2_e7: int, lon2_e7: int) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(lat1_e7 / 1e7), math.radians(lat2_e7 / 1e7)
    dp = p2 - p1
    dl = math.radians((lon2_e7 - lon1_e7) / 1e7)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def trail(conn: Connection, device: int, t0: int, t1: int) -> list[Row[tuple[int, ...]]]:
    """A device's positions with t0 <= ts <= t1, in event-time order."""
    return list(
        conn.execute(
            select(positions)
            .where(positions.c.device == device, positions.c.ts.between(t0, t1))
            .order_by(positions.c.ts, positions.c.id)
        )
    )


def bounding_box(lat_e7: int, lon_e7: int, radius_m: float) -> tuple[int, int, int, int]:
    dlat = radius_m / M_PER_DEG_LAT
    coslat = max(math.cos(math.radians(lat_e7 / 1e7)), 1e-6)
    dlon = dlat / coslat
    return (
        max(lat_e7 - math.ceil(dlat * 1e7), -900_000_000),
        min(lat_e7 + math.ceil(dlat * 1e7), 900_000_000),
        max(lon_e7 - math.ceil(dlon * 1e7), -1_800_000_000),
        min(lon_e7 + math.ceil(dlon * 1e7), 1_800_000_000),
    )


def covering_cells(lat_e7: int, lon_e7: int, radius_m: float) -> list[int]:
    lat_lo, lat_hi, lon_lo, lon_hi = bounding_box(lat_e7, lon_e7, radius_m)
    return [
        cell_of(la * CELL_E7, lo * CELL_E7)
        for la in range(lat_lo // CELL_E7, lat_hi // CELL_E7 + 1)
        for lo in range(lon_lo // CELL_E7, lon_hi // CELL_E7 + 1)
    ]


def near(
    conn: Connection, lat_e7: int, lon_e7: int, radius_m: float, t0: int, t1: int
) -> list[Hit]:
    """Every position within radius_m of the point with t0 <= ts <= t1, nearest first."""
    lat_lo, lat_hi, lon_lo, lon_hi = bounding_box(lat_e7, lon_e7, radius_m)
    cells = covering_cells(lat_e7, lon_e7, radius_m)
    c = positions.c
    q = select(c.device, c.ts, c.lat_e7, c.lon_e7, c.acc_dm).where(
        c.ts.between(t0, t1),
        c.lat_e7.between(lat_lo, lat_hi),
        c.lon_e7.between(lon_lo, lon_hi),
    )
    if len(cells) <= MAX_CELLS:
        q = q.where(c.cell.in_(cells))
    hits = []
    for r in conn.execute(q):
        d = distance_m(lat_e7, lon_e7, r.lat_e7, r.lon_e7)
        if d <= radius_m:
            hits.append(Hit(r.device, r.ts, r.lat_e7, r.lon_e7, r.acc_dm, d))
    hits.sort(key=lambda h: (h.distance_m, h.ts, h.device))
    return hits
