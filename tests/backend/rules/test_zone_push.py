"""The rules sink pushes a subject's exclusion zones to its tag (cmd_zone, backend/zone_push.py)
on real SQLite and PostgreSQL: once on the first evaluation, nothing while they are unchanged,
again when a zone changes or is removed (the API bumps the config version) or the subject gets
another tag; each frame is signed with the tag's key and carries the zones."""

from __future__ import annotations

from sqlalchemy import Engine, delete, func, select, update

from backend.clock import ManualClock
from backend.ingest import Ingest
from backend.rules import store
from backend.rules.sink import MonitoringSink
from backend.storage.schema import TAG, assignments, device_commands, zones
from backend.zone_push import SLOTS, ZONE_COMMAND_KEY, zone_command
from firmware import frame as fr
from firmware import topics
from tests.backend.rules.scenario import offset
from tests.backend.rules.test_sink_cache import TAG_ID, Site, T, add_zone, fix


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
