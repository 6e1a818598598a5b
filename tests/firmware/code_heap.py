"""Heap cost of importing the firmware under the MicroPython unix port, per module (runs
tests/firmware/mp_code_heap.py under the real micropython binary). The unix port loads .mpy
bytecode, function and class objects, constants and interned names into the GC heap; a device
runs the same modules frozen in flash. Used by `make bench` and the code-heap test."""

from __future__ import annotations

import json

from firmware import tagboot
from sim import micropython

CPYTHON_ONLY = "drives the micropython binary"

# What a tag loads, leaves first so each module's figure is its own (a module imported by an
# earlier one costs nothing again), each with when it is in the heap. Built from tagboot.py's
# own import lists, so it follows them; measure() fails if a listed module pulls in one that
# is not listed (its cost would hide in another's figure).
ALWAYS = "always"
BOOT_ONLY = "boot only (dropped after boot)"
PAIRED = "paired tag only"
ZONES = "once the tag holds zones"
COMMAND = "while a command runs (dropped after)"


def tag_modules(paired: bool = True) -> tuple[tuple[str, str], ...]:
    """(module, when) for what `micropython -m firmware.main` loads on the simulator board:
    an unpaired tag never loads the RF modules (docs/firmware.md, "Heap")."""
    rows = [("firmware.main", ALWAYS), ("firmware.runtime", ALWAYS)]
    rows += [("firmware.tagboot", BOOT_ONLY), ("firmware.config", BOOT_ONLY)]
    rows += [("firmware." + n, ALWAYS) for n in tagboot._LEAVES_FIRST.split()]
    if paired:
        rows += [("firmware." + n, PAIRED) for n in tagboot._RF.split()]
    rows += [("firmware.app", ALWAYS), ("firmware.appboot", BOOT_ONLY)]
    rows.append(("firmware.brokers", BOOT_ONLY))  # config's and appboot's; a cmd_broker's too
    for board in ("blockfile", "boards.definition", "boards.sim"):  # tagboot.make_board("sim")
        rows.append(("firmware." + board, ALWAYS))
    rows += [("firmware.zonewatch", ZONES), ("firmware.cmdrun", COMMAND)]
    return tuple(rows)


DAY_MODULES = tuple(m for m, _when in tag_modules(paired=True))


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
        if line.startswith("loaded:"):
            unlisted = set(line.split()[1:]) - set(modules) - {"firmware", "firmware.boards"}
            if unlisted:
                raise RuntimeError(f"imported but not measured on their own: {sorted(unlisted)}")
        elif line.startswith("qstr pool:"):
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


def totals(rows: list[dict[str, int | str]], paired: bool) -> dict[str, int]:
    """Bytes a tag holds after boot (all day), at boot, and with zones and a command."""
    when = dict(tag_modules(paired))
    heap = {str(r["module"]): int(r["heap"]) for r in rows if str(r["module"]) in when}
    day = sum(b for m, b in heap.items() if when[m] in (ALWAYS, PAIRED))
    return {
        "day": day,
        "boot": day + sum(b for m, b in heap.items() if when[m] == BOOT_ONLY),
        "zones": heap["firmware.zonewatch"],
        "command": heap["firmware.cmdrun"],
    }


if __name__ == "__main__":
    for paired in (False, True):
        rows = measure(tuple(m for m, _w in tag_modules(paired)))
        when = dict(tag_modules(paired))
        print("paired tag" if paired else "unpaired tag")
        for r in rows:
            print(
                f"  {r['module']:28} {r['heap']:6} B  {r['qstrs']:4} qstrs"
                f" {r['qstr_bytes']:6} B  {when[str(r['module'])]}"
            )
        t = totals(rows, paired)
        print(
            f"  all day {t['day']} B; at boot {t['boot']} B;"
            f" + {t['zones']} B with zones; + {t['command']} B while a command runs"
        )
