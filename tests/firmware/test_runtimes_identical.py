"""Invariant 1: MicroPython and CPython encode the same inputs to identical bytes."""

from __future__ import annotations

import json
import random

import pytest

from firmware import frame as fr
from firmware.framedict import frame_from_dict
from sim import micropython
from tests.firmware.test_frame_properties import LIMITS

CPYTHON_ONLY = "drives the micropython binary"


def _random_frame(rng: random.Random) -> fr.Frame:
    recs = []
    for _ in range(rng.randint(0, 12)):
        rtype = rng.choice(sorted(fr.SPECS))
        fmt = fr.SPECS[rtype][1]
        values = [rng.randint(*LIMITS[c]) for c in fmt[1:]]
        if rtype == fr.FIX:
            values[1] = rng.randint(-900_000_000, 900_000_000)
            values[2] = rng.randint(-1_800_000_000, 1_800_000_000)
        recs.append(fr.Record(rtype, tuple(values)))
    return fr.Frame(
        rng.choice(fr.MESSAGE_TYPES),
        rng.randint(0, 2**32 - 1),
        rng.randint(0, 2**16 - 1),
        rng.randint(0, 2**32 - 1),
        rng.randint(0, 2**32 - 1),
        recs,
        flags=rng.randint(0, 3),
        mac_len=rng.randint(fr.MAC_MIN, fr.MAC_MAX),
    )


@pytest.mark.micropython
def test_both_runtimes_encode_identical_bytes() -> None:
    rng = random.Random(20261127)
    specs = []
    for _ in range(300):
        key = rng.randbytes(rng.randint(1, 100))
        specs.append({"key": key.hex(), "frame": _random_frame(rng).to_dict()})
    stdin = "\n".join(json.dumps(s) for s in specs).encode()
    proc = micropython.run(["tests/firmware/mp_encode.py"], heap="256k", stdin=stdin)
    assert proc.returncode == 0, proc.stderr.decode()
    out = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert len(out) == len(specs)
    for spec, got in zip(specs, out, strict=True):
        f = frame_from_dict(spec["frame"])
        assert got["hex"] == fr.encode(f, bytes.fromhex(spec["key"])).hex()
        assert got["round_trip"]
