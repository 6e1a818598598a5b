"""What ingest writes for a batch of received frames, and the reads it makes inside the same
write transaction (backend/ingest.py runs them, in its `persist` step).

- Frames are inserted or ignored on their unique key (device, boot, seq): the database, not
  any one worker, decides what is a duplicate, so several workers on a shared subscription
  never store a frame twice. RETURNING names the rows actually inserted.
- Rows are written in event-time order per device (positions, device events, presence), so
  nothing read later depends on the order frames arrived in.
- The hot inserts (frames and positions) go to the driver directly: SQLAlchemy Core costs
  ~8 us of parameter processing per row, more than SQLite's own insert. Their statements are
  built from the schema's Table objects, so there is still one schema; the checks below
  fail at import if the schema or the FIX record layout ever drift apart from the row tuples
  built here.
- With a durable rule sink, the batch's rules_pending row goes in the same transaction: what
  the rules have still to evaluate (backend/rules/sink.py).
- On an SQLite file, writers queue for the one write lock through WriterQueue."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Connection,
    Double,
    Engine,
    Table,
    bindparam,
    case,
    func,
    insert,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from backend.storage.schema import (
    cell_of,
    device_events,
    devices,
    frames,
    positions,
    presence,
    rules_pending,
    security_events,
)
from firmware import frame as fr

MAX_RAW_EVIDENCE = 8192  # bytes of a rejected payload kept in its security event

FrameKey = tuple[int, int, int]  # (device, boot, seq)
# A security event: (reason, device or None, topic, detail, the payload as evidence).
SecurityEvent = tuple[str, int | None, str, str, bytes]


class WriterQueue:
    """On an SQLite file, workers take turns at the one write lock through an OS file lock
    (flock) held around each write transaction. SQLite's own lock stays the authority; this
    only changes how a waiting worker wakes: at once when the lock is released, instead of
    SQLite's busy handler sleeping in growing steps (1, 2, 5, 10 ... 100 ms) and polling,
    which left a second worker idle for much of the time the first was not writing.
    A no-op for other databases (PostgreSQL takes concurrent writers)."""

    _fds: dict[str, int] = {}  # one open lock file per database per process

    def __init__(self, engine: Engine) -> None:
        self.fd: int | None = None
        path = engine.url.database
        if engine.dialect.name == "sqlite" and path and path != ":memory:":
            lock = os.path.abspath(path) + "-writer.lock"
            if lock not in self._fds:
                self._fds[lock] = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            self.fd = self._fds[lock]

    def __enter__(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)


# ---- row layouts -----------------------------------------------------------------------

_FIX_TAIL = fr.SPECS[fr.FIX][2][3:]  # acc_dm ... hdop_d, in wire order
POSITION_COLUMNS = (
    "device",
    "ts",
    "lat_e7",
    "lon_e7",
    "cell",
    *_FIX_TAIL,
    "late",
    "frame_id",
    "idx",
)
FRAME_COLUMNS = (
    "device",
    "boot",
    "seq",
    "mtype",
    "flags",
    "ts",
    "received_at",
    "via_unit",
    "late",
    "raw",
)
# The row tuples take the fix's fields in wire order: dt, lat, lon first, the rest (the
# tail) into position columns of the same names, which the loop below checks exist.
if fr.SPECS[fr.FIX][2][:3] != ("dt", "lat_e7", "lon_e7"):
    raise RuntimeError("the position rows' FIX unpacking does not match the codec's FIX record")
for _table, _cols in ((positions, POSITION_COLUMNS), (frames, FRAME_COLUMNS)):
    if sorted(_cols) != sorted(c.name for c in _table.columns if c.name != "id"):
        raise RuntimeError(f"the {_table.name} row layout does not match the schema")


def position_heads(device: int, ts: int, fixes: Iterable[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Position rows, lacking (late, frame_id, idx), of a frame's FIX value tuples (wire
    order) at frame time `ts`. Built before the write transaction: it is most of a batch's
    work and needs nothing from the database."""
    return [
        (device, ts - dt, lat, lon, cell_of(lat, lon), acc, kind, src, sats, speed, course, hdop)
        for dt, lat, lon, acc, kind, src, sats, speed, course, hdop in fixes
    ]


# ---- reads inside the write transaction ----------------------------------------------------


def newest_event_times(conn: Connection, device_ids: Iterable[int]) -> dict[int, int]:
    """Each device's newest stored event time, where it has one."""
    return {
        row.id: row.last_event_at
        for row in conn.execute(
            select(devices.c.id, devices.c.last_event_at).where(
                devices.c.id.in_(sorted(set(device_ids)))
            )
        )
        if row.last_event_at is not None
    }


def first_received(conn: Connection, keys: Sequence[FrameKey]) -> dict[FrameKey, float]:
    """When each of these stored frames was first received (backend time)."""
    return {
        (r.device, r.boot, r.seq): r.received_at
        for r in conn.execute(
            select(frames.c.device, frames.c.boot, frames.c.seq, frames.c.received_at).where(
                tuple_(frames.c.device, frames.c.boot, frames.c.seq).in_(keys)
            )
        )
    }


def stored_frames(conn: Connection, keys: Sequence[FrameKey]) -> dict[FrameKey, tuple[int, bool]]:
    """The stored id and late flag of each of these frames."""
    return {
        (r.device, r.boot, r.seq): (r.id, bool(r.late))
        for r in conn.execute(
            select(frames.c.id, frames.c.device, frames.c.boot, frames.c.seq, frames.c.late).where(
                tuple_(frames.c.device, frames.c.boot, frames.c.seq).in_(keys)
            )
        )
    }


# ---- writes ------------------------------------------------------------------------------

_FRAMES_CONFLICT = "ON CONFLICT (device, boot, seq) DO NOTHING RETURNING id, device, boot, seq"
_DEVICE_TIME = itemgetter(0, 1)


def insert_frames(conn: Connection, rows: Sequence[Sequence[Any]]) -> dict[FrameKey, int]:
    """Insert-or-ignore frame rows (FRAME_COLUMNS order) on (device, boot, seq); returns the
    ids of the rows actually inserted, by key: the rest were already stored."""
    returned = _insert_rows(conn, frames, FRAME_COLUMNS, rows, _FRAMES_CONFLICT)
    return {(dev, boot, seq): fid for fid, dev, boot, seq in returned}


def insert_positions(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Position rows (POSITION_COLUMNS order), written in event-time order per device (rows
    that come in frame order are nearly sorted already, so the sort is nearly linear)."""
    rows.sort(key=_DEVICE_TIME)
    _insert_rows(conn, positions, POSITION_COLUMNS, rows)


def insert_device_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """device_events rows, in event-time order per device (undated ones first)."""
    if rows:
        rows.sort(key=lambda r: (r["device"], r["ts"] or 0))
        conn.execute(insert(device_events), rows)


def insert_presence(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """presence rows, in event-time order per tag (undated ones first)."""
    if rows:
        rows.sort(key=lambda r: (r["tag"], r["ts"] or 0))
        conn.execute(insert(presence), rows)


def update_devices(
    conn: Connection, newest: dict[int, int | None], heard: set[int], now: float
) -> None:
    """Raise each device's newest event time to `newest[device]` (None: no calendar time,
    nothing to raise) and, for the devices in `heard`, set when the backend last heard from
    it to `now`."""
    if not newest:
        return
    high: BindParameter[int | None] = bindparam("high", type_=BigInteger)
    seen: BindParameter[float | None] = bindparam("seen", type_=Double)
    stmt = (
        devices.update()
        .where(devices.c.id == bindparam("dev"))
        .values(
            last_seen_at=func.coalesce(seen, devices.c.last_seen_at),
            last_event_at=case(
                (high.is_(None), devices.c.last_event_at),
                (devices.c.last_event_at.is_(None), high),
                (devices.c.last_event_at < high, high),
                else_=devices.c.last_event_at,
            ),
        )
    )
    conn.execute(
        stmt,
        [
            {"dev": d, "high": h, "seen": now if d in heard else None}
            for d, h in sorted(newest.items())
        ],
    )


def insert_security_events(
    conn: Connection, now: float, events: Sequence[SecurityEvent]
) -> list[int]:
    """Refusals, with the payload kept as evidence (up to MAX_RAW_EVIDENCE bytes); returns
    their ids, in the order given."""
    if not events:
        return []
    return list(
        conn.execute(
            insert(security_events).returning(security_events.c.id, sort_by_parameter_order=True),
            [
                {
                    "at": now,
                    "reason": reason,
                    "device": device,
                    "topic": topic[:255],
                    "detail": detail,
                    "raw": raw[:MAX_RAW_EVIDENCE],
                }
                for reason, device, topic, detail, raw in events
            ],
        ).scalars()
    )


def insert_pending(
    conn: Connection, token: str, now: float, frame_ids: Sequence[int], refusal_ids: Sequence[int]
) -> None:
    """The batch's hand-over to the rules, to be settled by the transaction that evaluates
    it (backend/rules/sink.py). Ignored if a row of that token exists: an earlier attempt
    at the same batch committed, and its row already names what the batch stored."""
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        dialect_insert(rules_pending)
        .values(token=token, at=now, frames=list(frame_ids), refusals=list(refusal_ids))
        .on_conflict_do_nothing(index_elements=[rules_pending.c.token])
    )


# SQLite: many rows per INSERT ... VALUES (...), (...), ~40 % less time per row than
# executemany (measured, docs/scaling.md). PostgreSQL: one INSERT ... SELECT FROM unnest() of
# one binary (%b) array per column, so the statement text stays short: psycopg re-parses a
# long query text on every execution (1.5 ms per 10-fix frame with multi-row VALUES).
_MAX_PARAMETERS = 999  # SQLite's historical per-statement limit


def _insert_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    suffix: str = "",
) -> list[Any]:
    """INSERT rows (tuples in `columns` order) in bulk; returns what the RETURNING clause
    in `suffix` yields."""
    if not rows:
        return []
    head = f"INSERT INTO {table.name} ({', '.join(columns)}) "
    tail = " " + suffix if suffix else ""
    out: list[Any] = []
    if conn.dialect.name == "postgresql":
        arrays = ", ".join(
            f"%b::{table.c[name].type.compile(dialect=conn.dialect)}[]" for name in columns
        )
        sql = f"{head}SELECT * FROM unnest({arrays}){tail}"
        result = conn.exec_driver_sql(sql, tuple(list(col) for col in zip(*rows, strict=True)))
        return list(result.all()) if suffix else out
    if conn.dialect.paramstyle != "qmark":
        raise RuntimeError(f"unsupported database {conn.dialect.name}")
    one = "(" + ", ".join(["?"] * len(columns)) + ")"
    per = _MAX_PARAMETERS // len(columns)
    for i in range(0, len(rows), per):
        chunk = rows[i : i + per]
        sql = f"{head}VALUES {', '.join([one] * len(chunk))}{tail}"
        result = conn.exec_driver_sql(sql, tuple([x for row in chunk for x in row]))
        if suffix:
            out += result.all()
    return out
