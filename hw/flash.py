"""Copy an image (and optionally the device config) onto a board and prove it arrived: every
file is hashed on the board and compared with the local SHA-256 before the board is reset to
run it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from hw import image as img
from hw.link import Board, HashMismatchError


@dataclass(frozen=True)
class FlashResult:
    files: int
    bytes: int
    erased: int  # files removed by --erase (0 without it)


def write_verified(
    board: Board, files: dict[str, bytes], progress: Callable[[int], None] | None = None
) -> None:
    """Write files and check each one's SHA-256 as the board reads it back."""
    board.mkdirs(list(files))
    for path, data in files.items():
        board.write(path, data, progress)
    verify(board, {p: hashlib.sha256(d).hexdigest() for p, d in files.items()})


def verify(board: Board, want: dict[str, str]) -> None:
    got = board.hashes(list(want))
    bad = sorted(p for p, h in want.items() if got.get(p) != h)
    if bad:
        missing = [p for p in bad if got.get(p) is None]
        detail = f"{len(bad)} file(s) differ on the board: {', '.join(bad[:5])}"
        if missing:
            detail += f" ({len(missing)} missing)"
        raise HashMismatchError(f"hash check failed: {detail}; flash again (with --erase)")


def flash(
    board: Board,
    image: img.Image,
    config: bytes | None = None,
    erase: bool = False,
    progress: Callable[[int], None] | None = None,
) -> FlashResult:
    """Interrupt the board, optionally wipe it, write image and config, verify, reset."""
    board.enter()
    erased = board.erase() if erase else 0
    files = {f.path: (image.fs / f.path).read_bytes() for f in image.files}
    if config is not None:
        files[img.CONFIG_NAME] = config
    write_verified(board, files, progress)
    board.soft_reset()
    return FlashResult(len(files), sum(len(d) for d in files.values()), erased)
