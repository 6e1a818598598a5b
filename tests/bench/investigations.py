"""Crime-scene correlation on a large history: query latency p50/p95 over varied
places and windows on at least 10 million fixes, beside a brute-force scan of the same data
in the same run (and a check that both find the same subjects).

The data set: SUBJECTS subjects x DAYS days x a fix every STEP seconds (200 x 35 x 60 s =
10,080,000 fixes), in the real schema (Alembic migrations) on SQLite, with the real indexes
(positions (cell, ts) and (device, ts)). Each subject lives somewhere in a 24 x 24 km town,
leaves home in the morning for a few places, dwells, travels between them at 4-15 m/s, and
is home by night (with home-unit presence reports); fixes carry GNSS noise and their
accuracy estimate. A tenth of the subjects change tags half-way (assignment history).

Generation is bulk (no indexes while loading, constant columns in the statement, one
executemany per subject, indexes built at the end); the file is cached under build/bench/
keyed by the parameters, so later runs only query. Environment overrides for a quick run:
TAGWATCH_BENCH_INV_SUBJECTS, _DAYS, _STEP, _QUERIES, _BRUTE. With TAGWATCH_BENCH_POSTGRES=1 the
same runs on a real PostgreSQL too (loaded with COPY)."""

from __future__ import annotations

import itertools
import math
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, func, insert, select

from backend.investigations import evidence as ev
from backend.investigations.area import Area
from backend.investigations.correlate import POSSIBLY, WITHIN, Params, analyse, correlate
from backend.rules.geo import M_PER_DEG_LAT
from backend.security.access import User, visible_subject_ids
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import (
    CELL_E7,
    HOME_UNIT,
    TAG,
    assignments,
    cell_of,
    devices,
    positions,
    subjects,
    units,
    users,
    zones,
)

Row = tuple[str, str, str, str]
I64 = npt.NDArray[np.int64]

SUBJECTS = int(os.environ.get("TAGWATCH_BENCH_INV_SUBJECTS", "200"))
DAYS = int(os.environ.get("TAGWATCH_BENCH_INV_DAYS", "35"))
STEP = int(os.environ.get("TAGWATCH_BENCH_INV_STEP", "60"))
QUERIES = int(os.environ.get("TAGWATCH_BENCH_INV_QUERIES", "60"))
BRUTE = int(os.environ.get("TAGWATCH_BENCH_INV_BRUTE", "6"))
VERSION = 2  # bump when the generator changes: the cache key includes it
T_START = 1_788_220_800  # 2026-09-01 00:00 UTC
LAT0, LON0 = 50.7192, -1.8808  # Bournemouth
TOWN_M = 12_000.0  # homes within +-12 km of the centre
_LON_CELLS = 2 * 1_800_000_000 // CELL_E7 + 1
ROOT = Path(__file__).resolve().parents[2]


def _cells(lat_e7: I64, lon_e7: I64) -> I64:
    """schema.cell_of, vectorized (checked against it below)."""
    out = (lat_e7 // CELL_E7 + 900_000_000 // CELL_E7) * _LON_CELLS + (
        lon_e7 // CELL_E7 + 1_800_000_000 // CELL_E7
    )
    return np.asarray(out, dtype=np.int64)


def _to_e7(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> tuple[I64, I64]:
    kx = M_PER_DEG_LAT * math.cos(math.radians(LAT0))
    lat = np.round((LAT0 + y / M_PER_DEG_LAT) * 1e7).astype(np.int64)
    lon = np.round((LON0 + x / kx) * 1e7).astype(np.int64)
    return lat, lon


def db_path() -> Path:
    return ROOT / "build" / "bench" / f"investigations-v{VERSION}-{SUBJECTS}x{DAYS}dx{STEP}s.db"


def _day_knots(
    rng: random.Random, day0: int, home: tuple[float, float]
) -> list[tuple[float, float, float]]:
    """(t, x, y) waypoints of one day: home, a few places with dwells, home by night."""
    hx, hy = home
    t = day0 + rng.uniform(6.5, 9.5) * 3600
    knots = [(float(day0), hx, hy), (t, hx, hy)]
    x, y = hx, hy
    for _ in range(rng.randint(2, 4)):
        nx = max(-TOWN_M * 1.3, min(TOWN_M * 1.3, hx + rng.uniform(-8000, 8000)))
        ny = max(-TOWN_M * 1.3, min(TOWN_M * 1.3, hy + rng.uniform(-8000, 8000)))
        travel = math.hypot(nx - x, ny - y) / rng.uniform(4, 15)
        t += travel
        knots.append((t, nx, ny))
        t += rng.uniform(0.5, 2.5) * 3600
        knots.append((t, nx, ny))
        x, y = nx, ny
    t += math.hypot(hx - x, hy - y) / rng.uniform(4, 15)
    end = day0 + 86400
    if t < end - 3600:
        knots.append((t, hx, hy))
    knots.append((float(end), hx, hy))
    return sorted(knots)


def _directory(engine: Engine) -> list[tuple[float, float]]:
    """Unit, user, subjects, home zones, devices and assignments; the subjects' homes."""
    rng = random.Random(20260901)
    homes: list[tuple[float, float]] = []
    with engine.begin() as conn:
        unit = conn.execute(
            insert(units).values(name="Bench unit", kind="police", created_at=T_START)
            .returning(units.c.id)
        ).scalar_one()  # fmt: skip
        conn.execute(insert(users).values(
            username="bench", display_name="bench", unit_id=unit, role="officer",
            password_hash="-", failed_logins=0, created_at=T_START))  # fmt: skip
        for s in range(SUBJECTS):
            sid = conn.execute(
                insert(subjects).values(reference=f"BENCH-{s}", name=f"Bench {s}", unit_id=unit,
                                        risk_notes="", created_at=T_START)
                .returning(subjects.c.id)
            ).scalar_one()  # fmt: skip
            home = (rng.uniform(-TOWN_M, TOWN_M), rng.uniform(-TOWN_M, TOWN_M))
            homes.append(home)
            lat_e7, lon_e7 = _to_e7(np.array([home[0]]), np.array([home[1]]))
            conn.execute(insert(zones).values(
                subject_id=sid, name="home", kind="home", shape="circle",
                geometry={"type": "Point", "coordinates": [lon_e7[0] / 1e7, lat_e7[0] / 1e7]},
                radius_m=60, width_m=0, buffer_m=0, victim=False, schedule=[], dwell_s=None,
                created_at=T_START))  # fmt: skip
            for dev, kind in ((100_000 + s, TAG), (200_000 + s, HOME_UNIT), (300_000 + s, TAG)):
                conn.execute(insert(devices).values(id=dev, kind=kind, key_enc=b"-",
                                                    registered_at=T_START))  # fmt: skip
            swap = _swap(s)
            conn.execute(insert(assignments).values(
                subject_id=sid, device=100_000 + s, role=TAG, starts_at=T_START - 86400,
                ends_at=swap, created_at=T_START))  # fmt: skip
            if swap is not None:
                conn.execute(insert(assignments).values(
                    subject_id=sid, device=300_000 + s, role=TAG, starts_at=swap,
                    ends_at=None, created_at=T_START))  # fmt: skip
            conn.execute(insert(assignments).values(
                subject_id=sid, device=200_000 + s, role=HOME_UNIT, starts_at=T_START - 86400,
                ends_at=None, created_at=T_START))  # fmt: skip
    return homes


def _swap(s: int) -> int | None:
    """A tenth of the subjects change tags half-way through."""
    return T_START + (DAYS // 2) * 86400 if s % 10 == 0 else None


Batch = tuple[list[tuple[int, ...]], list[tuple[int, ...]]]


def _batches(homes: list[tuple[float, float]]) -> Iterator[Batch]:
    """Per subject: position rows (device, ts, lat, lon, cell, acc_dm) and presence rows
    (home_unit, tag, ts, state)."""
    rng = random.Random(20260902)
    nrng = np.random.default_rng(7)
    ts = np.arange(T_START, T_START + DAYS * 86400, STEP, dtype=np.int64)
    for s, home in enumerate(homes):
        knots = [k for d in range(DAYS) for k in _day_knots(rng, T_START + d * 86400, home)]
        kt = np.array([k[0] for k in knots])
        x = np.interp(ts, kt, [k[1] for k in knots])
        y = np.interp(ts, kt, [k[2] for k in knots])
        # Accuracy estimates of a few metres to tens (REFERENCES.md: ~5 m open sky, ~10 m
        # near buildings, outliers); the error drawn to match.
        acc = np.clip(nrng.lognormal(math.log(6), 0.6, len(ts)), 2, 150)
        x = x + nrng.normal(0, 1, len(ts)) * acc / 1.5
        y = y + nrng.normal(0, 1, len(ts)) * acc / 1.5
        lat, lon = _to_e7(x, y)
        cells = _cells(lat, lon)
        swap = _swap(s)
        dev = np.where(ts >= (swap or 2**62), 300_000 + s, 100_000 + s)
        acc_dm = np.round(acc * 10).astype(np.int64)
        rows = list(zip(dev.tolist(), ts.tolist(), lat.tolist(), lon.tolist(), cells.tolist(),
                        acc_dm.tolist(), strict=True))  # fmt: skip
        # Home presence: the unit hears the tag from the evening's return to the morning.
        stays: list[list[float]] = []
        for k0, k1 in itertools.pairwise(knots):
            if k0[1:] == home and k1[1:] == home:
                if stays and stays[-1][1] >= k0[0]:
                    stays[-1][1] = k1[0]  # the night runs on past midnight
                else:
                    stays.append([k0[0], k1[0]])
        pres = []
        for a, b in stays:
            for t, state in ((int(a) + 60, 1), (int(b), 0)):
                tag = 300_000 + s if swap is not None and t >= swap else 100_000 + s
                pres.append((200_000 + s, tag, t, state))
        yield rows, pres


POSITION_COLUMNS = (
    "device, ts, lat_e7, lon_e7, cell, acc_dm, fix_type, source, sats, speed_cms, course_cd, "
    "hdop_d, late, frame_id, idx"
)
PRESENCE_COLUMNS = "home_unit, tag, ts, state, rssi, late, frame_id"


def generate(path: Path) -> tuple[float, int]:
    """Build the data set into the SQLite file `path` (via a temporary file): the schema by
    migration, positions loaded without indexes (built at the end). (seconds, fixes)."""
    started = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{tmp}")
    upgrade(engine)
    homes = _directory(engine)
    engine.dispose()
    raw = sqlite3.connect(tmp, isolation_level=None)
    raw.execute("PRAGMA journal_mode=OFF")
    raw.execute("PRAGMA synchronous=OFF")
    raw.execute("PRAGMA cache_size=-200000")
    for ix in positions.indexes:
        raw.execute(f'DROP INDEX "{ix.name}"')
    total = 0
    raw.execute("BEGIN")
    for rows, pres in _batches(homes):
        raw.executemany(
            f"INSERT INTO positions ({POSITION_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, 2, 0, 9, 0, 0, 9, 0, 0, 0)",
            rows,
        )
        raw.executemany(
            f"INSERT INTO presence ({PRESENCE_COLUMNS}) VALUES (?, ?, ?, ?, -60, 0, 0)", pres
        )
        total += len(rows)
    raw.execute("COMMIT")
    for ix in positions.indexes:
        cols = ", ".join(f'"{c.name}"' for c in ix.columns)
        raw.execute(f'CREATE INDEX "{ix.name}" ON positions ({cols})')
    raw.execute("ANALYZE")
    raw.execute("PRAGMA journal_mode=WAL")
    raw.close()
    tmp.replace(path)
    return time.perf_counter() - started, total


def generate_postgres(engine: Engine) -> tuple[float, int]:
    """The same data set into a migrated PostgreSQL database with COPY."""
    started = time.perf_counter()
    homes = _directory(engine)
    total = 0
    with engine.begin() as conn:
        for ix in positions.indexes:
            conn.exec_driver_sql(f'DROP INDEX "{ix.name}"')
        cur: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        for rows, pres in _batches(homes):
            with cur.copy(f"COPY positions ({POSITION_COLUMNS}) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row((*r, 2, 0, 9, 0, 0, 9, False, 0, 0))
            with cur.copy(f"COPY presence ({PRESENCE_COLUMNS}) FROM STDIN") as cp:
                for r in pres:
                    cp.write_row((*r, -60, False, 0))
            total += len(rows)
        for ix in positions.indexes:
            cols = ", ".join(f'"{c.name}"' for c in ix.columns)
            conn.exec_driver_sql(f'CREATE INDEX "{ix.name}" ON positions ({cols})')
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started, total


def _queries(rng: random.Random, engine: Engine) -> list[tuple[Area, int, int]]:
    """Varied places and windows: half where a subject actually was (a fix drawn at random),
    half anywhere in town; radii 100 m - 1 km; windows 15 min - 6 h."""
    out = []
    with engine.connect() as conn:
        n = conn.execute(select(positions.c.id).order_by(positions.c.id.desc()).limit(1)).scalar()
        assert n is not None
        for q in range(QUERIES):
            radius = rng.choice([100, 200, 300, 500, 1000])
            window = rng.choice([900, 3600, 3 * 3600, 6 * 3600])
            if q % 2 == 0:
                r = conn.execute(
                    select(positions.c.ts, positions.c.lat_e7, positions.c.lon_e7).where(
                        positions.c.id == rng.randint(1, int(n))
                    )
                ).one()
                t0 = int(r.ts) - rng.randint(0, window)
                lat, lon = r.lat_e7 / 1e7, r.lon_e7 / 1e7
            else:
                t0 = T_START + rng.randint(0, DAYS * 86400 - window)
                la, lo = _to_e7(np.array([rng.uniform(-TOWN_M, TOWN_M)]),
                                np.array([rng.uniform(-TOWN_M, TOWN_M)]))  # fmt: skip
                lat, lon = la[0] / 1e7, lo[0] / 1e7
            out.append((Area.circle(lat, lon, radius), t0, t0 + window))
    return out


def brute(engine: Engine, area: Area, t0: int, t1: int, p: Params) -> set[int]:
    """The same question by scanning every fix of the window with no index at all (SQLite
    NOT INDEXED; PostgreSQL with index scans disabled): every device's fixes analysed."""
    lo, hi = t0 - p.max_gap_s, t1 + p.max_gap_s
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            sql = "SELECT device FROM positions NOT INDEXED WHERE ts BETWEEN ? AND ?"
        else:
            for knob in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"):
                conn.exec_driver_sql(f"SET LOCAL {knob} = off")
            sql = "SELECT device FROM positions WHERE ts BETWEEN %s AND %s"
        devs = sorted({int(r[0]) for r in conn.exec_driver_sql(sql, (lo, hi))})
        tenures = ev.tenures(conn, lo, hi, devices=devs)
        fixes = ev.load_fixes(conn, tenures, lo, hi)
        homes = ev.load_homes(conn)
        stays = ev.load_stays(
            conn, ev.tenures(conn, t0, t1, subject_ids=list(homes)), t0, t1, homes
        )
    found = analyse(area, t0, t1, fixes, stays, p)
    return {s for s, v in found.items() if v[0] in (WITHIN, POSSIBLY)}


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def measure(engine: Engine, what: str) -> list[Row]:
    """Query latency over the varied places and windows, and the brute-force comparison."""
    with engine.connect() as conn:
        n_fixes = conn.execute(select(func.count()).select_from(positions)).scalar_one()
        user_row = conn.execute(select(users).where(users.c.username == "bench")).one()
    user = User(user_row.id, "bench", user_row.unit_id, user_row.role)
    visible = visible_subject_ids(user, "trail", T_START)
    qs = _queries(random.Random(11), engine)
    p = Params()
    times: list[float] = []
    found: list[set[int]] = []
    with engine.connect() as conn:
        correlate(conn, *qs[0], p, visible=visible)  # warm the caches
        for area, t0, t1 in qs:
            t = time.perf_counter()
            hits = correlate(conn, area, t0, t1, p, visible=visible)
            times.append(time.perf_counter() - t)
            found.append({h.subject_id for h in hits})
    brute_times: list[float] = []
    agree = 0
    for k in range(min(max(BRUTE, 1), len(qs))):
        area, t0, t1 = qs[k]
        t = time.perf_counter()
        expect = brute(engine, area, t0, t1, p)
        brute_times.append(time.perf_counter() - t)
        agree += expect == found[k]
    p50, p95 = statistics.median(times) * 1e3, _pct(times, 0.95) * 1e3
    b50 = statistics.median(brute_times) * 1e3
    label = f"{n_fixes / 1e6:.1f} M fixes ({SUBJECTS} subjects x {DAYS} d, 1 per {STEP} s), {what}"
    return [
        (
            "investigations",
            f"correlation p50 / p95, {len(qs)} places x windows, {label}",
            f"{p50:.1f} ms / {p95:.1f} ms (target < 100 ms)",
            f"brute scan p50 {b50:,.0f} ms: {b50 / p50:,.0f}x faster",
        ),
        (
            "investigations",
            f"indexed vs brute force, same subjects found ({what}, first {len(brute_times)})",
            f"{agree}/{len(brute_times)}",
            f"hits per query median {statistics.median(len(f) for f in found):.0f}, "
            f"max {max(len(f) for f in found)}",
        ),
    ]


def postgres_rows() -> list[Row]:
    """The same on a real PostgreSQL started as the tests do (TAGWATCH_BENCH_POSTGRES=1):
    generated afresh with COPY each run (the server is temporary)."""
    from tests.backend.conftest import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        engine = make_engine(server.create_database())
        upgrade(engine)
        secs, n = generate_postgres(engine)
        out = measure(engine, "PostgreSQL")
        engine.dispose()
    finally:
        server.stop()
    made = f"generated {n:,} fixes in {secs:.0f} s ({n / secs:,.0f} fixes/s, COPY)"
    return [*out, ("investigations", "data set on PostgreSQL", made, "")]


def rows() -> list[Row]:
    path = db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lat_e7, lon_e7 = _to_e7(np.array([1234.5, -9876.0]), np.array([-5432.0, 8765.0]))
    for a, b, c in zip(lat_e7, lon_e7, _cells(lat_e7, lon_e7), strict=True):
        assert cell_of(int(a), int(b)) == int(c)
    made = ""
    if not path.exists():
        secs, n = generate(path)
        made = f"generated {n:,} fixes in {secs:.0f} s ({n / secs:,.0f} fixes/s)"
    engine = make_engine(f"sqlite:///{path}")
    out = measure(engine, "SQLite")
    engine.dispose()
    if made:
        out.append(("investigations", "data set on SQLite (cached under build/bench)", made, ""))
    if os.environ.get("TAGWATCH_BENCH_POSTGRES", "") not in ("", "0"):
        out += postgres_rows()
    return out


if __name__ == "__main__":
    for r in rows():
        print(" | ".join(r))
