"""Board support: every board implements the whole HAL, the board definitions in hw/boards
load and agree with the firmware that reads them, and pins are never duplicated by hand."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from firmware import board as hal
from hw import boarddef

CPYTHON_ONLY = "inspects board sources that import machine/vfs (not importable on CPython)"

ROOT = Path(__file__).resolve().parents[2]
BOARDS = {"sim": "SimBoard", "esp32s3": "Esp32S3Board"}


def _class(module: str, name: str) -> ast.ClassDef:
    tree = ast.parse((ROOT / "firmware" / "boards" / f"{module}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise AssertionError(f"{name} not in {module}")


@pytest.mark.parametrize("module", sorted(BOARDS))
def test_board_implements_the_hal(module: str) -> None:
    cls = _class(module, BOARDS[module])
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert set(hal.BOARD_METHODS.split()) <= methods
    src = ast.unparse(cls)
    for attr in hal.BOARD_ATTRIBUTES.split():
        assert re.search(rf"\b(self\.)?{attr}\b\s*(:[^=]+)?=", src), attr


def test_modems_implement_the_modem_interface() -> None:
    for module, name in (("sim", "SimModem"), ("sim7080g", "Sim7080G")):
        cls = _class(module, name)
        methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
        assert set(hal.MODEM_METHODS.split()) <= methods, name


def test_radios_implement_the_radio_interface() -> None:
    for module, name in (("sim", "SimRadio"), ("esp32s3_ble", "BleRadio")):
        cls = _class(module, name)
        methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
        assert set(hal.RADIO_METHODS.split()) <= methods, name
    for module, cls_name in BOARDS.items():
        assert re.search(r"self\.radio\s*=", ast.unparse(_class(module, cls_name))), module


@pytest.mark.parametrize("name", ["esp32s3", "virtual"])
def test_board_definitions_load(name: str) -> None:
    d = boarddef.load(name)
    assert d["battery_mah"] > 0
    assert {"mcu", "gnss", "modem"} <= set(d["currents_ua"])
    assert {"off", "acquire", "track"} <= set(d["currents_ua"]["gnss"])
    ns: dict[str, object] = {}
    exec(boarddef.module_source(name), ns)  # the frozen module carries the same data
    assert ns["DEF"]["pins"] == d["pins"]  # type: ignore[index]


def test_every_pin_the_real_board_reads_is_defined() -> None:
    src = (ROOT / "firmware" / "boards" / "esp32s3.py").read_text()
    used = set(re.findall(r'p\["(\w+)"\]', src)) | set(re.findall(r'pins\["(\w+)"\]', src))
    pins = boarddef.load("esp32s3")["pins"]
    assert used and used <= set(pins), used - set(pins)
    assert not re.search(r"Pin\(\s*\d", src)  # no pin numbers written into the code


def test_virtual_board_shares_the_real_current_table() -> None:
    real = json.loads(boarddef.path("esp32s3").read_text())
    virtual = json.loads(boarddef.path("virtual").read_text())
    assert virtual["currents_ua"] == real["currents_ua"]
    assert virtual["battery_mah"] == real["battery_mah"]


def test_bad_board_definition_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boarddef, "BOARDS", tmp_path)
    (tmp_path / "x.json").write_text('{"name": "x"}')
    with pytest.raises(boarddef.BoardDefError, match="missing"):
        boarddef.load("x")
    (tmp_path / "y.json").write_text("{not json")
    with pytest.raises(boarddef.BoardDefError):
        boarddef.load("y")
