"""The live map: every subject the caller may see live with its last position, the presence
its home unit last reported, its equipment and whether it reports as its mode should; the
zones of those whose conditions it may also see; and the positions stored since a cursor,
which the live stream follows. A page is a fixed number of queries, whatever its length."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, func, select

from backend.security import access, roles
from backend.security.access import SubjectAccess, User
from backend.services import zones
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    assignments,
    devices,
    positions,
    presence,
    subjects,
)
from backend.web import freshness

STREAM_BATCH = 2000  # positions one poll of the stream reads at most


@dataclass(frozen=True)
class Fitted:
    """A device fitted to a subject now, and when it was fitted."""

    device: int
    since: int
    last_seen_at: float | None


@dataclass(frozen=True)
class LiveSubject:
    access: SubjectAccess
    tag: Fitted | None
    home_unit: Fitted | None
    position: Any  # the tag's newest positions row since it was fitted, or None
    presence: Any  # the home unit's newest presence report about the tag, or None
    home: tuple[float, float] | None  # the home zone's centre (lat, lon), with conditions
    freshness: freshness.Freshness | None


@dataclass(frozen=True)
class LiveMap:
    subjects: list[LiveSubject]
    zones: list[Any]  # rows of the listed subjects' zones the caller may see


def live_map(
    conn: Connection,
    user: User,
    live: Select[Any],
    conditions: Select[Any],
    now: float,
    limit: int,
    subject: int | None = None,
) -> LiveMap:
    """The subjects in `live` (or only `subject`), and the zones of those also in
    `conditions` (both the caller's, as SQL)."""
    q = select(subjects.c.id).where(subjects.c.id.in_(live))
    if subject is not None:
        q = q.where(subjects.c.id == subject)
    ids = list(conn.execute(q.order_by(subjects.c.id).limit(limit)).scalars())
    seen_by = access.subject_accesses(conn, user, ids, now)
    ids = [i for i in ids if i in seen_by and seen_by[i].can(roles.LIVE)]
    a = assignments.c
    fitted: dict[int, dict[str, tuple[int, int, int]]] = {}
    for r in conn.execute(
        select(a.id, a.subject_id, a.role, a.device, a.starts_at).where(
            a.subject_id.in_(ids),
            a.role.in_((TAG, HOME_UNIT)),
            a.starts_at <= now,
            (a.ends_at.is_(None)) | (a.ends_at > now),
        )
    ):
        fitted.setdefault(r.subject_id, {})[r.role] = (r.device, r.starts_at, r.id)
    tags = [f[TAG] for f in fitted.values() if TAG in f]
    heard = _last_seen(conn, [d for f in fitted.values() for d, _, _ in f.values()])
    last_fix = _newest(conn, positions, positions.c.device, [t[2] for t in tags])
    last_presence = _newest(conn, presence, presence.c.tag, [t[2] for t in tags])
    zone_rows = zones.of_subjects(conn, ids, conditions)
    homes: dict[int, tuple[float, float]] = {}
    for z in zone_rows:
        if z.kind == "home" and z.shape == "circle":
            lon, lat = z.geometry["coordinates"][:2]
            homes[z.subject_id] = (float(lat), float(lon))
    wears = []
    for sid in ids:
        f = fitted.get(sid, {})
        if TAG in f:
            pres = last_presence.get(f[TAG][2])
            unit = f.get(HOME_UNIT)
            wears.append(
                freshness.Fitted(
                    sid, f[TAG][0], unit[0] if unit else None, pres.state == 1 if pres else None
                )
            )
    fresh = freshness.read_many(conn, wears, now)
    out = []
    for sid in ids:
        f = fitted.get(sid, {})
        tag, unit = f.get(TAG), f.get(HOME_UNIT)
        out.append(
            LiveSubject(
                access=seen_by[sid],
                tag=Fitted(tag[0], tag[1], heard.get(tag[0])) if tag else None,
                home_unit=Fitted(unit[0], unit[1], heard.get(unit[0])) if unit else None,
                position=last_fix.get(tag[2]) if tag else None,
                presence=last_presence.get(tag[2]) if tag else None,
                home=homes.get(sid),
                freshness=fresh.get(sid),
            )
        )
    listed = set(ids)
    return LiveMap(out, [z for z in zone_rows if z.subject_id in listed])


def _last_seen(conn: Connection, device_ids: list[int]) -> dict[int, float | None]:
    if not device_ids:
        return {}
    q = select(devices.c.id, devices.c.last_seen_at).where(devices.c.id.in_(device_ids))
    return {r.id: r.last_seen_at for r in conn.execute(q)}


def _newest(conn: Connection, table: Any, device: Any, assignment_ids: list[int]) -> dict[int, Any]:
    """Per tag assignment (by id): the table's newest row about its device since it was
    fitted (positions: by event time; presence reports, which may lack one: as stored).
    One statement: a correlated subquery per assignment over the (device, time) index."""
    if not assignment_ids:
        return {}
    a = assignments.alias()
    row = table.alias()
    rd = row.c[device.name]
    order: tuple[Any, ...]
    if table is positions:
        order = (row.c.ts.desc(), row.c.id.desc())
        since = row.c.ts >= a.c.starts_at
    else:
        order = (row.c.id.desc(),)
        since = (row.c.ts.is_(None)) | (row.c.ts >= a.c.starts_at)
    newest = (
        select(row.c.id).where(rd == a.c.device, since).order_by(*order).limit(1).scalar_subquery()
    )
    pairs = select(a.c.id.label("assignment"), newest.label("row")).where(
        a.c.id.in_(assignment_ids)
    )
    found = {r.row: r.assignment for r in conn.execute(pairs) if r.row is not None}
    if not found:
        return {}
    rows = conn.execute(select(table).where(table.c.id.in_(list(found))))
    return {found[r.id]: r for r in rows}


def positions_after(conn: Connection, visible: Select[Any], after_id: int) -> tuple[int, list[Any]]:
    """Positions stored after `after_id` of tags fitted (at the fix's time) to subjects in
    `visible`, each with its `subject_id`; and the cursor to continue from."""
    a, p = assignments.c, positions.c
    spans: dict[int, list[tuple[int, int, int | None]]] = {}
    for span in conn.execute(
        select(a.device, a.subject_id, a.starts_at, a.ends_at).where(
            a.role == TAG, a.subject_id.in_(visible)
        )
    ):
        spans.setdefault(span.device, []).append((span.subject_id, span.starts_at, span.ends_at))
    head = int(conn.execute(select(func.max(p.id))).scalar() or 0)
    if not spans or head <= after_id:
        return max(head, after_id), []
    rows = conn.execute(
        select(p.id, p.device, p.ts, p.lat_e7, p.lon_e7, p.acc_dm, p.source, p.late)
        .where(p.id > after_id, p.id <= head, p.device.in_(list(spans)))
        .order_by(p.id)
        .limit(STREAM_BATCH)
    ).all()
    out = []
    for r in rows:
        for sid, s, e in spans[r.device]:
            if s <= r.ts and (e is None or r.ts < e):
                out.append((sid, r))
                break
    # A full batch continues from its last row; otherwise everything up to head was seen.
    cursor = rows[-1].id if len(rows) == STREAM_BATCH else head
    return cursor, out


def last_position_id(conn: Connection) -> int:
    """The newest position's id: where a stream that does not resume starts."""
    return int(conn.execute(select(func.max(positions.c.id))).scalar() or 0)
