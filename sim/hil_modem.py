"""The HIL tag's modem: the MQTT session the firmware asks its modem for, bridged to a real
broker with paho-mqtt (MQTT v5, QoS 1, a persistent session as a modem would keep).

The firmware asks over the simulator board protocol (docs/firmware.md): power the modem, open a
session on a broker with its client id and password, publish. `ModemBridge` answers as a
modem on a cellular network would: registration and connect take `connect_delay_ms` of
simulated time, then the session is online (or failed: no coverage, no broker); coverage loss
cuts it; downlinks wait in a queue until the firmware's next turn. It records every publish and
every session opened, for tests to check what went where."""

from __future__ import annotations

import queue
import select
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware import board as hal
from sim.hil_error import HilError
from sim.mqtt_thread import NetworkThread

SUBSCRIBE_WAIT_S = 5.0  # real time the broker may take to confirm the down-topic subscription


class ModemBridge:
    def __init__(self, connect_delay_ms: int, stop_in_background: bool = False) -> None:
        """connect_delay_ms: simulated network registration + MQTT connect.
        stop_in_background: leave the session's network thread to end by itself when it
        closes (a caller running in real time must not block on joining it)."""
        self.connect_delay_ms = connect_delay_ms
        self.stop_in_background = stop_in_background
        self.on = False
        self.state = hal.MODEM_OFF
        self.ready_ms = 0  # when a connecting session's outcome is due
        self.coverage = True
        self.down: queue.Queue[tuple[str, bytes]] = queue.Queue()  # (topic, payload) received
        self.published: list[tuple[int, str, bytes]] = []  # (now_ms, topic, payload)
        self.sessions: list[tuple[str, str]] = []  # (broker, client id) the modem opened
        self.client: mqtt.Client | None = None
        self.network: NetworkThread | None = None
        self.subscribed = False  # the broker confirmed the down topic: the session is usable

    def power(self, on: bool) -> None:
        """The firmware switched the modem on or off (off ends any session)."""
        self.on = on
        if not on:
            self.disconnect()
            self.state = hal.MODEM_OFF

    def connect(
        self, now_ms: int, client_id: str, down_topic: str, broker: str, password: str
    ) -> None:
        """The modem's session as the firmware asked for it: on its broker, logged in as its
        client id with its password (the broker's device listener checks both)."""
        self.ready_ms = now_ms + self.connect_delay_ms
        self.state = hal.MODEM_CONNECTING
        self.sessions.append((broker, client_id))
        if not self.coverage:
            return
        host, _, port = broker.rpartition(":")
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        c.username_pw_set(client_id, password)
        self.subscribed = False

        def on_connect(cl: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
            if not rc.is_failure:
                cl.subscribe(down_topic, qos=1)

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
            self.subscribed = True

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            self.down.put((msg.topic, bytes(msg.payload)))

        c.on_connect = on_connect
        c.on_subscribe = on_subscribe
        c.on_message = on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 7 * 86400  # the broker keeps the tag's downlinks
        try:
            rc = c.connect(host, int(port), clean_start=False, properties=props)
        except (OSError, ValueError):  # no broker there (down, or "-"): the session fails
            rc = mqtt.MQTT_ERR_NO_CONN
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self.ready_ms = now_ms
            return
        # Not paho's loop_start(): its select() refuses descriptors past 1023, which a
        # simulator process with a home unit per subject reaches (sim/mqtt_thread.py).
        self.network = NetworkThread(c, f"modem-{client_id}")
        self.network.start()
        self.client = c

    def disconnect(self) -> None:
        client, network = self.client, self.network
        self.client = self.network = None
        if client is not None:
            client.disconnect()
        if network is not None:
            network.stop(wait=not self.stop_in_background)
        self.subscribed = False

    def due_ms(self) -> int | None:
        """When a connecting session's outcome is due (None: nothing pending)."""
        return self.ready_ms if self.state == hal.MODEM_CONNECTING else None

    def progress(self, now_ms: int) -> int | None:
        """The session's outcome once its connect delay is over: the new state the modem
        raises to the firmware (online or failed), or None when there is nothing to raise."""
        if self.state != hal.MODEM_CONNECTING or now_ms < self.ready_ms:
            return None
        if self.coverage and self.client is not None:
            deadline = time.monotonic() + SUBSCRIBE_WAIT_S
            while not self.subscribed and time.monotonic() < deadline:
                time.sleep(0.002)
        ok = self.coverage and self.subscribed
        self.state = hal.MODEM_ONLINE if ok else hal.MODEM_FAILED
        return self.state

    def set_coverage(self, on: bool) -> int | None:
        """The network comes or goes; losing it fails an open or opening session: the state
        the modem raises to the firmware then (None: nothing to raise)."""
        self.coverage = on
        if on or self.state not in (hal.MODEM_ONLINE, hal.MODEM_CONNECTING):
            return None
        self.disconnect()
        self.state = hal.MODEM_FAILED
        return self.state

    def publish(self, now_ms: int, topic: str, payload: bytes) -> None:
        """QoS 1 on the session; recorded even when it goes nowhere (no session, no coverage)."""
        self.published.append((now_ms, topic, payload))
        if self.client is None or not self.coverage:
            return
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise HilError(f"publish failed: {mqtt.error_string(info.rc)}")

    def has_downlink(self) -> bool:
        return not self.down.empty()

    def downlinks(self) -> list[tuple[str, bytes]]:
        """The messages received since the last call, in order."""
        out: list[tuple[str, bytes]] = []
        while not self.down.empty():
            out.append(self.down.get())
        return out

    def wait_downlink(self, timeout_s: float) -> None:
        """Wait up to timeout_s of real time for a message (returns at once if one waits)."""
        deadline = time.monotonic() + timeout_s
        while self.down.empty() and time.monotonic() < deadline:
            select.select([], [], [], 0.002)
