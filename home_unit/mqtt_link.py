"""The home unit's MQTT connection: paho-mqtt 2.x, MQTT v5, QoS 1, a persistent session
(clean_start off, a session expiry) so the broker keeps the unit's subscriptions and queues
what arrives for it while it is away, and manual acknowledgement of received messages: a
PUBACK goes back only once the daemon has stored what the message carried, so a crash before
that makes the broker deliver it again.

paho runs its network loop in its own thread; every callback is handed to the daemon's
asyncio loop with call_soon_threadsafe, so all state lives on one thread.

Brokers: an ordered list. paho's own reconnect loop, with its back-off (reconnect_min_s to
reconnect_max_s, doubling), is the one retry policy; each failed or lost connection moves
it on to the next broker of the list (`fail_over`), so a dead broker costs one failed
attempt. The unit stays with a broker that works."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import AfterValidator, Field

from firmware import topics
from firmware.brokers import endpoint

log = structlog.get_logger("home_unit.mqtt")

MAX_BROKERS = 8


def _endpoint(b: str) -> str:
    endpoint(b)  # ValueError: a validation error naming the entry
    return b


# A unit's broker list, local (settings) or pushed (configuration): "host:port" each, tried
# in order.
BrokerList = Annotated[
    list[Annotated[str, AfterValidator(_endpoint)]], Field(max_length=MAX_BROKERS)
]


def endpoints(brokers: list[str]) -> list[tuple[str, int]]:
    """A checked list as (host, port) pairs."""
    return [endpoint(b) for b in brokers]


@dataclass(frozen=True)
class StatusPair:
    """A LINK online frame to publish at connect and the LINK offline frame armed as that
    connection's last will. The will is signed after the online frame (a higher sequence)
    so the backend orders them right."""

    online: bytes
    will: bytes


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool


@dataclass
class LinkEvents:
    connected: Callable[[StatusPair | None, bool], None]
    disconnected: Callable[[str], None]
    puback: Callable[[int, bool], None]  # (mid, accepted by the broker)
    message: Callable[[Incoming], None]


def fail_over(
    client: mqtt.Client,
    brokers: list[tuple[str, int]],
    current: int,
    keepalive: int,
    properties: Properties | None = None,
) -> int:
    """Point paho's next reconnect at the broker after `current` in the list; its index.
    Called from paho's callbacks when a connection failed or was lost: paho's own loop then
    waits its back-off and reconnects there, with the same session settings (clean start
    off, `properties`)."""
    nxt = (current + 1) % len(brokers)
    if nxt != current:
        host, port = brokers[nxt]
        client.connect_async(
            host, port, keepalive, clean_start=properties is None, properties=properties
        )
    return nxt


class MqttLink:
    def __init__(
        self,
        unit: int,
        brokers: list[tuple[str, int]],
        loop: asyncio.AbstractEventLoop,
        events: LinkEvents,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 30,
        reconnect: tuple[float, float] = (1.0, 30.0),
        session_expiry: int = 7 * 86400,
        inflight: int = 64,
    ) -> None:
        if not brokers:
            raise ValueError("no broker to connect to")
        self.unit = unit
        self.brokers = list(brokers)
        self.current = 0  # index of the broker in use or tried next
        self.failovers = 0
        self.loop = loop
        self.events = events
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        self.connected = False
        self._armed: StatusPair | None = None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            # The unit's broker username: the id a device listener binds it to anyway
            # (use_username_as_clientid), so the session is the same one on any listener.
            client_id=f"hu-{unit}",
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        # paho types these as int but computes with them as numbers; sub-second values let
        # tests reconnect quickly.
        self.client.reconnect_delay_set(reconnect[0], reconnect[1])  # type: ignore[arg-type]
        self.client.max_inflight_messages_set(inflight)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail

    @property
    def broker(self) -> tuple[str, int]:
        return self.brokers[self.current]

    def set_brokers(self, brokers: list[tuple[str, int]]) -> None:
        """A new list (pushed configuration): the connection in use stays; the next failure
        goes on to the new list's first broker."""
        if brokers and brokers != self.brokers:
            self.brokers = list(brokers)
            self.current = -1

    def _fail_over(self) -> None:
        moved = fail_over(
            self.client, self.brokers, self.current, self.keepalive, self._connect_properties()
        )
        self.failovers += int(moved != self.current)
        self.current = moved

    def arm(self, pair: StatusPair) -> None:
        """Set the last will the next CONNECT carries (paho reads it at connect time)."""
        self.client.will_set(topics.home_status(self.unit), pair.will, qos=topics.QOS, retain=True)
        self._armed = pair

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry
        return props

    def start(self) -> None:
        host, port = self.broker
        self.client.connect_async(
            host, port, self.keepalive, clean_start=False, properties=self._connect_properties()
        )
        self.client.loop_start()

    def stop(self, farewell: bytes | None = None) -> None:
        """Disconnect cleanly; a clean DISCONNECT suppresses the will, so publish `farewell`
        (the armed offline frame) first when going down on purpose."""
        if farewell is not None and self.connected:
            info = self.client.publish(
                topics.home_status(self.unit), farewell, qos=topics.QOS, retain=True
            )
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()
        self.connected = False

    # -- calls from the daemon's thread --------------------------------------------------
    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int | None:
        """QoS 1 publish; the message id, or None if paho would not take it (then the caller
        tries again later: the frame is still in the store)."""
        info = self.client.publish(topic, payload, qos=topics.QOS, retain=retain)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return info.mid  # NO_CONN: queued in paho, sent when the connection is back
        log.warning("publish_refused", topic=topic, rc=mqtt.error_string(info.rc))
        return None

    def subscribe(self, topic_list: list[str]) -> None:
        if topic_list:
            self.client.subscribe([(t, topics.QOS) for t in topic_list])

    def unsubscribe(self, topic_list: list[str]) -> None:
        if topic_list:
            self.client.unsubscribe(topic_list)

    def ack(self, msg: Incoming) -> None:
        if msg.qos > 0:
            self.client.ack(msg.mid, msg.qos)

    # -- paho's network thread ------------------------------------------------------------
    def _post(self, fn: Callable[..., None], *args: object) -> None:
        """Hand an event to the daemon's loop; after the loop has closed (shutdown) there is
        no one left to tell."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("mqtt_connect_refused", reason=str(reason), broker=self.broker)
            return
        self.connected = True
        pair = self._armed  # the will this connection's CONNECT carried
        self._post(self.events.connected, pair, flags.session_present)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        self.connected = False
        self._fail_over()
        self._post(self.events.disconnected, str(reason))

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        log.warning("mqtt_unreachable", broker=self.broker)
        self._fail_over()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        self._post(self.events.puback, mid, not reason.is_failure)

    def _on_message(self, client: mqtt.Client, userdata: object, m: mqtt.MQTTMessage) -> None:
        msg = Incoming(m.topic, bytes(m.payload), m.mid, m.qos, bool(m.retain))
        self._post(self.events.message, msg)
