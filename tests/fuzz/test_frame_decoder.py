"""Fuzzing the wire-frame decoder (firmware/frame.py) with hypothesis over the committed
corpus: any input is either a Frame or a DecodeError with a reason, never another
exception; and no change to a signed frame ever verifies under the device's key."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import frame as fr

CORPUS = Path(__file__).parent.parent / "corpus" / "frames"
VECTORS = Path(__file__).parent.parent / "vectors" / "frames.json"
SEEDS = sorted(p.read_bytes() for p in CORPUS.glob("*.bin"))
SIGNED = [
    (bytes.fromhex(v["hex"]), bytes.fromhex(v["key"])) for v in json.loads(VECTORS.read_text())
]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "splice"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif op == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            data = (
                data[: draw(st.integers(0, len(data)))] + other[draw(st.integers(0, len(other))) :]
            )
    return bytes(data)


def _parse_or_reason(data: bytes) -> fr.Frame | str:
    try:
        return fr.parse(data)
    except fr.DecodeError as e:
        assert e.reason, "a DecodeError always names its reason"
        return e.reason


def test_the_corpus_replays() -> None:
    outcomes = {p.name: _parse_or_reason(p.read_bytes()) for p in sorted(CORPUS.glob("*.bin"))}
    assert all(isinstance(v, fr.Frame) for k, v in outcomes.items() if k.startswith("valid_"))
    # Structure-only parse: the bit flip is caught by the MAC (below), not by parse.
    assert all(
        isinstance(v, str) for k, v in outcomes.items()
        if k.startswith("invalid_") and k != "invalid_bit_flipped.bin"
    )  # fmt: skip


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(SEEDS)))
def test_parse_never_raises_anything_but_decode_error(data: bytes) -> None:
    got = _parse_or_reason(data)
    if isinstance(got, fr.Frame):
        assert 0 <= got.device <= 0xFFFFFFFF
        for rec in got.records:
            # A known type has its name; an unknown one is kept raw (forward compatible).
            assert 0 <= rec.type <= 255 and (rec.name is not None or rec.type not in fr.SPECS)
    assert fr.peek_device(data) is None or isinstance(fr.peek_device(data), int)


@FUZZ
@given(st.data())
def test_no_modified_frame_verifies_under_the_device_key(data: st.DataObject) -> None:
    raw, key = data.draw(st.sampled_from(SIGNED))
    changed = data.draw(mutated([raw]))
    if changed == raw:
        return
    try:
        fr.decode(changed, key)
    except fr.DecodeError:
        return
    raise AssertionError(f"a modified frame verified: {changed.hex()}")


@FUZZ
@given(st.data())
def test_decode_with_any_key_is_decode_error_or_the_genuine_frame(data: st.DataObject) -> None:
    raw, key = data.draw(st.sampled_from(SIGNED))
    other = data.draw(st.binary(min_size=32, max_size=32))
    try:
        got = fr.decode(raw, other)
    except fr.DecodeError as e:
        assert e.reason == "mac"
        return
    assert other == key and got.device == fr.parse(raw).device
