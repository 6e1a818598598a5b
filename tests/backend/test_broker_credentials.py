"""Broker credentials and ACLs from the registry, enforced by a real Mosquitto."""

from __future__ import annotations

import base64
import contextlib
import queue
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend import broker_credentials as bc
from backend.broker import BrokerConfig, Mosquitto
from backend.registry import Device, KeyVault, Registry
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import HOME_UNIT, TAG
from firmware import topics

BACKEND_PASSWORD = "backend-secret-for-tests"


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """SQLite only: the registry's storage is covered on both engines in test_storage."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    return Registry(engine, KeyVault(bytes(range(32))))


def _collect(q: queue.Queue[str], expected: set[str], wait_s: float = 15.0) -> set[str]:
    """What arrives on q: until everything expected has (or wait_s passes on a loaded machine),
    then half a second more, so that anything unexpected that was also let through shows."""
    got: set[str] = set()
    deadline = time.monotonic() + wait_s
    while not got >= expected and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            got.add(q.get(timeout=0.2))
    settle = time.monotonic() + 0.5
    while time.monotonic() < settle:
        with contextlib.suppress(queue.Empty):
            got.add(q.get(timeout=0.1))
    return got


def test_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(tmp_path / "pw"), "u", "pass word"], check=True
    )
    theirs = (tmp_path / "pw").read_text().strip().split(":", 1)[1]
    salt = base64.b64decode(theirs.split("$")[3])
    assert bc.mosquitto_hash("pass word", salt) == theirs
    assert bc.mosquitto_hash("other", salt) != theirs


def _client(name: str, broker: Mosquitto, user: str, password: str) -> tuple[mqtt.Client, int]:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    result: queue.Queue[int] = queue.Queue()
    c.on_connect = lambda _c, _u, _f, rc, _p: result.put(rc.value)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c, result.get(timeout=5)


@pytest.fixture
def secured(tmp_path: Path, registry: Registry) -> tuple[Mosquitto, dict[int, Device]]:
    unit = registry.register(2001, HOME_UNIT)
    devs = {
        2001: unit,
        1001: registry.register(1001, TAG, home_unit=2001),
        1002: registry.register(1002, TAG),
    }
    passwd, acl = bc.write(tmp_path / "auth", registry.all(), "backend", BACKEND_PASSWORD)
    assert passwd.stat().st_mode & 0o777 == 0o600
    b = Mosquitto(BrokerConfig(password_file=passwd, acl_file=acl))
    b.start()
    yield b, devs  # type: ignore[misc]
    b.close()


def test_devices_confined_to_their_own_topics(
    secured: tuple[Mosquitto, dict[int, Device]],
) -> None:
    broker, devs = secured
    seen: queue.Queue[str] = queue.Queue()
    backend, rc = _client("backend", broker, "backend", BACKEND_PASSWORD)
    assert rc == 0
    backend.on_message = lambda _c, _u, m: seen.put(m.topic)
    subscribed = threading.Event()
    backend.on_subscribe = lambda *_a: subscribed.set()
    backend.subscribe(f"{topics.ROOT}/#", qos=1)
    assert subscribed.wait(10)

    tag, rc = _client("tag-1001", broker, "tag-1001", bc.device_password(devs[1001].key))
    assert rc == 0
    tag.publish(topics.tag_up(1002), b"forged", qos=1).wait_for_publish(5)  # not its topic
    tag.publish(topics.home_relay(2001), b"x", qos=1).wait_for_publish(5)  # nor this
    tag.publish(topics.tag_up(1001), b"own", qos=1).wait_for_publish(5)
    unit, rc = _client("hu-2001", broker, "hu-2001", bc.device_password(devs[2001].key))
    assert rc == 0
    unit.publish(topics.home_relay(2001), b"relayed", qos=1).wait_for_publish(5)
    unit.publish(topics.tag_up(1001), b"pose", qos=1).wait_for_publish(5)

    assert _collect(seen, {topics.tag_up(1001), topics.home_relay(2001)}) == {
        topics.tag_up(1001),
        topics.home_relay(2001),
    }

    # Reading: a tag reads its own downlink only; the unit reads its paired tag's too.
    down: queue.Queue[str] = queue.Queue()
    tag.on_message = lambda _c, _u, m: down.put(m.topic)
    unit.on_message = lambda _c, _u, m: down.put("unit:" + m.topic)
    subacks = threading.Semaphore(0)
    for c in (tag, unit):
        c.on_subscribe = lambda *_a: subacks.release()
        c.subscribe([(topics.tag_down(1001), 1), (topics.tag_down(1002), 1)])
    assert subacks.acquire(timeout=10) and subacks.acquire(timeout=10)
    for t in (1001, 1002):
        backend.publish(topics.tag_down(t), b"ack", qos=1).wait_for_publish(5)
    want = {topics.tag_down(1001), "unit:" + topics.tag_down(1001)}
    assert _collect(down, want) == want
    for c in (backend, tag, unit):
        c.disconnect()
        c.loop_stop()


def test_wrong_or_foreign_password_refused(secured: tuple[Mosquitto, dict[int, Device]]) -> None:
    broker, devs = secured
    _, rc = _client("a", broker, "tag-1001", "wrong")
    assert rc != 0
    # One device's password does not open another's account.
    _, rc = _client("b", broker, "tag-1002", bc.device_password(devs[1001].key))
    assert rc != 0
    _, rc = _client("c", broker, "nobody", "x")
    assert rc != 0


def test_refuses_an_empty_backend_password(registry: Registry) -> None:
    with pytest.raises(ValueError, match="TAGWATCH_MQTT_PASSWORD"):
        bc.render(registry.all(), "backend", "")
