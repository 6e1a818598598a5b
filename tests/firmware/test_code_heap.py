"""`make bench`'s per-module code figures list what a tag really loads: code_heap.tag_modules
against the modules a tag running under MicroPython reaches (tests/firmware/mp_tag_modules.py),
for a paired and an unpaired tag; and the measurement covers each module on its own."""

from __future__ import annotations

from sim import micropython
from tests.firmware import code_heap

CPYTHON_ONLY = "drives the micropython binary"

# Loaded by the simulator board (tagboot.make_board("sim")), which the fake board stands in for.
_SIM_BOARD = {"firmware.blockfile", "firmware.boards.definition", "firmware.boards.sim"}


def _reached(paired: bool) -> set[str]:
    arg = "paired" if paired else "unpaired"
    proc = micropython.run(["tests/firmware/mp_tag_modules.py", arg], heap="512k")
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    line = next(ln for ln in out.splitlines() if ln.startswith("reached: "))
    return set(line.split()[1:]) - {"firmware", "firmware.boards"}


def test_the_listed_modules_are_what_a_tag_loads() -> None:
    for paired in (False, True):
        listed = {m for m, _when in code_heap.tag_modules(paired)}
        assert _reached(paired) == listed - _SIM_BOARD, paired
    rf = {"firmware.tagbeacon", "firmware.homelink", "firmware.proximity", "firmware.rfmode"}
    assert not rf & {m for m, _w in code_heap.tag_modules(False)}


def test_each_module_is_measured_on_its_own() -> None:
    rows = code_heap.measure(tuple(m for m, _w in code_heap.tag_modules(True)))
    assert all(int(r["heap"]) > 0 for r in rows)
    t = code_heap.totals(rows, True)
    assert 0 < t["day"] < t["boot"] and t["zones"] > 0 and t["command"] > 0
