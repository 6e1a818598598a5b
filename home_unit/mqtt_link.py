"""The home unit's MQTT connection: paho-mqtt 2.x, MQTT v5, QoS 1, a persistent session
(clean_start off, a session expiry) so the broker keeps the unit's subscriptions and queues
what arrives for it while it is away, and manual acknowledgement of received messages: a
PUBACK goes back only once the daemon has stored what the message carried, so a crash before
that makes the broker deliver it again.

paho runs on the daemon's asyncio loop through its external-loop API (the socket watched by
the loop's selector, `loop_read`/`loop_write` when it is ready, `loop_misc` every second for
the keep-alive), so all state lives on one thread; only the blocking TCP connect runs in the
loop's executor. Not paho's own `loop_start()` thread: its `select()` refuses descriptors at
or above FD_SETSIZE (1024) and takes them for a lost connection, so in a process holding
many descriptors (the simulator runs a thousand units in one) a unit never got connected,
and a thread per unit woke every second besides. Every callback is handed to the loop's next
turn (call_soon), as it was from paho's thread.

Brokers: an ordered list. The link's reconnect loop, with paho's back-off (reconnect_min_s
to reconnect_max_s, doubling, back to the minimum once connected or moved on), is the one
retry policy; each failed or lost connection moves it on to the next broker of the list
(`fail_over`), so a dead broker costs one failed attempt. The unit stays with a broker that
works."""

from __future__ import annotations

import asyncio
import contextlib
import threading
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
MISC_S = 1.0  # keep-alive checks (paho's loop_misc), as often as paho's own loop makes them
FAREWELL_WAIT_S = 2.0  # going down: how long the offline frame and DISCONNECT may take
CONNECT_WAIT_S = 6.0  # going down while connecting: paho's connect timeout (5 s) and a margin


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
        self.reconnect_min_s, self.reconnect_max_s = reconnect
        self._delay: float | None = None  # the back-off before the next attempt (paho's rule)
        self._task: asyncio.Task[None] | None = None
        self._closed: asyncio.Event | None = None  # set when paho closes the socket
        self._misc: asyncio.TimerHandle | None = None
        self._fd: int | None = None  # the socket's descriptor the loop watches
        self._stopping = False
        self._connecting = False  # a connect is under way in the executor
        self._thread: int | None = None  # the loop's thread (start() runs on it)
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
        self.client.max_inflight_messages_set(inflight)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_socket_close = self._on_socket_close
        self.client.on_socket_register_write = self._on_write_wanted
        self.client.on_socket_unregister_write = self._on_write_wanted

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
        if moved != self.current:
            self.failovers += 1
            self._delay = None  # the next broker is tried after the shortest wait
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
        """Connect (and keep reconnecting) on the loop, until close()."""
        host, port = self.broker
        self.client.connect_async(
            host, port, self.keepalive, clean_start=False, properties=self._connect_properties()
        )
        self._thread = threading.get_ident()
        self._closed = asyncio.Event()
        self._task = self.loop.create_task(self._run(), name=f"mqtt-hu-{self.unit}")

    async def close(self, farewell: bytes | None = None) -> None:
        """Disconnect cleanly; a clean DISCONNECT suppresses the will, so publish `farewell`
        (the armed offline frame) first when going down on purpose."""
        self._stopping = True
        deadline = self.loop.time() + FAREWELL_WAIT_S
        if farewell is not None and self.connected:
            info = self.client.publish(
                topics.home_status(self.unit), farewell, qos=topics.QOS, retain=True
            )
            while info.rc == mqtt.MQTT_ERR_SUCCESS and not info.is_published():
                if self.loop.time() > deadline or self.client.socket() is None:
                    break
                await asyncio.sleep(0.01)
        self.client.disconnect()
        if self._closed is not None and self.client.socket() is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), max(0.0, deadline - self.loop.time()))
        if self._task is not None:
            if self._connecting:
                # A connect under way in the executor cannot be cancelled: let it end (paho's
                # connect timeout bounds it) and close what it opened (_run).
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(self._task), CONNECT_WAIT_S)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._unwatch()
        self.connected = False

    async def _run(self) -> None:
        while not self._stopping:
            self._connecting = True
            try:
                # Blocking (name lookup, TCP connect, CONNECT): off the loop.
                await self.loop.run_in_executor(None, self.client.reconnect)
            except (OSError, ValueError) as e:
                log.warning("mqtt_unreachable", broker=self.broker, error=str(e))
                self._fail_over()
            else:
                if self._stopping:  # closed while connecting: leave at once
                    self.client.disconnect()
                    self.client.loop_write()
                    return
                self._connecting = False
                await self._serve()
            finally:
                self._connecting = False
            if self._stopping:
                return
            lo, hi = self.reconnect_min_s, self.reconnect_max_s
            self._delay = lo if self._delay is None else min(self._delay * 2, hi)
            await asyncio.sleep(self._delay)

    async def _serve(self) -> None:
        """Watch the connected socket until paho closes it."""
        sock = self.client.socket()
        if sock is None or self._closed is None:
            return
        self._closed.clear()
        self._fd = sock.fileno()
        self.loop.add_reader(sock, self._readable)
        self._write_wanted()
        self._misc = self.loop.call_later(MISC_S, self._keepalive)
        await self._closed.wait()

    def _readable(self) -> None:
        self.client.loop_read()

    def _writable(self) -> None:
        self.client.loop_write()

    def _keepalive(self) -> None:
        if self.client.socket() is not None:
            self.client.loop_misc()
        if self.client.socket() is not None:
            self._misc = self.loop.call_later(MISC_S, self._keepalive)

    def _write_wanted(self) -> None:
        sock = self.client.socket()
        if sock is None:
            return
        if self.client.want_write():
            self.loop.add_writer(sock, self._writable)
        else:
            self.loop.remove_writer(sock)

    def _unwatch(self) -> None:
        # By the descriptor watched, not the socket: one closed meanwhile says fileno -1.
        if self._fd is not None:
            self.loop.remove_reader(self._fd)
            self.loop.remove_writer(self._fd)
            self._fd = None
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

    # paho's socket callbacks: on the loop, or in the executor while it connects.
    def _on_write_wanted(
        self, client: mqtt.Client, userdata: object, sock: mqtt.SocketLike
    ) -> None:
        if threading.get_ident() == self._thread:
            self._write_wanted()
        else:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._write_wanted)

    def _on_socket_close(
        self, client: mqtt.Client, userdata: object, sock: mqtt.SocketLike
    ) -> None:
        if threading.get_ident() == self._thread:
            self._socket_closed(sock)
        else:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._socket_closed, sock)

    def _socket_closed(self, sock: mqtt.SocketLike) -> None:
        self._unwatch()
        if self._closed is not None:
            self._closed.set()

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

    # -- paho's callbacks, on the loop --------------------------------------------------
    def _post(self, fn: Callable[..., None], *args: object) -> None:
        """Hand an event to the daemon on the loop's next turn, outside paho's callback;
        after the loop has closed (shutdown) there is no one left to tell."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon(fn, *args)

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
        self._delay = None  # connected: a later loss is retried after the shortest wait
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
