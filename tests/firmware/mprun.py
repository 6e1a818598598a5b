# Runs one test module's test_* functions under MicroPython and prints a JSON line per test.
# Used by tests/firmware/test_under_micropython.py; run from the repository root with the
# root on MICROPYPATH.
import gc
import json
import sys


def main(name):
    mod = __import__(name, None, None, ["_"])
    ran = 0
    for attr in sorted(dir(mod)):
        if not attr.startswith("test_"):
            continue
        fn = getattr(mod, attr)
        if not callable(fn):
            continue
        ran += 1
        gc.collect()
        try:
            fn()
            print(json.dumps({"test": attr, "ok": True}))
        except Exception as e:  # report every failure, keep running the rest
            print(
                json.dumps({"test": attr, "ok": False, "error": "%s: %s" % (type(e).__name__, e)})
            )
    gc.collect()
    print(json.dumps({"done": ran, "heap_free": gc.mem_free()}))


main(sys.argv[1])
