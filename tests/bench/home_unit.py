"""Home unit benchmarks: beacons handled per second (verify, replay check,
presence, durable commit, signed ack) beside HMAC verification alone; and relay throughput
from the SQLite queue to a real Mosquitto beside raw paho QoS 1 publishing in the same run,
with the same in-flight window and the same subscriber."""

from __future__ import annotations

import hashlib
import hmac
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.broker import Mosquitto
from firmware import beacon as bc
from firmware import frame as fr
from firmware import topics
from home_unit import logs, pushed_config, store
from home_unit.clock import Clock
from home_unit.daemon import HomeUnit
from home_unit.radio import BeaconHeard
from home_unit.settings import HomeUnitSettings
from home_unit.sim_radio import SimRadio
from home_unit.sim_radio_peer import SimRadioPeer

UNIT = 5001
UNIT_KEY = hashlib.sha256(b"bench unit").digest()
TAG = 1001
TAG_KEY = hashlib.sha256(b"bench tag").digest()
WINDOW = 256
T0 = 1_790_000_000


def beacons(n: int = 5_000) -> tuple[float, float, float]:
    """(full handling /s, verification alone /s, raw HMAC /s)."""
    bkey = bc.beacon_key(TAG_KEY)
    payloads = [bc.encode_beacon(bc.Beacon(TAG, i + 1, 0, 90, 0), bkey) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        s = HomeUnitSettings(unit=UNIT, key_hex=UNIT_KEY.hex(), state_db=Path(tmp) / "b.db")
        unit = HomeUnit(s, SimRadio(UNIT, "127.0.0.1", 1, Clock()))
        doc = {"unit": UNIT, "version": 1, "issued": T0,
               "tags": [{"tag": TAG, "beacon_key": bkey.hex()}]}  # fmt: skip
        unit.on_config(pushed_config.sign(doc, UNIT_KEY))
        heard = [BeaconHeard(p, -60, T0 + i, "tag") for i, p in enumerate(payloads)]
        t = time.perf_counter()
        acks = sum(1 for h in heard if unit.accept_beacon(h) is not None)
        full = time.perf_counter() - t
        unit.store.close()
    assert acks == n
    last: dict[int, int] = {}

    def accept(tag: int, counter: int) -> bool:
        if counter <= last.get(tag, -1):
            return False
        last[tag] = counter
        return True

    from home_unit import handshake

    t = time.perf_counter()
    for p in payloads:
        handshake.verify_beacon(p, {TAG: bkey}, accept)
    verify = time.perf_counter() - t
    signed = [b"\xff\xff" + p[: bc.BEACON_LEN] for p in payloads]
    t = time.perf_counter()
    for m, p in zip(signed, payloads, strict=True):
        hmac.compare_digest(hmac.digest(bkey, m, "sha256")[:8], p[bc.BEACON_LEN :])
    raw = time.perf_counter() - t
    return n / full, n / verify, n / raw


class _Counter:
    def __init__(self, broker: Mosquitto, topic: str, n: int) -> None:
        self.n = n
        self.got = 0
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._msg
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()
        time.sleep(0.3)

    def _msg(self, c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        if self.got == 0:
            self.first = now
        self.got += 1
        self.last = now
        if self.got >= self.n:
            self.done.set()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def relay(n: int = 20_000) -> tuple[float, float, int]:
    """(relay msgs/s, raw paho msgs/s, frame size): first to last message at the subscriber."""
    f = fr.Frame(fr.TAG_DATA, TAG, 1, 1, T0, [fr.Record(fr.FIX, (0, 1, 1, 1, 2, 1, 0, 0, 0, 9))])
    frames = []
    for seq in range(1, n + 1):
        f.seq = seq
        frames.append(fr.encode(f, TAG_KEY))
    with Mosquitto() as broker, tempfile.TemporaryDirectory() as tmp:
        # raw paho: one publisher, same window, same subscriber setup
        sub = _Counter(broker, "bench/raw", n)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.max_inflight_messages_set(WINDOW)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        for data in frames:
            if pub.publish("bench/raw", data, qos=1).rc != mqtt.MQTT_ERR_SUCCESS:
                raise RuntimeError("raw publish refused")
        sub.done.wait(120)
        raw = (sub.got - 1) / (sub.last - sub.first)
        pub.disconnect()
        pub.loop_stop()
        sub.close()

        db = Path(tmp) / "relay.db"
        st = store.Store(db)
        st.enqueue(store.RELAY, [(TAG, 1, i + 1, d) for i, d in enumerate(frames)], T0, n + 1)
        st.close()
        sub = _Counter(broker, topics.home_relay(UNIT), n)
        with SimRadioPeer() as peer:
            s = HomeUnitSettings(
                unit=UNIT, key_hex=UNIT_KEY.hex(), state_db=db, broker_host=broker.host,
                broker_port=broker.port, radio="sim", sim_radio=f"127.0.0.1:{peer.port}",
                relay_window=WINDOW, max_relay_frames=n + 1, heartbeat_s=3600,
                log_level="warning",
            )  # fmt: skip
            from tests.home_unit.harness import ThreadUnit

            u = ThreadUnit(s.model_dump(mode="json")).start()
            sub.done.wait(120)
            u.stop()
        relayed = (sub.got - 1) / (sub.last - sub.first)
        sub.close()
    return relayed, raw, len(frames[0])


def rows() -> list[tuple[str, str, str, str]]:
    logs.configure("warning", "console")
    full, verify, raw = beacons()
    relayed, raw_pub, size = relay()
    return [
        (
            "home unit",
            "beacons handled (verify, replay, presence, SQLite commit, signed ack)",
            f"{full:,.0f} beacons/s",
            f"{full / raw:.3f} x HMAC verify alone ({raw:,.0f}/s)",
        ),
        (
            "home unit",
            "beacon verification only (parse, MAC, counter)",
            f"{verify:,.0f} beacons/s",
            f"{verify / raw:.3f} x HMAC verify alone",
        ),
        (
            "home unit",
            f"relay from SQLite queue to Mosquitto, QoS 1, window {WINDOW}, {size} B frames",
            f"{relayed:,.0f} msg/s",
            f"{relayed / raw_pub:.3f} x raw paho publish ({raw_pub:,.0f} msg/s)",
        ),
    ]
