"""Option (a) of the broker decision, measured (docs/scaling.md, "Brokers"): a three-node
clustered broker from Debian's packages, NATS 2.9 with JetStream and its MQTT listener, and
RabbitMQ 3.10 with its MQTT plugin and quorum queues. An engine that is not installed is
skipped with a message.

Not part of `make test` or `make bench` (a RabbitMQ cluster takes 30-40 s to start, and
every scenario starts a fresh cluster: about 2 min for NATS, 5 min for RabbitMQ). Run it
alone:

    .venv/bin/python -m tests.bench.broker_cluster [--runs 3] [--only nats|rabbitmq]

Each scenario: a "tag" (paho, MQTT 3.1.1, QoS 1, persistent session, an ordered list of the
three nodes, the next one at once when a connection is lost) publishes numbered messages at
20/s to node 0, a "worker" (paho, 3.1.1, persistent session: neither cluster speaks MQTT 5
in these versions, so no shared subscription) consumes on node 1; after 3 s one node is
SIGKILLed: the tag's, the worker's, or the node leading the replicated store the worker's
messages go through (NATS: the `$MQTT_msgs` stream; RabbitMQ: the worker's quorum queue).
Counted by sequence number: lost (acknowledged to the tag by PUBACK and not delivered to
the worker within 43 s of the last publish), never delivered, delivered twice. Timed from
the kill: the tag's first PUBACK, the worker's first message, the first message published
after the kill reaching the worker. Before the tag's node is killed, a QoS 1 downlink is
queued for an offline device session last connected to it, and a retained message is
published on it; after the kill both are looked for on another node (for up to 20 s).

Loopback only; every process is started and stopped here."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.table import Table

from backend.broker import free_port

HOST = "127.0.0.1"
RATE_HZ = 20.0
BEFORE_KILL_S = 3.0
AFTER_KILL_S = 10.0
SETTLE_S = 40.0
NODES = 3


@dataclass
class Node:
    name: str
    mqtt_port: int
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Cluster:
    """Three nodes of one engine; `kill` is SIGKILL of one node's process group."""

    engine: str
    nodes: list[Node]
    stop_all: Callable[[], None]
    leader: Callable[[], int]

    def kill(self, i: int) -> None:
        proc = self.nodes[i].proc
        assert proc is not None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def poll(pred: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    if not poll(pred, timeout):
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def mqtt_ready(port: int) -> bool:
    """A persistent 3.1.1 session can be opened and a QoS 1 publish acknowledged: JetStream
    (or the Erlang cluster) has a leader, not just an open socket."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe{port}", clean_session=False)
    try:
        c.connect(HOST, port, keepalive=5)
        c.loop_start()
        info = c.publish("probe/x", b"x", qos=1)
        info.wait_for_publish(timeout=3)
        ok = info.is_published()
        c.disconnect()
        c.loop_stop()
        return ok
    except (OSError, RuntimeError, ValueError):
        with contextlib.suppress(Exception):
            c.loop_stop()
        return False


@contextlib.contextmanager
def nats_cluster(tmp: Path) -> Iterator[Cluster]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    routes = [free_port() for _ in range(NODES)]
    nodes = [Node(f"n{i}", free_port()) for i in range(NODES)]
    for i, node in enumerate(nodes):
        others = ", ".join(f'"nats://{HOST}:{p}"' for j, p in enumerate(routes) if j != i)
        conf = tmp / f"{node.name}.conf"
        conf.write_text(
            f'server_name: "{node.name}"\n'
            f"listen: {HOST}:{free_port()}\n"
            f'jetstream {{ store_dir: "{tmp / node.name}" }}\n'
            f'cluster {{ name: "tw", listen: {HOST}:{routes[i]}, routes: [{others}] }}\n'
            # Replicated on all three nodes: left to itself the server picks the number of
            # nodes it has seen at the first MQTT connection, which can be two.
            f"mqtt {{ listen: {HOST}:{node.mqtt_port}, "
            "stream_replicas: 3, consumer_replicas: 3 }\n"
        )
        node.proc = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=(tmp / f"{node.name}.log").open("wb"),
            start_new_session=True,
        )

    def stop_all() -> None:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
                node.proc.wait(timeout=10)

    try:
        for node in nodes:
            wait_for(partial(mqtt_ready, node.mqtt_port), 60, f"NATS {node.name} MQTT")
        yield Cluster("NATS 2.9 JetStream MQTT", nodes, stop_all, lambda: nats_leader(tmp, nodes))
    finally:
        stop_all()


RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


@contextlib.contextmanager
def rabbitmq_cluster(tmp: Path) -> Iterator[Cluster]:
    """Three RabbitMQ nodes on one host: their own epmd port, Erlang cookie, ports and
    database directories; node 0 is started first and the others join it (started
    together, classic peer discovery races and a node gives up)."""
    epmd_port = free_port()
    names = [f"r{i}@localhost" for i in range(NODES)]
    nodes = [Node(name, free_port()) for name in names]
    cookie = tmp / ".erlang.cookie"
    cookie.write_text("tagwatch-bench")
    cookie.chmod(0o400)
    (tmp / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
    env_base = {**os.environ, "HOME": str(tmp), "ERL_EPMD_PORT": str(epmd_port)}
    epmd = subprocess.Popen(
        [shutil.which("epmd") or "epmd", "-port", str(epmd_port), "-address", "127.0.0.1"],
        env=env_base,
        start_new_session=True,
    )
    peers = "".join(
        f"cluster_formation.classic_config.nodes.{i + 1} = {n}\n" for i, n in enumerate(names)
    )

    def env(i: int) -> dict[str, str]:
        conf = tmp / f"r{i}.conf"
        conf.write_text(
            f"listeners.tcp.default = {HOST}:{free_port()}\n"
            f"mqtt.listeners.tcp.default = {HOST}:{nodes[i].mqtt_port}\n"
            # QoS 1 sessions in quorum queues: replicated on the three nodes.
            "mqtt.durable_queue_type = quorum\n"
            "mqtt.allow_anonymous = true\n"
            "cluster_formation.peer_discovery_backend = classic_config\n" + peers
        )
        return {
            **env_base,
            "RABBITMQ_NODENAME": names[i],
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
            "RABBITMQ_LOG_BASE": str(tmp / "log"),
            "RABBITMQ_CONFIG_FILE": str(tmp / f"r{i}"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(tmp / f"r{i}.pid"),
        }

    def start(i: int) -> None:
        nodes[i].proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=env(i),
            stdout=(tmp / f"r{i}.out").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop_all() -> None:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                os.killpg(node.proc.pid, signal.SIGTERM)
                node.proc.wait(timeout=30)
        epmd.terminate()
        epmd.wait(timeout=10)

    def leader() -> int:
        out = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", names[2], "list_queues", "-q",
             "--no-table-headers", "name", "leader"],
            env=env_base, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        for line in out.splitlines():
            if line.startswith("mqtt-subscription-worker"):
                return names.index(line.split()[1])
        raise RuntimeError(f"no quorum queue for the worker's session in: {out!r}")

    try:
        start(0)
        wait_for(partial(mqtt_ready, nodes[0].mqtt_port), 120, "RabbitMQ node 0")
        for i in range(1, NODES):
            start(i)
        for node in nodes[1:]:
            wait_for(partial(mqtt_ready, node.mqtt_port), 120, f"RabbitMQ {node.name}")
        yield Cluster("RabbitMQ 3.10 MQTT, quorum queues", nodes, stop_all, leader)
    finally:
        stop_all()


def nats_leader(tmp: Path, nodes: list[Node]) -> int:
    """The node leading the stream that holds QoS 1 messages for sessions: the latest
    leader its logs announce."""
    latest = ("", 0)
    for i, node in enumerate(nodes):
        for line in (tmp / f"{node.name}.log").read_text().splitlines():
            if "new stream leader for '$G > $MQTT_msgs'" in line:
                stamp = " ".join(line.split()[1:3])  # date and time: they sort as text
                latest = max(latest, (stamp, i))
    return latest[1]


@dataclass
class Endpoint:
    """A paho client that walks an ordered list of nodes: on a lost connection it tries the
    next one at once, like the tag's firmware (next broker after a failed session)."""

    client_id: str
    ports: list[int]
    on_message: Callable[[mqtt.MQTTMessage], None] | None = None
    subscribe: str | None = None
    connected: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    client: mqtt.Client = field(init=False)
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.connected.clear()
        if self.on_message is not None:
            cb = self.on_message
            self.client.on_message = lambda _c, _u, m: cb(m)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        if not getattr(rc, "is_failure", False):
            if self.subscribe is not None:
                client.subscribe(self.subscribe, qos=1)
            self.connected.set()

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            port = self.ports[i % len(self.ports)]
            i += 1
            try:
                self.client.connect(HOST, port, keepalive=5)
            except OSError:
                continue
            while not self.stop.is_set():
                if self.client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                    break
        with contextlib.suppress(Exception):
            self.client.disconnect()

    def start(self) -> Endpoint:
        self.thread.start()
        if not self.connected.wait(30):
            raise RuntimeError(f"{self.client_id} never connected")
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


@dataclass
class Outcome:
    published: int = 0
    acked: int = 0
    lost: int = 0
    undelivered: int = 0
    doubled: int = 0
    tag_back_s: float | None = None
    worker_back_s: float | None = None
    new_delivered_s: float | None = None
    downlink_kept: bool | None = None
    retained_kept: bool | None = None


def one_shot(port: int, client_id: str, topic: str, clean: bool, timeout: float) -> bytes | None:
    """Connect, subscribe, return the first payload on `topic`; a session that cannot be
    opened or a subscription that brings nothing is tried again until `timeout`."""
    end = time.monotonic() + timeout
    while True:
        got: list[bytes] = []
        subscribed = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )

        def on_message(
            _c: mqtt.Client, _u: object, m: mqtt.MQTTMessage, got: list[bytes] = got
        ) -> None:
            got.append(bytes(m.payload))

        c.on_message = on_message
        c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *_, subscribed=subscribed: subscribed.set()
        with contextlib.suppress(OSError):
            c.connect(HOST, port, keepalive=5)
            c.loop_start()
            # The session keeps its subscription only once the broker has answered it.
            subscribed.wait(5.0)
            poll(partial(bool, got), min(5.0, max(0.1, end - time.monotonic())))
            c.disconnect()
            c.loop_stop()
        if got or time.monotonic() >= end:
            return got[0] if got else None


def scenario(cluster: Cluster, victim: str) -> tuple[str, Outcome]:
    """Tag on node 0 (then 1, 2), worker on node 1 (then 2, 0); SIGKILL the tag's node,
    the worker's or the node leading the message stream (whichever that is)."""
    ports = [n.mqtt_port for n in cluster.nodes]
    out = Outcome()
    lock = threading.Lock()
    received: dict[int, int] = {}
    recv_at: list[tuple[float, int]] = []

    def on_uplink(m: mqtt.MQTTMessage) -> None:
        seq = int(m.payload)
        with lock:
            received[seq] = received.get(seq, 0) + 1
            recv_at.append((time.monotonic(), seq))

    check_downlink = victim == "tag"
    if check_downlink:
        # An offline device session on node A with a QoS 1 subscription, a downlink queued
        # for it from node B, and a retained configuration published on A.
        assert one_shot(ports[0], "unit-dl", "down/unit", clean=False, timeout=0.5) is None
        pub = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="backend-dl", protocol=mqtt.MQTTv311
        )
        pub.connect(HOST, ports[1], keepalive=5)
        pub.loop_start()
        pub.publish("down/unit", b"command", qos=1).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        ret = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="backend-ret", protocol=mqtt.MQTTv311
        )
        ret.connect(HOST, ports[0], keepalive=5)
        ret.loop_start()
        ret.publish("cfg/unit", b"config", qos=1, retain=True).wait_for_publish(5)
        ret.disconnect()
        ret.loop_stop()

    worker = Endpoint("worker", ports[1:] + ports[:1], on_uplink, "up/#").start()
    tag = Endpoint("tag", ports).start()
    kill = {"tag": 0, "worker": 1}.get(victim)
    if kill is None:
        kill = cluster.leader()
    what = {"tag": "tag's node", "worker": "worker's node"}.get(
        victim, f"queue leader (node {kill})"
    )
    acked_at: dict[int, float] = {}

    def on_publish(_c: mqtt.Client, _u: object, mid: int, _rc: object, _p: object) -> None:
        with lock:
            acked_at[mid] = time.monotonic()

    tag.client.on_publish = on_publish
    mids: dict[int, int] = {}
    seq = 0
    t0 = time.monotonic()
    kill_at: float | None = None
    first_after_kill_seq: int | None = None
    while True:
        now = time.monotonic()
        if kill_at is None and now - t0 >= BEFORE_KILL_S:
            cluster.kill(kill)
            kill_at = time.monotonic()
            first_after_kill_seq = seq
        if kill_at is not None and now - kill_at >= AFTER_KILL_S:
            break
        info = tag.client.publish(f"up/{seq}", str(seq).encode(), qos=1)
        mids[info.mid] = seq
        seq += 1
        time.sleep(max(0.0, t0 + seq / RATE_HZ - time.monotonic()))
    # Let everything in flight settle before counting: at least 3 s, and up to SETTLE_S
    # for every acknowledged message to arrive (a message the dead node had handed to the
    # worker's connection comes again only after the session's acknowledgement wait).
    time.sleep(3)

    def all_acked_received() -> bool:
        with lock:
            return all(mids[mid] in received for mid in acked_at if mid in mids)

    poll(all_acked_received, SETTLE_S)
    tag.close()
    worker.close()
    assert kill_at is not None and first_after_kill_seq is not None
    with lock:
        acked_seqs = {mids[mid]: t for mid, t in acked_at.items() if mid in mids}
        out.published = seq
        out.acked = len(acked_seqs)
        out.lost = sum(1 for s in acked_seqs if s not in received)
        out.undelivered = sum(1 for s in range(seq) if s not in received)
        out.doubled = sum(1 for n in received.values() if n > 1)
        after = [t for t in acked_seqs.values() if t > kill_at]
        out.tag_back_s = min(after) - kill_at if after else None
        got = [t for t, _ in recv_at if t > kill_at]
        out.worker_back_s = min(got) - kill_at if got else None
        new = [t for t, s in recv_at if s >= first_after_kill_seq]
        out.new_delivered_s = min(new) - kill_at if new else None
    if check_downlink:
        other = ports[2]
        out.downlink_kept = (
            one_shot(other, "unit-dl", "down/unit", clean=False, timeout=20) == b"command"
        )
        out.retained_kept = (
            one_shot(other, "reader", "cfg/unit", clean=True, timeout=20) == b"config"
        )
    return what, out


ENGINES: dict[str, tuple[str, Callable[[Path], contextlib.AbstractContextManager[Cluster]]]] = {
    "nats": ("nats-server", nats_cluster),
    "rabbitmq": ("rabbitmq-server", rabbitmq_cluster),
}


def fmt(v: float | None) -> str:
    return "never" if v is None else f"{v * 1000:.0f} ms"


def yes(v: bool | None) -> str:
    return "-" if v is None else ("yes" if v else "no")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", choices=sorted(ENGINES))
    args = ap.parse_args()
    table = Table(
        title=f"clustered broker, 3 nodes, tag QoS 1 at {RATE_HZ:.0f}/s, one node SIGKILLed"
    )
    for col in (
        "engine", "killed", "published", "PUBACKed", "lost", "never delivered", "doubled",
        "tag PUBACK again", "worker receives again", "first post-kill msg", "downlink kept",
        "retained kept",
    ):  # fmt: skip
        table.add_column(col)
    console = Console(width=200)
    for key, (binary, start) in ENGINES.items():
        if args.only and key != args.only:
            continue
        if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
            console.print(f"[yellow]skipped {key}: {binary} is not installed[/yellow]")
            continue
        for _ in range(args.runs):
            for victim in ("tag", "worker", "leader"):
                with tempfile.TemporaryDirectory() as tmp, start(Path(tmp)) as cluster:
                    what, o = scenario(cluster, victim)
                table.add_row(
                    cluster.engine, what, str(o.published), str(o.acked), str(o.lost),
                    str(o.undelivered), str(o.doubled), fmt(o.tag_back_s),
                    fmt(o.worker_back_s), fmt(o.new_delivered_s), yes(o.downlink_kept),
                    yes(o.retained_kept),
                )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
