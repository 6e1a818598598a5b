"""A subscriber standing in for the backend's ingest (which is built separately): it takes
relayed tag frames and the unit's own frames from the broker, verifies each with the
sender's key using the codec, stores each (device, boot, seq) once as real ingest does, and
publishes signed end-to-end ACKs on the tag's or unit's down topic. It also publishes the
unit's configuration, retained."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from backend.broker import Mosquitto
from firmware import frame as fr
from firmware import topics
from home_unit import pushed_config


class BackendStandIn:
    def __init__(self, broker: Mosquitto, keys: dict[int, bytes], ack: bool = True) -> None:
        self.broker = broker
        self.keys = keys  # device id -> key, tags and home units alike
        self.ack = ack
        self.lock = threading.Condition()
        self.stored: dict[tuple[int, int, int], bytes] = {}  # ingest's primary key
        self.arrivals: list[tuple[str, int, int, int]] = []  # (channel, device, boot, seq)
        self.rejected: list[str] = []
        self.presence: list[tuple[int, int, int]] = []  # (tag, state, device time)
        self.status: list[tuple[int, int, int]] = []  # (boot, seq, link state)
        self.own_records: list[fr.Record] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="standin-ingest", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]

    def start(self) -> BackendStandIn:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect(self.broker.host, self.broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        return self

    def _on_connect(self, c: mqtt.Client, u: Any, flags: Any, rc: Any, p: Any) -> None:
        c.subscribe([(t, topics.QOS) for t in topics.INGEST])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish_config(self, unit: int, doc: dict[str, Any]) -> None:
        info = self.client.publish(
            topics.home_config(unit),
            pushed_config.sign(doc, self.keys[unit]),
            qos=topics.QOS,
            retain=True,
        )
        info.wait_for_publish(5)

    def publish_raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=topics.QOS, retain=retain).wait_for_publish(5)

    def _on_message(self, c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        parsed = topics.parse(m.topic)
        if parsed is None:
            return
        data = bytes(m.payload)
        try:
            f = fr.parse(data)
            key = self.keys.get(f.device)
            if key is None:
                raise fr.DecodeError("unknown_device", str(f.device))
            fr.verify(f, key)
        except fr.DecodeError as e:
            with self.lock:
                self.rejected.append(e.reason)
            return
        channel = parsed[2]
        with self.lock:
            self.arrivals.append((channel, f.device, f.boot, f.seq))
            if channel == "status":
                self.status.append((f.boot, f.seq, f.records[0].state))
                self.lock.notify_all()
                return
            new = (f.device, f.boot, f.seq) not in self.stored
            if new:
                self.stored[(f.device, f.boot, f.seq)] = data
                if f.mtype == fr.HOME_DATA:
                    self.own_records.extend(f.records)
                    for r in f.records:
                        if r.type == fr.PRESENCE:
                            self.presence.append((r.tag, r.state, f.time_of(r)))
            self.lock.notify_all()
        if self.ack:
            # A home unit's own frames are acknowledged on its down topic; a tag's (its own
            # uplink, or relayed by its unit) on the tag's.
            own = parsed[0] == "hu" and channel == "up"
            down = topics.home_down(f.device) if own else topics.tag_down(f.device)
            ack = fr.Frame(
                fr.ACK, f.device, 0, 0, int(time.time()),
                [fr.Record(fr.ACK_RANGE, boot=f.boot, first=f.seq, last=f.seq)],
                fr.FLAG_TIME_VALID,
            )  # fmt: skip
            c.publish(down, fr.encode(ack, self.keys[f.device]), qos=topics.QOS)

    def wait(self, pred: Callable[[], bool], timeout: float = 15.0) -> bool:
        with self.lock:
            return self.lock.wait_for(pred, timeout)

    def tag_frames(self, tag: int) -> dict[tuple[int, int], bytes]:
        with self.lock:
            return {(b, s): d for (dev, b, s), d in self.stored.items() if dev == tag}
