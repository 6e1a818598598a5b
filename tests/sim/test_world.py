"""The generated world: deterministic, on land, connected, with the right environments."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from sim import geo
from sim.params import NEAR_BUILDINGS, OPEN_SKY, URBAN_CANYON
from sim.world import HOME, PROBATION, SHOP, TOWN, World, WorldSpec, generate_world

SPEC = WorldSpec(homes=40, workplaces=10, shops=10, social=10, victims=2, dead_zones=2)


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(SPEC, seed=11)


def test_same_seed_same_world_other_seed_other_world(world: World) -> None:
    again = generate_world(SPEC, seed=11)
    assert np.array_equal(world.nodes, again.nodes) and np.array_equal(world.edges, again.edges)
    assert np.array_equal(world.place_xy, again.place_xy) and world.zones == again.zones
    assert np.array_equal(world.env_grid, again.env_grid)
    other = generate_world(SPEC, seed=12)
    assert not np.array_equal(world.place_xy, other.place_xy)


def test_roads_and_places_are_on_land(world: World) -> None:
    assert shapely.contains_xy(world.land, world.nodes[:, 0], world.nodes[:, 1]).all()
    assert shapely.contains_xy(world.land, world.place_xy[:, 0], world.place_xy[:, 1]).all()
    lines = shapely.linestrings(
        np.stack((world.nodes[world.edges[:, 0]], world.nodes[world.edges[:, 1]]), axis=1)
    )
    assert shapely.contains(world.land, lines).all()  # no road crosses water
    assert 100 < world.land.area / 1e6 < 200  # km2 between the harbours


def test_every_home_reaches_every_kind_of_place(world: World) -> None:
    homes = world.places_of(HOME)
    targets = [world.places_of(k)[0] for k in (SHOP, PROBATION, TOWN)]
    for h in homes[:10]:
        for t in targets:
            there = world.route(int(h), int(t))
            back = world.route(int(t), int(h))
            assert np.allclose(there[0], world.place_xy[h]) and np.allclose(
                there[-1], world.place_xy[t]
            )
            assert np.allclose(back[0], world.place_xy[t]) and np.allclose(
                back[-1], world.place_xy[h]
            )
            steps = np.hypot(*np.diff(there[1:-1], axis=0).T)
            assert steps.max() < 2 * 220.0 * 1.5  # consecutive road nodes: one edge apart
    with pytest.raises(ValueError, match="neither is a source"):
        world.route(int(homes[0]), int(homes[1]))


def test_environment_raster(world: World) -> None:
    f = world.frame
    bx, by = f.to_xy(*geo.TOWN_CENTRES["bournemouth-centre"])
    hx, hy = f.to_xy(50.7500, -1.9500)  # Canford Heath
    sx, sy = f.to_xy(50.700, -1.870)  # the sea off the pier
    env = world.environment_at(np.array([bx, hx, sx]), np.array([by, hy, sy]))
    assert env.tolist() == [URBAN_CANYON, OPEN_SKY, OPEN_SKY]
    assert np.mean(world.env_grid == NEAR_BUILDINGS) > 0.3  # most of the land is built up


def test_zones(world: World) -> None:
    names = {z.name for z in world.zones_of("exclusion")}
    assert names == set(geo.TOWN_CENTRES)
    assert len(world.zones_of("victim")) == 2 and len(world.zones_of("dead")) == 2
    z = world.zone("poole-centre")
    assert z.contains(np.array([z.x, z.x + z.radius_m + 1]), np.array([z.y, z.y])).tolist() == [
        True,
        False,
    ]
    assert abs(z.polygon().area - np.pi * z.radius_m**2) / (np.pi * z.radius_m**2) < 0.01
