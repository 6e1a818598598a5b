"""The simulated world: land, roads, places, zones and environments around Bournemouth and Poole.

Everything is in metres of one `LocalFrame` (sim.geo) and deterministic for a seed. The road
network is a jittered grid clipped to the real land polygon (edges that would cross water are
dropped, some edges are removed to make it organic, the largest connected part is kept).
Places sit just off a road node; routes run place -> node -> shortest path -> node -> place.
Shortest-path trees are precomputed from every place that is not a subject's home, so any trip
with one end at such a place is a table walk (trips never go home -> someone else's home).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from shapely.geometry import Point, Polygon

from sim import geo
from sim.params import (
    NEAR_BUILDINGS,
    OPEN_SKY,
    URBAN_CANYON,
    WorldParams,
)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

# Place kinds.
HOME = 0
WORKPLACE = 1
SHOP = 2
PROBATION = 3
TOWN = 4  # a spot inside a town centre (shops, cafes)
PARK = 5
SOCIAL = 6  # friends' and relatives' homes people visit
VICTIM = 7
PLACE_KINDS = ("home", "workplace", "shop", "probation", "town", "park", "social", "victim")


@dataclass(frozen=True)
class Zone:
    """A circular zone in the local frame: town-centre exclusion, victim's address, or a
    cellular dead zone."""

    name: str
    kind: str  # "exclusion", "victim" or "dead"
    x: float
    y: float
    radius_m: float

    def polygon(self, quad_segs: int = 16) -> Polygon:
        return Point(self.x, self.y).buffer(self.radius_m, quad_segs=quad_segs)

    def contains(self, x: F64, y: F64) -> NDArray[np.bool_]:
        return np.asarray((x - self.x) ** 2 + (y - self.y) ** 2 <= self.radius_m**2)


@dataclass
class World:
    frame: geo.LocalFrame
    land: Polygon  # metres
    nodes: F64  # (N, 2) road node positions
    edges: I64  # (E, 2) node index pairs
    edge_len: F64
    env_grid: NDArray[np.int8]  # [row (y), col (x)] environment code per cell
    env_origin: tuple[float, float]
    env_cell: float
    place_kind: NDArray[np.int8]
    place_xy: F64  # (P, 2)
    place_node: I64
    place_name: list[str]
    zones: list[Zone]
    sources: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # place -> tree row
    _pred: NDArray[np.int32] = field(default_factory=lambda: np.zeros((0, 0), np.int32))

    # ---- queries -------------------------------------------------------------------------

    def environment_at(self, x: F64, y: F64) -> NDArray[np.int8]:
        """Outdoor environment code at each point (vectorized raster lookup)."""
        ox, oy = self.env_origin
        rows, cols = self.env_grid.shape
        c = np.clip(((np.asarray(x) - ox) / self.env_cell).astype(np.int64), 0, cols - 1)
        r = np.clip(((np.asarray(y) - oy) / self.env_cell).astype(np.int64), 0, rows - 1)
        return self.env_grid[r, c]

    def places_of(self, kind: int) -> I64:
        return np.flatnonzero(self.place_kind == kind).astype(np.int64)

    def zone(self, name: str) -> Zone:
        for z in self.zones:
            if z.name == name:
                return z
        raise KeyError(name)

    def zones_of(self, kind: str) -> list[Zone]:
        return [z for z in self.zones if z.kind == kind]

    def route(self, a: int, b: int) -> F64:
        """Polyline (K, 2) from place a to place b along the roads. One of them must be a
        routing source (any place that is not a home)."""
        na, nb = int(self.place_node[a]), int(self.place_node[b])
        if self.sources[a] >= 0:
            path = self._walk(int(self.sources[a]), nb)[::-1]
        elif self.sources[b] >= 0:
            path = self._walk(int(self.sources[b]), na)
        else:
            raise ValueError(f"no route tree for places {a} and {b}: neither is a source")
        pts = np.vstack((self.place_xy[a], self.nodes[path], self.place_xy[b]))
        if na == nb:
            pts = np.vstack((self.place_xy[a], self.nodes[na], self.place_xy[b]))
        return pts

    def _walk(self, row: int, node: int) -> list[int]:
        pred = self._pred[row]
        out = [node]
        while True:
            p = int(pred[out[-1]])
            if p < 0:
                break
            out.append(p)
        return out

    def to_latlon(self, x: F64, y: F64) -> tuple[F64, F64]:
        return self.frame.to_latlon(x, y)

    def summary(self) -> dict[str, object]:
        counts = {
            PLACE_KINDS[k]: int(np.count_nonzero(self.place_kind == k))
            for k in range(len(PLACE_KINDS))
        }
        env_share = {
            name: round(float(np.mean(self.env_grid == code)), 4)
            for code, name in ((OPEN_SKY, "open_sky"), (NEAR_BUILDINGS, "near_buildings"))
        }
        env_share["urban_canyon"] = round(float(np.mean(self.env_grid == URBAN_CANYON)), 4)
        return {
            "reference": {"lat": self.frame.lat0, "lon": self.frame.lon0},
            "land_km2": round(self.land.area / 1e6, 2),
            "road_nodes": len(self.nodes),
            "road_edges": len(self.edges),
            "road_km": round(float(self.edge_len.sum()) / 1000, 1),
            "places": counts,
            "zones": {k: len(self.zones_of(k)) for k in ("exclusion", "victim", "dead")},
            "environment_share": env_share,
        }


@dataclass(frozen=True)
class WorldSpec:
    """How many of each place to make; homes for subjects are asked for by the population."""

    homes: int
    workplaces: int = 60
    shops: int = 80
    social: int = 150
    victims: int = 5
    dead_zones: int = 3


def _grid_roads(land: Polygon, p: WorldParams, rng: np.random.Generator) -> tuple[F64, I64, F64]:
    minx, miny, maxx, maxy = land.bounds
    s = p.road_spacing_m
    nx = int((maxx - minx) / s) + 1
    ny = int((maxy - miny) / s) + 1
    gx, gy = np.meshgrid(minx + s * np.arange(nx), miny + s * np.arange(ny))
    pts = np.column_stack((gx.ravel(), gy.ravel()))
    pts += rng.uniform(-p.road_jitter, p.road_jitter, pts.shape) * s
    shapely.prepare(land)
    inside = shapely.contains_xy(land, pts[:, 0], pts[:, 1])
    idx = np.arange(nx * ny).reshape(ny, nx)
    cand = [
        np.column_stack((idx[:, :-1].ravel(), idx[:, 1:].ravel())),  # east
        np.column_stack((idx[:-1, :].ravel(), idx[1:, :].ravel())),  # north
    ]
    diag = np.column_stack((idx[:-1, :-1].ravel(), idx[1:, 1:].ravel()))
    cand.append(diag[rng.random(len(diag)) < 0.12])  # a few diagonal streets
    e = np.vstack(cand)
    e = e[inside[e[:, 0]] & inside[e[:, 1]]]
    lines = shapely.linestrings(np.stack((pts[e[:, 0]], pts[e[:, 1]]), axis=1))
    e = e[shapely.contains(land, lines)]  # an edge that leaves the land would cross water
    e = e[rng.random(len(e)) >= p.road_drop_p]
    # Keep the largest connected part, renumbered.
    n = len(pts)
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, labels = connected_components(g, directed=False)
    sizes = np.bincount(labels[e[:, 0]], minlength=labels.max() + 1)
    keep_label = int(np.argmax(sizes))
    keep = labels == keep_label
    keep &= np.isin(np.arange(n), e.ravel())
    new_id = np.full(n, -1, np.int64)
    new_id[keep] = np.arange(int(keep.sum()))
    e = new_id[e]
    e = e[(e[:, 0] >= 0) & (e[:, 1] >= 0)]
    nodes = pts[keep]
    length = np.hypot(*(nodes[e[:, 0]] - nodes[e[:, 1]]).T)
    return nodes, e.astype(np.int64), length


def _environment(
    land: Polygon,
    centres: dict[str, tuple[float, float]],
    opens: list[tuple[float, float, float]],
    p: WorldParams,
    rng: np.random.Generator,
) -> tuple[NDArray[np.int8], tuple[float, float]]:
    minx, miny, maxx, maxy = land.bounds
    pad = 1000.0
    ox, oy = minx - pad, miny - pad
    cols = int((maxx - minx + 2 * pad) / p.env_cell_m) + 1
    rows = int((maxy - miny + 2 * pad) / p.env_cell_m) + 1
    cx = ox + (np.arange(cols) + 0.5) * p.env_cell_m
    cy = oy + (np.arange(rows) + 0.5) * p.env_cell_m
    gx, gy = np.meshgrid(cx, cy)
    on_land = shapely.contains_xy(land, gx, gy)
    grid = np.full((rows, cols), OPEN_SKY, np.int8)  # water and beach: open sky
    grid[on_land] = NEAR_BUILDINGS
    gardens = on_land & (rng.random(grid.shape) < p.open_patch_p)
    grid[gardens] = OPEN_SKY
    for x, y, r in opens:
        grid[on_land & ((gx - x) ** 2 + (gy - y) ** 2 <= r * r)] = OPEN_SKY
    for x, y in centres.values():
        grid[on_land & ((gx - x) ** 2 + (gy - y) ** 2 <= p.canyon_radius_m**2)] = URBAN_CANYON
    return grid, (ox, oy)


def generate_world(spec: WorldSpec, seed: int, p: WorldParams | None = None) -> World:
    """A deterministic world for a seed."""
    p = p or WorldParams()
    rng = np.random.default_rng([seed, 0x5EED])
    frame = geo.LocalFrame(p.ref_lat, p.ref_lon)
    land = frame.polygon_to_xy(geo.land_polygon_lonlat())
    nodes, edges, length = _grid_roads(land, p, rng)

    centres = {
        name: tuple(float(v) for v in frame.to_xy(lat, lon))
        for name, (lat, lon) in geo.TOWN_CENTRES.items()
    }
    opens = [
        (*(float(v) for v in frame.to_xy(lat, lon)), r) for lat, lon, r in geo.OPEN_SPACES.values()
    ]
    grid, origin = _environment(land, centres, opens, p, rng)  # type: ignore[arg-type]

    zones = [
        Zone(name, "exclusion", xy[0], xy[1], p.exclusion_radius_m) for name, xy in centres.items()
    ]
    excl = np.array([[z.x, z.y] for z in zones])

    def in_exclusion(xy: F64) -> NDArray[np.bool_]:
        d2 = ((xy[:, None, :] - excl[None, :, :]) ** 2).sum(-1)
        return np.asarray((d2 <= p.exclusion_radius_m**2).any(axis=1))

    kinds: list[int] = []
    xys: list[F64] = []
    names: list[str] = []

    def add(kind: int, xy: F64, label: str, named: list[str] | None = None) -> None:
        kinds.extend([kind] * len(xy))
        xys.append(xy)
        names.extend(named or [f"{label}-{i}" for i in range(len(xy))])

    def off_road(n: int, exclude_zones: bool) -> F64:
        """n points a few metres off random road nodes (a building beside the street)."""
        out: list[F64] = [np.zeros((0, 2))]  # none asked for (a scenario may want none)
        while sum(len(o) for o in out) < n:
            pick = nodes[rng.integers(0, len(nodes), 2 * n + 8)]
            ang = rng.uniform(0, 2 * np.pi, len(pick))
            d = rng.uniform(12.0, 40.0, len(pick))
            cand = pick + np.column_stack((np.cos(ang), np.sin(ang))) * d[:, None]
            ok = shapely.contains_xy(land, cand[:, 0], cand[:, 1])
            if exclude_zones:
                ok &= ~in_exclusion(cand)
            out.append(cand[ok])
        return np.vstack(out)[:n]

    add(HOME, off_road(spec.homes, True), "home")
    add(WORKPLACE, off_road(spec.workplaces, False), "work")
    add(SHOP, off_road(spec.shops, True), "shop")
    px, py = frame.to_xy(*geo.PROBATION_OFFICE)
    add(PROBATION, np.array([[float(px), float(py)]]), "probation", ["probation-office"])
    town_spots: list[F64] = []
    for x, y in centres.values():
        spots = np.zeros((0, 2))
        while len(spots) < 3:  # three spots on land (Poole's centre is by the quay)
            ang = rng.uniform(0, 2 * np.pi, 8)
            d = rng.uniform(0, 0.6 * p.exclusion_radius_m, 8)
            cand = np.column_stack((x + d * np.cos(ang), y + d * np.sin(ang)))
            spots = np.vstack((spots, cand[shapely.contains_xy(land, cand[:, 0], cand[:, 1])]))
        town_spots.append(spots[:3])
    # Public places keep their real names (the web map labels them).
    add(TOWN, np.vstack(town_spots), "town", [f"{c}-{k}" for c in centres for k in range(3)])
    add(PARK, np.array([[x, y] for x, y, _ in opens]), "park", list(geo.OPEN_SPACES))
    add(SOCIAL, off_road(spec.social, True), "social")
    victims = off_road(spec.victims, True)
    add(VICTIM, victims, "victim")
    for i, (x, y) in enumerate(victims):
        zones.append(Zone(f"victim-{i}", "victim", float(x), float(y), p.victim_radius_m))
    # Cellular dead zones: away from the town centres (coverage there is dense).
    dead = off_road(spec.dead_zones, True)
    for i, (x, y) in enumerate(dead):
        r = float(rng.uniform(*p.dead_zone_radius_m))
        zones.append(Zone(f"dead-{i}", "dead", float(x), float(y), r))

    place_xy = np.vstack(xys)
    place_kind = np.array(kinds, np.int8)
    # Nearest road node for each place (chunked brute force: a few thousand nodes).
    place_node = np.empty(len(place_xy), np.int64)
    for s in range(0, len(place_xy), 512):
        chunk = place_xy[s : s + 512]
        d2 = ((chunk[:, None, :] - nodes[None, :, :]) ** 2).sum(-1)
        place_node[s : s + 512] = d2.argmin(axis=1)

    world = World(
        frame=frame,
        land=land,
        nodes=nodes,
        edges=edges,
        edge_len=length,
        env_grid=grid,
        env_origin=origin,
        env_cell=p.env_cell_m,
        place_kind=place_kind,
        place_xy=place_xy,
        place_node=place_node,
        place_name=names,
        zones=zones,
    )
    _build_routes(world, excl, p)
    return world


def _build_routes(world: World, excl: F64, p: WorldParams) -> None:
    n = len(world.nodes)
    e = world.edges
    mid = (world.nodes[e[:, 0]] + world.nodes[e[:, 1]]) / 2
    d2 = ((mid[:, None, :] - excl[None, :, :]) ** 2).sum(-1)
    in_zone = (d2 <= p.exclusion_radius_m**2).any(axis=1)
    # Routing cost: real length, much dearer inside town-centre exclusion zones so that
    # routes go round them unless the trip starts or ends inside one.
    w = world.edge_len * np.where(in_zone, p.zone_edge_penalty, 1.0)
    g = coo_matrix(
        (
            np.concatenate((w, w)),
            (np.concatenate((e[:, 0], e[:, 1])), np.concatenate((e[:, 1], e[:, 0]))),
        ),
        shape=(n, n),
    ).tocsr()
    src_places = np.flatnonzero(world.place_kind != HOME)
    sources = np.full(len(world.place_kind), -1, np.int64)
    sources[src_places] = np.arange(len(src_places))
    _, pred = dijkstra(
        g, directed=False, indices=world.place_node[src_places], return_predecessors=True
    )
    world.sources = sources
    world._pred = np.where(pred < 0, -1, pred).astype(np.int32)
