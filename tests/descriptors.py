"""A process holding more than FD_SETSIZE (1,024) descriptors, as a simulator process with a
home unit per subject does: select() refuses any socket opened there."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def descriptors_past(fd: int) -> Iterator[None]:
    """Hold open descriptors until the next one the process opens is above `fd`."""
    held: list[int] = []
    try:
        while not held or held[-1] < fd:
            held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for h in held:
            os.close(h)
