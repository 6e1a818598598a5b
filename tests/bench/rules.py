"""Rules: zone-rule evaluation throughput, and end-to-end alert latency.

1. Fixes per second through the rule engine's zone rule (accuracy hysteresis, dwell,
   segment crossing, fast-sampling decisions) against 1, 100 and 10,000 zones, beside two
   raw shapely baselines over the same fixes and zones in the same run: a Python loop of
   point-in-polygon tests (`contains_xy` against every zone — sampled for 10,000 zones,
   where the full loop would take minutes) and one vectorized STRtree `contains` query (the
   floor: what the spatial work alone costs).
2. Rule overhead on top of ingest, on SQLite and PostgreSQL: the same signed frames (4 fixes
   and a battery record each, subjects with a curfew, a home zone, two exclusion zones and a
   charging schedule) go through two Ingest pipelines on two databases, one handing over to
   the MonitoringSink, one to no rules (the raw baseline), alternating frame by frame so both
   see the same machine load. One-frame batches (a lightly loaded worker, the simulator's
   lock-step) and 30-frame batches (one frame per subject). Then a reordered frame per
   subject (behind the settled state: re-evaluated from a snapshot over stored data).
3. The clock tick per monitored subject: with nothing due (the deadline index), and with
   every subject due on a fresh worker (cold cache), beside the engine's own in-memory
   horizon step for the same subjects.
4. Alert latency: a tag frame that confirms an exclusion-zone entry is published to a real
   Mosquitto; an ingest worker (with the rules attached) stores it and evaluates; the alert
   appears on the API's SSE stream (uvicorn). p50/p95 over many subjects, while a fleet of
   100 other tags loads ingest at a steady rate (the ingest benchmark's 1-fix frames)."""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import shapely

from backend.rules.config import Assignment, SubjectConfig
from backend.rules.engine import Engine
from backend.rules.geo import ZoneSpec
from backend.rules.model import TAG, Obs
from backend.rules.zones import Zones

Row = tuple[str, str, str, str]
LAT0, LON0 = 50.7192, -1.8808
M_LAT = math.pi * 6_371_008.8 / 180
M_LON = M_LAT * math.cos(math.radians(LAT0))
FIXES = 20_000


def _zones(n: int, rng: np.random.Generator) -> list[ZoneSpec]:
    out = []
    for i in range(n):
        dx, dy = rng.uniform(-6000, 6000, 2)
        if i % 2:
            out.append(
                ZoneSpec(
                    i + 1,
                    "exclusion",
                    "circle",
                    {"type": "Point", "coordinates": [LON0 + dx / M_LON, LAT0 + dy / M_LAT]},
                    radius_m=float(rng.uniform(40, 250)),
                )
            )
        else:
            w = float(rng.uniform(60, 300))
            ring = [
                [LON0 + (dx + a) / M_LON, LAT0 + (dy + b) / M_LAT]
                for a, b in ((0, 0), (w, 0), (w, w * 0.7), (w * 0.4, w), (0, w * 0.6), (0, 0))
            ]
            out.append(
                ZoneSpec(i + 1, "exclusion", "polygon", {"type": "Polygon", "coordinates": [ring]})
            )
    return out


def _walk(rng: np.random.Generator) -> list[Obs]:
    """A day-long random walk at 15 s intervals across the zones' area (5-25 m accuracy)."""
    steps = rng.normal(0, 12, (FIXES, 2)).cumsum(axis=0)
    steps = (steps + 6000) % 12000 - 6000
    acc = rng.uniform(5, 25, FIXES)
    out = []
    for i in range(FIXES):
        lat, lon = LAT0 + steps[i, 1] / M_LAT, LON0 + steps[i, 0] / M_LON
        out.append(
            Obs(
                1_790_000_000 + 15 * i,
                1,
                TAG,
                "fix",
                f"1/1/{i}/0",
                {
                    "lat_e7": round(lat * 1e7),
                    "lon_e7": round(lon * 1e7),
                    "acc_dm": round(acc[i] * 10),
                    "fix_type": 2,
                    "source": 0,
                    "sats": 9,
                },
            )
        )
    return out


def _engine_rate(cfg: SubjectConfig, obs: list[Obs]) -> tuple[float, int]:
    engine = Engine([Zones()])
    t = time.perf_counter()
    res = engine.run(cfg, engine.initial(cfg, obs[0].t), obs, obs[-1].t + 60, live=True)
    return len(obs) / (time.perf_counter() - t), len(res.episodes)


def throughput_rows() -> list[Row]:
    rng = np.random.default_rng(11)
    obs = _walk(rng)
    rows: list[Row] = []
    for n in (1, 100, 10_000):
        cfg = SubjectConfig(1, [Assignment(1, TAG, 0)], zones=_zones(n, rng))
        index = cfg.zone_index  # the STRtree is built once per configuration, before timing
        rate, episodes = _engine_rate(cfg, obs)
        lat = np.array([o.v("lat_e7") for o in obs]) / 1e7
        lon = np.array([o.v("lon_e7") for o in obs]) / 1e7
        x, y = index.proj.xy(lat, lon)
        # Raw loop: every fix against every zone, one contains_xy call each (sampled).
        sample = max(1, min(len(obs), 2_000_000 // (n * 20)))
        t = time.perf_counter()
        hits = 0
        for i in range(sample):
            for g in index.geoms:
                hits += bool(shapely.contains_xy(g, x[i], y[i]))
        loop_rate = sample / (time.perf_counter() - t)
        # Vectorized floor: one tree query for all fixes.
        assert index.tree is not None
        t = time.perf_counter()
        index.tree.query(shapely.points(x, y), predicate="within")
        vec_rate = len(obs) / (time.perf_counter() - t)
        rows.append(
            (
                "rules",
                f"zone rule, {n:,} zones ({episodes} episodes)",
                f"{rate:,.0f} fixes/s",
                f"{rate / loop_rate:,.1f}x a shapely point-in-polygon loop ({loop_rate:,.0f}/s); "
                f"{rate / vec_rate:.2f}x one vectorized STRtree query ({vec_rate:,.0f}/s)",
            )
        )
    return rows


# ---- rule overhead per frame, clock tick per subject ------------------------------------

T_OVERHEAD = 1_790_000_000 + 3 * 3600  # a weekday morning (no curfew window)


class _Site:
    """A database with `n` subjects, each with a tag, a home unit, a curfew, a home zone, two
    exclusion zones and a charging schedule, and an Ingest handing over to `sink`."""

    def __init__(self, url: str, n: int, with_rules: bool) -> None:
        from sqlalchemy import insert

        from backend.clock import ManualClock
        from backend.ingest import DeviceDirectory, Ingest, NoRules
        from backend.registry import KeyVault, Registry
        from backend.rules import store
        from backend.rules.sink import MonitoringSink
        from backend.services import subjects, units
        from backend.storage.database import make_engine, upgrade
        from backend.storage.schema import (
            assignments,
            charging_schedules,
            curfews,
            orders,
        )
        from backend.storage.schema import zones as zones_table

        t = T_OVERHEAD
        self.engine = make_engine(url)
        upgrade(self.engine)
        self.clock = ManualClock(t)
        registry = Registry(self.engine, KeyVault(bytes(range(32))), self.clock)
        self.keys: dict[int, bytes] = {}
        with self.engine.begin() as conn:
            unit = units.create(conn, "bench", "police", t)
        for i in range(n):
            tag, hu = 10_000 + i, 20_000 + i
            self.keys[hu] = registry.register(hu, "home_unit").key
            self.keys[tag] = registry.register(tag, "tag", home_unit=hu).key
            with self.engine.begin() as conn:
                sid = subjects.create(
                    conn, reference=f"R{i}", name=f"S{i}", unit_id=unit, risk_notes="", now=t
                )
                for dev, role in ((tag, "tag"), (hu, "home_unit")):
                    conn.execute(
                        insert(assignments).values(
                            subject_id=sid, device=dev, role=role, starts_at=t - 86400,
                            created_at=t,
                        )
                    )  # fmt: skip
                conn.execute(
                    insert(orders).values(
                        subject_id=sid, kind="licence", reference="L", starts_at=t - 86400,
                        conditions="", created_at=t,
                    )
                )  # fmt: skip
                conn.execute(
                    insert(curfews).values(
                        subject_id=sid, days="mon,tue,wed,thu,fri,sat,sun", start="19:00",
                        end="07:00", tz="Europe/London", created_at=t,
                    )
                )  # fmt: skip
                conn.execute(
                    insert(charging_schedules).values(subject_id=sid, min_minutes=60, created_at=t)
                )
                for k, (dx, r, kind) in enumerate(
                    ((0, 50, "home"), (3000, 100, "exclusion"), (-3000, 200, "exclusion"))
                ):
                    lon = LON0 + dx / M_LON
                    lat = LAT0 + 500 * i / M_LAT
                    conn.execute(
                        insert(zones_table).values(
                            subject_id=sid, name=f"z{k}", kind=kind, shape="circle",
                            geometry={"type": "Point", "coordinates": [lon, lat]}, radius_m=r,
                            width_m=0, buffer_m=0, victim=False, schedule=[], dwell_s=None,
                            created_at=t,
                        )
                    )  # fmt: skip
                store.bump_config(conn, sid, t)
        self.sink = MonitoringSink(self.engine, self.clock, lambda _t, _p: True, self.keys.get)
        self.ingest = Ingest(
            self.engine,
            DeviceDirectory(registry),
            lambda _t, _p: True,
            clock=self.clock,
            rules=self.sink if with_rules else NoRules(),
        )

    def frame(self, i: int, seq: int, ts: int) -> Any:
        from backend.ingest import Message
        from firmware import frame as fr
        from firmware import topics

        tag = 10_000 + i
        recs = []
        for j in range(4):  # walking east from home, 3 m a fix
            lat, lon = LAT0 + 500 * i / M_LAT, LON0 + (200 + 3 * (4 * seq + j)) / M_LON
            recs.append(
                fr.Record(
                    fr.FIX,
                    (15 * (3 - j), round(lat * 1e7), round(lon * 1e7), 50, 2, 0, 9, 100, 0, 9),
                )
            )
        recs.append(fr.Record(fr.BATTERY, dt=0, level=80, flags=0, mv=3900, hours_left=30))
        f = fr.Frame(fr.TAG_DATA, tag, 1, seq, ts, recs, fr.FLAG_TIME_VALID)
        return Message(topics.tag_up(tag), fr.encode(f, self.keys[tag]))


def _overhead(url_rules: str, url_raw: str, label: str, n: int = 30, rounds: int = 12) -> list[Row]:
    with_rules, raw = _Site(url_rules, n, True), _Site(url_raw, n, False)
    spent = {id(with_rules): 0.0, id(raw): 0.0}
    frames = 0
    seq = 0
    for batched in (False, True):
        for key in spent:
            spent[key] = 0.0
        frames = 0
        for _ in range(rounds):
            seq += 1
            ts = T_OVERHEAD + 60 * seq
            msgs = {id(s): [s.frame(i, seq, ts) for i in range(n)] for s in (with_rules, raw)}
            groups = [list(range(n))] if batched else [[i] for i in range(n)]
            for g in groups:
                for site in (with_rules, raw):  # alternating: both see the same load
                    site.clock.set(ts + 2)
                    batch = [msgs[id(site)][i] for i in g]
                    t0 = time.perf_counter()
                    site.ingest.process(batch)
                    spent[id(site)] += time.perf_counter() - t0
            frames += n
        a, b = spent[id(with_rules)] / frames * 1000, spent[id(raw)] / frames * 1000
        size = f"{n}-frame batches" if batched else "one-frame batches"
        rows_out = (
            "rules",
            f"rule overhead per frame, {size} ({label})",
            f"+{a - b:.2f} ms/frame",
            f"ingest alone {b:.2f} ms/frame, with rules {a:.2f} ({a / b:.1f}x)",
        )
        if batched:
            batched_row = rows_out
        else:
            single_row = rows_out
    # A reordered frame per subject: behind the settled state (15 min of allowed lateness).
    seq += 1
    t0 = time.perf_counter()
    for i in range(n):
        ts = T_OVERHEAD + 60 * seq - 3600
        with_rules.clock.set(T_OVERHEAD + 60 * seq)
        with_rules.ingest.process([with_rules.frame(i, seq, ts)])
    late_ms = (time.perf_counter() - t0) / n * 1000
    late_row = (
        "rules",
        f"late frame (1 h behind), per subject ({label})",
        f"{late_ms:.1f} ms",
        "ingest + re-evaluation from the hourly snapshot over stored frames",
    )
    tick_rows = _tick_rows(with_rules, n, label)
    with_rules.engine.dispose()
    raw.engine.dispose()
    return [single_row, batched_row, late_row, *tick_rows]


def _tick_rows(site: _Site, n: int, label: str) -> list[Row]:
    from backend.rules.sink import MonitoringSink

    now = int(site.clock.now()) + 30
    ticks = 20
    t0 = time.perf_counter()
    for k in range(ticks):
        site.sink.tick(now + 30 * k)
    quiet_us = (time.perf_counter() - t0) / ticks / n * 1e6
    due = site.sink.counts["tick_due"]
    # Every subject due at once on a warm worker: the curfew window opens for all of them.
    entries = [site.sink.cache.peek(s) for s in range(1, n + 1)]
    opens = min(e.deadline for e in entries if e is not None)
    before = site.sink.counts["tick_due"]
    t0 = time.perf_counter()
    site.sink.tick(opens)
    warm_ms = (time.perf_counter() - t0) / n * 1000
    warm_due = site.sink.counts["tick_due"] - before
    fresh = MonitoringSink(site.engine, site.clock)  # a new worker: every subject due once
    t0 = time.perf_counter()
    fresh.tick(opens)
    cold_ms = (time.perf_counter() - t0) / n * 1000
    # The in-memory floor: the engine's horizon step alone, for the same subjects.
    entries = [fresh.cache.peek(s) for s in range(1, n + 1)]
    pairs = [(e.config, e.state) for e in entries if e and e.config and e.state]
    t0 = time.perf_counter()
    for cfg, st in pairs:
        fresh.rules.horizon(cfg, st.latest(), opens)
    floor_ms = (time.perf_counter() - t0) / max(1, len(pairs)) * 1000
    return [
        (
            "rules",
            f"clock tick per subject, nothing due ({label})",
            f"{quiet_us:.0f} µs",
            f"{n} subjects x {ticks} ticks, {due} evaluated (deadline index)",
        ),
        (
            "rules",
            f"clock tick per subject, all due, warm cache ({label})",
            f"{warm_ms:.2f} ms",
            f"{warm_due} due (curfew opens); {warm_ms / floor_ms:.0f}x the in-memory horizon"
            f" step ({floor_ms:.2f} ms)",
        ),
        (
            "rules",
            f"clock tick per subject, all due, fresh worker ({label})",
            f"{cold_ms:.2f} ms",
            f"{cold_ms / floor_ms:.0f}x the in-memory horizon step ({floor_ms:.2f} ms)",
        ),
    ]


def overhead_rows() -> list[Row]:
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="tagwatch-bench-rules-overhead-"))
    rows += _overhead(f"sqlite:///{work / 'rules.db'}", f"sqlite:///{work / 'raw.db'}", "SQLite")
    from tests.backend.conftest import PostgresServer

    try:
        pg = PostgresServer()
    except RuntimeError as e:  # no server binaries: say so in the table
        return [*rows, ("rules", "rule overhead (PostgreSQL)", "not run", str(e)[:60])]
    pg.start()
    try:
        rows += _overhead(pg.create_database(), pg.create_database(), "PostgreSQL")
    finally:
        pg.stop()
    return rows


# ---- end-to-end latency ---------------------------------------------------------------


def latency_rows(subjects: int = 30, load_rate: float = 1000.0) -> list[Row]:
    from sqlalchemy import insert

    from backend.api.app import create_app
    from backend.broker import Mosquitto
    from backend.ingest_worker import IngestWorker
    from backend.registry import KeyVault, Registry
    from backend.rules import store
    from backend.rules.sink import attach
    from backend.services import subjects as subject_records
    from backend.services import units, users
    from backend.settings import Settings
    from backend.storage.database import make_engine, upgrade
    from backend.storage.schema import assignments, zones
    from firmware import frame as fr
    from firmware import topics
    from tests.backend.api.conftest import Server
    from tests.backend.fleet import Fleet

    work = Path(tempfile.mkdtemp(prefix="tagwatch-bench-rules-"))
    key = bytes(range(32))
    (work / "broker").mkdir()
    broker = Mosquitto(workdir=work / "broker")
    broker.start()
    settings = Settings(
        data_dir=work,
        server_key=key.hex(),
        mqtt_port=broker.port,
        ingest_group="bench-rules",
        ingest_session_expiry_s=0,
        password_memory_kib=1024,
        password_time_cost=1,
    )  # type: ignore[call-arg]
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    registry = Registry(engine, KeyVault(key))
    t0 = int(time.time())
    tags: dict[int, bytes] = {}
    with engine.begin() as conn:
        unit = units.create(conn, "bench", "police", t0)
        from backend.security.passwords import Passwords

        users.create(
            conn,
            Passwords(settings),
            username="bench",
            display_name="b",
            unit_id=unit,
            role="officer",
            password="bench password 123",
            now=t0,
        )
    for i in range(subjects):
        tag = 5000 + i
        tags[tag] = registry.register(tag, "tag").key
        with engine.begin() as conn:
            sid = subject_records.create(
                conn, reference=f"R{i}", name=f"S{i}", unit_id=unit, risk_notes="", now=t0
            )
            conn.execute(
                insert(assignments).values(
                    subject_id=sid, device=tag, role="tag", starts_at=t0 - 3600, created_at=t0
                )
            )
            lat, lon = LAT0 + (i * 500) / M_LAT, LON0
            conn.execute(
                insert(zones).values(
                    subject_id=sid,
                    name="z",
                    kind="exclusion",
                    shape="circle",
                    geometry={"type": "Point", "coordinates": [lon, lat]},
                    radius_m=100,
                    width_m=0,
                    buffer_m=0,
                    victim=False,
                    schedule=[],
                    dwell_s=None,
                    created_at=t0,
                )
            )
            store.bump_config(conn, sid, t0)
    load_keys = {1000 + i: registry.register(1000 + i, "tag").key for i in range(100)}

    worker = IngestWorker(settings, "bench-rules-worker")
    timer = attach(worker, tick_s=30)
    stop = threading.Event()

    def run_worker() -> None:
        worker.connect()
        while not stop.is_set():
            worker.run_once()

    wt = threading.Thread(target=run_worker, daemon=True)
    wt.start()
    app = create_app(settings, engine=engine)
    server = Server(app)
    server.start()
    http = httpx.Client(base_url=server.url, timeout=10)
    token = http.post(
        "/api/auth/token", data={"username": "bench", "password": "bench password 123"}
    ).json()
    seen: dict[int, float] = {}
    ready = threading.Event()

    def listen() -> None:
        headers = {
            "Authorization": f"Bearer {token['access_token']}",
            "Accept": "text/event-stream",
        }
        with http.stream(
            "GET", "/api/alerts/stream", headers=headers, timeout=httpx.Timeout(120, read=120)
        ) as r:
            ready.set()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    body: dict[str, Any] = json.loads(line[6:])
                    if body["action"] == "raised" and body["type"] == "exclusion_entry":
                        seen.setdefault(body["subject_id"], time.monotonic())
                if stop.is_set() or len(seen) >= subjects:
                    return

    lt = threading.Thread(target=listen, daemon=True)
    lt.start()
    ready.wait(10)
    fleet = Fleet(broker.host, broker.port, load_keys, 1, retransmit_s=1e9, client_id="load")
    fleet.start()
    pub = fleet.client
    sent: dict[int, float] = {}
    subject_of = {5000 + i: i + 1 for i in range(subjects)}
    loader = threading.Thread(
        target=fleet.publish, args=(fleet.frames(40),), kwargs={"rate": load_rate}, daemon=True
    )
    loader.start()
    time.sleep(0.5)
    try:
        for i, (tag, k) in enumerate(tags.items()):
            now = int(time.time())
            lat, lon = LAT0 + (i * 500) / M_LAT, LON0

            def rec(dt: int, la: float, lo: float) -> fr.Record:
                return fr.Record(
                    fr.FIX, (dt, round(la * 1e7), round(lo * 1e7), 50, 2, 0, 9, 0, 0, 9)
                )

            outside = fr.Frame(
                fr.TAG_DATA,
                tag,
                1,
                1,
                now - 130,
                [rec(0, lat - 400 / M_LAT, lon)],
                fr.FLAG_TIME_VALID,
            )
            inside = fr.Frame(
                fr.TAG_DATA,
                tag,
                1,
                2,
                now,
                # Inside for longer than the exclusion dwell (60 s), so the last fix
                # confirms the entry.
                [rec(dt, lat, lon) for dt in (90, 60, 30, 0)],
                fr.FLAG_TIME_VALID,
            )
            pub.publish(topics.tag_up(tag), fr.encode(outside, k), qos=1)
            time.sleep(0.05)
            sent[subject_of[tag]] = time.monotonic()
            pub.publish(topics.tag_up(tag), fr.encode(inside, k), qos=1)
            time.sleep(0.15)
        deadline = time.monotonic() + 30
        while len(seen) < subjects and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        loader.join(60)
        fleet.stop()
        timer.stop()
        wt.join(10)
        worker.close()
        server.stop()
        broker.stop()
    lat_ms = sorted((seen[s] - sent[s]) * 1000 for s in sent if s in seen)
    if not lat_ms:
        return [("rules", "alert latency (frame -> SSE)", "no alerts seen", "")]
    p50 = statistics.median(lat_ms)
    p95 = lat_ms[min(len(lat_ms) - 1, int(0.95 * len(lat_ms)))]
    return [
        (
            "rules",
            f"alert latency, frame published -> SSE ({len(lat_ms)}/{subjects} alerts)",
            f"p50 {p50:.0f} ms, p95 {p95:.0f} ms",
            f"under {load_rate:,.0f} frames/s of load; NIJ 1004.00 allows 4 min",
        )
    ]


def rows() -> list[Row]:
    return throughput_rows() + overhead_rows() + latency_rows()


if __name__ == "__main__":
    for r in rows():
        print(" | ".join(r))
