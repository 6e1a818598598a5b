"""Ingest throughput (issue 5): signed frames of 1 and 10 fixes from a load generator through
a real Mosquitto to 1 and 2 `tagwatch backend ingest` processes on SQLite, timed until every
frame is committed and its end-to-end ACK has reached the generator; beside the raw
paho -> Mosquitto QoS 1 rate (publisher to a bare subscriber) measured in the same run.

Plus the position index decision: the radius-in-a-time-window query and insert cost with a
(cell, ts) index, a plain (ts) index, and an SQLite R*Tree, on the same rows."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.broker import Mosquitto
from backend.registry import KeyVault, Registry
from backend.storage import position_queries as pq
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import TAG, cell_of
from firmware import topics
from tests.backend.fleet import Fleet

SERVER_KEY = bytes(range(32))
DEVICES = 100
TAGWATCH = str(Path(sys.executable).parent / "tagwatch")


def raw_rate(broker: Mosquitto, payloads: list[tuple[str, bytes]]) -> float:
    """QoS 1 publisher -> Mosquitto -> bare subscriber, messages/s end to end."""
    done = threading.Event()
    got = [0]

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        got[0] += 1
        if got[0] == len(payloads):
            done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-sub", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    sub.subscribe(f"{topics.ROOT}/tag/+/up", qos=1)
    subscribed.wait(5)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-pub", protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    t = time.perf_counter()
    for topic, p in payloads:
        pub.publish(topic, p, qos=1)
    if not done.wait(120):
        raise RuntimeError(f"raw subscriber got {got[0]} of {len(payloads)}")
    elapsed = time.perf_counter() - t
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    return len(payloads) / elapsed


def ingest_rate(
    broker: Mosquitto, workdir: Path, workers: int, fixes: int, per_device: int, tag: str
) -> float:
    """Frames/s from first publish to the last end-to-end ACK, frames committed."""
    db_url = f"sqlite:///{workdir / f'{tag}.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    registry = Registry(engine, KeyVault(SERVER_KEY))
    keys = {1000 + i: registry.register(1000 + i, TAG).key for i in range(DEVICES)}
    engine.dispose()
    env = {
        **os.environ,
        "TAGWATCH_DATABASE_URL": db_url,
        "TAGWATCH_SERVER_KEY": SERVER_KEY.hex(),
        "TAGWATCH_MQTT_PORT": str(broker.port),
        "TAGWATCH_INGEST_GROUP": tag,
    }
    procs = [
        subprocess.Popen(
            [
                TAGWATCH,
                "backend",
                "ingest",
                "--workers",
                "1",
                "--index",
                str(i),
                "--client-id",
                f"{tag}-{i}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / f"{tag}-{i}.log").open("w"),
        )
        for i in range(workers)
    ]
    fleet = Fleet(broker.host, broker.port, keys, fixes, retransmit_s=1e9, client_id=tag)
    try:
        fleet.start()
        fleet.retransmit_s = 5.0  # warm-up only: until every worker has subscribed
        fleet.publish(fleet.frames(1))
        if not fleet.wait_all_acked(60):
            raise RuntimeError("ingest workers did not start")
        time.sleep(0.5 * workers)  # both workers subscribed before the measured run
        fleet.retransmit_s = 1e9  # measured run: no retransmissions
        batch = fleet.frames(per_device, first_seq=2)
        t = time.perf_counter()
        fleet.publish(batch)
        if not fleet.wait_all_acked(300):
            raise RuntimeError(f"{len(fleet.pending)} frames never acknowledged")
        elapsed = time.perf_counter() - t
    finally:
        fleet.stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
    check = sqlite3.connect(workdir / f"{tag}.db")
    stored = check.execute("select count(*) from frames").fetchone()[0]
    check.close()
    if stored != DEVICES * (per_device + 1):
        raise RuntimeError(f"stored {stored} frames, expected {DEVICES * (per_device + 1)}")
    return len(batch) / elapsed


def _payloads(fixes: int, per_device: int) -> list[tuple[str, bytes]]:
    keys = {1000 + i: bytes([i]) * 32 for i in range(DEVICES)}
    fleet_frames = Fleet("127.0.0.1", 0, keys, fixes).frames(per_device)
    return [(topics.tag_up(d), p) for d, _s, p in fleet_frames]


def throughput_rows() -> list[tuple[str, str, str, str]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="tagwatch-bench-") as tmp, Mosquitto() as broker:
        for fixes, per_device in ((1, 200), (10, 80)):
            payloads = _payloads(fixes, per_device)
            raw = raw_rate(broker, payloads)
            size = len(payloads[0][1])
            rows.append(
                (
                    "ingest",
                    f"raw paho->Mosquitto->paho QoS 1, {size} B, {len(payloads):,} msgs",
                    f"{raw:,.0f} msg/s",
                    "baseline",
                )
            )
            for workers in (1, 2):
                rate = ingest_rate(
                    broker, Path(tmp), workers, fixes, per_device, f"b{fixes}x{workers}"
                )
                rows.append(
                    (
                        "ingest",
                        f"{workers} worker(s), SQLite, {fixes}-fix frames: verify, dedupe, "
                        "commit, signed ack",
                        f"{rate:,.0f} frames/s = {rate * fixes:,.0f} positions/s",
                        f"{rate / raw:.2f} x raw",
                    )
                )
    return rows


# ---- index choice ----------------------------------------------------------------------


def _synthetic(n: int, seed: int = 7) -> list[tuple[int, int, int, int]]:
    """(device, ts, lat_e7, lon_e7): 1,000 devices over a day around a 40 x 40 km area."""
    rnd = random.Random(seed)
    lat0, lon0 = 507_192_000, -18_808_000
    out = []
    for i in range(n):
        out.append(
            (
                i % 1000,
                1_790_000_000 + rnd.randint(0, 86_400),
                lat0 + rnd.randint(-1_800_000, 1_800_000),
                lon0 + rnd.randint(-2_800_000, 2_800_000),
            )
        )
    out.sort(key=lambda r: r[1])  # arrival roughly in time order, as ingest writes them
    return out


def _build(path: Path, rows: list[tuple[int, int, int, int]], variant: str) -> float:
    """Insert rows under one index variant; returns seconds spent inserting."""
    db = sqlite3.connect(path)
    db.execute("pragma journal_mode=wal")
    db.execute("pragma synchronous=normal")
    db.execute(
        "create table positions (id integer primary key, device int, ts int, lat_e7 int,"
        " lon_e7 int, cell int)"
    )
    db.execute("create index ix_dev on positions(device, ts)")
    if variant == "cell":
        db.execute("create index ix_cell on positions(cell, ts)")
    elif variant == "time":
        db.execute("create index ix_ts on positions(ts)")
    elif variant == "rtree":
        db.execute("create virtual table prt using rtree(id, lat0, lat1, lon0, lon1, t0, t1)")
    t = time.perf_counter()
    for i in range(0, len(rows), 1000):
        chunk = rows[i : i + 1000]
        with db:
            db.executemany(
                "insert into positions(id, device, ts, lat_e7, lon_e7, cell) values (?,?,?,?,?,?)",
                [
                    (i + j + 1, d, ts, la, lo, cell_of(la, lo))
                    for j, (d, ts, la, lo) in enumerate(chunk)
                ],
            )
            if variant == "rtree":
                db.executemany(
                    "insert into prt values (?,?,?,?,?,?,?)",
                    [
                        (i + j + 1, la / 1e7, la / 1e7, lo / 1e7, lo / 1e7, ts, ts)
                        for j, (_d, ts, la, lo) in enumerate(chunk)
                    ],
                )
    elapsed = time.perf_counter() - t
    db.close()
    return elapsed


def _query(path: Path, variant: str, probes: list[tuple[int, int, int]], radius: float) -> float:
    db = sqlite3.connect(path)
    t = time.perf_counter()
    for lat, lon, t0 in probes:
        t1 = t0 + 3600
        la0, la1, lo0, lo1 = pq.bounding_box(lat, lon, radius)
        if variant == "rtree":
            sql = (
                "select p.device, p.ts, p.lat_e7, p.lon_e7 from prt r join positions p on"
                " p.id = r.id where r.lat1 >= ? and r.lat0 <= ? and r.lon1 >= ? and"
                " r.lon0 <= ? and r.t1 >= ? and r.t0 <= ?"
            )
            args: tuple[float, ...] = (la0 / 1e7, la1 / 1e7, lo0 / 1e7, lo1 / 1e7, t0, t1)
        else:
            cells = pq.covering_cells(lat, lon, radius) if variant == "cell" else []
            cell_sql = f" and cell in ({','.join(map(str, cells))})" if cells else ""
            sql = (
                "select device, ts, lat_e7, lon_e7 from positions where ts between ? and ?"
                " and lat_e7 between ? and ? and lon_e7 between ? and ?" + cell_sql
            )
            args = (t0, t1, la0, la1, lo0, lo1)
        hits = [r for r in db.execute(sql, args) if pq.distance_m(lat, lon, r[2], r[3]) <= radius]
        assert hits is not None
    elapsed = time.perf_counter() - t
    db.close()
    return elapsed / len(probes)


def index_rows(n: int = 300_000) -> list[tuple[str, str, str, str]]:
    rows = _synthetic(n)
    rnd = random.Random(3)
    probes = [
        (
            507_192_000 + rnd.randint(-1_500_000, 1_500_000),
            -18_808_000 + rnd.randint(-2_500_000, 2_500_000),
            1_790_000_000 + rnd.randint(0, 80_000),
        )
        for _ in range(50)
    ]
    out = []
    results = {}
    with tempfile.TemporaryDirectory(prefix="tagwatch-index-") as tmp:
        for variant in ("time", "cell", "rtree"):
            path = Path(tmp) / f"{variant}.db"
            ins = _build(path, rows, variant)
            q = _query(path, variant, probes, 500.0)
            results[variant] = (ins, q)
    base_ins, base_q = results["time"]
    for variant, label in (
        ("time", "(ts) index + bbox"),
        ("cell", "(cell, ts) index  <- chosen"),
        ("rtree", "SQLite R*Tree (lat, lon, t)"),
    ):
        ins, q = results[variant]
        out.append(
            (
                "position index",
                f"{label}: 500 m x 1 h query over {n:,} fixes; insert",
                f"{q * 1e3:.2f} ms/query; {n / ins:,.0f} rows/s",
                f"query {base_q / q:.1f} x faster; insert {ins / base_ins:.2f} x the time"
                if variant != "time"
                else "baseline",
            )
        )
    return out


def rows() -> list[tuple[str, str, str, str]]:
    return throughput_rows() + index_rows()


if __name__ == "__main__":
    for r in index_rows() if sys.argv[1:] == ["index"] else rows():
        print(" | ".join(r), flush=True)
