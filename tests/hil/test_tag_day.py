"""A whole simulated day (10 h out moving, 14 h at home at rest) of the firmware under the
real micropython binary, lock-step through a real Mosquitto: no MemoryError, everything
delivered once, and the heap high-water mark reported."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from backend.broker import Mosquitto
from sim.hil import HilConfig, HilTag
from tests.hil.peer import ScriptedBackend

pytestmark = [pytest.mark.micropython, pytest.mark.broker]

HOUR = 3_600_000
DEVICE = 2024
KEY = hashlib.sha256(b"tagwatch day test key").digest()
# The unix port loads .mpy bytecode, function objects and interned names into the heap (a device
# runs them frozen from flash), and on this 64-bit host every object pointer is twice the size
# of the ESP32-S3's. `64wk` is a 64 KiB heap scaled for the word size (128 KiB here): the
# faithful emulation of the device's 64 KB budget. What the application's own data takes (the
# high-water mark above the loaded code) must stay far inside it.
HEAP = "64wk"
HEAP_BYTES = 64 * 1024 * (2 if sys.maxsize > 2**32 else 1)  # what 64wk gives on this host
DATA_BUDGET = 16 * 1024


def test_simulated_day_small_heap(broker: Mosquitto, tmp_path: Path) -> None:
    backend = ScriptedBackend(broker.host, broker.port, {DEVICE: KEY})
    cfg = HilConfig(
        device=DEVICE,
        key=KEY,
        workdir=tmp_path,
        brokers=[f"{broker.host}:{broker.port}"],
        heap=HEAP,
        start_ticks=(1 << 30) - 5 * HOUR,  # the tick counter wraps during the day
    )
    try:
        with HilTag(cfg) as tag:
            tag.start()
            tag.run_until(10 * HOUR, moving=True)
            tag.run_until(24 * HOUR)
            rep = tag.report()
            tag.stop()
            assert tag.proc is None and b"MemoryError" not in tag.stderr
    finally:
        backend.close()
    data = rep["heap_peak"] - rep["heap_code"]
    print(
        f"\nheap high-water {rep['heap_peak']} B live after a collection "
        f"(loaded code {rep['heap_code']} B + data {data} B) at -X heapsize={HEAP} "
        f"({HEAP_BYTES} B on this host)"
    )
    assert rep["heap_peak"] < HEAP_BYTES
    assert 0 < data < DATA_BUDGET
    assert 590 <= rep["fixes"] <= 640  # ~one a minute for 10 h, then hourly
    assert rep["pending"] == 0 and rep["lost_total"] == 0
    assert set(backend.frames) == {(DEVICE, rep["boot"], s) for s in range(rep["seq"])}
    assert backend.mismatched == []
    assert rep["starts"][0] > 500  # duty-cycled: hot starts, not a receiver left on
