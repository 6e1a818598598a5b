"""Broker credentials and ACLs from the registry, enforced by a real Mosquitto.

Negative checks ("this was not delivered") never sleep: after the forbidden publish has
been answered by the broker, a permitted message goes to the same subscriber; Mosquitto
routes messages in the order it processes them, so anything let through would have been
queued ahead of it. `_collect` waits for what is expected, then half a second more."""

from __future__ import annotations

import base64
import contextlib
import itertools
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select
from typer.testing import CliRunner

from backend import broker_credentials as bc
from backend.broker import BrokerConfig, BrokerFiles, Mosquitto, backend_auth, device_auth
from backend.ingest_worker import IngestWorker, subscriptions
from backend.registry import Device, KeyVault, Registry
from backend.settings import Settings
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import HOME_UNIT, TAG, VICTIM, frames
from firmware import frame as fr
from firmware import topics
from tagwatch_cli import app as cli
from tests.backend.frames import acked, home_frame, tag_frame

BACKEND_PASSWORD = "backend-secret-for-tests"
SERVER_KEY = bytes(range(32))
GRANTED_QOS1 = 1  # SUBACK reason code
SUCCESS, NOT_AUTHORIZED = 0, 135  # PUBACK reason codes (v5)
# One concrete topic per uplink the ingest consumes: unit 2001 with its paired tag 1001.
UPLINKS = (
    topics.tag_up(1001),
    topics.home_relay(2001),
    topics.home_up(2001),
    topics.home_status(2001),
)
DOWNLINKS = (topics.tag_down(1001), topics.home_down(2001), topics.home_config(2001))
T = TypeVar("T")
_ids = itertools.count()


def _collect(q: queue.Queue[T], expected: set[T], wait_s: float = 15.0) -> set[T]:
    """What arrives on q: until everything expected has (or wait_s passes on a loaded machine),
    then half a second more, so that anything unexpected that was also let through shows."""
    got: set[T] = set()
    deadline = time.monotonic() + wait_s
    while not got >= expected and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            got.add(q.get(timeout=0.2))
    settle = time.monotonic() + 0.5
    while time.monotonic() < settle:
        with contextlib.suppress(queue.Empty):
            got.add(q.get(timeout=0.1))
    return got


class Peer:
    """One client of the broker under test; waits for its CONNACK, each SUBACK and each
    PUBACK and returns their reason codes. Messages it receives land in `received` as
    (topic, payload), and each time the broker drops its connection is in `disconnects`.

    A device connects to the device listener, anyone else to the backend's (`port` picks
    another); `client_id` is what the client asks for, and `persistent` asks for a session
    the broker keeps for an hour after a disconnect (clean start off), as devices do."""

    def __init__(
        self,
        broker: Mosquitto,
        user: str,
        password: str,
        protocol: MQTTProtocolVersion = mqtt.MQTTv5,
        port: int | None = None,
        client_id: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{user}-{next(_ids)}",
            protocol=protocol,
        )
        self.client.username_pw_set(user, password)
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.disconnects: list[int] = []  # reason codes
        self._done = threading.Condition()
        self._connack: int | None = None
        self._acks: dict[int, list[int]] = {}  # mid -> reason codes (SUBACK or PUBACK)
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        c.on_message = lambda _c, _u, m: self.received.put((m.topic, bytes(m.payload)))
        if port is None:
            port = broker.port if bc.is_device_name(user) else broker.backend_port
        self.port = port
        if persistent:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 3600
            c.connect(broker.host, port, clean_start=False, properties=props)
        else:
            c.connect(broker.host, port)
        c.loop_start()
        with self._done:
            assert self._done.wait_for(lambda: self._connack is not None, timeout=10)
        assert self._connack is not None
        self.connack: int = self._connack

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        with self._done:
            self._connack = rc.value
            self._done.notify_all()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        with self._done:
            self.disconnects.append(rc.value)
            self._done.notify_all()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, rcs: Any, _p: Any) -> None:
        with self._done:
            self._acks[mid] = [r.value for r in rcs]
            self._done.notify_all()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._done:
            self._acks[mid] = [rc.value]
            self._done.notify_all()

    def _wait(self, mid: int) -> list[int]:
        with self._done:
            assert self._done.wait_for(lambda: mid in self._acks, timeout=10), "no answer"
            return self._acks.pop(mid)

    def subscribe(self, *filters: str) -> list[int]:
        rc, mid = self.client.subscribe([(f, 1) for f in filters])
        assert rc == mqtt.MQTT_ERR_SUCCESS and mid is not None
        return self._wait(mid)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        return self._wait(info.mid)[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


Connect = Callable[..., Peer]


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """SQLite only: the registry's storage is covered on both engines in test_storage."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    return Registry(engine, KeyVault(SERVER_KEY))


@pytest.fixture
def secured(tmp_path: Path, registry: Registry) -> Iterator[tuple[Mosquitto, dict[int, Device]]]:
    unit = registry.register(2001, HOME_UNIT)
    devs = {
        2001: unit,
        1001: registry.register(1001, TAG, home_unit=2001),
        1002: registry.register(1002, TAG),
        3001: registry.register(3001, VICTIM),
    }
    files = bc.write(tmp_path / "auth", registry.all(), "backend", BACKEND_PASSWORD)
    for path in (files.passwd, files.backend_passwd, files.acl):
        assert path.stat().st_mode & 0o777 == 0o600
    b = Mosquitto(BrokerConfig(auth=files))
    b.start()
    yield b, devs
    b.close()


@pytest.fixture
def ingest_worker(
    tmp_path: Path, secured: tuple[Mosquitto, dict[int, Device]]
) -> Iterator[IngestWorker]:
    """The real ingest worker, logged in with the backend's account, on the registry's
    database; stopped (and its thread joined) afterwards."""
    broker, _ = secured
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        server_key=SERVER_KEY.hex(),
        mqtt_port=broker.backend_port,
        mqtt_password=BACKEND_PASSWORD,
        ingest_batch_ms=5,
    )
    worker = IngestWorker(settings, "tagwatch-ingest-test")
    thread = threading.Thread(target=worker.run, name="ingest")
    thread.start()
    yield worker
    worker.stopping.set()
    thread.join(10)
    assert not thread.is_alive()


@pytest.fixture
def connect(secured: tuple[Mosquitto, dict[int, Device]]) -> Iterator[Connect]:
    """connect("backend" | "tag-1001" | "hu-2001" | ..., password=None, protocol=v5, **Peer
    options): a connected Peer (the account's real password unless one is given); all
    closed after."""
    broker, devs = secured
    peers: list[Peer] = []

    def make(
        user: str,
        password: str | None = None,
        protocol: MQTTProtocolVersion = mqtt.MQTTv5,
        **options: Any,
    ) -> Peer:
        if password is None:
            password = (
                BACKEND_PASSWORD
                if user == "backend"
                else bc.device_password(devs[int(user.split("-")[1])].key)
            )
        peer = Peer(broker, user, password, protocol, **options)
        peers.append(peer)
        return peer

    yield make
    for p in peers:
        p.close()


def test_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(tmp_path / "pw"), "u", "pass word"], check=True
    )
    theirs = (tmp_path / "pw").read_text().strip().split(":", 1)[1]
    salt = base64.b64decode(theirs.split("$")[3])
    assert bc.mosquitto_hash("pass word", salt) == theirs
    assert bc.mosquitto_hash("other", salt) != theirs


def test_the_topics_used_here_cover_everything_ingest_consumes() -> None:
    # So the tests below stay complete if ingest ever consumes another uplink.
    for f in topics.INGEST:
        assert any(mqtt.topic_matches_sub(f, t) for t in UPLINKS), f


def test_devices_confined_to_their_own_topics(connect: Connect) -> None:
    # The observer is the ingest's own subscription: what the backend would actually ingest.
    ingest = connect("backend")
    assert ingest.subscribe(*subscriptions("ingest")) == [GRANTED_QOS1] * len(topics.INGEST)

    tag = connect("tag-1001")
    assert tag.publish(topics.tag_up(1002), b"forged") == NOT_AUTHORIZED  # not its topic
    assert tag.publish(topics.home_relay(2001), b"x") == NOT_AUTHORIZED  # nor this
    assert tag.publish(topics.tag_up(1001), b"own") == SUCCESS
    unit = connect("hu-2001")
    assert unit.publish(topics.home_relay(2001), b"relayed") == SUCCESS
    assert unit.publish(topics.tag_up(1001), b"pose") == NOT_AUTHORIZED

    want = {(topics.tag_up(1001), b"own"), (topics.home_relay(2001), b"relayed")}
    assert _collect(ingest.received, want) == want

    # Reading: a tag reads its own downlink only; the unit reads its paired tag's too.
    for device in (tag, unit):
        assert device.subscribe(topics.tag_down(1001), topics.tag_down(1002)) == [1, 1]
    backend = connect("backend")
    for t in (1001, 1002):
        backend.publish(topics.tag_down(t), b"ack")
    assert _collect(tag.received, {(topics.tag_down(1001), b"ack")}) == {
        (topics.tag_down(1001), b"ack")
    }
    assert _collect(unit.received, {(topics.tag_down(1001), b"ack")}) == {
        (topics.tag_down(1001), b"ack")
    }


def test_a_victim_device_speaks_on_its_own_tag_channels_only(connect: Connect) -> None:
    ingest = connect("backend")
    assert ingest.subscribe(*subscriptions("ingest")) == [GRANTED_QOS1] * len(topics.INGEST)
    victim = connect("vd-3001")
    assert victim.publish(topics.tag_up(1001), b"forged") == NOT_AUTHORIZED
    assert victim.publish(topics.home_up(2001), b"forged") == NOT_AUTHORIZED
    assert victim.publish(topics.tag_up(3001), b"own") == SUCCESS
    want = {(topics.tag_up(3001), b"own")}
    assert _collect(ingest.received, want) == want
    # It reads its own downlink (the warnings), and no one else's; no home unit reads it.
    assert victim.subscribe(topics.tag_down(3001), topics.tag_down(1001)) == [1, 1]
    unit = connect("hu-2001")
    assert unit.subscribe(topics.tag_down(3001), topics.tag_down(1001)) == [1, 1]
    backend = connect("backend")
    for t in (3001, 1001):
        backend.publish(topics.tag_down(t), b"warn")
    mine = {(topics.tag_down(3001), b"warn")}
    assert _collect(victim.received, mine) == mine
    paired = {(topics.tag_down(1001), b"warn")}
    assert _collect(unit.received, paired) == paired


def test_backend_receives_every_uplink_it_ingests(connect: Connect) -> None:
    shared = connect("backend")  # as the ingest workers subscribe: $share/<group>/...
    assert shared.subscribe(*subscriptions("ingest")) == [GRANTED_QOS1] * len(topics.INGEST)
    plain = connect("backend")  # one worker without a group
    assert plain.subscribe(*topics.INGEST) == [GRANTED_QOS1] * len(topics.INGEST)

    tag, unit = connect("tag-1001"), connect("hu-2001")
    sent = {topic: f"frame on {topic}".encode() for topic in UPLINKS}
    for topic, payload in sent.items():
        device = tag if topic == topics.tag_up(1001) else unit
        retain = topic == topics.home_status(2001)  # as the unit publishes its status
        assert device.publish(topic, payload, retain=retain) == SUCCESS

    want = set(sent.items())
    assert _collect(shared.received, want) == want
    assert _collect(plain.received, want) == want


def test_backend_publishes_each_downlink_and_reads_none(connect: Connect) -> None:
    tag, unit = connect("tag-1001"), connect("hu-2001")
    assert tag.subscribe(topics.tag_down(1001)) == [GRANTED_QOS1]
    assert unit.subscribe(*DOWNLINKS) == [GRANTED_QOS1] * 3
    # Mosquitto grants any subscription; read access is checked on each delivery.
    watcher = connect("backend")
    assert watcher.subscribe(f"{topics.ROOT}/#") == [GRANTED_QOS1]

    backend = connect("backend")
    sent = {topic: f"signed for {topic}".encode() for topic in DOWNLINKS}
    for topic, payload in sent.items():
        retain = topic == topics.home_config(2001)  # the unit's configuration is retained
        assert backend.publish(topic, payload, retain=retain) == SUCCESS

    ack = (topics.tag_down(1001), sent[topics.tag_down(1001)])
    assert _collect(tag.received, {ack}) == {ack}
    assert _collect(unit.received, set(sent.items())) == set(sent.items())
    # The backend's own account saw none of it: the next thing it sees is a later uplink.
    marker = (topics.tag_up(1001), b"after the downlinks")
    tag.publish(*marker)
    assert _collect(watcher.received, {marker}) == {marker}
    # The configuration was stored retained: a unit that connects later receives it.
    config = (topics.home_config(2001), sent[topics.home_config(2001)])
    unit.close()  # one connection per device: the same unit connecting again replaces it
    later = connect("hu-2001")
    assert later.subscribe(topics.home_config(2001)) == [GRANTED_QOS1]
    assert _collect(later.received, {config}) == {config}


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["v5", "v3.1.1"])
def test_backend_cannot_publish_as_a_device(
    connect: Connect, protocol: MQTTProtocolVersion
) -> None:
    ingest = connect("backend")
    assert ingest.subscribe(*subscriptions("ingest")) == [GRANTED_QOS1] * len(topics.INGEST)
    unit = connect("hu-2001")
    online = (topics.home_status(2001), b"online, signed by the unit")
    assert unit.publish(*online, retain=True) == SUCCESS

    backend = connect("backend", protocol=protocol)
    for topic in (*UPLINKS, topics.tag_up(1002)):
        rc = backend.publish(topic, b"forged", retain=topic == online[0])
        # v5 names the refusal; v3.1.1 has no way to, and acknowledges as if delivered.
        assert rc == (NOT_AUTHORIZED if protocol == mqtt.MQTTv5 else SUCCESS), topic

    genuine = (topics.tag_up(1001), b"genuine")
    connect("tag-1001").publish(*genuine)
    assert _collect(ingest.received, {online, genuine}) == {online, genuine}
    # Nor did the forged status replace the unit's retained one.
    reader = connect("backend")
    assert reader.subscribe(topics.home_status(2001)) == [GRANTED_QOS1]
    assert _collect(reader.received, {online}) == {online}


# ---- device identity: a client id is the device's own username ----------------------------


def test_a_device_cannot_disconnect_another_or_take_its_session(
    secured: tuple[Mosquitto, dict[int, Device]], connect: Connect
) -> None:
    """tag-1002 connects asking for tag-1001's client id, clean start off (the probe's
    takeover): the broker gives it its own id instead, so tag-1001 stays connected, and the
    session tag-1001 keeps while offline (its queued downlinks) stays tag-1001's, across a
    broker restart too (each listener's own settings must not lose an offline session's
    messages)."""
    victim = connect("tag-1001", persistent=True, client_id="tag-1001")
    assert victim.subscribe(topics.tag_down(1001)) == [GRANTED_QOS1]
    backend = connect("backend")

    thief = connect("tag-1002", persistent=True, client_id="tag-1001")
    assert thief.connack == SUCCESS  # a device may connect; only not as another one
    live = (topics.tag_down(1001), b"ack while the thief is connected")
    assert backend.publish(*live) == SUCCESS
    assert _collect(victim.received, {live}) == {live}
    assert victim.disconnects == []
    thief.close()

    # Offline, the victim's persistent session queues its downlinks; a thief connecting
    # under its id meanwhile does not resume that session (it would have been handed the
    # queue, and the ACL would have dropped every message of it).
    victim.close()
    backend.close()
    secured[0].restart()
    backend = connect("backend")
    queued = (topics.tag_down(1001), b"queued while the tag is away")
    assert backend.publish(*queued) == SUCCESS
    thief = connect("tag-1002", persistent=True, client_id="tag-1001")
    assert thief.subscribe(topics.tag_down(1002)) == [GRANTED_QOS1]
    mine = (topics.tag_down(1002), b"the thief's own downlink")
    assert backend.publish(*mine) == SUCCESS
    assert _collect(thief.received, {mine}) == {mine}  # its own session, its own downlinks
    back = connect("tag-1001", persistent=True, client_id="whatever the firmware says")
    assert _collect(back.received, {queued}) == {queued}


def test_a_unit_cannot_take_over_a_tag_nor_the_backend_log_in_as_a_device(
    connect: Connect,
) -> None:
    """Home units are bound like tags; and the two listeners keep the accounts apart: a
    device's password opens nothing on the backend's listener, the backend's nothing on a
    device listener."""
    victim = connect("tag-1001", client_id="tag-1001")
    assert victim.subscribe(topics.tag_down(1001)) == [GRANTED_QOS1]
    unit = connect("hu-2001", client_id="tag-1001")
    assert unit.subscribe(topics.tag_down(1001)) == [GRANTED_QOS1]
    ack = (topics.tag_down(1001), b"ack")
    connect("backend").publish(*ack)
    assert _collect(victim.received, {ack}) == {ack}
    assert _collect(unit.received, {ack}) == {ack}  # the unit reads its paired tag's acks
    assert victim.disconnects == []

    broker_port, backend_port = victim.port, connect("backend").port
    assert connect("tag-1002", port=backend_port).connack == NOT_AUTHORIZED
    assert connect("hu-2001", port=backend_port).connack == NOT_AUTHORIZED
    assert connect("backend", port=broker_port).connack == NOT_AUTHORIZED


def _acks(
    q: queue.Queue[tuple[str, bytes]],
    keys: dict[str, bytes],
    want: dict[str, set[tuple[int, int]]],
    wait_s: float,
) -> dict[str, set[tuple[int, int]]]:
    """The (boot, seq) pairs that verified ACKs arriving on q name, per topic, until each
    topic's wanted pairs are among them or wait_s passes (one ACK may name several)."""
    got: dict[str, set[tuple[int, int]]] = {t: set() for t in keys}
    deadline = time.monotonic() + wait_s
    while any(not got[t] >= w for t, w in want.items()) and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            topic, payload = q.get(timeout=0.2)
            got[topic] |= acked(payload, keys[topic])
    return got


def test_ingest_worker_runs_on_the_backend_account(
    secured: tuple[Mosquitto, dict[int, Device]],
    ingest_worker: IngestWorker,
    connect: Connect,
) -> None:
    """Least privilege is enough for the real worker: it receives each kind of uplink on its
    shared subscription, and its signed ACKs reach the devices."""
    _, devs = secured
    tag_key, unit_key = devs[1001].key, devs[2001].key
    keys = {topics.tag_down(1001): tag_key, topics.home_down(2001): unit_key}
    tag, unit = connect("tag-1001"), connect("hu-2001")
    downlinks: queue.Queue[tuple[str, bytes]] = queue.Queue()
    tag.received = unit.received = downlinks
    assert tag.subscribe(topics.tag_down(1001)) == [GRANTED_QOS1]
    assert unit.subscribe(topics.home_down(2001)) == [GRANTED_QOS1]

    # Until its subscription is in place the worker misses frames, so the tag does what a
    # device does: retransmits until acknowledged (ingest is idempotent).
    now = int(time.time())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tag.publish(topics.tag_up(1001), tag_frame(1001, tag_key, 1, now))
        if (1, 1) in _acks(downlinks, keys, {topics.tag_down(1001): {(1, 1)}}, 2.0)[
            topics.tag_down(1001)
        ]:
            break
    else:
        pytest.fail("the worker never acknowledged the tag's first frame")

    power = [fr.Record(fr.HOME_POWER, dt=0, mains=1, battery=90)]
    online = [fr.Record(fr.LINK, dt=0, state=fr.LINK_ONLINE)]
    unit.publish(topics.home_relay(2001), tag_frame(1001, tag_key, 2, now))
    unit.publish(topics.home_up(2001), home_frame(2001, unit_key, 1, now, power))
    unit.publish(topics.home_status(2001), home_frame(2001, unit_key, 2, now, online), True)
    want = {
        topics.tag_down(1001): {(1, 2)},  # the relayed frame is acknowledged to the tag
        topics.home_down(2001): {(1, 1), (1, 2)},
    }
    got = _acks(downlinks, keys, want, 30)
    # (A late ACK of a retransmitted first frame may also arrive on the tag's topic.)
    assert got[topics.tag_down(1001)] - {(1, 1)} == want[topics.tag_down(1001)]
    assert got[topics.home_down(2001)] == want[topics.home_down(2001)]
    engine = make_engine(ingest_worker.settings.resolved_database_url())
    with engine.connect() as conn:
        stored = {(r.device, r.seq) for r in conn.execute(select(frames.c.device, frames.c.seq))}
    engine.dispose()
    assert stored == {(1001, 1), (1001, 2), (2001, 1), (2001, 2)}


def test_wrong_or_foreign_password_refused(
    secured: tuple[Mosquitto, dict[int, Device]], connect: Connect
) -> None:
    _, devs = secured
    assert connect("tag-1001", "wrong").connack != 0
    # One device's password does not open another's account.
    assert connect("tag-1002", bc.device_password(devs[1001].key)).connack != 0
    assert connect("backend", "wrong").connack != 0
    assert connect("nobody", "x").connack != 0


def test_refuses_an_empty_backend_password(registry: Registry) -> None:
    with pytest.raises(ValueError, match="TAGWATCH_MQTT_PASSWORD"):
        bc.render(registry.all(), "backend", "")


@pytest.mark.parametrize("name", ["", "back end", "back#", "ops+", "tag-1001", "hu-2001"])
def test_refuses_a_backend_username_the_acl_cannot_hold(registry: Registry, name: str) -> None:
    registry.register(1001, TAG)
    with pytest.raises(ValueError, match="TAGWATCH_MQTT_USERNAME"):
        bc.render(registry.all(), name, BACKEND_PASSWORD)


def test_broker_config_writes_the_files_and_prints_the_listener_lines(tmp_path: Path) -> None:
    """The operator's path: `broker-config` writes the three files and prints, for each kind
    of listener, exactly the lines the brokers in these tests run with."""
    env = {
        "TAGWATCH_DATA_DIR": str(tmp_path),
        "TAGWATCH_SERVER_KEY": SERVER_KEY.hex(),
        "TAGWATCH_MQTT_PASSWORD": BACKEND_PASSWORD,
    }
    runner = CliRunner()
    for args in (
        ["register", "2001", "--kind", "home_unit"],
        ["register", "1001", "--kind", "tag"],
    ):
        assert runner.invoke(cli, ["backend", *args], env=env).exit_code == 0
    out = tmp_path / "mosquitto"
    result = runner.invoke(cli, ["backend", "broker-config", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    files = BrokerFiles(out / "passwd", out / "backend.passwd", out / "acl")
    names = {line.split(":")[0] for line in files.passwd.read_text().splitlines()}
    assert names == {"hu-2001", "tag-1001"}
    assert files.backend_passwd.read_text().startswith("backend:$7$")
    lines = [line.strip() for line in result.stdout.splitlines()]
    at_device = next(i for i, x in enumerate(lines) if x.startswith("after each listener"))
    at_backend = next(i for i, x in enumerate(lines) if x.startswith("after the backend's"))
    assert lines[at_device + 1 : at_backend] == device_auth(files)
    assert lines[at_backend + 1 :] == backend_auth(files)
