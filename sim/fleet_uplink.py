"""One MQTT connection for the whole simulated fleet (paho-mqtt 2, MQTT v5, QoS 1).

Thousands of fleet tags cannot each hold a TCP connection to the broker, and need not: each
publishes on its own topic (`tw/v1/tag/<id>/up`) through this client, exactly the bytes its
firmware sealed, and the client's one subscription to every tag's down topic sorts the
backend's ACKs and commands into per-tag boxes (sim.fleet_board.DownlinkBox), which the
tag's modem hands to the firmware only while it is online — what the broker's persistent
session does for a real modem. Counters let the lock-step runner wait until the backend has
answered everything published in a slice of simulated time.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware import frame as fr
from firmware import topics
from home_unit.mqtt_link import fail_over
from sim.fleet_board import DownlinkBox


class UplinkError(RuntimeError):
    pass


class SharedUplink:
    """`brokers`: the device listeners ("host:port"), in order. The connection fails over
    along them as each tag's modem would (home_unit.mqtt_link.fail_over, paho's back-off);
    frames published on a connection that was lost before their ACK came are not waited for:
    the tags send them again (their ACK may have been lost with a broker). `devices`: the
    tags whose down topics it reads (a shard of the fleet's), None: every tag's."""

    def __init__(
        self, brokers: list[str], username: str, password: str, devices: list[int] | None = None
    ) -> None:
        from firmware.brokers import endpoint

        self.brokers = [endpoint(b) for b in brokers]
        self.devices = devices
        self.current = 0
        self.boxes: dict[int, DownlinkBox] = {}
        self.published = 0
        self.received = 0
        self.unknown = 0  # downlinks for a tag this fleet does not run (counted, dropped)
        self.refused = 0
        self.log: list[tuple[int, str, bytes]] = []  # (device, topic, payload) when recording
        self.record = False
        # Frames published and not yet named by an ACK: the lock-step barrier waits on it.
        self.outstanding: dict[tuple[int, int, int], int] = {}  # -> connection generation
        # Those of them the barrier gave up on (nothing came back for its quiet time): not
        # waited for again, or a frame stuck in a killed worker's session queue would cost
        # every later slice that wait. An ACK still clears them; sent again, one is waited for.
        self.waived: set[tuple[int, int, int]] = set()
        self.generation = 0
        self.failovers = 0
        self.heard = 0.0  # monotonic time the last downlink arrived
        self._lock = threading.Lock()
        # Notified as downlinks arrive: the barrier sleeps until then, not in a polling loop
        # (a sharded fleet has one barrier per worker, all waiting at once).
        self._heard = threading.Condition(self._lock)
        self._ready = threading.Event()
        # A device listener gives the client the id of its username (use_username_as_clientid).
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.max_inflight_messages_set(2000)
        self.client.max_queued_messages_set(0)

    def box(self, device: int) -> DownlinkBox:
        return self.boxes.setdefault(device, DownlinkBox())

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            return
        with self._lock:
            self.generation += 1
            # Published on an earlier connection and not acknowledged: the tags resend them.
            for key in [k for k, g in self.outstanding.items() if g < self.generation]:
                del self.outstanding[key]
                self.waived.discard(key)
            self._heard.notify_all()
        if self.devices is None:
            c.subscribe(topics.tag_down(0).replace("/0/", "/+/"), qos=topics.QOS)
        else:
            c.subscribe([(topics.tag_down(d), topics.QOS) for d in self.devices])

    def _fail_over(self) -> None:
        moved = fail_over(self.client, self.brokers, self.current, 60)
        self.failovers += int(moved != self.current)
        self.current = moved

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        self._fail_over()

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self._fail_over()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        self._ready.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        where = topics.parse(msg.topic)
        with self._lock:
            self.received += 1
            self.heard = time.monotonic()
            self._heard.notify_all()  # the waiter runs once this message is sorted
            box = self.boxes.get(where[1]) if where is not None else None
            if box is None:
                self.unknown += 1
                return
            payload = bytes(msg.payload)
            box.items.append((msg.topic, payload))
            try:
                f = fr.parse(payload)
            except fr.DecodeError:
                return  # the tag's firmware counts and refuses it
            if f.mtype == fr.ACK:
                for r in f.records:
                    if r.type == fr.ACK_RANGE:
                        for seq in range(r.first, r.last + 1):
                            self.outstanding.pop((f.device, r.boot, seq), None)
                            self.waived.discard((f.device, r.boot, seq))

    def start(self, timeout: float = 10.0) -> None:
        host, port = self.brokers[0]
        rc = self.client.connect(host, port, keepalive=60)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise UplinkError(f"cannot connect to {host}:{port}: {mqtt.error_string(rc)}")
        self.client.loop_start()
        if not self._ready.wait(timeout):
            raise UplinkError("the broker did not confirm the fleet's subscription")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, device: int, topic: str, payload: bytes) -> bool:
        """Send a tag's frame; False as a modem reports a failed publish (the firmware
        keeps the frame and backs off): while the connection is down (a broker lost), or
        when paho would not take it (REFERENCES: easy to ignore)."""
        if not self.client.is_connected():
            self.refused += 1
            return False
        f = fr.parse(payload)
        key = (f.device, f.boot, f.seq)
        with self._lock:  # before the publish: the ACK may arrive before it returns
            self.outstanding[key] = self.generation
            self.waived.discard(key)
        info = self.client.publish(topic, payload, qos=topics.QOS)
        with self._lock:
            if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN) and self.record:
                # NO_CONN: the connection went down under this publish; paho keeps the
                # message and sends it once reconnected, so these bytes may still be stored.
                self.log.append((device, topic, payload))
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self.outstanding.pop(key, None)
                self.waived.discard(key)
                self.refused += 1
                return False
            self.published += 1
        return True

    def wait_acked(self, timeout: float, quiet_s: float | None = None) -> bool:
        """Until every frame published so far has been acknowledged (but those given up on
        before); False after `timeout`, or once nothing has come back for `quiet_s` (None:
        never), and the frames still unacknowledged are given up on."""
        began = time.monotonic()
        deadline = began + timeout
        with self._heard:
            while len(self.outstanding) > len(self.waived):
                limit = deadline
                if quiet_s is not None:
                    limit = min(deadline, max(began, self.heard) + quiet_s)
                left = limit - time.monotonic()
                if left <= 0:
                    self.waived.update(self.outstanding)
                    return False
                self._heard.wait(left)
        return True


class LoopbackUplink:
    """No broker, no backend: every frame is acknowledged at once, signed with the tag's key
    as ingest would sign it. For fleet-only runs (the benchmark's "fleet without the stack")
    and tests of the fleet itself."""

    def __init__(self, keys: dict[int, bytes]) -> None:
        self.keys = keys
        self.boxes: dict[int, DownlinkBox] = {}
        self.published = 0
        self.frames: dict[tuple[int, int, int], bytes] = {}

    def box(self, device: int) -> DownlinkBox:
        return self.boxes.setdefault(device, DownlinkBox())

    def publish(self, device: int, topic: str, payload: bytes) -> bool:
        f = fr.parse(payload)
        self.published += 1
        self.frames.setdefault((f.device, f.boot, f.seq), payload)
        rec = fr.Record(fr.ACK_RANGE, boot=f.boot, first=f.seq, last=f.seq)
        ack = fr.Frame(fr.ACK, device, 0, 0, f.ts, [rec], fr.FLAG_TIME_VALID)
        self.box(device).items.append((topics.tag_down(device), fr.encode(ack, self.keys[device])))
        return True
