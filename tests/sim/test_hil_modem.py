"""The HIL tag's modem bridge on its own: a session's outcome after the connect delay, coverage
loss, the record of sessions and publishes, and downlinks both ways through a real broker."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.broker import Mosquitto
from firmware import board as hal
from sim.hil_modem import ModemBridge

DELAY_MS = 5000


def _until(ready: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Wait for `ready` (the bound is for a hang only)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_session_with_no_broker_fails_when_its_connect_delay_is_over() -> None:
    m = ModemBridge(DELAY_MS)
    m.power(True)
    m.connect(1000, "tag-7", "tags/7/down", "-", "pw")
    # No broker there: the outcome is due at once, and it is a failure.
    assert m.state == hal.MODEM_CONNECTING and m.due_ms() == 1000
    assert m.progress(1000) == hal.MODEM_FAILED and m.progress(1001) is None
    assert m.due_ms() is None and m.sessions == [("-", "tag-7")]
    m.publish(1200, "tags/7/up", b"\x01")  # no session: recorded, sent nowhere
    assert m.published == [(1200, "tags/7/up", b"\x01")]
    m.power(False)
    assert m.state == hal.MODEM_OFF and not m.on


def test_losing_coverage_fails_an_opening_session_and_no_coverage_never_connects() -> None:
    m = ModemBridge(DELAY_MS)
    m.connect(0, "tag-7", "tags/7/down", "127.0.0.1:1", "pw")
    assert m.set_coverage(True) is None  # nothing lost: nothing to raise
    assert m.state == hal.MODEM_CONNECTING  # the outcome is raised when due, not at once
    assert m.set_coverage(False) == hal.MODEM_FAILED
    assert m.set_coverage(False) is None  # already failed: raised once
    m.connect(10_000, "tag-7", "tags/7/down", "127.0.0.1:1", "pw")
    assert m.client is None and m.progress(10_000 + DELAY_MS - 1) is None
    assert m.progress(10_000 + DELAY_MS) == hal.MODEM_FAILED


@contextlib.contextmanager
def _descriptors_past(fd: int) -> Iterator[None]:
    """Hold open descriptors until the next one the process opens is above `fd`."""
    held: list[int] = []
    try:
        while not held or held[-1] < fd:
            held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for h in held:
            os.close(h)


@pytest.mark.parametrize("crowded", [False, True], ids=["few-descriptors", "past-fd-setsize"])
def test_an_online_session_takes_downlinks_and_publishes_at_qos_1(
    shared_broker: Mosquitto, crowded: bool
) -> None:
    """Also in a process holding more than 1,024 descriptors, as a simulator process with a
    home unit per subject does: paho's own network loop (select) refused the session's socket
    there and the HIL tag never came online."""
    broker = f"{shared_broker.host}:{shared_broker.port}"
    m = ModemBridge(DELAY_MS)
    peer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hil-modem-peer")
    got: queue.Queue[tuple[str, bytes]] = queue.Queue()
    listening = threading.Event()
    peer.on_message = lambda _c, _u, msg: got.put((msg.topic, bytes(msg.payload)))
    peer.on_subscribe = lambda *_a: listening.set()
    assert peer.connect(shared_broker.host, shared_broker.port) == mqtt.MQTT_ERR_SUCCESS
    peer.loop_start()
    running = contextlib.ExitStack()
    try:
        peer.subscribe("hilmodem/up", qos=1)
        assert listening.wait(30)
        if crowded:
            running.enter_context(_descriptors_past(1100))
        m.power(True)
        m.connect(0, "hilmodem", "hilmodem/down", broker, "pw")
        assert m.progress(DELAY_MS - 1) is None  # still registering
        _until(lambda: m.subscribed, "the down-topic subscription")
        assert m.progress(DELAY_MS) == hal.MODEM_ONLINE
        peer.publish("hilmodem/down", b"cmd", qos=1)
        _until(m.has_downlink, "the downlink")
        assert m.downlinks() == [("hilmodem/down", b"cmd")] and not m.has_downlink()
        m.publish(DELAY_MS, "hilmodem/up", b"frame")
        assert got.get(timeout=30) == ("hilmodem/up", b"frame")
        m.power(False)
        assert m.client is None and not m.subscribed and m.state == hal.MODEM_OFF
    finally:
        m.disconnect()
        running.close()
        peer.disconnect()
        peer.loop_stop()
