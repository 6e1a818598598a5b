"""Fixtures shared by every suite: real services on free loopback ports, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.broker import Mosquitto


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A private Mosquitto for one test (restartable: broker.restart())."""
    with Mosquitto() as b:
        yield b


@pytest.fixture(scope="session")
def shared_broker() -> Iterator[Mosquitto]:
    """One Mosquitto for tests that only need a broker and use their own topics."""
    with Mosquitto() as b:
        yield b
