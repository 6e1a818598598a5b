"""A scripted backend for HIL tests: takes tag frames from the real broker, verifies them,
keeps each (device, boot, seq) once (and checks a retransmission is byte-identical), and
answers with a signed ACK as ingest does after committing. It can be told to stop acking."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware import frame as fr
from firmware import topics


class ScriptedBackend:
    def __init__(self, host: str, port: int, keys: dict[int, bytes]) -> None:
        self.keys = keys
        self.acking = True
        self.lock = threading.Lock()
        self.frames: dict[tuple[int, int, int], bytes] = {}
        self.order: list[tuple[int, int, int]] = []
        self.received = 0
        self.mismatched: list[tuple[int, int, int]] = []
        self.rejected = 0
        self.ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="scripted-backend", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.on_message = self._on_message
        if self.client.connect(host, port) != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError("backend could not connect")
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("backend did not subscribe")

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        c.subscribe("tw/v1/tag/+/up", qos=1)

    def _on_message(self, c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        data = bytes(msg.payload)
        try:
            f = fr.parse(data)
            fr.verify(f, self.keys[f.device])
        except (fr.DecodeError, KeyError):
            with self.lock:
                self.rejected += 1
            return
        ident = (f.device, f.boot, f.seq)
        with self.lock:
            self.received += 1
            if ident in self.frames:
                if self.frames[ident] != data:
                    self.mismatched.append(ident)
            else:
                self.frames[ident] = data
                self.order.append(ident)
            acking = self.acking
        if acking:
            ack = fr.Frame(
                fr.ACK, f.device, 0, 0, f.ts, [fr.Record(fr.ACK_RANGE, (f.boot, f.seq, f.seq))]
            )
            c.publish(topics.tag_down(f.device), fr.encode(ack, self.keys[f.device]), qos=1)

    def decoded(self) -> list[fr.Frame]:
        with self.lock:
            return [fr.parse(self.frames[i]) for i in self.order]

    def records(self, name: str) -> list[tuple[fr.Frame, fr.Record]]:
        return [(f, r) for f in self.decoded() for r in f.records if r.name == name]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
