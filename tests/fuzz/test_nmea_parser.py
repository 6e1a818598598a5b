"""Fuzzing the NMEA reader (firmware/nmea.py) with hypothesis over the committed corpus:
whatever bytes a UART delivers, in whatever chunks, the reader never raises, counts every
line it drops, and only ever produces fixes with coordinates on the globe."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import nmea

CORPUS = Path(__file__).parent.parent / "corpus" / "nmea"
SEEDS = sorted(p.read_bytes() for p in CORPUS.rglob("*.nmea"))  # with the real captures
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run(stream: bytes, cuts: list[int]) -> nmea.Reader:
    r = nmea.Reader()
    last = 0
    for c in [*sorted(set(cuts)), len(stream)]:
        r.feed(stream[last:c])
        last = c
    return r


def _fixes(r: nmea.Reader) -> list[nmea.Fix]:
    out = []
    while (f := r.take()) is not None:
        out.append(f)
    return out


def _check(r: nmea.Reader) -> None:
    for f in _fixes(r):
        assert -900_000_000 <= f.lat_e7 <= 900_000_000
        assert -1_800_000_000 <= f.lon_e7 <= 1_800_000_000
        assert f.fix_type in (0, 1, 2)
        assert f.tod_ms == -1 or 0 <= f.tod_ms < 86_400_000
    assert min(r.good, r.bad(), r.ignored) >= 0


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "delete", "insert", "noise"]))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 10))]
        elif op == "insert":
            data[i:i] = draw(st.sampled_from([b",", b"*", b"$", b"\r\n", b".", b"-", b"99999"]))
        else:
            data[i:i] = draw(st.binary(max_size=12))
    return bytes(data)


def test_the_corpus_replays_with_its_known_outcome() -> None:
    by_name = {p.name: p.read_bytes() for p in CORPUS.glob("*.nmea")}
    good = _run(by_name["fix_dorset.nmea"], [])
    fixes = _fixes(good)
    assert [f.valid for f in fixes] == [True, True] and good.bad() == 0
    assert abs(fixes[0].lat_e7 - 507_150_000) < 20 and abs(fixes[0].lon_e7 + 24_500_000) < 20
    assert _run(by_name["bad_checksum.nmea"], []).checksum_errors == 1
    assert _run(by_name["overlong.nmea"], []).overlong == 1
    noisy = _run(by_name["cut_and_noise.nmea"], [])
    assert noisy.bad() >= 2
    for data in by_name.values():
        _check(_run(data, []))


@FUZZ
@given(damaged(), st.lists(st.integers(0, 2000), max_size=8))
def test_damaged_streams_in_any_chunking_never_raise(stream: bytes, cuts: list[int]) -> None:
    _check(_run(stream, cuts))


@FUZZ
@given(st.binary(max_size=500))
def test_random_bytes_never_raise_and_are_counted(stream: bytes) -> None:
    r = _run(stream, [])
    _check(r)
    if b"\n" not in stream and b"\r" not in stream:
        assert r.good == 0  # no line ended, nothing parsed


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(st.integers(0, 2000), max_size=10))
def test_chunking_does_not_change_the_result(stream: bytes, cuts: list[int]) -> None:
    whole, chunked = _run(stream, []), _run(stream, cuts)
    assert [vars(f) for f in _fixes(whole)] == [vars(f) for f in _fixes(chunked)]
    assert (whole.good, whole.bad(), whole.ignored) == (
        chunked.good,
        chunked.bad(),
        chunked.ignored,
    )
