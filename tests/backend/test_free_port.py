"""Ports for the services tests and the demo start: never one an outgoing connection may be
given, never one a listener holds."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from backend import broker


def test_free_ports_are_below_the_ephemeral_range() -> None:
    floor = broker._ephemeral_floor()
    assert floor > broker.PRIVATE_PORTS_FLOOR  # Linux: 32768 by default
    ports = {broker.free_port() for _ in range(50)}
    assert all(broker.PRIVATE_PORTS_FLOOR <= p < floor for p in ports)
    assert len(ports) > 40  # spread, so parallel test workers rarely meet


class Choices:
    def __init__(self, ports: Iterator[int]) -> None:
        self.ports = ports

    def randrange(self, start: int, stop: int) -> int:
        return next(self.ports)


def test_a_port_held_by_a_listener_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", broker.free_port()))
        held.listen()
        taken = held.getsockname()[1]
        other = broker.free_port()
        monkeypatch.setattr(broker, "_ports", Choices(iter([taken, other])))
        assert broker.free_port() == other
