"""Heap cost of importing the firmware under the MicroPython unix port, per module (runs
tests/firmware/mp_code_heap.py under the real micropython binary). The unix port loads .mpy
bytecode, function and class objects, constants and interned names into the GC heap; a device
runs the same modules frozen in flash. Used by `make bench` and the code-heap test."""

from __future__ import annotations

import json

from hw import micropython

CPYTHON_ONLY = "drives the micropython binary"

# What `micropython -m firmware.main` loads for the simulator board, leaves first so each
# module's figure is its own (a module imported by an earlier one costs nothing again).
DAY_MODULES = (
    "firmware.main",
    "firmware.config",
    "firmware.ticks",
    "firmware.mac",
    "firmware.frame",
    "firmware.board",
    "firmware.files",
    "firmware.blockfile",
    "firmware.boards.definition",
    "firmware.boards.sim",
    "firmware.battery",
    "firmware.sampling",
    "firmware.modes",
    "firmware.motion",
    "firmware.nmea",
    "firmware.energy",
    "firmware.fixfilter",
    "firmware.beacon",
    "firmware.homelink",
    "firmware.proximity",
    "firmware.rfmode",
    "firmware.state",
    "firmware.store",
    "firmware.tamper",
    "firmware.topics",
    "firmware.uplink",
    "firmware.app",
)


def measure(modules: tuple[str, ...] = DAY_MODULES) -> list[dict[str, int | str]]:
    """[{module, heap, qstrs, qstr_bytes}] in import order; `heap` includes the module's
    share of the qstr pools (`qstr_bytes` of it: the pools grow in doublings, so a module
    that fills one pays for the next)."""
    proc = micropython.run(["tests/firmware/mp_code_heap.py"] + list(modules), heap="1m")
    if proc.returncode != 0:
        raise RuntimeError((proc.stdout + proc.stderr).decode())
    out: list[dict[str, int | str]] = []
    q: dict[str, int] = {}
    for line in proc.stdout.decode().splitlines():
        if line.startswith("qstr pool:"):
            fields = dict(f.strip().split("=") for f in line[len("qstr pool:") :].split(","))
            now = {k: int(v) for k, v in fields.items()}
        elif line.startswith("{"):
            row = json.loads(line)
            if row["module"]:
                out.append(
                    {
                        "module": row["module"],
                        "heap": row["heap"],
                        "qstrs": now["n_qstr"] - q["n_qstr"],
                        "qstr_bytes": now["n_total_bytes"] - q["n_total_bytes"],
                    }
                )
            q = now
    return out


if __name__ == "__main__":
    rows = measure()
    for r in rows:
        print(f"{r['module']:28} {r['heap']:6} B  {r['qstrs']:4} qstrs {r['qstr_bytes']:6} B")
    print(f"{'total':28} {sum(int(r['heap']) for r in rows):6} B")
