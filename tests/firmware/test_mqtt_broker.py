"""The firmware's MQTT client codec against a real Mosquitto over TCP (as the modem's socket
would carry it), with paho on the other side."""

from __future__ import annotations

import socket
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.broker import Mosquitto
from firmware import mqtt as fw_mqtt

CPYTHON_ONLY = "talks to a real broker over a TCP socket"


def pump(sock: socket.socket, s: fw_mqtt.Session, until: float) -> None:
    sock.settimeout(0.05)
    while time.monotonic() < until:
        out = s.take_out()
        if out:
            sock.sendall(out)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        s.received(data)


def test_firmware_mqtt_client_against_mosquitto(shared_broker: Mosquitto) -> None:
    got: list[bytes] = []
    peer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="peer", protocol=mqtt.MQTTv5)
    peer.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    peer.connect(shared_broker.host, shared_broker.port)
    peer.subscribe("fwtest/up", qos=1)
    peer.loop_start()
    try:
        sock = socket.create_connection((shared_broker.host, shared_broker.port))
        s = fw_mqtt.Session("fw-client", "fwtest/down", keepalive_s=30)
        deadline = time.monotonic() + 15
        while not s.ready() and time.monotonic() < deadline:
            pump(sock, s, time.monotonic() + 0.1)
        assert s.ready()
        s.publish("fwtest/up", b"\x00\x01frame")
        peer.publish("fwtest/down", b"ack-bytes", qos=1).wait_for_publish(5)
        end = time.monotonic() + 15
        while (s.unacked or not s.inbox or not got) and time.monotonic() < end:
            pump(sock, s, time.monotonic() + 0.1)
        assert got == [b"\x00\x01frame"] and s.unacked == {}
        assert s.inbox == [("fwtest/down", b"ack-bytes")]
        sock.sendall(fw_mqtt.disconnect())
        sock.close()
    finally:
        peer.loop_stop()
        peer.disconnect()
