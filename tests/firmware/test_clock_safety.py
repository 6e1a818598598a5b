"""Clock safety, as a property on both runtimes: whatever a receiver said before (garbage,
placeholder dates, a wrong day, a date that lags a midnight rollover), once it sends a correct
stream the tag accepts correct fixes again within 3 minutes. Hypothesis draws the examples on
CPython and runs each on CPython; the same streams then run under MicroPython."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import micropython, nmea
from tests.firmware import clock_recovery as cr
from tests.firmware import fakeboard as fb

CPYTHON_ONLY = "hypothesis, sim.nmea, and drives the micropython binary"
LIMIT_S = 180  # the tag accepts correct fixes within 3 minutes of the correct stream
AFTER_S = LIMIT_S + 30
POS = nmea.Position(50.71617, -1.87535, 9, 0.9)
KINDS = ("garbage", "placeholder", "wrong_day", "rollover", "damaged")
EXAMPLES: list[dict[str, object]] = []  # what CPython ran, for the MicroPython run


@st.composite
def streams(draw: st.DrawFn) -> dict[str, object]:
    # The day starts at T0 or just before a midnight, so the correct stream may cross one.
    t0 = fb.T0 + draw(st.sampled_from([0, 43200, -30, -200]))
    segments = draw(
        st.lists(st.tuples(st.sampled_from(KINDS), st.integers(1, 150)), min_size=0, max_size=4)
    )
    profile = draw(st.sampled_from(sorted(p for p in nmea.PROFILES if p != "mtk-10hz")))
    seed = draw(st.integers(0, 2**16))
    rnd = random.Random(seed)
    out: list[bytes] = []
    for kind, n in segments:
        rx = nmea.Receiver("mtk" if kind == "placeholder" else profile, seed)
        rx.power_on((t0 + len(out)) * 1000, cold=True)
        for _ in range(n):
            s = len(out)
            if kind == "garbage":
                out.append(rnd.randbytes(rnd.randint(0, 300)))
            elif kind == "placeholder":  # before its time is known, then a 1980-dated fix
                out.append(rx.second(t0 + s, POS if s % 7 == 6 else None))
            elif kind == "wrong_day":
                shift = rnd.choice([86400, -86400, 2 * 86400, -1024 * 7 * 86400])
                out.append(rx.second(t0 + s + shift, POS))
            elif kind == "rollover":  # the date lags a day behind the time
                out.append(rx.second(t0 + s - 86400, POS))
            else:
                data = bytearray(rx.second(t0 + s, POS))
                for _ in range(rnd.randint(1, 5)):
                    if data:
                        data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
                out.append(bytes(data))
    start = len(out)
    rx = nmea.Receiver(profile, seed)
    rx.power_on((t0 + start) * 1000, cold=True)
    for s in range(start, start + AFTER_S):
        out.append(rx.second(t0 + s, POS))
    return {"seconds": len(out), "t0": t0, "from": start, "chunks": out}


def _run_cpython(ex: dict[str, object]) -> int:
    chunks: list[bytes] = ex["chunks"]  # type: ignore[assignment]

    def second_bytes(s: int) -> bytes:
        return chunks[s] if s < len(chunks) else b""

    return cr.first_true_fix(second_bytes, ex["seconds"], ex["t0"], ex["from"])  # type: ignore[arg-type]


@given(streams())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_correct_fixes_again_within_3_minutes_of_a_correct_stream(ex: dict[str, object]) -> None:
    got = _run_cpython(ex)
    assert 0 <= got - ex["from"] <= LIMIT_S, (got, ex["from"])  # type: ignore[operator]
    EXAMPLES.append(ex)


@pytest.mark.micropython
def test_the_same_streams_under_micropython() -> None:
    if not EXAMPLES:  # run alone: draw the examples here
        test_correct_fixes_again_within_3_minutes_of_a_correct_stream()
    stdin = b""
    for ex in EXAMPLES:
        chunks: list[bytes] = ex["chunks"]  # type: ignore[assignment]
        line = {k: ex[k] for k in ("seconds", "t0", "from")}
        line["hex"] = [c.hex() for c in chunks]
        stdin += json.dumps(line).encode() + b"\n"
    # (A harness heap: each example's stream is one JSON line; the tag's own budget is
    # tests/hil's.)
    proc = micropython.run(
        ["tests/firmware/mp_clock_recovery.py"], heap="16m", stdin=stdin, timeout=900
    )
    assert proc.returncode == 0, proc.stderr.decode()
    got = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert len(got) == len(EXAMPLES)
    for ex, g in zip(EXAMPLES, got, strict=True):
        assert g == _run_cpython(ex), ex["from"]
        assert 0 <= g - ex["from"] <= LIMIT_S  # type: ignore[operator]
