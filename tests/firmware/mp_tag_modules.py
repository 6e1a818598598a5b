# Which firmware modules a tag reaches, found by running one under MicroPython (the fake board
# standing in for the simulator board): every import is recorded as an edge (importing module
# -> imported module), and at the end the modules reachable from firmware.main are printed.
# Imports made inside functions count when they run, so the tag is driven through what loads
# modules lazily: boot (the App's builder, the config loader), RF control when paired, and a
# cmd_zone command (the command handlers, the zone watch).
# Usage: micropython tests/firmware/mp_tag_modules.py paired|unpaired  (from the repository
# root; tests/firmware/test_code_heap.py runs it and compares with code_heap.tag_modules).
import builtins
import sys

edges = []
_import = builtins.__import__


def _record(name, g=None, lo=None, fromlist=None, level=0):
    mod = _import(name, g, lo, fromlist, level)
    # A call of __import__() itself passes no globals: in the firmware only tagboot.preload does.
    src = g.get("__name__", "") if isinstance(g, dict) else "firmware.tagboot"
    names = [name]
    if isinstance(fromlist, tuple):  # (MicroPython also passes True for a submodule)
        names = [name + "." + f if (name + "." + f) in sys.modules else name for f in fromlist]
    for n in names:
        edges.append((src, n))
    return mod


builtins.__import__ = _record


def reached():
    seen = {"firmware.main"}
    grew = True
    while grew:
        grew = False
        for src, dst in edges:
            if src in seen and dst.startswith("firmware") and dst not in seen:
                seen.add(dst)
                grew = True
    return sorted(seen)


def main(paired):
    from firmware import (
        config,  # noqa: F401 - loaded as tagboot.boot does, before the preload
        tagboot,
    )
    from firmware import main as fw_main  # noqa: F401 - what it imports at the top

    edges.append(("firmware.main", "firmware.tagboot"))  # main.main imports it to boot
    edges.append(("firmware.tagboot", "firmware.config"))
    tagboot.preload(paired)
    from firmware import frame as fr
    from tests.firmware import fakeboard as fb
    from tests.firmware.test_rf_mode import make  # the RF tests' tag on the fake board

    app, board, flash = make(paired=paired)
    board.moving = True
    fb.run(app, board, 5 * 60000)
    zone = fr.Record(fr.CMD_ZONE, (0, 507200000, -18795000, 350))
    cmd = fr.encode(fr.Frame(fr.COMMAND, fb.DEVICE, 0, 1, fb.T0, [zone]), fb.KEY)
    app.handle_downlink(cmd, app.mono.ms)
    fb.run(app, board, 10 * 60000)
    assert app.zones is not None and (app.rf is not None) == paired
    flash.close()
    print("reached: " + " ".join(reached()))


main(sys.argv[1] == "paired")
