"""Runs every firmware test module marked `MICROPYTHON = True` under the real micropython
binary with a device-sized heap, one pytest case per test function."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from sim import micropython

HERE = Path(__file__).parent
# Device-sized: an ESP32 without PSRAM leaves about 100 KB to MicroPython. The golden-vector
# modules hold whole JSON files in memory besides the code under test; the firmware's own
# 64 KB budget is checked by its simulated-day test.
HEAP = "96k"
CPYTHON_ONLY = "drives the micropython binary"


def _modules() -> list[str]:
    out = []
    for path in sorted(HERE.glob("test_*.py")):
        if "\nMICROPYTHON = True" in path.read_text():
            out.append(f"tests.firmware.{path.stem}")
    return out


def _cases() -> list[tuple[str, str]]:
    cases = []
    for name in _modules():
        mod = importlib.import_module(name)
        for attr, fn in inspect.getmembers(mod, inspect.isfunction):
            if attr.startswith("test_") and fn.__module__ == name:
                cases.append((name, attr))
    return cases


_results: dict[str, dict[str, Any]] = {}


def _heap(name: str) -> str:
    # A module that loads the whole application (code and interned names live in the unix
    # port's heap, unlike frozen code on a device) states its heap as MICROPYTHON_HEAP = "...".
    text = (HERE / (name.rsplit(".", 1)[-1] + ".py")).read_text()
    mark = '\nMICROPYTHON_HEAP = "'
    if mark in text:
        return text.split(mark, 1)[1].split('"', 1)[0]
    return HEAP


def _run_module(name: str) -> dict[str, Any]:
    if name not in _results:
        proc = micropython.run(["tests/firmware/mprun.py", name], heap=_heap(name))
        lines = [json.loads(x) for x in proc.stdout.decode().splitlines() if x.startswith("{")]
        _results[name] = {
            "tests": {x["test"]: x for x in lines if "test" in x},
            "done": [x for x in lines if "done" in x],
            "stderr": proc.stderr.decode(),
            "rc": proc.returncode,
        }
    return _results[name]


@pytest.mark.micropython
@pytest.mark.parametrize(("module", "test"), _cases())
def test_under_micropython(module: str, test: str) -> None:
    res = _run_module(module)
    assert res["rc"] == 0 and res["done"], f"micropython failed: {res['stderr']}"
    got = res["tests"].get(test)
    assert got is not None, f"{test} did not run under micropython"
    assert got["ok"], got.get("error")


def test_every_firmware_test_module_also_runs_under_micropython() -> None:
    # A firmware test module that forgot the marker would silently run on CPython only; one
    # that cannot run there says why in CPYTHON_ONLY.
    for path in HERE.glob("test_*.py"):
        text = path.read_text()
        assert "\nMICROPYTHON = True" in text or "\nCPYTHON_ONLY = " in text, path.name
