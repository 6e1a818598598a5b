"""The freeze manifest names every firmware module the device imports, and nothing missing."""

from __future__ import annotations

import ast
from pathlib import Path

CPYTHON_ONLY = "reads the manifest and sources as text"

FW = Path(__file__).resolve().parents[2] / "firmware"


def _listed() -> set[str]:
    tree = ast.parse((FW / "manifest.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "package":
            for kw in node.keywords:
                if kw.arg == "files":
                    return {ast.literal_eval(e) for e in kw.value.elts}  # type: ignore[attr-defined]
    raise AssertionError("no package() in the manifest")


def test_manifest_files_exist_and_cover_device_imports() -> None:
    listed = _listed()
    for rel in listed:
        assert (FW / rel).exists(), rel
    # Everything main.py reaches on the device: follow `from firmware... import` edges.
    todo = ["main.py", "boards/esp32s3.py", "app.py"]
    seen: set[str] = set()
    while todo:
        rel = todo.pop()
        if rel in seen or rel == "boards/sim.py":  # the unix-port board is not in the image
            continue
        seen.add(rel)
        for node in ast.walk(ast.parse((FW / rel).read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("firmware"):
                parts = (node.module or "").split(".")[1:]
                for alias in node.names:
                    for cand in ("/".join(parts + [alias.name]) + ".py", "/".join(parts) + ".py"):
                        if cand != ".py" and (FW / cand).exists():
                            todo.append(cand)
    missing = {s for s in seen if s not in listed}
    assert not missing, missing
