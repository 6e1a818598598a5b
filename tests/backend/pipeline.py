"""The world the rules-through-ingest tests build (test_alerts_pipeline.py,
test_victim_devices.py): a real Ingest handing its frames to a MonitoringSink, both publishing
to a list instead of a broker, on the test's database (SQLite or PostgreSQL), with a unit and
one subject. Each test file registers its own devices and adds what it needs (zones, orders,
assignments) through `assign` and its own rows."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, insert

from backend.clock import ManualClock
from backend.ingest import DeviceDirectory, Ingest, Message
from backend.registry import Registry
from backend.rules.sink import MonitoringSink
from backend.settings import Settings
from backend.storage.schema import assignments, subjects, units, zones
from firmware import frame as fr
from firmware import topics
from tests.backend.rules.scenario import offset

T = 1_790_000_000  # 2026-09-21 (BST)


def fix(dt: int, dx: float, acc_dm: int = 50) -> fr.Record:
    """A GNSS fix `dx` metres east of the scenario's origin, taken `dt` s before its frame."""
    lat, lon = offset(dx, 0)
    return fr.Record(fr.FIX, (dt, round(lat * 1e7), round(lon * 1e7), acc_dm, 2, 0, 9, 100, 0, 9))


class Pipeline:
    """`keys`: the signing key of each device the sink sends commands to; `tag`: the tag whose
    frames `tag_frame` signs; `settings`: the backend's (default: Settings())."""

    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        clock: ManualClock,
        keys: dict[int, bytes],
        tag: int,
        settings: Settings | None = None,
    ) -> None:
        self.clock, self.keys, self.tag_id = clock, keys, tag
        self.settings = settings or Settings()
        self.published: list[tuple[str, bytes]] = []
        self.seq = 0
        self.attach(engine, registry)
        with engine.begin() as conn:
            self.unit_id = conn.execute(
                insert(units).values(name="IOM", kind="police", created_at=T).returning(units.c.id)
            ).scalar_one()
            self.subject = conn.execute(
                insert(subjects).values(reference="S1", name="A", unit_id=self.unit_id,
                                        risk_notes="", created_at=T).returning(subjects.c.id)
            ).scalar_one()  # fmt: skip

    def attach(self, engine: Engine, registry: Registry) -> None:
        """Go on with the same devices in `engine` (a database that holds this world's rows)."""
        self.engine = engine
        self.sink = MonitoringSink(engine, self.clock, self._publish, self.keys.get,
                                   settings=self.settings)  # fmt: skip
        self.ingest = Ingest(engine, DeviceDirectory(registry), self._publish, self.settings,
                             clock=self.clock, rules=self.sink)  # fmt: skip

    def assign(self, conn: Connection, device: int, role: str, starts_at: int) -> None:
        conn.execute(insert(assignments).values(subject_id=self.subject, device=device,
                                                role=role, starts_at=starts_at,
                                                created_at=T))  # fmt: skip

    def circle(self, conn: Connection, name: str, kind: str, dx: float, radius_m: float) -> None:
        """A circle zone of the subject's, `dx` metres east of the scenario's origin."""
        lat, lon = offset(dx, 0)
        point = {"type": "Point", "coordinates": [lon, lat]}
        conn.execute(insert(zones).values(
            subject_id=self.subject, name=name, kind=kind, shape="circle", geometry=point,
            radius_m=radius_m, width_m=0, buffer_m=0, victim=False, schedule=[], dwell_s=None,
            created_at=T))  # fmt: skip

    def _publish(self, topic: str, payload: bytes) -> bool:
        self.published.append((topic, payload))
        return True

    def tag_frame(self, ts: int, records: list[fr.Record]) -> Message:
        self.seq += 1
        f = fr.Frame(fr.TAG_DATA, self.tag_id, 1, self.seq, ts, records, fr.FLAG_TIME_VALID)
        return Message(topics.tag_up(self.tag_id), fr.encode(f, self.keys[self.tag_id]))

    def deliver(self, msgs: list[Message], at: float) -> None:
        self.clock.set(at)
        self.ingest.process(msgs)
