"""`tagwatch hw build`, and the clear errors for a bad port and a board that does not answer
(no board needed for either)."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import tty
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hw import boarddef
from hw import image as img
from hw.cli import EXIT_BOARD, EXIT_INPUT, app
from sim import micropython

runner = CliRunner()


def test_build_esp32s3_image_folder_manifest_and_sizes(tmp_path: Path) -> None:
    out = tmp_path / "img"
    res = runner.invoke(app, ["build", "--board", "esp32s3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    image = img.load(out)  # every file present and as image.json says
    fw = micropython.repo_root() / "firmware"
    want = {
        str(p.relative_to(fw.parent).with_suffix(".mpy"))
        for p in fw.rglob("*.py")
        if p.name != "manifest.py" and p.name != "sim.py" and "__pycache__" not in p.parts
    }
    paths = {f.path for f in image.files}
    assert want <= paths  # every firmware module but the other board's support
    assert "firmware/boards/sim.mpy" not in paths
    assert {"board_def.mpy", "main.py"} <= paths
    for f in image.files:
        data = (out / "fs" / f.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f.sha256
        if f.path.endswith(".mpy"):
            assert data[:2] == b"M\x06"  # a MicroPython .mpy, version 6
    assert str(image.total()) in res.output
    info = json.loads((out / "image.json").read_text())
    assert info["arch"] == "xtensawin"
    # The freeze manifest names every module of the image and the generated board module.
    manifest = (out / "manifest.py").read_text()
    tree = ast.parse(manifest)
    calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)]  # type: ignore[attr-defined]
    assert calls.count("package") == 1 and calls.count("module") == 1
    for p in want:
        assert repr(p[len("firmware/") :].replace(".mpy", ".py")) in manifest
    board_src = (out / "frozen" / "board_def.py").read_text()
    ns: dict[str, object] = {}
    exec(board_src, ns)
    assert ns["DEF"]["pins"] == boarddef.load("esp32s3")["pins"]  # type: ignore[index]


def test_the_virtual_image_runs_under_micropython(virtual_image: img.Image) -> None:
    """The image's .mpy files are what the unix port loads: the board module among them."""
    out = virtual_image.root
    env = dict(os.environ, MICROPYPATH=f".frozen:{out / 'fs'}")
    proc = subprocess.run(
        micropython.command(
            [
                "-c",
                "import board_def, firmware.app, firmware.boards.sim; print(board_def.DEF['name'])",
            ],
            "256k",
        ),
        cwd=out / "fs",
        env=env,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "sim"


def test_unknown_board_is_a_clear_input_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["build", "--board", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == EXIT_INPUT
    assert "unknown board 'nope'" in res.output


def test_bad_port_is_a_clear_error() -> None:
    res = runner.invoke(
        app, ["flash", "--port", "/dev/tagwatch-no-such-port", "--board", "virtual"]
    )
    assert res.exit_code == EXIT_BOARD
    assert "serial port /dev/tagwatch-no-such-port: No such file or directory" in res.output


def test_a_regular_file_is_not_a_port(tmp_path: Path) -> None:
    f = tmp_path / "notaport"
    f.write_text("x")
    res = runner.invoke(app, ["provision", "--port", str(f), "--device", "5", "--server", "h:1"])
    assert res.exit_code == EXIT_BOARD
    assert "not a character device" in res.output


@pytest.mark.parametrize("command", ["flash", "verify"])
def test_a_board_that_does_not_answer_is_a_clear_error(
    command: str, virtual_image: img.Image
) -> None:
    """A serial port with nothing behind it (a pty nobody reads): no raw REPL, no hang."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        res = runner.invoke(
            app,
            [
                command,
                "--port",
                os.ttyname(slave),
                "--board",
                "virtual",
                "--timeout",
                "1",
                "--image",
                str(virtual_image.root),
            ],
        )
    finally:
        os.close(master)
        os.close(slave)
    assert res.exit_code == EXIT_BOARD
    assert "does not answer" in res.output
