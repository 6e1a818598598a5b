"""The simulator's world as a GeoJSON layer for the web map (land, roads, named public
places), drawn as the base map when no tile server is configured. The simulator writes it
with `write_world_layer(sim.world, data_dir / "world.geojson")`; GET /api/web/world serves
that file (docs/web.md).

The world is taken by its shape (a Protocol), so the backend does not import the simulator."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

# sim/world.py's place kinds, by index.
PLACE_KINDS = ("home", "workplace", "shop", "probation", "town", "park", "social", "victim")
# Subjects' and victims' homes are personal data: the layer shows only public places.
PUBLIC_PLACES = frozenset({"probation", "town", "park"})


class _World(Protocol):
    land: Any  # shapely Polygon (or MultiPolygon) in local metres
    nodes: npt.NDArray[np.float64]
    edges: npt.NDArray[np.int64]
    place_kind: npt.NDArray[np.int8]
    place_xy: npt.NDArray[np.float64]
    place_name: list[str]

    def to_latlon(
        self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...


def _lonlat(world: _World, xy: npt.NDArray[np.float64]) -> list[list[float]]:
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    lat, lon = world.to_latlon(xy[:, 0], xy[:, 1])
    return [[round(float(a), 6), round(float(b), 6)] for a, b in zip(lon, lat, strict=True)]


def _polygons(geom: Any) -> list[Any]:
    return list(geom.geoms) if hasattr(geom, "geoms") else [geom]


def _label(name: str) -> str:
    """ "bournemouth-centre-2" -> "Bournemouth Centre": one label per named place."""
    return " ".join(w.capitalize() for w in re.sub(r"-\d+$", "", name).split("-"))


def world_feature_collection(world: _World) -> dict[str, Any]:
    """Land polygon(s), the road network as one MultiLineString and the public places as
    labelled points (one per name: a town centre's several spots share one label), each
    with a `layer` property. The world's zones are not in it: a subject's zones come from
    the API with the subject, and the rest (victims' addresses, the simulator's cellular
    dead zones) are not for a shared map."""
    features: list[dict[str, Any]] = []
    for poly in _polygons(world.land):
        rings = [_lonlat(world, np.asarray(poly.exterior.coords))]
        rings += [_lonlat(world, np.asarray(r.coords)) for r in poly.interiors]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": rings},
                "properties": {"layer": "land"},
            }
        )
    if len(world.edges):
        ends = world.nodes[np.asarray(world.edges).reshape(-1)]
        pts = _lonlat(world, ends)
        lines = [[pts[i], pts[i + 1]] for i in range(0, len(pts), 2)]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "MultiLineString", "coordinates": lines},
                "properties": {"layer": "roads"},
            }
        )
    places: dict[tuple[str, str], list[npt.NDArray[np.float64]]] = {}
    for i, kind_code in enumerate(world.place_kind):
        kind = PLACE_KINDS[int(kind_code)] if int(kind_code) < len(PLACE_KINDS) else "other"
        if kind in PUBLIC_PLACES:
            places.setdefault((kind, _label(world.place_name[i])), []).append(world.place_xy[i])
    for (kind, name), xys in places.items():
        centre = _lonlat(world, np.mean(np.asarray(xys), axis=0))[0]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": centre},
                "properties": {"layer": "place", "kind": kind, "name": name},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def write_world_layer(world: _World, path: Path) -> Path:
    """Write the layer atomically (the API may be reading the previous one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(world_feature_collection(world), separators=(",", ":")))
    os.replace(tmp, path)
    return path
