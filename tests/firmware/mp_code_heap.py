# What importing each firmware module costs in the unix port's heap: loaded bytecode, function
# and class objects, constants, module dicts, and the interned names in the qstr pools. On a
# device the image is frozen into flash and none of this is on the heap; under the unix port
# it is, so this is the "code" side of the simulated day's heap budget.
# Usage: micropython tests/firmware/mp_code_heap.py MODULE...  in the order to import them (a
# module's cost excludes what an earlier one already loaded). For each module it prints
# micropython.qstr_info()'s line (n_qstr=..., n_total_bytes=...) and then a JSON line
# {"module": name, "heap": bytes}, and at the end a line "loaded: MODULE..." with every
# firmware module in sys.modules; tests/firmware/code_heap.py runs it and parses them.
import gc
import json
import sys

import micropython


def main(names):
    gc.collect()
    prev = gc.mem_alloc()
    micropython.qstr_info()
    print(json.dumps({"module": "", "heap": 0}))
    for name in names:
        __import__(name)
        gc.collect()
        now = gc.mem_alloc()
        micropython.qstr_info()
        print(json.dumps({"module": name, "heap": now - prev}))
        prev = now
    # Every firmware module now loaded, so the caller can check none went unmeasured.
    print("loaded: " + " ".join(sorted(m for m in sys.modules if m.startswith("firmware"))))


main(sys.argv[1:])
