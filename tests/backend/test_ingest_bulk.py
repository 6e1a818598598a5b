"""The bulk insert path of ingest (multi-row statements straight to the driver) on real SQLite
and real PostgreSQL: batches larger than one statement, duplicates mixed in, arrival out of
event-time order; every position row must belong to the right frame, once."""

from __future__ import annotations

import random

from sqlalchemy import Engine, select

from backend.clock import ManualClock
from backend.ingest import DeviceDirectory, Ingest, Message
from backend.registry import Registry
from backend.settings import Settings
from backend.storage.schema import TAG, cell_of, frames, positions
from firmware import frame as fr
from firmware import topics
from tests.backend.conftest import T0
from tests.backend.frames import LAT0, LON0, acked, tag_frame

DEVICES = (3001, 3002, 3003)
FIXES = 10


def test_large_batches_with_duplicates_store_every_fix_once_under_its_frame(
    engine: Engine, registry: Registry, clock: ManualClock
) -> None:
    keys = {d: registry.register(d, TAG).key for d in DEVICES}
    published: list[tuple[str, bytes]] = []

    def publish(topic: str, payload: bytes) -> bool:
        published.append((topic, payload))
        return True

    ingest = Ingest(engine, DeviceDirectory(registry), publish, Settings(), clock)
    clock.set(T0 + 600 * 80)  # a backlog: every frame dated before backend now
    # 3 devices x 80 frames x 10 fixes: 240 frames and 2,400 positions, several statements'
    # worth of each (a statement takes at most 999 parameters).
    sent = {
        (d, s): tag_frame(d, keys[d], s, T0 + 600 * s, FIXES) for d in DEVICES for s in range(1, 81)
    }
    first = [(d, s) for (d, s) in sent if s <= 30]
    rest = [(d, s) for (d, s) in sent if s > 30]
    random.Random(5).shuffle(rest)  # arrival out of event-time order
    ingest.process([Message(topics.tag_up(d), sent[(d, s)]) for d, s in first])
    # The second batch repeats 20 stored frames (as another worker's retransmission would
    # arrive: unknown to this worker's guard, so the database must catch them).
    for d in DEVICES:
        ingest.guard.forget(d)
    again = first[::4][:20]
    batch = rest[:100] + again + rest[100:]
    result = ingest.process([Message(topics.tag_up(d), sent[(d, s)]) for d, s in batch])
    assert result.duplicates == len(again)
    assert len(result.stored) == len(rest)

    with engine.connect() as conn:
        stored = {(r.device, r.seq): r.id for r in conn.execute(select(frames))}
        rows = conn.execute(select(positions).order_by(positions.c.id)).all()
    assert set(stored) == set(sent)
    assert len(rows) == len(sent) * FIXES
    by_frame: dict[int, list[int]] = {}
    for row in rows:
        by_frame.setdefault(row.frame_id, []).append(row.idx)
    # Each frame's fixes, once each, under that frame's id, with the values they were sent with.
    assert all(sorted(idx) == list(range(FIXES)) for idx in by_frame.values())
    assert set(by_frame) == set(stored.values())
    ids = {fid: key for key, fid in stored.items()}
    for row in rows:
        d, s = ids[row.frame_id]
        i = row.idx
        assert row.device == d
        assert row.ts == T0 + 600 * s - 60 * (FIXES - 1 - i)
        assert (row.lat_e7, row.lon_e7) == (LAT0 + 1000 * i, LON0 - 1000 * i)
        assert row.cell == cell_of(row.lat_e7, row.lon_e7)
        assert (row.acc_dm, row.fix_type, row.sats, row.hdop_d) == (42, fr.FIX_3D, 9, 9)
    # Written in event-time order per device (ids increase with time within each device).
    for d in DEVICES:
        ts = [
            r.ts
            for r in rows
            if r.device == d and r.frame_id in {stored[k] for k in rest if k[0] == d}
        ]
        assert ts == sorted(ts)
    # Every frame, stored or duplicate, acknowledged to its own device.
    got: dict[int, set[tuple[int, int]]] = {d: set() for d in DEVICES}
    for topic, payload in published:
        where = topics.parse(topic)
        assert where is not None
        got[where[1]] |= acked(payload, keys[where[1]])
    assert got == {d: {(1, s) for s in range(1, 81)} for d in DEVICES}
