"""Ingest throughput: signed frames of 1 and 10 fixes from a load generator through
a real Mosquitto to 1 and 2 `tagwatch backend ingest` processes, timed until every frame is
committed and its end-to-end ACK has reached the generator; beside the raw
paho -> Mosquitto QoS 1 rate (a publisher process to a bare subscriber process, the same
payloads) measured in the same run.

Measurement discipline (the machine has 2 cores shared with other work): a warm-up that is
thrown away; then ROUNDS rounds of each configuration (1 worker, 2 workers): the workers are
started once per round and measured on BURSTS bursts of frames, each burst right after a raw
run, so every ratio compares figures taken seconds apart; the table shows the median of the
ratios with their range, and the load average. Every process of the measurement (raw
publisher and load generator, which share this process; raw subscriber; workers) runs with
the same garbage-collector settings (backend.ingest_worker.tune_gc). Worker sessions expire
when the worker disconnects, so a stopped configuration never has the broker queue frames for
it while the next one is measured.

With --postgres (or TAGWATCH_BENCH_POSTGRES=1), the 2-worker 10-fix case also runs against a
PostgreSQL started as the tests do (tests/backend/conftest.py).

Plus the position index decision: the radius-in-a-time-window query and insert cost with a
(cell, ts) index, a plain (ts) index, and an SQLite R*Tree, on the same rows."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from backend.broker import Mosquitto
from backend.ingest_worker import tune_gc
from backend.registry import KeyVault, Registry
from backend.storage import position_queries as pq
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import TAG, cell_of, frames
from firmware import topics
from tests.backend.fleet import Fleet

SERVER_KEY = bytes(range(32))
DEVICES = 100
TAGWATCH = str(Path(sys.executable).parent / "tagwatch")
ROUNDS = 2  # worker start-ups per configuration
BURSTS = 3  # measured bursts per start-up, each paired with a raw run
# Frames per device per measured burst: 5,000 1-fix and 2,500 10-fix frames, 1-5 s each.
PER_DEVICE = {1: 50, 10: 25}
Row = tuple[str, str, str, str]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    rate: float  # messages (frames) per second, end to end
    consumer_cpu_us: float  # CPU of the consuming process(es) per message
    producer_cpu_us: float  # CPU of the publishing process per message
    broker_cpu_us: float


def _raw_subscriber(port: int) -> None:
    """Child process: a bare QoS 1 subscriber (paho auto-acks), kept for a whole comparison.
    For each line `count` on stdin it prints `ready`, then the monotonic clock (system-wide
    on Linux) and its CPU time when message `count` of that run has arrived."""
    done = threading.Event()
    state = {"got": 0, "want": -1, "cpu0": 0.0}

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        state["got"] += 1
        if state["got"] == state["want"]:
            cpu = time.process_time() - state["cpu0"]
            print(f"done {time.monotonic()!r} {cpu!r}", flush=True)
            done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-sub", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    acked = threading.Event()
    sub.on_subscribe = lambda *a: acked.set()
    sub.on_unsubscribe = lambda *a: acked.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    tune_gc()  # as the ingest workers do
    topic = f"{topics.ROOT}/tag/+/up"
    for line in sys.stdin:
        # Subscribed only while measuring: the ingest bursts in between use the same topics.
        acked.clear()
        sub.subscribe(topic, qos=1)
        if not acked.wait(10):
            raise SystemExit("raw subscriber: no SUBACK")
        done.clear()
        state.update(got=0, want=int(line), cpu0=time.process_time())
        print("ready", flush=True)
        if not done.wait(300):
            raise SystemExit(f"raw subscriber got {state['got']} of {state['want']}")
        acked.clear()
        sub.unsubscribe(topic)
        if not acked.wait(10):
            raise SystemExit("raw subscriber: no UNSUBACK")
    sub.disconnect()
    sub.loop_stop()


class Raw:
    """QoS 1 publisher (in this process, as the load generator is) -> Mosquitto -> a bare
    subscriber in another process (as a worker is), both kept between runs."""

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.sub = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.ingest", "subscribe", str(broker.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.pub = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="raw-pub", protocol=mqtt.MQTTv5
        )
        self.pub.max_inflight_messages_set(1000)
        self.pub.max_queued_messages_set(0)
        self.pub.connect(broker.host, broker.port)
        self.pub.loop_start()

    def rate(self, payloads: list[tuple[str, bytes]]) -> Run:
        """Messages/s end to end (from the first publish to the last message received)."""
        assert self.sub.stdin is not None and self.sub.stdout is not None
        assert self.broker.proc is not None
        self.sub.stdin.write(f"{len(payloads)}\n")
        self.sub.stdin.flush()
        if self.sub.stdout.readline().strip() != "ready":
            raise RuntimeError("raw subscriber did not start")
        b0, c0 = cpu_seconds(self.broker.proc.pid), time.process_time()
        t = time.monotonic()
        for topic, p in payloads:
            self.pub.publish(topic, p, qos=1)
        line = self.sub.stdout.readline().split()
        if line[:1] != ["done"]:
            raise RuntimeError(f"raw subscriber failed: {line}")
        elapsed = float(line[1]) - t
        b1, c1 = cpu_seconds(self.broker.proc.pid), time.process_time()
        n = len(payloads)
        return Run(n / elapsed, float(line[2]) / n * 1e6, (c1 - c0) / n * 1e6, (b1 - b0) / n * 1e6)

    def close(self) -> None:
        assert self.sub.stdin is not None
        self.sub.stdin.close()
        self.sub.wait(30)
        self.pub.disconnect()
        self.pub.loop_stop()


def ingest_rate(
    broker: Mosquitto,
    db_url: str,
    workdir: Path,
    workers: int,
    fixes: int,
    tag: str,
    raw: Callable[[], Run],
    bursts: int = BURSTS,
) -> list[tuple[Run, Run]]:
    """Start the workers, then `bursts` times: a raw run, then a burst of frames timed from
    its first publish to the last end-to-end ACK, frames committed. (raw, ingest) pairs."""
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
        "TAGWATCH_INGEST_SESSION_EXPIRY_S": "0",  # nothing queued for it once stopped
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
    per_device = PER_DEVICE[fixes]
    out: list[tuple[Run, Run]] = []
    try:
        fleet.start()
        fleet.retransmit_s = 2.0  # warm-up only: until every worker has subscribed
        fleet.publish(fleet.frames(1))
        if not fleet.wait_all_acked(60):
            raise RuntimeError("ingest workers did not start")
        # Every worker subscribed (its own log says so) before the measured run.
        deadline = time.monotonic() + 30
        while not all(
            "connected" in (workdir / f"{tag}-{i}.log").read_text() for i in range(workers)
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("ingest workers did not connect")
            time.sleep(0.1)
        time.sleep(0.3)
        fleet.retransmit_s = 1e9  # measured runs: no retransmissions
        assert broker.proc is not None
        pids = [broker.proc.pid] + [p.pid for p in procs]
        for b in range(bursts):
            baseline = raw()
            batch = fleet.frames(per_device, first_seq=2 + b * per_device)
            cpu0 = [cpu_seconds(pid) for pid in pids] + [time.process_time()]
            t = time.monotonic()
            fleet.publish(batch)
            if not fleet.wait_all_acked(300):
                raise RuntimeError(f"{len(fleet.pending)} frames never acknowledged")
            elapsed = time.monotonic() - t
            cpu1 = [cpu_seconds(pid) for pid in pids] + [time.process_time()]
            cpu = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
            n = len(batch)
            run = Run(n / elapsed, sum(cpu[1:-1]) / n * 1e6, cpu[-1] / n * 1e6, cpu[0] / n * 1e6)
            out.append((baseline, run))
    finally:
        fleet.stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(frames)).scalar_one()
    engine.dispose()
    expected = DEVICES * (bursts * per_device + 1)
    if stored != expected:
        raise RuntimeError(f"stored {stored} frames, expected {expected}")
    return out


def _payloads(fixes: int, per_device: int) -> list[tuple[str, bytes]]:
    keys = {1000 + i: bytes([i]) * 32 for i in range(DEVICES)}
    fleet_frames = Fleet("127.0.0.1", 0, keys, fixes).frames(per_device)
    return [(topics.tag_up(d), p) for d, _s, p in fleet_frames]


def _spread(values: list[float], fmt: str) -> str:
    """Median (min-max)."""
    med, lo, hi = (fmt.format(x) for x in (statistics.median(values), min(values), max(values)))
    return f"{med} ({lo}-{hi})"


def _median_run(runs: list[Run]) -> Run:
    med = statistics.median
    return Run(
        med(r.rate for r in runs),
        med(r.consumer_cpu_us for r in runs),
        med(r.producer_cpu_us for r in runs),
        med(r.broker_cpu_us for r in runs),
    )


# (label, workers, database URL for a fresh database)
Config = tuple[str, int, Callable[[], str]]


def _compare(
    broker: Mosquitto, work: Path, fixes: int, configs: list[Config], rounds: int
) -> list[Row]:
    """Rounds of each configuration, each burst paired with a raw run just before it; a row
    for raw and one per configuration with the median (range) of its ratios to raw."""
    payloads = _payloads(fixes, PER_DEVICE[fixes])
    baseline = Raw(broker)
    raws: list[Run] = []
    runs: dict[str, list[Run]] = {label: [] for label, _w, _u in configs}
    pairs: dict[str, list[tuple[Run, Run]]] = {label: [] for label, _w, _u in configs}
    try:
        baseline.rate(payloads)  # warm-up: subscriber, broker, page cache
        for r in range(rounds):
            for label, workers, url in configs:
                tag = f"b{label.split(',')[0].replace(' ', '')}{label[-3:]}{fixes}x{workers}r{r}"
                measured = ingest_rate(
                    broker, url(), work, workers, fixes, tag, lambda: baseline.rate(payloads)
                )
                pairs[label] += measured
                runs[label] += [ingest for _raw, ingest in measured]
                raws += [raw for raw, _ingest in measured]
    finally:
        baseline.close()
    raw = _median_run(raws)
    rows: list[Row] = [
        (
            "ingest",
            f"raw paho->Mosquitto->paho QoS 1, publisher and subscriber processes, "
            f"{len(payloads[0][1])} B, {len(payloads):,} msgs; median (range) of {len(raws)}",
            f"{_spread([x.rate for x in raws], '{:,.0f}')} msg/s; CPU/msg: subscriber "
            f"{raw.consumer_cpu_us:.0f} us, publisher {raw.producer_cpu_us:.0f} us, "
            f"broker {raw.broker_cpu_us:.0f} us",
            "baseline",
        )
    ]
    for label, _workers, _url in configs:
        got = runs[label]
        m = _median_run(got)
        ratios = [i.rate / r.rate for r, i in pairs[label]]
        rows.append(
            (
                "ingest",
                f"{label}, {fixes}-fix frames: verify, dedupe, commit, signed ack; "
                f"median (range) of {len(got)}",
                f"{_spread([x.rate for x in got], '{:,.0f}')} frames/s = "
                f"{m.rate * fixes:,.0f} positions/s; CPU/frame: workers "
                f"{m.consumer_cpu_us:.0f} us, generator {m.producer_cpu_us:.0f} us, "
                f"broker {m.broker_cpu_us:.0f} us",
                f"{_spread(ratios, '{:.2f}')} x raw",
            )
        )
    return rows


def throughput_rows(rounds: int = ROUNDS, postgres: bool = False) -> list[Row]:
    rows: list[Row] = []
    load0 = os.getloadavg()
    tune_gc()  # this process is the raw publisher and the load generator: the same for both
    with tempfile.TemporaryDirectory(prefix="tagwatch-bench-") as tmp, Mosquitto() as broker:
        work = Path(tmp)
        count = [0]

        def sqlite_url() -> str:
            count[0] += 1
            return f"sqlite:///{work / f'r{count[0]}.db'}"

        sqlite = [("1 worker, SQLite", 1, sqlite_url), ("2 workers, SQLite", 2, sqlite_url)]
        rows += _compare(broker, work, 1, sqlite, rounds)
        if not postgres:
            rows += _compare(broker, work, 10, sqlite, rounds)
        else:
            from tests.backend.conftest import PostgresServer

            server = PostgresServer()
            server.start()
            try:
                pg = [
                    ("1 worker, PostgreSQL", 1, server.create_database),
                    ("2 workers, PostgreSQL", 2, server.create_database),
                ]
                rows += _compare(broker, work, 10, sqlite + pg, rounds)
            finally:
                server.stop()
    load1 = os.getloadavg()
    rows.append(
        (
            "ingest",
            "machine load average (1 min) before / after the ingest runs",
            f"{load0[0]:.1f} / {load1[0]:.1f} on {os.cpu_count()} cores",
            "",
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


def index_rows(n: int = 150_000) -> list[tuple[str, str, str, str]]:
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


def rows() -> list[Row]:
    postgres = os.environ.get("TAGWATCH_BENCH_POSTGRES", "") not in ("", "0")
    return throughput_rows(postgres=postgres) + index_rows()


def main(argv: list[str]) -> None:
    if argv[:1] == ["subscribe"]:
        _raw_subscriber(int(argv[1]))
        return
    commands: dict[str, Callable[[], list[Row]]] = {
        "index": index_rows,
        "throughput": lambda: throughput_rows(postgres="--postgres" in argv),
        "": rows,
    }
    for r in commands[argv[0] if argv and not argv[0].startswith("-") else ""]():
        print(" | ".join(r), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
