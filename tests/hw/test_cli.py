"""`tagwatch hw decode`: clear verdicts and exit codes for good, forged and garbled frames."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tagwatch_cli import app

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "frames.json").read_text())
runner = CliRunner()


def test_decode_verifies_with_the_key(tmp_path: Path) -> None:
    v = VECTORS[0]
    keyfile = tmp_path / "key"
    keyfile.write_text(v["key"])
    res = runner.invoke(app, ["hw", "decode", v["hex"], "--key-file", str(keyfile)])
    assert res.exit_code == 0, res.output
    assert "MAC verified" in res.output
    assert str(v["frame"]["records"][0]["lat_e7"]) in res.output


def test_decode_refuses_a_forged_frame() -> None:
    v = VECTORS[0]
    forged = v["hex"][:-2] + ("00" if v["hex"][-2:] != "00" else "01")
    res = runner.invoke(app, ["hw", "decode", forged, "--key", v["key"]])
    assert res.exit_code == 1
    assert "rejected (mac)" in res.output


def test_decode_without_key_says_so_and_bad_hex_is_an_error(tmp_path: Path) -> None:
    v = VECTORS[1]
    capture = tmp_path / "frame.bin"
    capture.write_bytes(bytes.fromhex(v["hex"]))
    res = runner.invoke(app, ["hw", "decode", f"@{capture}"])
    assert res.exit_code == 0 and "MAC not checked" in res.output
    res = runner.invoke(app, ["hw", "decode", "zz"])
    assert res.exit_code == 2 and "bad input" in res.output
    res = runner.invoke(app, ["hw", "decode", str(capture)])  # the capture without its @
    assert res.exit_code == 2 and f"pass it as @{capture}\n" in res.output  # one line
    res = runner.invoke(app, ["hw", "decode", v["hex"], "--key", "abc"])
    assert res.exit_code == 2
    assert "the device's key must be 64 hex digits" in " ".join(res.output.split())
    res = runner.invoke(app, ["hw", "decode", "0101"])
    assert res.exit_code == 1 and "rejected (short)" in res.output
