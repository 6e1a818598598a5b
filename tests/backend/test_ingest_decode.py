"""Ingest's fast path for frames of nothing but fixes (backend.ingest.parse_fixes) against the
codec (firmware/frame.py parse): it accepts only what the codec accepts, yields the same
header, signed bytes, MAC and fix values, and leaves everything else to the codec: other
record types, fixes with extra bytes, bad lengths, values off the globe, random corruption."""

from __future__ import annotations

import random

from sqlalchemy import Engine, select

from backend.clock import ManualClock
from backend.ingest import DeviceDirectory, FixFrame, Ingest, Message, parse_fixes
from backend.registry import Registry
from backend.settings import Settings
from backend.storage.schema import TAG, device_events, positions, security_events
from firmware import frame as fr
from firmware import topics
from tests.backend.conftest import T0
from tests.backend.frames import LAT0, LON0, fix, tag_frame

KEY = bytes(range(32))


def _same_as_codec(data: bytes) -> None:
    """parse_fixes either declines or agrees with fr.parse in every respect."""
    fast = parse_fixes(data)
    try:
        want = fr.parse(data)
    except fr.DecodeError:
        assert fast is None, "the fast path accepted a frame the codec rejects"
        return
    if fast is None:
        assert (
            any(r.type != fr.FIX or r.extra for r in want.records)
            or not want.records
            or (want.mtype not in (fr.TAG_DATA, fr.HOME_DATA))
        ), "the fast path declined a plain fix frame"
        return
    f, fixes, idx = fast
    assert isinstance(f, FixFrame)
    for attr in ("version", "mtype", "flags", "mac_len", "device", "boot", "seq", "ts"):
        assert getattr(f, attr) == getattr(want, attr), attr
    assert (f.signed, f.mac) == (want.signed, want.mac)
    assert fixes == [r.values for r in want.records]
    assert list(idx) == list(range(len(want.records)))
    assert all(r.type == fr.FIX and not r.extra for r in want.records)
    # Records, when asked for, are the codec's own.
    assert f.records == want.records


def test_fix_frames_of_every_size_match_the_codec() -> None:
    for n in (1, 2, 10, fr.MAX_BODY // 22):
        data = tag_frame(7, KEY, 3, T0, n)
        assert parse_fixes(data) is not None
        _same_as_codec(data)
    # Extreme but valid values.
    edge = fr.Record(fr.FIX, (65535, 900_000_000, -1_800_000_000, 65535, 255, 255, 255, 0, 0, 0))
    data = fr.encode(fr.Frame(fr.TAG_DATA, 2**32 - 1, 65535, 2**32 - 1, 0, [edge], 0, 32), KEY)
    assert parse_fixes(data) is not None
    _same_as_codec(data)


def test_other_frames_go_to_the_codec() -> None:
    battery = fr.Record(fr.BATTERY, dt=0, level=50, flags=0, mv=3900, hours_left=20)
    mixed = fr.encode(fr.Frame(fr.TAG_DATA, 7, 1, 1, T0, [fix(0), battery], 1), KEY)
    empty = fr.encode(fr.Frame(fr.TAG_DATA, 7, 1, 1, T0, [], 1), KEY)
    ack = fr.encode(fr.Frame(fr.ACK, 7, 0, 0, T0, [fix(0)], 1), KEY)
    longer = fix(0)
    longer.extra = b"\x01\x02"  # a newer version's extra field
    extended = fr.encode(fr.Frame(fr.TAG_DATA, 7, 1, 1, T0, [longer], 1), KEY)
    off_globe = fr.Record(fr.FIX, (0, 900_000_001, LON0, 42, 2, 0, 9, 0, 0, 9))
    bad_value = fr.encode(fr.Frame(fr.TAG_DATA, 7, 1, 1, T0, [off_globe], 1), KEY)
    for data in (mixed, empty, ack, extended, bad_value):
        assert parse_fixes(data) is None
        _same_as_codec(data)
    assert parse_fixes(b"") is None
    assert parse_fixes(bytearray(tag_frame(7, KEY, 1, T0, 2))) is None  # type: ignore[arg-type]


def test_corrupted_frames_never_disagree_with_the_codec() -> None:
    rnd = random.Random(5)
    base = [tag_frame(7, KEY, 1, T0, n) for n in (1, 3, 10)]
    for _ in range(4000):
        data = bytearray(rnd.choice(base))
        how = rnd.randrange(4)
        if how == 0:  # flip bytes (headers, record headers, values, MAC)
            for _k in range(rnd.randint(1, 3)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        elif how == 1:
            del data[rnd.randrange(len(data)) :]
        elif how == 2:
            data += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 30)))
        else:  # a record header byte only: the commonest structural damage
            data[20 + 22 * rnd.randrange(len(data) // 22 - 1) + rnd.randrange(2)] ^= (
                1 << rnd.randrange(8)
            )
        _same_as_codec(bytes(data))


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
    assert parse_fixes(fast) is not None and parse_fixes(slow) is None
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
