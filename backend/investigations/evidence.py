"""What puts a subject somewhere: their tags' fixes and their home unit's presence reports,
read from storage and attributed to subjects through the equipment assignment history.

Positions are stored per device; a device serves a subject over [starts_at, ends_at)
(`assignments`), so a tag moved between subjects keeps its history apart. Reads use the
indexes ingest chose (docs/scaling.md): candidates by (cell, ts) — the grid cells around the
place — then each candidate's trail by (device, ts)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Select, and_, func, or_, select

from backend.investigations.area import Area
from backend.rules.geo import home_point, which_home
from backend.storage.schema import (
    TAG,
    assignments,
    positions,
    presence,
    subject_monitoring,
    subjects,
    zones,
)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Tenure:
    """Device `device` served `subject` (as its tag, or its home unit) over [start, end)
    (end None: still)."""

    subject: int
    device: int
    start: int
    end: int | None

    def clip(self, lo: int, hi: int) -> tuple[int, int] | None:
        """[lo, hi] (inclusive event times) within the tenure, or None."""
        a = max(lo, self.start)
        b = hi if self.end is None else min(hi, self.end - 1)
        return (a, b) if a <= b else None


@dataclass(frozen=True)
class FixRef:
    """One fix as a correlation or an export reports it: degrees, accuracy in metres, the
    device that took it, and the caller's name for its source (GNSS, or the tag's home
    position in RF mode)."""

    t: int
    lat: float
    lon: float
    accuracy_m: float
    device: int
    source: str


@dataclass
class Fixes:
    """Fixes of several subjects, sorted by (subject, t): parallel numpy arrays."""

    subject: I64
    t: I64
    lat_e7: I64
    lon_e7: I64
    acc_m: F64
    device: I64
    source: I64

    @classmethod
    def empty(cls) -> Fixes:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z, np.zeros(0), z, z)

    def __len__(self) -> int:
        return len(self.t)

    def take(self, idx: npt.NDArray[Any]) -> Fixes:
        return Fixes(
            self.subject[idx],
            self.t[idx],
            self.lat_e7[idx],
            self.lon_e7[idx],
            self.acc_m[idx],
            self.device[idx],
            self.source[idx],
        )


@dataclass
class Home:
    """A subject's home: a `home` zone's centre (circle) or representative point."""

    subject: int
    lat: float
    lon: float
    zone_id: int


@dataclass(frozen=True)
class HomeStay:
    """The home unit heard the subject's tag over [start, end): at home."""

    subject: int
    start: int
    end: int
    tag: int
    home_unit: int
    # The presence records that open and close the stay (evidence), end None while open.
    opened_t: int
    closed_t: int | None
    # Which of the subject's homes (load_stays, geo.which_home); None: not known.
    home: Home | None = None


@dataclass
class Evidence:
    fixes: Fixes = field(default_factory=Fixes.empty)
    stays: list[HomeStay] = field(default_factory=list)
    homes: dict[int, Home] = field(default_factory=dict)
    tenures: list[Tenure] = field(default_factory=list)


# ---- reads --------------------------------------------------------------------------------


def _raw(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows as plain tuples straight from the DBAPI cursor: the hot reads of a correlation
    fetch tens of thousands of rows, where SQLAlchemy's per-row result machinery costs
    several times the database's own work. `sql` uses `?` placeholders (qmark); they become
    `%s` for drivers with the format/pyformat style (psycopg)."""
    if conn.dialect.paramstyle != "qmark":
        sql = sql.replace("?", "%s")
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(sql, tuple(params))
        return [tuple(r) for r in cur.fetchall()]
    finally:
        cur.close()


def _marks(n: int) -> str:
    return ", ".join("?" * n)


_FIX_COLUMNS = "device, ts, lat_e7, lon_e7, acc_dm, source"


def nearby_fixes(
    conn: Connection,
    area: Area,
    t0: int,
    t1: int,
    margin_m: float,
    visible: Select[Any] | None = None,
) -> tuple[Fixes, list[Tenure]]:
    """The fixes that can place anyone in the area during [t0, t1]: every fix within the
    area's bounding box plus `margin_m` ((cell, ts) index), and for each run of them the fix
    just before and just after (the other end of a segment that may cross the area). The
    neighbours are found from the devices' timestamps alone — an index-only scan of
    (device, ts) — and read by point look-ups, so a long window costs index entries, not
    table rows. Only devices serving a subject `visible` selects, while they served it."""
    lat_lo, lat_hi, lon_lo, lon_hi = area.bounds_e7(margin_m)
    sql = (
        f"SELECT {_FIX_COLUMNS} FROM positions WHERE ts BETWEEN ? AND ? "
        "AND lat_e7 BETWEEN ? AND ? AND lon_e7 BETWEEN ? AND ?"
    )
    params: list[Any] = [t0, t1, lat_lo, lat_hi, lon_lo, lon_hi]
    cells = area.cells(margin_m)
    if cells is not None:
        sql += f" AND cell IN ({_marks(len(cells))})"
        params += cells
    near = _raw(conn, sql, params)
    if not near:
        return Fixes.empty(), []
    served = tenures(conn, t0, t1, devices={int(r[0]) for r in near}, visible=visible)
    wanted = sorted({tn.device for tn in served})
    if not wanted:
        return Fixes.empty(), served
    rows = [r for r in near if r[0] in set(wanted)]
    stamps = np.array(
        _raw(
            conn,
            f"SELECT device, ts FROM positions WHERE device IN ({_marks(len(wanted))}) "
            "AND ts BETWEEN ? AND ? ORDER BY device, ts",
            [*wanted, t0, t1],
        ),
        dtype=np.int64,
    ).reshape(-1, 2)
    inside = np.array([(r[0], r[1]) for r in rows], dtype=np.int64)
    # A fix is in the box if (device, ts) is among the box's rows; out-of-box fixes next to
    # an in-box one of the same device are the far ends of the segments that matter.
    key_all = stamps[:, 0] * (1 << 42) + stamps[:, 1]
    is_in = np.isin(key_all, inside[:, 0] * (1 << 42) + inside[:, 1])
    same_next = np.r_[stamps[1:, 0] == stamps[:-1, 0], False]
    same_prev = np.r_[False, stamps[1:, 0] == stamps[:-1, 0]]
    nxt_in = np.r_[is_in[1:], False] & same_next
    prv_in = np.r_[False, is_in[:-1]] & same_prev
    extra = stamps[~is_in & (nxt_in | prv_in)]
    for dev in np.unique(extra[:, 0]) if len(extra) else []:
        ts = extra[extra[:, 0] == dev, 1].tolist()
        rows += _raw(
            conn,
            f"SELECT {_FIX_COLUMNS} FROM positions WHERE device = ? AND ts IN ({_marks(len(ts))})",
            [int(dev), *ts],
        )
    return _attribute(np.array(rows, dtype=np.int64), served, t0, t1), served


def tenures(
    conn: Connection,
    t0: int,
    t1: int,
    *,
    role: str = TAG,
    devices: Iterable[int] | None = None,
    subject_ids: Iterable[int] | None = None,
    visible: Select[Any] | None = None,
) -> list[Tenure]:
    """Assignments in `role` (a subject's tag, or its home unit) overlapping [t0, t1]
    (inclusive event times), for some devices and/or subjects, limited to the subjects
    `visible` selects (None: no limit)."""
    a = assignments.c
    q = select(a.subject_id, a.device, a.starts_at, a.ends_at).where(
        a.role == role, a.starts_at <= t1, or_(a.ends_at.is_(None), a.ends_at > t0)
    )
    if devices is not None:
        q = q.where(a.device.in_(sorted(set(devices))))
    if subject_ids is not None:
        q = q.where(a.subject_id.in_(sorted(set(subject_ids))))
    if visible is not None:
        q = q.where(a.subject_id.in_(visible))
    return [Tenure(int(r[0]), int(r[1]), int(r[2]), r[3]) for r in conn.execute(q)]


def served(
    conn: Connection, subject_id: int, role: str, t0: int, t1: int
) -> list[tuple[Tenure, tuple[int, int]]]:
    """The subject's devices in `role` over [t0, t1] (inclusive event times), each with the
    part of [t0, t1] it served: the bounds to read that device's records between."""
    out = []
    for tn in tenures(conn, t0, t1, role=role, subject_ids=[subject_id]):
        span = tn.clip(t0, t1)
        if span is not None:
            out.append((tn, span))
    return out


def load_fixes(conn: Connection, tenures: list[Tenure], t0: int, t1: int) -> Fixes:
    """Every fix of the tenures' devices in [t0, t1] while they served their subject,
    sorted by (subject, t). One statement over the (device, ts) index."""
    if not tenures:
        return Fixes.empty()
    c = positions.c
    devs = sorted({tn.device for tn in tenures})
    result = conn.execute(
        select(c.device, c.ts, c.lat_e7, c.lon_e7, c.acc_dm, c.source).where(
            c.device.in_(devs), c.ts.between(t0, t1)
        )
    )
    # Plain tuples: numpy probing SQLAlchemy Row objects as sequences costs 30x more.
    rows = [tuple(r) for r in result]
    if not rows:
        return Fixes.empty()
    return _attribute(np.array(rows, dtype=np.int64), tenures, t0, t1)


def _attribute(arr: npt.NDArray[np.int64], tenures: list[Tenure], t0: int, t1: int) -> Fixes:
    """Rows (device, ts, lat, lon, acc_dm, source) to Fixes of the subjects whose tenure
    covers each row's time, sorted by (subject, t)."""
    if len(arr) == 0:
        return Fixes.empty()
    dev, ts = arr[:, 0], arr[:, 1]
    parts_idx: list[I64] = []
    parts_sub: list[I64] = []
    for tn in tenures:
        span = tn.clip(t0, t1)
        if span is None:
            continue
        (idx,) = np.nonzero((dev == tn.device) & (ts >= span[0]) & (ts <= span[1]))
        parts_idx.append(idx)
        parts_sub.append(np.full(len(idx), tn.subject, dtype=np.int64))
    if not parts_idx:
        return Fixes.empty()
    idx = np.concatenate(parts_idx)
    sub = np.concatenate(parts_sub)
    order = np.lexsort((arr[idx, 1], sub))
    idx, sub = idx[order], sub[order]
    # The same fix stored twice cannot happen (ingest is idempotent), but two devices of one
    # subject can report the same second: both stay, in device order after time.
    return Fixes(
        sub,
        arr[idx, 1],
        arr[idx, 2],
        arr[idx, 3],
        arr[idx, 4].astype(np.float64) / 10.0,
        arr[idx, 0],
        arr[idx, 5],
    )


# Every subject's home point, parsed from the zones' GeoJSON, per database: a correlation
# needs all visible homes on every query. Any zone change bumps the subject's configuration
# (subject_monitoring.updated_at), which is part of the signature that invalidates it.
_HOMES: dict[str, tuple[tuple[Any, ...], dict[int, tuple[Home, ...]]]] = {}


def _all_homes(conn: Connection) -> dict[int, tuple[Home, ...]]:
    z = zones.c
    count, top = conn.execute(
        select(func.count(z.id), func.max(z.id)).where(z.kind == "home")
    ).one()
    sig = (count, top, conn.execute(select(func.max(subject_monitoring.c.updated_at))).scalar())
    key = str(conn.engine.url)
    cached = _HOMES.get(key)
    if cached is not None and cached[0] == sig:
        return cached[1]
    out: dict[int, tuple[Home, ...]] = {}
    q = select(z.id, z.subject_id, z.shape, z.geometry).where(z.kind == "home").order_by(z.id)
    for r in conn.execute(q):
        point = home_point(r.shape, r.geometry)
        if point is not None:
            sid = int(r.subject_id)
            out[sid] = (*out.get(sid, ()), Home(sid, point[1], point[0], int(r.id)))
    if len(_HOMES) > 8:
        _HOMES.clear()
    _HOMES[key] = (sig, out)
    return out


def load_homes(
    conn: Connection,
    *,
    visible: Select[Any] | None = None,
    subject_ids: Iterable[int] | None = None,
) -> dict[int, tuple[Home, ...]]:
    """Each subject's home points, one per `home` zone (in zone order)."""
    homes = _all_homes(conn)
    if visible is not None:
        allowed = {
            int(i)
            for i in conn.execute(select(subjects.c.id).where(subjects.c.id.in_(visible))).scalars()
        }
        homes = {s: h for s, h in homes.items() if s in allowed}
    if subject_ids is not None:
        wanted = set(subject_ids)
        homes = {s: h for s, h in homes.items() if s in wanted}
    return homes


def load_stays(
    conn: Connection,
    tenures: list[Tenure],
    t0: int,
    t1: int,
    homes: dict[int, tuple[Home, ...]] | None = None,
) -> list[HomeStay]:
    """Home stays overlapping [t0, t1] from presence transitions (the home unit reports a
    PRESENCE record when the tag arrives and when it leaves, docs/home-unit.md): the state
    at t0 comes from the latest record before it. With `homes` (load_homes), each stay at the
    one the proximity rule would place it (`stay_home`)."""
    out: list[HomeStay] = []
    p = presence.c
    for tn in tenures:
        first = len(out)
        span = tn.clip(t0, t1)
        if span is None:
            continue
        lo, hi = span
        before = conn.execute(
            select(p.ts, p.state, p.home_unit)
            .where(p.tag == tn.device, p.ts < lo, p.ts >= tn.start)
            .order_by(p.ts.desc(), p.id.desc())
            .limit(1)
        ).first()
        rows = [] if before is None else [before]
        rows += conn.execute(
            select(p.ts, p.state, p.home_unit)
            .where(p.tag == tn.device, p.ts.between(lo, hi))
            .order_by(p.ts, p.id)
        ).all()
        # The first record at or after hi closes a stay that is open at the window's end.
        after = conn.execute(
            select(p.ts, p.state, p.home_unit)
            .where(p.tag == tn.device, p.ts > hi)
            .order_by(p.ts, p.id)
            .limit(1)
        ).first()
        if after is not None:
            rows.append(after)
        opened: tuple[int, int] | None = None
        for ts, state, unit in rows:
            if state == 1 and opened is None:
                opened = (int(ts), int(unit))
            elif state == 0 and opened is not None:
                if ts > lo and opened[0] <= hi:
                    out.append(
                        HomeStay(tn.subject, opened[0], int(ts), tn.device, opened[1], opened[0],
                                 int(ts))
                    )  # fmt: skip
                opened = None
        if opened is not None and opened[0] <= hi:
            end = hi + 1 if tn.end is None else min(hi + 1, tn.end)
            out.append(HomeStay(tn.subject, opened[0], end, tn.device, opened[1], opened[0], None))
        if homes is not None:
            out[first:] = [stay_home(conn, tn, s, homes.get(tn.subject, ())) for s in out[first:]]
    return out


def stay_home(conn: Connection, tenure: Tenure, stay: HomeStay, homes: Sequence[Home]) -> HomeStay:
    """`stay` at its home among the subject's `homes`: the only one, or with several the one
    nearest the tag's last fix before the stay opened (geo.which_home, as the proximity rule
    places a tag its unit hears)."""
    fix = None
    if len(homes) > 1:
        last = nearest_fix(conn, [tenure], stay.opened_t, before=True)
        fix = None if last is None else (last[2] / 1e7, last[3] / 1e7)
    i = which_home([(h.lat, h.lon) for h in homes], fix)
    return replace(stay, home=None if i is None else homes[i])


def subject_names(conn: Connection, ids: Iterable[int]) -> dict[int, tuple[str, str, int]]:
    """id -> (reference, name, owning unit)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = conn.execute(
        select(subjects.c.id, subjects.c.reference, subjects.c.name, subjects.c.unit_id).where(
            subjects.c.id.in_(wanted)
        )
    )
    return {int(r.id): (r.reference, r.name, int(r.unit_id)) for r in rows}


def nearest_fix(
    conn: Connection, tenures: list[Tenure], t: int, before: bool
) -> tuple[int, int, int, int, float, int] | None:
    """The subject's last fix at or before t (before=True) or first at or after t, within
    its tenures: (device, ts, lat_e7, lon_e7, accuracy m, source)."""
    c = positions.c
    best: tuple[int, int, int, int, float, int] | None = None
    for tn in tenures:
        cond = c.ts <= t if before else c.ts >= t
        cond = and_(cond, c.ts >= tn.start)
        if tn.end is not None:
            cond = and_(cond, c.ts < tn.end)
        order = (c.ts.desc(),) if before else (c.ts.asc(),)
        r = conn.execute(
            select(c.device, c.ts, c.lat_e7, c.lon_e7, c.acc_dm, c.source)
            .where(c.device == tn.device, cond)
            .order_by(*order)
            .limit(1)
        ).first()
        if r is None:
            continue
        cand = (int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4] / 10.0, int(r[5]))
        if best is None or (cand[1] > best[1] if before else cand[1] < best[1]):
            best = cand
    return best
