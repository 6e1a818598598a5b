# Helpers for tests that run under both CPython (pytest) and MicroPython (tests/firmware/mprun.py).
# They use only what both runtimes have: no pytest fixtures, no pathlib.
import json
import sys


def root():
    # Under MicroPython mprun.py runs from the repository root (and this module is compiled
    # into build/mpy), so paths are relative to the working directory.
    if sys.implementation.name == "micropython":
        return ""
    f = __file__
    return f[: f.rfind("tests/firmware/")]


def load_json(relpath):
    with open(root() + relpath) as fh:
        return json.load(fh)


def raises(exc_type, fn, *args, **kw):
    """Call fn and return the exception of exc_type it raised; fail if it raised none."""
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    raise AssertionError("%s did not raise %s" % (fn, exc_type))
