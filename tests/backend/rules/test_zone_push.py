"""The rules sink pushes a subject's exclusion zones to its tag (cmd_zone, backend/zone_push.py)
on real SQLite and PostgreSQL: once on the first evaluation, nothing while they are unchanged,
again when a zone changes or is removed (the API bumps the config version) or the subject gets
another tag; each frame is signed with the tag's key and carries the zones."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Engine, delete, func, insert, select, update

from backend.clock import ManualClock
from backend.ingest import Ingest
from backend.rules import store
from backend.rules.geo import Projection, ZoneSpec
from backend.rules.sink import MonitoringSink
from backend.storage.schema import TAG, assignments, device_commands, zones
from backend.zone_push import SLOTS, ZONE_COMMAND_KEY, tag_circles, zone_command
from firmware import config, topics
from firmware import frame as fr
from firmware.app import App
from tests.backend.rules.scenario import HOME_LAT, HOME_LON, circle, offset
from tests.backend.rules.test_sink_cache import TAG_ID, Site, T, add_zone, fix
from tests.firmware import fakeboard as fb
from tests.firmware.flash import Flash


class Tagged:
    """A Site with one subject and one ingest worker whose sink's publications are kept."""

    def __init__(self, engine: Engine, clock: ManualClock) -> None:
        self.site = Site(engine, clock)
        self.subject = self.site.subjects[0]
        self.published: list[tuple[str, bytes]] = []

        def publish(topic: str, payload: bytes) -> bool:
            self.published.append((topic, payload))
            return True

        self.sink = MonitoringSink(engine, clock, publish, self.site.keys.get)
        self.ingest = Ingest(engine, self.site.directory, lambda t, p: True, clock=clock,
                             rules=self.sink)  # fmt: skip
        self.ts = T

    def batch(self, tag: int = TAG_ID) -> list[fr.Frame]:
        """One frame of a fix far from every zone; the cmd_zone frames the sink sent for it,
        decoded with the tag's key."""
        self.ts += 60
        self.site.clock.set(self.ts + 2)
        before = len(self.published)
        self.ingest.process([self.site.frame(self.ts, [fix(5, 0)], tag)])
        out = []
        for topic, payload in self.published[before:]:
            assert topic == topics.tag_down(tag)
            f = fr.decode(payload, self.site.keys[tag])
            if any(r.type == fr.CMD_ZONE for r in f.records):
                out.append(f)
        return out

    def zone_rows(self) -> int:
        with self.site.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(device_commands.c.key == ZONE_COMMAND_KEY)
                ).scalar_one()
            )


def slots(f: fr.Frame) -> list[tuple[int, int, int, int]]:
    return [(r.slot, r.lat_e7, r.lon_e7, r.radius_m) for r in f.records if r.radius_m]


def centre(dx: float) -> tuple[int, int]:
    lat, lon = offset(dx, 0)
    return round(lat * 1e7), round(lon * 1e7)


def test_zones_pushed_once_then_on_change_and_removal(engine: Engine, clock: ManualClock) -> None:
    w = Tagged(engine, clock)
    add_zone(engine, w.subject, 1000, T)
    lat, lon = centre(1000)

    first = w.batch()
    assert len(first) == 1
    assert first[0].mtype == fr.COMMAND and first[0].device == TAG_ID
    assert slots(first[0]) == [(0, lat, lon, 100)]
    assert len(first[0].records) == SLOTS  # the other slots cleared

    # Nothing changed: nothing sent, nothing recorded.
    assert w.batch() == [] and w.batch() == []
    assert w.zone_rows() == 1

    # The zone grows, as the API changes it (config version bumped).
    with engine.begin() as conn:
        conn.execute(update(zones).where(zones.c.subject_id == w.subject).values(radius_m=250))
        store.bump_config(conn, w.subject, w.ts)
    changed = w.batch()
    assert len(changed) == 1 and slots(changed[0]) == [(0, lat, lon, 250)]
    assert changed[0].seq > first[0].seq  # the device's command sequence
    assert w.batch() == []

    # A second zone: both sent.
    add_zone(engine, w.subject, -2000, w.ts)
    lat2, lon2 = centre(-2000)
    both = w.batch()
    assert len(both) == 1 and slots(both[0]) == [(0, lat, lon, 250), (1, lat2, lon2, 100)]

    # All removed: one frame clearing every slot, then quiet.
    with engine.begin() as conn:
        conn.execute(delete(zones).where(zones.c.subject_id == w.subject))
        store.bump_config(conn, w.subject, w.ts)
    cleared = w.batch()
    assert len(cleared) == 1 and len(cleared[0].records) == SLOTS
    assert all(r.radius_m == 0 and r.type == fr.CMD_ZONE for r in cleared[0].records)
    assert w.batch() == []
    assert w.zone_rows() == 4
    assert w.sink.counts["zone_pushes"] == 4


def test_a_config_change_elsewhere_sends_nothing(engine: Engine, clock: ManualClock) -> None:
    # The version moves for anything the rules read; the zones did not change, so the
    # database is consulted and finds the set already sent.
    w = Tagged(engine, clock)
    add_zone(engine, w.subject, 1000, T)
    assert len(w.batch()) == 1
    with engine.begin() as conn:
        store.bump_config(conn, w.subject, w.ts, tz="Europe/Paris")
    assert w.batch() == []
    assert w.zone_rows() == 1


def test_a_subject_without_zones_sends_nothing(engine: Engine, clock: ManualClock) -> None:
    w = Tagged(engine, clock)
    assert w.batch() == [] and w.zone_rows() == 0


def test_zones_already_sent_by_zone_command_are_not_sent_again(
    engine: Engine, clock: ManualClock
) -> None:
    # The simulator's fleet runner sends them itself at start (zone_command); the sink sees
    # the same set recorded for the tag.
    w = Tagged(engine, clock)
    add_zone(engine, w.subject, 1000, T)
    with engine.begin() as conn:
        zone_command(conn, TAG_ID, w.subject, w.site.keys[TAG_ID], T)
    assert w.batch() == []
    assert w.zone_rows() == 1


def test_a_newly_assigned_tag_gets_the_zones(engine: Engine, clock: ManualClock) -> None:
    w = Tagged(engine, clock)
    add_zone(engine, w.subject, 1000, T)
    assert len(w.batch()) == 1
    new_tag = TAG_ID + 50
    w.site.keys[new_tag] = w.site.directory.registry.register(new_tag, TAG).key
    swap = w.ts + 30
    with engine.begin() as conn:
        conn.execute(
            update(assignments)
            .where(assignments.c.device == TAG_ID, assignments.c.role == TAG)
            .values(ends_at=swap)
        )
        conn.execute(
            assignments.insert().values(
                subject_id=w.subject, device=new_tag, role=TAG, starts_at=swap, created_at=swap
            )
        )
        store.bump_config(conn, w.subject, swap)
    got = w.batch(new_tag)
    assert len(got) == 1 and got[0].device == new_tag
    assert slots(got[0]) == [(0, *centre(1000), 100)]
    assert w.batch(new_tag) == []


def test_zones_are_read_only_when_the_config_version_moves(
    engine: Engine, clock: ManualClock
) -> None:
    # The hot path remembers the (config version, tag) it checked: a zone changed behind the
    # API's back (no version bump) is not looked for; the next bump finds it.
    w = Tagged(engine, clock)
    add_zone(engine, w.subject, 1000, T)
    assert len(w.batch()) == 1
    with engine.begin() as conn:
        conn.execute(update(zones).where(zones.c.subject_id == w.subject).values(radius_m=400))
    assert w.batch() == []
    with engine.begin() as conn:
        store.bump_config(conn, w.subject, w.ts)
    got = w.batch()
    assert len(got) == 1 and slots(got[0]) == [(0, *centre(1000), 400)]


def _lonlat(dx: float, dy: float) -> list[float]:
    lat, lon = offset(dx, dy)
    return [lon, lat]


def add_shape(engine: Engine, subject: int, shape: str, geometry: dict[str, Any],
              at: float, **sizes: float) -> None:  # fmt: skip
    row = {"radius_m": 0.0, "width_m": 0.0, "buffer_m": 0.0, **sizes}
    with engine.begin() as conn:
        conn.execute(insert(zones).values(
            subject_id=subject, name=shape, kind="exclusion", shape=shape, geometry=geometry,
            victim=False, schedule=[], dwell_s=None, created_at=at, **row))  # fmt: skip
        store.bump_config(conn, subject, at)


def covered(circles: list[tuple[int, int, int, int]], spec: ZoneSpec) -> float:
    """The share of points spread over the zone (its edge and a grid inside) that lie in
    one of the circles the tag was sent (to the metre: this plane and the tag's own
    distance are both equirectangular approximations, about another origin)."""
    proj = Projection(HOME_LAT, HOME_LON)
    geom = spec.to_metres(proj)
    minx, miny, maxx, maxy = geom.bounds
    gx, gy = np.meshgrid(np.linspace(minx, maxx, 60), np.linspace(miny, maxy, 60))
    grid = shapely.points(gx.ravel(), gy.ravel())
    pts = np.concatenate([grid[shapely.contains(geom, grid)], shapely.points(
        shapely.get_coordinates(geom.exterior.segmentize(5.0)))])  # fmt: skip
    xy = shapely.get_coordinates(pts)
    inside = np.zeros(len(xy), bool)
    for _, lat, lon, radius in circles:
        cx, cy = proj.xy(lat / 1e7, lon / 1e7)
        inside |= np.hypot(xy[:, 0] - cx, xy[:, 1] - cy) <= radius + 1.0
    return float(inside.mean())


def test_polygon_corridor_and_buffered_zones_reach_the_tag_as_circles_covering_them(
    engine: Engine, clock: ManualClock
) -> None:
    # Before, only circle zones were sent (and without their buffer): near a polygon or a
    # corridor the tag never sampled fast, and a short visit at a fix a minute was missed.
    w = Tagged(engine, clock)
    square = [_lonlat(x, y) for x, y in ((2000, 0), (2600, 0), (2600, 150), (2000, 150))]
    add_shape(engine, w.subject, "polygon", {"type": "Polygon",
              "coordinates": [[*square, square[0]]]}, T)  # fmt: skip
    road = [_lonlat(x, y) for x, y in ((-500, 1000), (1000, 1000), (1000, 2500))]
    add_shape(engine, w.subject, "corridor", {"type": "LineString", "coordinates": road}, T,
              width_m=40.0)  # fmt: skip
    lat, lon = offset(-3000, 0)
    add_shape(engine, w.subject, "circle", {"type": "Point", "coordinates": [lon, lat]}, T,
              radius_m=100.0, buffer_m=400.0)  # fmt: skip
    sent = w.batch()
    assert len(sent) == 1 and len(sent[0].records) == SLOTS
    circles = slots(sent[0])
    assert len(circles) == SLOTS  # spare slots tighten the loose covers (a 40 m corridor)
    with engine.connect() as conn:
        specs = store.load_config(conn, w.subject).zones
    assert [s.shape for s in specs] == ["polygon", "corridor", "circle"]
    for spec in specs:
        assert covered(circles, spec) == 1.0, spec.shape
    # The buffered circle is itself, radius and buffer: 500 m.
    assert (*centre(-3000), 500) in [c[1:] for c in circles]
    # Looser than the zones, but not by much: the circles' area against the zones' area.
    proj = Projection(HOME_LAT, HOME_LON)
    zone_area = sum(s.to_metres(proj).area for s in specs)
    disks = shapely.union_all([shapely.Point(*proj.xy(la / 1e7, lo / 1e7)).buffer(r)
                               for _, la, lo, r in circles])  # fmt: skip
    assert disks.area < 2.5 * zone_area, disks.area / zone_area


def test_more_zones_than_slots_are_merged_into_circles_still_covering_each() -> None:
    specs = [circle(i, "exclusion", 700.0 * i, 300.0 * (i % 3), 80.0) for i in range(11)]
    circles = tag_circles(specs)
    assert len(circles) == SLOTS
    for spec in specs:
        assert covered([(0, *c) for c in circles], spec) == 1.0
    assert tag_circles([]) == []


def test_a_tag_sent_a_polygon_samples_fast_near_it_and_uploads_each_fix_inside() -> None:
    # The tag's own firmware (on the fake board) given what the backend sends for a long
    # thin polygon: a street 1,200 m by 80 m, 1 km north of the wearer.
    flash = Flash(blocks=64, block_size=4096)
    board = fb.FakeBoard(flash.files())
    app = App(board, config.merge(dict(fb.CFG)))
    board.moving = True
    lat, lon = board.pos
    per_m_lat = 1 / 0.0111319  # 1e-7 degrees of latitude per metre
    per_m_lon = per_m_lat / math.cos(math.radians(lat / 1e7))

    def at(east_m: float, north_m: float) -> tuple[int, int]:
        return lat + round(north_m * per_m_lat), lon + round(east_m * per_m_lon)

    corners = [at(x, y) for x, y in ((-600, 1000), (600, 1000), (600, 1080), (-600, 1080))]
    ring = [[lo / 1e7, la / 1e7] for la, lo in [*corners, corners[0]]]
    street = ZoneSpec(1, "exclusion", "polygon", {"type": "Polygon", "coordinates": [ring]})
    recs = [fr.Record(fr.CMD_ZONE, slot=k, lat_e7=la, lon_e7=lo, radius_m=r)
            for k, (la, lo, r) in enumerate(tag_circles([street]))]  # fmt: skip
    cmd = fr.Frame(fr.COMMAND, fb.DEVICE, 0, 1, fb.T0, recs)
    board.modem.inbox.append(fr.encode(cmd, fb.KEY))
    fb.run(app, board, 10 * 60_000)
    assert app.zones is not None and len(app.zones.zones) == len(recs)

    def interval() -> int:
        return int(app.sampler.interval_s(app.mono.ms, app.motion.last_motion_ms, -1))

    assert interval() == 60  # 1 km away: a fix a minute
    inside = at(500, 1040)

    def near(b: fb.FakeBoard) -> None:
        b.pos = at(500, 800)  # 200 m south of the street's east end

    def enter(b: fb.FakeBoard) -> None:
        b.pos = inside

    fb.run(app, board, 12 * 60_000, events=[(10 * 60_000 + 30_000, near)])
    assert interval() == 15  # near it: every 15 s
    fb.run(app, board, 14 * 60_000, events=[(12 * 60_000, enter)])
    first = next(
        (f, r)
        for f, r in fb.records(board, "fix")
        if abs(r.lat_e7 - inside[0]) + abs(r.lon_e7 - inside[1]) < 5  # NMEA's rounding
    )
    # The first fix inside within a fast interval (+ hot start) of the entry, and its frame
    # sealed with it: uploaded at once, not with a 10-fix batch.
    assert first[0].time_of(first[1]) - (fb.T0 + 12 * 60) <= 20
    assert first[0].ts - first[0].time_of(first[1]) <= 1
    flash.close()


def test_a_compact_polygon_takes_only_the_circles_it_needs() -> None:
    # Each circle costs the tag heap: a square is covered well enough by a few, not by all
    # eight; a 50 m wide corridor, never tight, takes what is left.
    sq = [_lonlat(x, y) for x, y in ((0, 0), (300, 0), (300, 300), (0, 300))]
    square = ZoneSpec(1, "exclusion", "polygon", {"type": "Polygon", "coordinates": [[*sq, sq[0]]]})
    assert 1 < len(tag_circles([square])) <= 3
    road = [_lonlat(x, y) for x, y in ((0, 1000), (2000, 1000))]
    lane = ZoneSpec(2, "exclusion", "corridor", {"type": "LineString", "coordinates": road},
                    width_m=50.0)  # fmt: skip
    assert len(tag_circles([square, lane])) == SLOTS
