"""`tagwatch sim demo`: the most complete path that exists today, end to end and real.

A tag under the real MicroPython interpreter signs frames; they cross a private Mosquitto on
QoS 1 as a tag's modem would send them; a consumer parses, verifies the MAC with the
device's key, screens replays with the sequence guard, and publishes a signed end-to-end
acknowledgement that the tag side verifies before it would free its buffer. A replayed frame
and a forged one are injected on the way and must be refused."""

from __future__ import annotations

import hashlib
import queue
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.table import Table

from backend.broker import Mosquitto
from firmware import frame as fr
from firmware import replay, topics
from hw import micropython

DEVICE = 1001
T0 = 1_790_000_000


def demo_key(device: int) -> bytes:
    """A fixed per-device key for the demo only (real keys are generated at provisioning)."""
    return hashlib.sha256(b"tagwatch demo key %d" % device).digest()


@dataclass
class Outcome:
    accepted: list[fr.Frame] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (reason, detail)
    acks_verified: int = 0


def _client(name: str) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5, clean_session=None
    )


def _connect(c: mqtt.Client, broker: Mosquitto) -> None:
    rc = c.connect(broker.host, broker.port)
    if rc != mqtt.MQTT_ERR_SUCCESS:
        raise RuntimeError(f"{c._client_id!r} could not connect: {mqtt.error_string(rc)}")
    c.loop_start()


def tag_frames(count: int) -> list[bytes]:
    proc = micropython.run(
        ["sim/mp_demo_tag.py", str(DEVICE), demo_key(DEVICE).hex(), str(T0), str(count)]
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the MicroPython tag failed: {proc.stderr.decode()}")
    return [bytes.fromhex(x) for x in proc.stdout.decode().split()]


def run(count: int = 6, console: Console | None = None) -> Outcome:
    console = console or Console()
    out = Outcome()
    guard = replay.SequenceGuard()
    keys = {DEVICE: demo_key(DEVICE)}
    with Mosquitto() as broker:
        console.print(f"private Mosquitto on [bold]{broker.host}:{broker.port}[/]")
        inbox: queue.Queue[bytes] = queue.Queue()
        acks: queue.Queue[bytes] = queue.Queue()

        consumer = _client("demo-consumer")
        consumer.on_message = lambda c, u, m: inbox.put(bytes(m.payload))
        _connect(consumer, broker)
        consumer.subscribe(topics.tag_up(DEVICE), qos=topics.QOS)

        tag = _client(f"tag-{DEVICE}")
        tag.on_message = lambda c, u, m: acks.put(bytes(m.payload))
        _connect(tag, broker)
        tag.subscribe(topics.tag_down(DEVICE), qos=topics.QOS)
        time.sleep(0.2)  # both subscriptions in place before anything is sent

        frames = tag_frames(count)
        console.print(f"MicroPython tag {DEVICE} signed {len(frames)} frames")
        forged = bytearray(frames[1])
        forged[30] ^= 0x01  # a position moved by someone without the key
        for data in [*frames, frames[0], bytes(forged)]:
            info = tag.publish(topics.tag_up(DEVICE), data, qos=topics.QOS)
            info.wait_for_publish(5)

        for _ in range(len(frames) + 2):
            data = inbox.get(timeout=10)
            try:
                f = fr.parse(data)
                key = keys.get(f.device)
                if key is None:
                    raise fr.DecodeError("unknown_device", str(f.device))
                fr.verify(f, key)
            except fr.DecodeError as e:
                out.rejected.append((e.reason, e.detail))
                continue
            status = guard.accept(f.device, f.boot, f.seq)
            if status in (replay.DUPLICATE, replay.STALE):
                out.rejected.append(("replay", f"seq {f.seq} was {status}"))
                continue
            out.accepted.append(f)
            ack = fr.Frame(
                fr.ACK,
                f.device,
                0,
                0,
                f.ts,
                [fr.Record(fr.ACK_RANGE, boot=f.boot, first=f.seq, last=f.seq)],
                fr.FLAG_TIME_VALID,
            )
            consumer.publish(topics.tag_down(f.device), fr.encode(ack, key), qos=topics.QOS)

        for _ in range(len(out.accepted)):
            fr.decode(acks.get(timeout=10), keys[DEVICE])
            out.acks_verified += 1
        for c in (consumer, tag):
            c.disconnect()
            c.loop_stop()

    _report(console, out)
    return out


def _report(console: Console, out: Outcome) -> None:
    table = Table(title="frames verified and acknowledged end to end")
    for col in ("seq", "device time (UTC)", "fixes", "last position", "events"):
        table.add_column(col)
    for f in out.accepted:
        fixes = [r for r in f.records if r.type == fr.FIX]
        events = [r.name or str(r.type) for r in f.records if r.type != fr.FIX]
        last = fixes[-1] if fixes else None
        where = f"{last.lat_e7 / 1e7:.5f}, {last.lon_e7 / 1e7:.5f}" if last else "-"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(f.ts))
        table.add_row(str(f.seq), when, str(len(fixes)), where, ", ".join(events) or "-")
    console.print(table)
    for reason, detail in out.rejected:
        console.print(f"[red]rejected[/] {reason}: {detail}")
    console.print(
        f"{len(out.accepted)} accepted, {len(out.rejected)} rejected, "
        f"{out.acks_verified} signed acknowledgements verified by the tag side"
    )
