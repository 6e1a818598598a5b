"""Ingest stores the same rows whether a frame takes the codec's fast path for frames of
nothing but fixes (firmware/fixframe.py, tested against the codec in
tests/firmware/test_fixframe.py) or its general parse."""

from __future__ import annotations

from sqlalchemy import Engine, select

from backend.clock import ManualClock
from backend.ingest import DeviceDirectory, Ingest, Message
from backend.registry import Registry
from backend.settings import Settings
from backend.storage.schema import TAG, device_events, positions, security_events
from firmware import fixframe, topics
from firmware import frame as fr
from tests.backend.conftest import T0
from tests.backend.frames import LAT0, LON0, fix


def test_pipeline_stores_the_same_rows_either_way(engine: Engine, registry: Registry) -> None:
    """A fix-only frame (fast path) and the same fixes beside a battery record (codec path)
    give identical position rows; the off-globe fix is rejected with the codec's reason."""
    clock = ManualClock(T0 + 60)
    key_a = registry.register(4001, TAG).key
    key_b = registry.register(4002, TAG).key
    ingest = Ingest(engine, DeviceDirectory(registry), lambda t, p: True, Settings(), clock)
    recs = [fix(120 - 60 * i, LAT0 + 777 * i, LON0 - 333 * i) for i in range(3)]
    battery = fr.Record(fr.BATTERY, dt=5, level=50, flags=0, mv=3900, hours_left=20)
    fast = fr.encode(fr.Frame(fr.TAG_DATA, 4001, 1, 1, T0, recs, fr.FLAG_TIME_VALID), key_a)
    slow = fr.encode(fr.Frame(fr.TAG_DATA, 4002, 1, 1, T0, [recs[0], battery, *recs[1:]], 1), key_b)
    off = fr.Record(fr.FIX, (0, 900_000_001, LON0, 42, 2, 0, 9, 0, 0, 9))
    bad = fr.encode(fr.Frame(fr.TAG_DATA, 4001, 1, 2, T0, [off], 1), key_a)
    assert fixframe.parse_fixes(fast) is not None and fixframe.parse_fixes(slow) is None
    result = ingest.process(
        [Message(topics.tag_up(4001), fast), Message(topics.tag_up(4002), slow),
         Message(topics.tag_up(4001), bad)]
    )  # fmt: skip
    assert [r.reason for r in result.rejected] == ["value"]
    assert len(result.stored) == 2
    # Rule evaluation sees the codec's records on both paths.
    by_dev = {s.device: s.frame for s in result.stored}
    assert by_dev[4001].records == recs
    assert by_dev[4002].records == [recs[0], battery, *recs[1:]]
    cols = [c for c in positions.c if c.name not in ("id", "device", "frame_id")]
    with engine.connect() as conn:
        rows = {
            d: [
                tuple(r)
                for r in conn.execute(
                    select(*cols).where(positions.c.device == d).order_by(positions.c.ts)
                )
            ]
            for d in (4001, 4002)
        }
        kinds = conn.execute(select(device_events.c.kind)).scalars().all()
        sec = conn.execute(select(security_events.c.reason)).scalars().all()
    assert len(rows[4001]) == 3
    # Same fixes, same rows, except the record index (the battery record shifts it).
    assert [r[:-1] for r in rows[4001]] == [r[:-1] for r in rows[4002]]
    assert [r[-1] for r in rows[4001]] == [0, 1, 2]
    assert [r[-1] for r in rows[4002]] == [0, 2, 3]
    assert [r[0] for r in rows[4001]] == [T0 - 120, T0 - 60, T0]
    assert kinds == ["battery"]
    assert sec == ["value"]
