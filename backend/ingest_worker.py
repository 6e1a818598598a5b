"""An MQTT ingest worker: paho-mqtt 2 (MQTT v5, QoS 1) feeding backend.ingest in batches.

- One persistent session per worker (clean_start off, a session expiry), so frames queued
  while a worker or the broker restarts are delivered when it comes back.
- Shared subscription `$share/<group>/...`: start N workers with the same group and the
  broker spreads frames across them.
- Broker PUBACKs are sent by hand (manual_ack) only after the batch is committed and its
  end-to-end ACKs are published; a worker killed mid-batch leaves its frames unacknowledged
  at the broker, which redelivers them when the session reconnects. Independently, devices
  retransmit every frame without an end-to-end ACK; idempotent ingest makes both safe.
- One thread does everything: it drives paho's network loop itself (the client's documented
  external-loop API: `socket()` watched with select, then `loop_read()`, `loop_write()`,
  `loop_misc()`) over every broker's connection to collect a batch, then runs the pipeline,
  then sends the PUBACKs. It also reconnects itself (`reconnect()`, after the back-off of
  backend.storage.database.Retry): paho's own reconnect delay applies only to its
  loop_forever/loop_start threads. A
  CPU-bound pipeline beside paho's own network thread made the two fight for the GIL (paho
  releases it for each of the three or more recv() calls a message costs, then waits up to
  the 5 ms switch interval to get it back), so receiving and processing did not overlap
  anyway and each message paid for thread hand-offs; profiled in docs/scaling.md.
  While a batch is processed the kernel socket buffer and the broker hold what arrives.
- Every downlink (ACKs from the pipeline, commands from the rules) is tracked until the
  broker's PUBACK. MQTT v5 gives its reason code: 0x80 and above means the broker refused and
  dropped it (135 not authorized: the backend's ACL lacks the topic). A refused downlink is
  counted (`acks_refused` / `commands_refused`, and in `acks_failed`), per reason, and logged
  as an error with its reason; the worker does not publish it again itself (the same
  publish would be refused again). Nothing stored is affected: a device retransmits a frame
  it has no ACK for, ingest finds it stored (a duplicate) and publishes a fresh ACK, which
  gets through once the broker accepts it (docs/operations.md, "Ingest").
- Ingest subscribes with retain handling 1 (retained messages only for a subscription that
  is new): a resumed session's subscribe again does not bring every home unit's retained
  status back, while a new session (a new worker, an expired session, a fresh deployment)
  still receives each unit's current state. Whatever comes from the retained store is
  marked so the pipeline treats it as known state, never a replay (backend/ingest.py).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import select
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from backend import metrics
from backend.broker_credentials import is_device_name
from backend.clock import Clock
from backend.health import OpsServer, Readiness, database_ready, ticking
from backend.ingest import DeviceDirectory, Ingest, Message, RuleSink
from backend.registry import KeyVault, Registry, load_server_key
from backend.settings import Settings
from backend.storage.database import Retry, make_engine, upgrade
from firmware import frame as fr
from firmware import topics

if TYPE_CHECKING:
    from backend.rules.sink import RuleTimer

log = structlog.get_logger("tagwatch.ingest")


def subscriptions(group: str) -> list[str]:
    return [f"$share/{group}/{t}" for t in topics.INGEST]


# Retained messages only when a subscription is new (MQTT v5 retain handling 1); see above.
SUBSCRIBE_OPTIONS = SubscribeOptions(
    qos=topics.QOS, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
)
REFUSED = 0x80  # MQTT v5 reason codes from here up are failures
REFUSAL_LOG_EVERY_S = 10.0  # at most one refusal line per (kind, reason) this often


def default_client_id(settings: Settings, index: int) -> str:
    # Stable across restarts (the broker keeps the session under this id) and unique per
    # host and worker slot. Predictable, and safe because only the backend's account can log
    # in on the backend's listener, and a device's client id is its own username
    # (docs/security.md, "Device identity at the broker").
    return f"tagwatch-{settings.ingest_group}-{socket.gethostname()}-{index}"


@dataclass
class _Token:
    mid: int
    qos: int
    generation: int  # the connection it arrived on; a PUBACK is only valid on that one
    broker: int = 0  # ... on that broker


@dataclass
class _Downlink:
    """A published downlink awaiting the broker's PUBACK."""

    kind: str  # "ack" or "command"
    topic: str
    device: int | None


# Counted as acks_*, commands_* (and messages_* for anything else) by the frame's type byte.
_KINDS = {fr.ACK: "ack", fr.COMMAND: "command"}
# What a refusal means for the device, in the refusal's log line.
_CONSEQUENCE = {
    "ack": "not delivered; the device retransmits the frame and is acknowledged again",
    "command": "not delivered; the rules have recorded it as sent",
}


def _downlink(topic: str, payload: bytes) -> _Downlink:
    parsed = topics.parse(topic)
    kind = _KINDS.get(payload[1], "message") if len(payload) > 1 else "message"
    return _Downlink(kind, topic, parsed[1] if parsed else None)


@dataclass
class _Link:
    """One broker of the list: its own paho client (and so its own session there), the
    connection generation PUBACKs are checked against, and when to try again."""

    index: int
    host: str
    port: int
    client: mqtt.Client
    generation: int = 0
    connected: bool = False
    next_attempt: float = 0.0  # monotonic time of the next connection attempt
    retry: Retry = field(default_factory=Retry)


class IngestWorker:
    def __init__(
        self,
        settings: Settings,
        client_id: str,
        clock: Clock | None = None,
        rules: RuleSink | None = None,
    ) -> None:
        if is_device_name(client_id):
            # Client ids are one namespace across the broker's listeners: this one would
            # disconnect the device whose id it is.
            raise ValueError(f"the client id {client_id!r} is a device's (tag-<id>, hu-<id>)")
        self.settings = settings
        self.client_id = client_id
        self.engine = make_engine(settings.resolved_database_url())
        registry = Registry(self.engine, KeyVault(load_server_key(settings)), clock)
        # Every broker of the list, each with its own connection and session under the same
        # client id (one namespace per broker): with independent brokers a device is on any
        # one of them, so every worker reads them all (docs/scaling.md, "Brokers").
        self.links = [
            _Link(i, host, port, self._client(i))
            for i, (host, port) in enumerate(settings.broker_list())
        ]
        self.ingest = Ingest(
            self.engine, DeviceDirectory(registry), self._publish, settings, clock, rules
        )
        self.inbox: list[Message] = []  # filled by _on_message while _pump runs
        self.stopping = threading.Event()
        self._abandoned = False
        self.connected = threading.Event()  # set while at least one broker is connected
        self.batches = 0
        # Messages whose batch went through the whole pipeline, the rules' hand-over
        # included (a simulator waits for this to equal counts["received"]).
        self.handled = 0
        self.retry = Retry()
        # Downlinks by (broker, message id) until their PUBACK. Commands are published from
        # the rule timer's thread, so a PUBACK can be read (here) before publish() has
        # returned there: its reason code waits in _early until the publisher claims it. The
        # lock is never held while calling paho, whose own locks are held around on_publish.
        self._downlinks_lock = threading.Lock()
        self._awaiting: dict[tuple[int, int], _Downlink] = {}
        self._early: dict[tuple[int, int], ReasonCode] = {}
        # (kind, reason) -> refused downlinks; and when each was last logged, with how many
        # refusals went unlogged since.
        self.refusals: Counter[tuple[str, str]] = Counter()
        self._refusal_log: dict[tuple[str, int], tuple[float, int]] = {}

    @property
    def client(self) -> mqtt.Client:
        """The first broker's client (a worker with one broker has only this one)."""
        return self.links[0].client

    def brokers_connected(self) -> list[bool]:
        return [link.connected for link in self.links]

    # ---- MQTT ------------------------------------------------------------------------

    def _client(self, index: int) -> mqtt.Client:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            userdata=index,
        )
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        if self.settings.mqtt_password:
            c.username_pw_set(self.settings.mqtt_username, self.settings.mqtt_password)
        c.max_inflight_messages_set(1000)  # acks out; paho's default of 20 throttles them
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, 2)
        return c

    def _on_connect(
        self, client: mqtt.Client, index: int, _f: Any, rc: ReasonCode, _p: Any
    ) -> None:
        link = self.links[index]
        if rc.is_failure:
            log.error("broker refused the connection", broker=index, reason=str(rc))
            return
        link.generation += 1
        link.connected = True
        link.retry.succeeded()
        # Subscribing again on a resumed session is harmless and covers a lost session.
        client.subscribe(
            [(t, SUBSCRIBE_OPTIONS) for t in subscriptions(self.settings.ingest_group)]
        )
        self.connected.set()
        log.info("connected", client_id=self.client_id, broker=index, generation=link.generation)

    def _on_disconnect(self, _c: mqtt.Client, index: int, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.links[index].connected = False
        if not any(link.connected for link in self.links):
            self.connected.clear()
        if not self.stopping.is_set():
            log.warning("disconnected; reconnecting", broker=index, reason=str(rc))

    def _on_message(self, _c: mqtt.Client, index: int, msg: mqtt.MQTTMessage) -> None:
        self.inbox.append(
            Message(
                msg.topic,
                bytes(msg.payload),
                _Token(msg.mid, msg.qos, self.links[index].generation, index),
                bool(msg.retain),
            )
        )

    def _publish(self, topic: str, payload: bytes) -> bool:
        """Publish a downlink (QoS 1) on every broker; False if no client would take it.
        The device is connected to one of them, or will be: an ACK or command on a broker
        the device is not on waits in its session there, if it has one, and the tag and home
        unit run a command once however often it comes (firmware/commands.py). Whether a
        broker accepts it comes later, in its PUBACK (_on_publish)."""
        sent = _downlink(topic, payload)
        taken = False
        for link in self.links:
            info = link.client.publish(topic, payload, qos=topics.QOS)
            # QUEUE_SIZE: paho did not take it (a lost ack, which the device's retransmission
            # recovers). Anything else it keeps until a PUBACK: NO_CONN, or a write that
            # found the connection lost, is sent (again) after reconnecting.
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                continue
            taken = True
            key = (link.index, info.mid)
            with self._downlinks_lock:
                rc = self._early.pop(key, None)
                if rc is None:
                    self._awaiting[key] = sent
                else:
                    self._settle(sent, rc)
        return taken

    def _on_publish(
        self, _c: mqtt.Client, index: int, mid: int, rc: ReasonCode, _p: Properties
    ) -> None:
        key = (index, mid)
        with self._downlinks_lock:
            sent = self._awaiting.pop(key, None)
            if sent is None:
                self._early[key] = rc
            else:
                self._settle(sent, rc)

    def _settle(self, sent: _Downlink, rc: ReasonCode) -> None:
        """Count the broker's answer to one downlink (with _downlinks_lock held)."""
        counts = self.ingest.counts
        if rc.value < REFUSED:
            # 0x10, no matching subscribers, is a success: the device is not connected and
            # has no session, so it will retransmit and be acknowledged again later.
            counts[f"{sent.kind}s_published"] += 1
            return
        counts[f"{sent.kind}s_refused"] += 1
        if sent.kind == "ack":
            counts["acks_failed"] += 1
        self.refusals[(sent.kind, str(rc))] += 1
        key = (sent.kind, rc.value)
        now = time.monotonic()
        last, unlogged = self._refusal_log.get(key, (float("-inf"), 0))
        if now - last < REFUSAL_LOG_EVERY_S:
            self._refusal_log[key] = (last, unlogged + 1)
            return
        self._refusal_log[key] = (now, 0)
        log.error(
            "broker refused a downlink",
            kind=sent.kind,
            topic=sent.topic,
            device=sent.device,
            reason=str(rc),
            reason_code=rc.value,
            unlogged_since_last=unlogged,
            refused_total=counts[f"{sent.kind}s_refused"],
            consequence=_CONSEQUENCE.get(sent.kind, "not delivered"),
        )

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.ingest_session_expiry_s
        props.ReceiveMaximum = 65535
        for link in self.links:
            link.client.connect_async(
                link.host, link.port, keepalive=30, clean_start=False, properties=props
            )
        self._pump(0.0)

    def _pump(self, timeout: float, limit: int = 1) -> None:
        """One step of the network loop over every broker (paho's external-loop API:
        socket(), loop_read(), loop_write(), loop_misc()): (re)connect those that need it,
        else wait up to `timeout` for traffic on any, read while messages keep coming (up to
        `limit` in the inbox), write what is queued, keep the connections alive."""
        now = time.monotonic()
        socks: dict[Any, _Link] = {}
        for link in self.links:
            sock = link.client.socket()
            if sock is not None:
                socks[sock] = link
            elif now >= link.next_attempt:
                try:
                    link.client.reconnect()
                except OSError as e:
                    # The broker is down or restarting: try again after the back-off (the
                    # frames wait in its persistent session, or on the devices, which fail
                    # over to another broker meanwhile).
                    delay = link.retry.failed()
                    log.warning(
                        "cannot reach the broker; retrying",
                        broker=link.index,
                        error=str(e),
                        retry_in_s=delay,
                    )
                    link.next_attempt = now + delay
        if not socks:
            soonest = min(link.next_attempt for link in self.links)
            self.stopping.wait(max(0.0, min(timeout, soonest - now)))
            return
        for sock in socks:
            pending = getattr(sock, "pending", None)
            if pending is not None and pending():
                timeout = 0.0  # TLS: bytes already decrypted, invisible to select()
        try:
            readable, writable, _ = select.select(
                list(socks), [k for k, v in socks.items() if v.client.want_write()], [], timeout
            )
        except (OSError, ValueError):
            readable, writable = list(socks), []  # let loop_read find out what happened
        for sock, link in socks.items():
            c = link.client
            rc = mqtt.MQTT_ERR_SUCCESS
            if sock in readable:
                # A read that completes no message (EAGAIN, or a PUBACK for one of our ACKs)
                # ends the burst; the next select() waits for more.
                before = -1
                while rc == mqtt.MQTT_ERR_SUCCESS and before != len(self.inbox):
                    if len(self.inbox) >= limit:
                        break
                    before = len(self.inbox)
                    rc = c.loop_read()
            if rc == mqtt.MQTT_ERR_SUCCESS and (sock in writable or c.want_write()):
                rc = c.loop_write()
            if rc == mqtt.MQTT_ERR_SUCCESS:
                rc = c.loop_misc()
            if c.socket() is None:
                # Connection lost: paho has closed the socket and called on_disconnect.
                link.next_attempt = time.monotonic() + link.retry.failed()

    # ---- batches ---------------------------------------------------------------------

    def _next_batch(self) -> list[Message]:
        """Run the network loop until a batch is complete: ingest_batch_size messages, or
        ingest_batch_ms after the first one (0.2 s without any: a chance to stop)."""
        limit = self.settings.ingest_batch_size
        batch_s = self.settings.ingest_batch_ms / 1000
        first = not self.inbox
        deadline = time.monotonic() + (0.2 if first else batch_s)
        while len(self.inbox) < limit and not self.stopping.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            self._pump(deadline - now, limit)
            if first and self.inbox:
                first = False
                deadline = time.monotonic() + batch_s
        batch, self.inbox = self.inbox[:limit], self.inbox[limit:]
        return batch

    def _idle(self, seconds: float) -> bool:
        """Keep the connection alive (pings, the broker's PUBACKs for our ACKs) for a while
        without starting a batch; True if asked to stop meanwhile."""
        until = time.monotonic() + seconds
        while not self.stopping.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return False
            self._pump(min(left, 0.2))
        return True

    def run_once(self) -> int:
        batch = self._next_batch()
        if not batch:
            return 0
        self.ingest.counts["received"] += len(batch)
        while True:
            try:
                started = time.perf_counter()
                result = self.ingest.process(batch)
                metrics.observe_batch(result, time.perf_counter() - started)
                self.retry.succeeded()
                break
            except Exception:
                # The database is unavailable (a primary going away, a switchover) or
                # refused the batch: nothing was committed, nothing acknowledged, so the
                # batch is run again as it is. Should a commit have gone through unseen,
                # its frames are found stored (unique on device, boot, seq) and only
                # acknowledged again (docs/scaling.md, "Database failover").
                self.ingest.counts["batch_failed"] += 1
                delay = self.retry.failed()
                log.exception("batch failed; retrying", frames=len(batch), retry_in_s=delay)
                if self._idle(delay):
                    return 0
        if self._abandoned:
            return 0
        for m in batch:
            tok = m.token
            if not isinstance(tok, _Token) or tok.qos == 0:
                continue
            link = self.links[tok.broker]
            if tok.generation == link.generation:
                link.client.ack(tok.mid, tok.qos)
        self.batches += 1
        self.handled += len(batch)
        return len(batch)

    def run(self) -> None:
        upgrade(self.engine)
        try:
            # Batches a worker that died committed and never handed to the rules.
            self.ingest.rules.resume(self.ingest.clock.now())
        except Exception:
            log.exception("evaluating batches left pending failed; the rules' clock retries")
        self.connect()
        last_report = time.monotonic()
        try:
            while not self.stopping.is_set():
                self.run_once()
                if time.monotonic() - last_report > 10:
                    last_report = time.monotonic()
                    self.report()
        finally:
            if self._abandoned:
                for link in self.links:
                    sock = link.client.socket()
                    if sock is not None:
                        sock.close()  # no DISCONNECT: the broker sees the connection drop
                self.engine.dispose()
            else:
                self.close()

    def abandon(self) -> None:
        """Stop as a killed process stops, for a worker run on a thread (the simulator's
        fault tests): the batch in hand gets no PUBACK (its frames may be committed, and
        even acknowledged end to end, or not) and the brokers see the connections drop
        without a DISCONNECT, keeping the sessions and what is queued in them."""
        self._abandoned = True
        self.stopping.set()

    def snapshot(self) -> dict[str, Any]:
        """The worker's counters and gauges, consistent with each other (metrics.py)."""
        with self._downlinks_lock:
            awaiting = len(self._awaiting)
        by_reason: Counter[str] = Counter()
        for (reason, _device), n in list(self.ingest.rejections.items()):
            by_reason[reason] += n
        return {
            "counts": dict(self.ingest.counts),
            "rejections": dict(by_reason),
            "batches": self.batches,
            "connected": self.connected.is_set(),
            "brokers_connected": self.brokers_connected(),
            "awaiting": awaiting,
        }

    def report(self) -> None:
        with self._downlinks_lock:
            awaiting = len(self._awaiting)
            refusals = {f"{k}:{r}": n for (k, r), n in self.refusals.items()}
        log.info(
            "ingest",
            batches=self.batches,
            **dict(self.ingest.counts),
            rejections={f"{r}:{d}": n for (r, d), n in self.ingest.rejections.items()},
            downlinks_awaiting_puback=awaiting,
            downlinks_refused=refusals,
        )

    def close(self) -> None:
        for link in self.links:
            link.client.disconnect()  # sent at once: no network thread to hand it to
        self.report()
        self.engine.dispose()


# Allocations between collections of the youngest generation (CPython's default is 700).
GC_GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """A worker allocates a few short-lived objects per fix (decoded values, row tuples) and
    keeps hundreds of thousands of long-lived ones (SQLAlchemy, paho, pydantic, the rules).
    With CPython's defaults, every 700 net allocations start a collection, and every few of
    those promote a batch's rows and re-scan the whole heap: about a fifth of a worker's CPU
    time on 10-fix frames (docs/scaling.md). So: move everything alive after start-up out of
    the collector's sight (gc.freeze; it is never freed anyway) and collect the young
    generation less often. Cycles are still collected, a little later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def run_worker(settings: Settings, index: int = 0, client_id: str | None = None) -> None:
    """Run one worker in this process until SIGTERM or SIGINT."""
    from backend.rules.sink import attach

    worker = IngestWorker(settings, client_id or default_client_id(settings, index))
    # Stored frames go on to the monitoring rules; a timer moves their horizons on.
    timer = attach(worker)
    ops = serve_health(settings, index, worker, timer)
    tune_gc()

    def _stop(_sig: int, _frame: Any) -> None:
        worker.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        worker.run()
    finally:
        timer.stop()
        if ops is not None:
            ops.stop()


def serve_health(
    settings: Settings, index: int, worker: IngestWorker, timer: RuleTimer
) -> OpsServer | None:
    """The worker's /healthz, /readyz and /metrics on TAGWATCH_INGEST_HTTP_PORT + its slot
    (none when that is 0). A port already taken stops the worker: a worker nobody can
    monitor should not run unnoticed."""
    if not settings.ingest_http_port:
        return None
    readiness = Readiness(
        {
            "database": lambda: database_ready(worker.engine),
            "broker": worker.connected.is_set,
            "rules": ticking(lambda: timer.last_tick, timer.every_s),
        }
    )
    from backend.rules.sink import MonitoringSink

    sink = worker.ingest.rules
    registry = metrics.registry(
        metrics.IngestCollector(
            worker.snapshot,
            lambda: dict(sink.counts) if isinstance(sink, MonitoringSink) else {},
            lambda: timer.last_tick,
        ),
        metrics.ReadinessCollector(readiness.run),
        metrics.PoolCollector(worker.engine),
    )
    for observed in (
        metrics.INGEST_BATCH_SECONDS,
        metrics.FRAME_AGE_SECONDS,
        metrics.ALERT_LATENCY_SECONDS,
        metrics.RULES_EVALUATION_SECONDS,
    ):
        registry.register(observed)
    port = settings.ingest_http_port + index
    return OpsServer(settings.ingest_http_host, port, readiness, registry).start()


def _child(settings_json: str, index: int) -> None:
    from backend.logs import configure

    settings = Settings.model_validate_json(settings_json)
    configure(settings.log_format)
    run_worker(settings, index)


def supervise(settings: Settings, workers: int) -> None:
    """Run N worker processes; restart any that dies (as systemd would) until stopped."""
    ctx = multiprocessing.get_context("spawn")
    blob = settings.model_dump_json()
    procs: dict[int, Any] = {}
    stop = threading.Event()

    def _stop(_sig: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    upgrade(make_engine(settings.resolved_database_url()))  # once, before workers race
    while not stop.is_set():
        for i in range(workers):
            p = procs.get(i)
            if p is None or not p.is_alive():
                if p is not None:
                    log.warning("worker died; restarting", index=i, exitcode=p.exitcode)
                procs[i] = ctx.Process(target=_child, args=(blob, i), daemon=False)
                procs[i].start()
        stop.wait(1.0)
    for p in procs.values():
        if p.pid is not None and p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    for p in procs.values():
        p.join(10)
