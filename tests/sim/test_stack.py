"""The simulated backend's ingest workers as processes: how their start-up ends."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from sim.stack import Backend, StackError


def _closed_port() -> int:
    # A loopback port nothing listens on: the worker keeps trying it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_worker_that_dies_while_starting_is_reported_with_how_it_ended(
    tmp_path: Path,
) -> None:
    # On a loaded machine a spawned worker takes long to come up; the start-up waits for it
    # as long as it lives, so one that dies must be named at once, with its exit, rather
    # than reported as a broker it could not reach.
    backend = Backend(
        tmp_path / "backend",
        [f"127.0.0.1:{_closed_port()}"],
        1_790_000_000.0,
        monitoring=False,
        processes=True,
    )
    spawned = threading.Event()

    def kill_when_spawned() -> None:
        while not spawned.wait(0.05):
            proc = backend.procs[0]
            if proc is not None and proc.proc.pid is not None:
                proc.proc.kill()
                spawned.set()

    killer = threading.Thread(target=kill_when_spawned, daemon=True)
    killer.start()
    try:
        with pytest.raises(StackError, match=r"exited while starting \(exit code -9\)"):
            backend.start()
    finally:
        spawned.set()
        killer.join(5)
        backend.stop()
