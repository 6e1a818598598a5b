"""A fleet of device stand-ins on a real MQTT connection, for the ingest tests and the
benchmark: each device signs frames with its key, publishes them QoS 1 on its own topic,
keeps every frame until an end-to-end ACK that verifies with its key names it, and
retransmits what stays unacknowledged (as the firmware's uplink does)."""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware import frame as fr
from firmware import topics
from tests.backend.frames import tag_frame

T0 = 1_790_000_000


class Fleet:
    def __init__(
        self,
        host: str,
        port: int,
        keys: dict[int, bytes],
        fixes: int = 1,
        retransmit_s: float = 1.5,
        client_id: str = "fleet",
    ) -> None:
        self.host, self.port = host, port
        self.keys = keys
        self.fixes = fixes
        self.retransmit_s = retransmit_s
        self.lock = threading.Lock()
        self.pending: dict[tuple[int, int], tuple[bytes, float]] = {}
        self.acked: set[tuple[int, int]] = set()
        self.bad_acks = 0
        self.retransmissions = 0
        self.publish_errors = 0
        self.all_acked = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_message = self._on_ack
        self.client.on_connect = self._on_connect
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self.subscribed.set()

    def _on_connect(self, c: mqtt.Client, *_a: Any) -> None:
        c.subscribe(f"{topics.ROOT}/tag/+/down", qos=topics.QOS)

    def _on_ack(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        where = topics.parse(msg.topic)
        key = self.keys.get(where[1]) if where else None
        try:
            if key is None:
                raise fr.DecodeError("unknown_device")
            ack = fr.decode(msg.payload, key)
        except fr.DecodeError:
            self.bad_acks += 1
            return
        if ack.mtype != fr.ACK:
            return  # a command from the rules (a zone set, fast sampling)
        with self.lock:
            for r in ack.records:
                for seq in range(r.first, r.last + 1):
                    k = (ack.device, seq)
                    self.pending.pop(k, None)
                    self.acked.add(k)
            if not self.pending:
                self.all_acked.set()

    def start(self) -> None:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("fleet could not subscribe to acks")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def frames(self, per_device: int, first_seq: int = 1) -> list[tuple[int, int, bytes]]:
        """(device, seq, payload) in round-robin device order, event time advancing."""
        out = []
        for i in range(per_device):
            seq = first_seq + i
            for dev, key in self.keys.items():
                out.append((dev, seq, tag_frame(dev, key, seq, T0 + 600 * seq, self.fixes)))
        return out

    def _send(self, dev: int, seq: int, payload: bytes) -> None:
        info = self.client.publish(topics.tag_up(dev), payload, qos=topics.QOS)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.publish_errors += 1  # kept pending: retransmitted later

    def publish(self, batch: list[tuple[int, int, bytes]], rate: float | None = None) -> None:
        """Publish frames (optionally throttled to `rate` frames/s), tracking each."""
        self.all_acked.clear()
        start = time.monotonic()
        for i, (dev, seq, payload) in enumerate(batch):
            with self.lock:
                self.pending[(dev, seq)] = (payload, time.monotonic())
            self._send(dev, seq, payload)
            if rate and i % 50 == 0:
                ahead = start + i / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)

    def retransmit_due(self) -> int:
        now = time.monotonic()
        with self.lock:
            due = [
                (k, p) for k, (p, sent) in self.pending.items() if now - sent > self.retransmit_s
            ]
            for k, p in due:
                self.pending[k] = (p, now)
        for (dev, seq), p in due:
            self._send(dev, seq, p)
        self.retransmissions += len(due)
        return len(due)

    def wait_all_acked(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.pending:
                    return True
            self.retransmit_due()
            self.all_acked.wait(0.1)
        with self.lock:
            return not self.pending
