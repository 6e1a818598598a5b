"""Pushing a subject's exclusion zones to their tag (cmd_zone, docs/protocol.md), so the tag
samples fast near a zone and uploads an entry at once (docs/firmware.md, "Zones on the tag").

The tag watches circles (8 slots; its heap has no room for vertex lists, docs/firmware.md,
"Heap"), so every exclusion zone is sent as circles that cover it: a circle zone as itself
(radius plus buffer), a polygon cut into strips across its longest side and a corridor
into lengths along its line, each piece's smallest enclosing circle. A cover is never
smaller than its zone, so the tag never misses being near or in one; it is looser than
the zone, which costs only fast fixes and prompt uploads where they were not needed. The
slots left after one circle per zone go one at a time, while a cover adds more than half its
zone's area, to the zone whose cover loses the most excess area by it; more than 8 zones are
merged, the pair whose enclosing circle adds the least area first, until 8 circles cover
them all (`tag_circles`).

`zone_command` builds one signed COMMAND frame with the circles (unused slots cleared) and
records it in `device_commands`, whose per-device sequence it shares with the rules'
commands, with a digest of the zone set as its value. Send it on the tag's down topic
whenever the subject's zones or tag change: `zone_update` gives the frame only when the
digest differs from the last cmd_zone recorded for the device (the rules sink calls it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from shapely.ops import substring
from sqlalchemy import Connection, select

from backend.device_commands import digest, numbered
from backend.rules.geo import EXCLUSION, Projection, ZoneSpec
from backend.rules.store import zone_spec
from backend.storage.schema import device_commands, zones
from firmware import frame as fr

SLOTS = 8
# A cover adding more than this share of its zone's area gets another circle while slots
# last: tighter saves the tag fast fixes and uploads, each circle costs it heap (~70 bytes).
LOOSE = 0.5
ZONE_COMMAND_KEY = 0  # device_commands.key for a cmd_zone frame (cmd_config keys are 1-8)
ZONE_REASON = "zones"


Circle = tuple[float, float, float]  # centre x, y and radius, metres in a zone projection


def zone_records(conn: Connection, subject_id: int) -> list[fr.Record]:
    rows = conn.execute(
        select(zones)
        .where(zones.c.subject_id == subject_id, zones.c.kind == EXCLUSION)
        .order_by(zones.c.id)
    ).all()
    recs = [
        fr.Record(fr.CMD_ZONE, slot=slot, lat_e7=lat, lon_e7=lon, radius_m=radius)
        for slot, (lat, lon, radius) in enumerate(tag_circles([zone_spec(r) for r in rows]))
    ]
    for slot in range(len(recs), SLOTS):
        recs.append(fr.Record(fr.CMD_ZONE, slot=slot, lat_e7=0, lon_e7=0, radius_m=0))
    return recs


def tag_circles(specs: Sequence[ZoneSpec], slots: int = SLOTS) -> list[tuple[int, int, int]]:
    """At most `slots` circles (lat_e7, lon_e7, radius_m) that together cover the zones."""
    if not specs:
        return []
    proj = Projection(*specs[0].anchor())
    shapes = [_Shape(s, proj) for s in specs]
    for _ in range(slots - len(shapes)):
        loose = [sh for sh in shapes if sh.excess(sh.pieces) > LOOSE * sh.geom.area]
        best = max(loose, key=_Shape.gain, default=None)
        if best is None or best.gain() <= 0:
            break
        best.pieces += 1
    circles = [c for sh in shapes for c in sh.cover(sh.pieces)]
    while len(circles) > slots:
        pairs = [
            (_area(_enclose(a, b)) - _area(a) - _area(b), i, j)
            for i, a in enumerate(circles)
            for j, b in enumerate(circles)
            if i < j
        ]
        _, i, j = min(pairs)
        merged = _enclose(circles[i], circles[j])
        circles = [c for k, c in enumerate(circles) if k not in (i, j)] + [merged]
    out = []
    for x, y, r in circles:
        lon, lat = proj.lonlat(x, y)
        out.append((round(lat * 1e7), round(lon * 1e7), min(math.ceil(r), 0xFFFF)))
    return out


class _Shape:
    """One zone and the number of circles its cover is cut into."""

    def __init__(self, spec: ZoneSpec, proj: Projection) -> None:
        self.spec, self.proj = spec, proj
        self.geom = spec.to_metres(proj)
        self.pieces = 1
        self._covers: dict[int, list[Circle]] = {}

    def gain(self) -> float:
        """How much tighter one more circle would make the cover."""
        return self.excess(self.pieces) - self.excess(self.pieces + 1)

    def excess(self, pieces: int) -> float:
        """The area the cover in `pieces` circles adds to the zone's (0 for a circle)."""
        disks = [shapely.Point(x, y).buffer(r, quad_segs=16) for x, y, r in self.cover(pieces)]
        return float(shapely.union_all(disks).area) - float(self.geom.area)

    def cover(self, pieces: int) -> list[Circle]:
        s = self.spec
        if s.shape == "circle":
            # Itself, exactly: its own circle is the tightest cover there is.
            lon, lat = s.geometry["coordinates"]
            x, y = self.proj.xy(float(lat), float(lon))
            return [(float(x), float(y), s.radius_m + s.buffer_m)]
        if pieces not in self._covers:
            self._covers[pieces] = [_enclosing(p) for p in self._cut(pieces)]
        return self._covers[pieces]

    def _cut(self, n: int) -> list[BaseGeometry]:
        s = self.spec
        coords: Any = s.geometry["coordinates"]
        if s.shape == "corridor":
            line = shapely.LineString([self.proj.xy(float(c[1]), float(c[0])) for c in coords])
            half = s.width_m / 2 + s.buffer_m
            return [
                substring(line, k / n, (k + 1) / n, normalized=True).buffer(half) for k in range(n)
            ]
        # A polygon: strips across the longest side of its smallest rotated rectangle.
        box = shapely.get_coordinates(shapely.minimum_rotated_rectangle(self.geom))[:4]
        origin, along, across = box[0], box[1] - box[0], box[3] - box[0]
        if np.hypot(*along) < np.hypot(*across):
            along, across = across, along
        out = []
        for k in range(n):
            # Each strip a little wider than the rectangle, so no sliver of the zone falls
            # between two strips by rounding.
            p0 = origin + along * (k / n - 0.001) - across * 0.01
            p1 = origin + along * ((k + 1) / n + 0.001) - across * 0.01
            strip = shapely.Polygon([p0, p1, p1 + across * 1.02, p0 + across * 1.02])
            piece = self.geom.intersection(strip)
            if not piece.is_empty:
                out.append(piece)
        return out


def _enclosing(g: BaseGeometry) -> Circle:
    centre = shapely.minimum_bounding_circle(g).centroid
    # A metre to spare for the circle polygon's own approximation and coordinate rounding.
    return float(centre.x), float(centre.y), float(shapely.minimum_bounding_radius(g)) + 1.0


def _enclose(a: Circle, b: Circle) -> Circle:
    """The smallest circle enclosing two circles."""
    (ax, ay, ar), (bx, by, br) = (a, b) if a[2] >= b[2] else (b, a)
    d = math.hypot(bx - ax, by - ay)
    if d + br <= ar:
        return a if a[2] >= b[2] else b
    r = (d + ar + br) / 2
    f = (r - ar) / d
    return ax + (bx - ax) * f, ay + (by - ay) * f, r


def _area(c: Circle) -> float:
    return math.pi * c[2] * c[2]


def zone_digest(recs: list[fr.Record]) -> int:
    """A digest of the slots' contents (device_commands.value)."""
    return digest(";".join(f"{r.slot},{r.lat_e7},{r.lon_e7},{r.radius_m}" for r in recs))


EMPTY_DIGEST = zone_digest(
    [fr.Record(fr.CMD_ZONE, slot=s, lat_e7=0, lon_e7=0, radius_m=0) for s in range(SLOTS)]
)


def last_zone_digest(conn: Connection, device: int) -> int:
    """The digest of the last cmd_zone recorded for the device; a device never sent one
    holds no zones, as if sent an empty set."""
    value = conn.execute(
        select(device_commands.c.value)
        .where(device_commands.c.device == device, device_commands.c.key == ZONE_COMMAND_KEY)
        .order_by(device_commands.c.seq.desc())
        .limit(1)
    ).scalar()
    return EMPTY_DIGEST if value is None else int(value)


def zone_command(
    conn: Connection,
    device: int,
    subject_id: int,
    key: bytes,
    now: float,
    recs: list[fr.Record] | None = None,
) -> bytes:
    """The signed COMMAND frame for the tag, numbered and recorded (with the zone set's
    digest) in this transaction."""
    if recs is None:
        recs = zone_records(conn, subject_id)
    _, data = numbered(
        conn, device, recs, key, code=ZONE_COMMAND_KEY, value=zone_digest(recs),
        reason=ZONE_REASON, now=now,
    )  # fmt: skip
    return data


def zone_update(
    conn: Connection, device: int, subject_id: int, key: bytes, now: float
) -> bytes | None:
    """zone_command if the subject's zones differ from the last set recorded for the
    device (a changed, new or removed zone, or a tag that held another set), else None."""
    recs = zone_records(conn, subject_id)
    if zone_digest(recs) == last_zone_digest(conn, device):
        return None
    return zone_command(conn, device, subject_id, key, now, recs)
