"""Property tests of the frame codec (CPython only: Hypothesis does not run on MicroPython;
tests/firmware/test_runtimes_identical.py carries generated frames across to it)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import frame as fr
from firmware import replay

CPYTHON_ONLY = "hypothesis"

# Each struct code's range, written out here as an oracle independent of the codec's checks.
LIMITS = {
    "B": (0, 0xFF),
    "b": (-0x80, 0x7F),
    "H": (0, 0xFFFF),
    "h": (-0x8000, 0x7FFF),
    "I": (0, 0xFFFFFFFF),
    "i": (-0x80000000, 0x7FFFFFFF),
}


def _values(fmt: str) -> st.SearchStrategy[tuple[int, ...]]:
    return st.tuples(*(st.integers(*LIMITS[c]) for c in fmt[1:]))


@st.composite
def records(draw: st.DrawFn) -> fr.Record:
    rtype = draw(st.sampled_from(sorted(fr.SPECS)))
    _name, fmt, _ = fr.SPECS[rtype]
    values = list(draw(_values(fmt)))
    if rtype == fr.FIX:
        values[1] = draw(st.integers(-900_000_000, 900_000_000))
        values[2] = draw(st.integers(-1_800_000_000, 1_800_000_000))
    rec = fr.Record(rtype, tuple(values))
    if draw(st.booleans()):
        rec.extra = draw(st.binary(max_size=8))
    return rec


unknown_records = st.builds(
    lambda t, raw: fr.Record(t, raw=raw),
    st.integers(1, 255).filter(lambda t: t not in fr.SPECS),
    st.binary(max_size=40),
)


@st.composite
def frames(draw: st.DrawFn) -> fr.Frame:
    head = draw(_values(fr.HEADER_FMT))
    recs = draw(st.lists(st.one_of(records(), unknown_records), max_size=12))
    return fr.Frame(
        draw(st.sampled_from(fr.MESSAGE_TYPES)),
        head[4],
        head[5],
        head[6],
        head[7],
        recs,
        flags=head[2],
        mac_len=draw(st.integers(fr.MAC_MIN, fr.MAC_MAX)),
    )


keys = st.binary(min_size=1, max_size=80)
# No per-example deadline: these check correctness, and a 2-core CI machine shared with other
# suites can stall one example past Hypothesis's default 200 ms (a flaky failure, not a bug).
NO_DEADLINE = settings(deadline=None)


@given(st.binary(max_size=400))
@settings(max_examples=2000, deadline=None)
def test_any_bytes_give_a_frame_or_a_decode_error(data: bytes) -> None:
    try:
        f = fr.parse(data)
    except fr.DecodeError as e:
        assert e.reason in {
            "short",
            "version",
            "message_type",
            "mac_len",
            "body",
            "length",
            "record_truncated",
            "record_short",
            "record_type",
            "value",
        }
    else:
        assert f.signed + f.mac == data


@given(frames(), st.binary(max_size=300))
@NO_DEADLINE
def test_mutated_valid_frames_never_raise_anything_else(f: fr.Frame, noise: bytes) -> None:
    data = bytearray(fr.encode(f, b"k"))
    for i, b in enumerate(noise):
        data[(i * 7919) % len(data)] ^= b
    try:
        fr.decode(bytes(data), b"k")
    except fr.DecodeError:
        pass


@given(frames(), keys)
@NO_DEADLINE
def test_every_field_round_trips(f: fr.Frame, key: bytes) -> None:
    data = fr.encode(f, key)
    g = fr.decode(data, key)
    assert g.to_dict() == f.to_dict()
    assert g.records == f.records
    assert fr.encode(g, key) == data


@given(frames(), keys, st.data())
@NO_DEADLINE
def test_any_flipped_bit_fails(f: fr.Frame, key: bytes, data: st.DataObject) -> None:
    raw = bytearray(fr.encode(f, key))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    try:
        fr.decode(bytes(raw), key)
    except fr.DecodeError:
        return
    raise AssertionError(f"bit {bit} flipped and the frame still decoded")


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 200)), max_size=200))
@NO_DEADLINE
def test_guard_reports_each_frame_new_once(seen: list[tuple[int, int]]) -> None:
    # Whatever the order and repetition, a (boot, seq) is never NEW or LATE twice, and a
    # repeat within the window is always reported DUPLICATE.
    guard = replay.SequenceGuard(window=64)
    first: set[tuple[int, int]] = set()
    for boot, seq in seen:
        status = guard.accept(1, boot, seq)
        if status in (replay.NEW, replay.LATE):
            assert (boot, seq) not in first
            first.add((boot, seq))
        elif status == replay.DUPLICATE:
            assert (boot, seq) in first


def test_vector_bytes_match_an_independent_construction() -> None:
    # Build the one_fix vector from struct and CPython's hmac, not the codec.
    import hmac
    import json
    from pathlib import Path

    v = json.loads((Path(__file__).parents[1] / "vectors" / "frames.json").read_text())[0]
    fx = v["frame"]["records"][0]
    body_rec = struct.pack(
        ">HiiHBBBHHB",
        fx["dt"],
        fx["lat_e7"],
        fx["lon_e7"],
        fx["acc_dm"],
        fx["fix_type"],
        fx["source"],
        fx["sats"],
        fx["speed_cms"],
        fx["course_cd"],
        fx["hdop_d"],
    )
    body = bytes((0x01, len(body_rec))) + body_rec
    h = v["frame"]
    head = struct.pack(
        ">BBBBIHIIH", 1, 1, h["flags"], 12, h["device"], h["boot"], h["seq"], h["ts"], len(body)
    )
    key = bytes.fromhex(v["key"])
    expect = head + body + hmac.new(key, head + body, "sha256").digest()[:12]
    assert expect.hex() == v["hex"]
    assert abs(fx["lat_e7"] / 1e7 - 50.7192) < 1e-7
