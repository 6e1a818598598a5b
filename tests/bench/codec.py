"""Codec throughput: encode+sign and decode+verify of a 10-fix frame, under CPython
and under MicroPython, each beside hashlib.sha256 of the same bytes in the same run."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from firmware import frame as fr
from sim import micropython

KEY = bytes(range(32))


def _frame(seq: int) -> fr.Frame:
    recs = [
        fr.Record(fr.FIX, (600 - 60 * i, 507192000 + i, -18808000 - i, 42, 2, 0, 9, 140, 27000, 9))
        for i in range(10)
    ]
    return fr.Frame(fr.TAG_DATA, 1001, 1, seq, 1_790_000_000, recs, fr.FLAG_TIME_VALID)


def cpython(n: int = 20_000) -> dict[str, Any]:
    frames = [_frame(i) for i in range(n)]
    t = time.perf_counter()
    wire = [fr.encode(f, KEY) for f in frames]
    enc = time.perf_counter() - t
    t = time.perf_counter()
    for w in wire:
        fr.decode(w, KEY)
    dec = time.perf_counter() - t
    t = time.perf_counter()
    for w in wire:
        hashlib.sha256(w).digest()
    raw = time.perf_counter() - t
    return {"n": n, "bytes": len(wire[0]), "encode_s": enc, "decode_s": dec, "sha256_s": raw}


def micropython_run(n: int = 2_000) -> dict[str, Any]:
    proc = micropython.run(["tests/bench/mp_codec.py", str(n)], heap="256k", timeout=600)
    if proc.returncode != 0:
        raise RuntimeError((proc.stdout + proc.stderr).decode())
    d = json.loads(proc.stdout)
    return {
        "n": d["n"],
        "bytes": d["bytes"],
        "encode_s": d["encode_us"] / 1e6,
        "decode_s": d["decode_us"] / 1e6,
        "sha256_s": d["sha256_us"] / 1e6,
    }


def rows() -> list[tuple[str, str, str, str]]:
    out = []
    for runtime, r in (("CPython", cpython()), ("MicroPython", micropython_run())):
        n = r["n"]
        raw_rate = n / r["sha256_s"]
        for op in ("encode", "decode"):
            rate = n / r[f"{op}_s"]
            label = "encode+sign" if op == "encode" else "decode+verify"
            out.append(
                (
                    f"codec {runtime}",
                    f"{label}, 10-fix frame ({r['bytes']} B)",
                    f"{rate:,.0f} frames/s",
                    f"{rate / raw_rate:.3f} x sha256 ({raw_rate:,.0f}/s)",
                )
            )
    return out
