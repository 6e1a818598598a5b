"""Tag firmware: poll cost under MicroPython beside a bare step loop, a simulated
day under the real micropython binary (HIL, lock-step, real Mosquitto) with its heap
high-water mark and energy ledger, the .mpy image size, and the projected battery life for a
typical day (10 h out moving, 14 h at home at rest) beside commercial tags' 24-72 h."""

from __future__ import annotations

import ast
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from backend.broker import Mosquitto
from hw import boarddef
from sim import micropython
from sim.hil import HilConfig, HilTag
from tests.firmware import code_heap
from tests.hil.peer import ScriptedBackend

HOUR = 3_600_000
# 64 KiB scaled for the word size: the device budget on this 64-bit host (docs/firmware.md).
DAY_HEAP = "64wk"


def poll_cost(minutes: int = 60) -> dict[str, Any]:
    proc = micropython.run(
        ["tests/firmware/mp_poll_bench.py", str(minutes)], heap="256k", timeout=600
    )
    if proc.returncode != 0:
        raise RuntimeError((proc.stdout + proc.stderr).decode())
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def simulated_day() -> dict[str, Any]:
    key = hashlib.sha256(b"tagwatch bench tag").digest()
    with Mosquitto() as broker, tempfile.TemporaryDirectory() as tmp:
        backend = ScriptedBackend(broker.host, broker.port, {9001: key})
        cfg = HilConfig(
            device=9001,
            key=key,
            workdir=Path(tmp),
            brokers=[f"{broker.host}:{broker.port}"],
            heap=DAY_HEAP,
        )
        try:
            with HilTag(cfg) as tag:
                t = time.perf_counter()
                tag.start()
                tag.run_until(10 * HOUR, moving=True)
                tag.run_until(24 * HOUR)
                real = time.perf_counter() - t
                rep = tag.report()
                tag.stop()
        finally:
            backend.close()
    rep["real_s"] = real
    rep["frames_received"] = len(backend.frames)
    return rep


def nmea_reader() -> list[tuple[str, str, str, str]]:
    """Sentences/s of the NMEA reader on the real captures, CPython and MicroPython, beside a
    bare split-and-checksum loop over the same bytes in the same run."""
    import subprocess
    import sys

    out = []
    for runtime in ("CPython", "MicroPython"):
        if runtime == "CPython":
            proc = subprocess.run(
                [sys.executable, "-m", "tests.firmware.mp_nmea_bench", "40"],
                capture_output=True,
                cwd=micropython.repo_root(),
                check=True,
            )
        else:
            proc = micropython.run(["tests/firmware/mp_nmea_bench.py", "20"], heap="256k")
        r = json.loads(proc.stdout)
        per_s = r["sentences"] / (r["reader_us"] / 1e6)
        out.append(
            (
                "firmware",
                f"NMEA reader on the real captures ({runtime}, 64-byte reads)",
                f"{per_s / 1000:.1f} k sentences/s",
                f"{r['reader_us'] / r['raw_us']:.1f}x a bare split-and-checksum loop",
            )
        )
    return out


def image_size() -> tuple[int, int]:
    """(.mpy bytes, .py bytes) of the modules the freeze manifest puts in the image."""
    root = micropython.compiled_root()
    src = micropython.repo_root() / "firmware"
    tree = ast.parse((src / "manifest.py").read_text())
    files: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "package":
            for kw in node.keywords:
                if kw.arg == "files" and isinstance(kw.value, ast.Tuple):
                    files = [ast.literal_eval(e) for e in kw.value.elts]
    mpy = sum((root / "firmware" / f).with_suffix(".mpy").stat().st_size for f in files)
    py = sum((src / f).stat().st_size for f in files)
    return mpy, py


def rows() -> list[tuple[str, str, str, str]]:
    pc = poll_cost()
    per = pc["poll_us"] / pc["polls"]
    raw = pc["raw_us"] / pc["polls"]
    day = simulated_day()
    mpy, py = image_size()
    uah = sum(day["uah"].values())
    cap = boarddef.load("virtual")["battery_mah"]
    hours = cap * 1000 / uah * 24
    peak, code = day["heap_peak"], day["heap_code"]
    loaded: list[tuple[str, str, str, str]] = []
    for paired in (False, True):
        # What a tag really loads (tests/firmware/code_heap.py): all day, at boot, and what
        # zones and a running command add.
        when = dict(code_heap.tag_modules(paired))
        mods = code_heap.measure(tuple(when))
        t = code_heap.totals(mods, paired)
        resident = [
            m for m in mods if when[str(m["module"])] in (code_heap.ALWAYS, code_heap.PAIRED)
        ]
        qstr = sum(int(m["qstr_bytes"]) for m in resident)
        top = sorted(
            ((str(m["module"])[9:], int(m["heap"])) for m in resident), key=lambda x: -x[1]
        )
        loaded.append(
            (
                "firmware",
                f"heap taken by the code a{' paired' if paired else 'n unpaired'} tag loads"
                f" ({len(resident)} modules all day, unix port)",
                f"{t['day'] / 1024:.1f} KiB all day (qstr pools {qstr / 1024:.1f}),"
                f" {t['boot'] / 1024:.1f} at boot; +{t['zones'] / 1024:.1f} with zones,"
                f" +{t['command'] / 1024:.1f} while a command runs",
                "biggest: " + ", ".join(f"{n} {b / 1024:.1f}" for n, b in top[:4]),
            )
        )
    return [
        *nmea_reader(),
        (
            "firmware",
            f"poll() under MicroPython, moving ({pc['polls']} polls/h)",
            f"{per:.0f} µs/poll",
            f"{per / raw:.0f}x a bare step loop ({raw:.1f} µs)",
        ),
        (
            "firmware",
            "simulated day under micropython (HIL, lock-step, Mosquitto)",
            f"{day['real_s']:.1f} s for 24 h, {day['polls']} polls, {day['fixes']} fixes",
            f"{86400 / day['real_s']:.0f}x real time",
        ),
        (
            "firmware",
            f"heap high-water, the day at -X heapsize={DAY_HEAP} (unix port, 64-bit)",
            f"{peak / 1024:.1f} KiB live = {code / 1024:.1f} loaded code + board"
            f" + {(peak - code) / 1024:.1f} data",
            f"{peak / (128 * 1024):.0%} of the 128 KiB that 64wk gives; data"
            f" {(peak - code) / (64 * 1024):.0%} of a 64 KiB device heap",
        ),
        *loaded,
        (
            "firmware",
            ".mpy size of the image modules (manifest)",
            f"{mpy / 1024:.1f} KiB",
            f"{mpy / py:.2f}x the .py source ({py / 1024:.1f} KiB)",
        ),
        (
            "firmware",
            "projected battery life, 10 h moving + 14 h at rest (GPS mode)",
            f"{hours:.0f} h on {cap} mAh ({uah / 1000:.1f} mAh/day: "
            + ", ".join(f"{k} {v / 1000:.1f}" for k, v in sorted(day["uah"].items()))
            + ")",
            f"{hours / 72:.1f}x the best commercial tag (24-72 h)",
        ),
    ]
