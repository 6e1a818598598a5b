"""The receivers' parse (firmware/fixframe.py) against the codec's (firmware/frame.py parse):
its fast path accepts only what the codec accepts, yields the same header, signed bytes, MAC
and fix values, and leaves everything else to the codec: other record types, fixes with extra
bytes, bad lengths, values off the globe, random corruption. parse() as a whole agrees with
the codec on every input, the codec's rejections included."""

from __future__ import annotations

import random

from firmware import fixframe
from firmware import frame as fr
from tests.backend.frames import LAT0, LON0, fix, tag_frame

CPYTHON_ONLY = "the fast path is CPython's (struct.iter_unpack): the tag never imports it"

KEY = bytes(range(32))
T0 = 1_790_000_000


def _same_as_codec(data: bytes) -> None:
    """parse_fixes either declines or agrees with fr.parse in every respect; parse agrees
    with fr.parse always, and rejects what it rejects with the same reason."""
    fast = fixframe.parse_fixes(data)
    try:
        want = fr.parse(data)
    except fr.DecodeError as e:
        assert fast is None, "the fast path accepted a frame the codec rejects"
        try:
            fixframe.parse(data)
        except fr.DecodeError as mine:
            assert (mine.reason, mine.detail) == (e.reason, e.detail)
        else:
            raise AssertionError("parse accepted a frame the codec rejects") from e
        return
    f, fixes, idx = fixframe.parse(data)
    for attr in ("version", "mtype", "flags", "mac_len", "device", "boot", "seq", "ts"):
        assert getattr(f, attr) == getattr(want, attr), attr
    assert (f.signed, f.mac) == (want.signed, want.mac)
    assert fixes == [r.values for r in want.records if r.type == fr.FIX]
    assert list(idx) == [i for i, r in enumerate(want.records) if r.type == fr.FIX]
    # Records, when asked for, are the codec's own.
    assert f.records == want.records
    if fast is None:
        assert (
            any(r.type != fr.FIX or r.extra for r in want.records)
            or not want.records
            or (want.mtype not in (fr.TAG_DATA, fr.HOME_DATA))
        ), "the fast path declined a plain fix frame"
        assert not isinstance(f, fixframe.FixFrame)
        return
    assert isinstance(f, fixframe.FixFrame) and fast[0].signed == f.signed
    assert all(r.type == fr.FIX and not r.extra for r in want.records)


def test_fix_frames_of_every_size_match_the_codec() -> None:
    for n in (1, 2, 10, fr.MAX_BODY // 22):
        data = tag_frame(7, KEY, 3, T0, n)
        assert fixframe.parse_fixes(data) is not None
        _same_as_codec(data)
    # Extreme but valid values.
    edge = fr.Record(fr.FIX, (65535, 900_000_000, -1_800_000_000, 65535, 255, 255, 255, 0, 0, 0))
    data = fr.encode(fr.Frame(fr.TAG_DATA, 2**32 - 1, 65535, 2**32 - 1, 0, [edge], 0, 32), KEY)
    assert fixframe.parse_fixes(data) is not None
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
        assert fixframe.parse_fixes(data) is None
        _same_as_codec(data)
    assert fixframe.parse_fixes(b"") is None
    assert fixframe.parse_fixes(bytearray(tag_frame(7, KEY, 1, T0, 2))) is None  # type: ignore[arg-type]
    # The mixed frame's fixes are picked out of the codec's records, with their indexes.
    _f, fixes, idx = fixframe.parse(mixed)
    assert (fixes, list(idx)) == ([fix(0).values], [0])


def test_off_globe_fixes_are_the_codecs_value_rejection() -> None:
    for lat, lon in ((900_000_001, LON0), (-900_000_001, LON0), (LAT0, 1_800_000_001)):
        assert not fr.fix_in_range((0, lat, lon))
        off = fr.Record(fr.FIX, (0, lat, lon, 42, 2, 0, 9, 0, 0, 9))
        data = fr.encode(fr.Frame(fr.TAG_DATA, 7, 1, 1, T0, [fix(0), off], 1), KEY)
        try:
            fixframe.parse(data)
        except fr.DecodeError as e:
            assert e.reason == "value"
        else:
            raise AssertionError("an off-globe fix was accepted")


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


def test_golden_vectors_parse_as_the_codec_parses_them() -> None:
    import json
    from pathlib import Path

    vectors = Path(__file__).resolve().parents[1] / "vectors"
    for name in ("frames.json", "invalid.json"):
        for v in json.loads((vectors / name).read_text()):
            _same_as_codec(bytes.fromhex(v["hex"]))
