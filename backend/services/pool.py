"""The unit's tag pool: which tags are free, fitted, charging, being cleaned, faulty or
retired, with every change kept (tag_states), and each tag's battery health across the
assignments it served, from its own battery reports.

Fitting and removal are the equipment assignments (assignments.py, and a withdrawal's
removal, consent.py): an assignment of a pool tag moves it to `fitted`, its end
to `removed`; nobody sets those two states by hand. A tag outside every pool (never added)
is not tracked, and its assignments work as before.

Battery health: while a tag is worn and not charging, its level falls; the median fall in
percentage points per hour between consecutive reports of one assignment is that
assignment's drain. A cell that wears out drains faster: a tag whose latest drain is
SERVICE_DRAIN_RATIO times its first is due for service."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from backend.services.errors import Conflict, Invalid
from backend.storage.schema import (
    TAG,
    assignments,
    device_events,
    devices,
    subjects,
    tag_states,
)

IN_STOCK = "in_stock"
CHARGING = "charging"
FITTED = "fitted"
REMOVED = "removed"
CLEANING = "cleaning"
FAULTY = "faulty"
RETIRED = "retired"
STATES = (IN_STOCK, CHARGING, FITTED, REMOVED, CLEANING, FAULTY, RETIRED)
# Free: may be fitted now.
FREE = (IN_STOCK, CHARGING)
# What an officer may move a tag to from each state (fitted and removed come only from
# assignments; a retired tag stays retired).
MOVES: dict[str, tuple[str, ...]] = {
    IN_STOCK: (CHARGING, CLEANING, FAULTY, RETIRED),
    CHARGING: (IN_STOCK, FAULTY, RETIRED),
    FITTED: (),
    REMOVED: (CLEANING, CHARGING, FAULTY),
    CLEANING: (IN_STOCK, CHARGING, FAULTY),
    FAULTY: (IN_STOCK, RETIRED),
    RETIRED: (),
}
SERVICE_DRAIN_RATIO = 1.5
# Consecutive reports further apart than this say nothing about the drain (a tag off, out
# of reach): the charging rule's gap (backend/rules/charging.py) uses the same 6 h.
MAX_REPORT_GAP_S = 6 * 3600
# Battery health reads the tag's newest assignments only, so the pool view stays cheap.
HEALTH_ASSIGNMENTS = 10
FLAG_CHARGING = 1  # battery record flags (firmware/frame.py BATTERY)


@dataclass
class AssignmentHealth:
    assignment_id: int
    subject_id: int
    starts_at: int
    ends_at: int | None
    reports: int
    min_level: int | None
    drain_pct_per_h: float | None


@dataclass
class TagEntry:
    device: int
    state: str
    since: float
    assignment_id: int | None
    health: list[AssignmentHealth] = field(default_factory=list)
    due_for_service: bool = False


def _latest(conn: Connection, device: int) -> Any:
    s = tag_states.c
    return conn.execute(
        select(tag_states).where(s.device == device).order_by(s.id.desc()).limit(1)
    ).first()


def unit_of(conn: Connection, device: int) -> int | None:
    """The unit whose pool holds the tag (None: in no pool)."""
    row = _latest(conn, device)
    return None if row is None else int(row.unit_id)


def _append(
    conn: Connection,
    device: int,
    unit_id: int,
    state: str,
    user_id: int | None,
    now: float,
    note: str = "",
    assignment_id: int | None = None,
) -> None:
    conn.execute(
        insert(tag_states).values(
            device=device,
            unit_id=unit_id,
            state=state,
            at=now,
            user_id=user_id,
            assignment_id=assignment_id,
            note=note,
        )
    )


def add(conn: Connection, device: int, unit_id: int, user_id: int, now: float, note: str) -> str:
    """Take a registered tag into the unit's pool; returns its state (fitted if it is
    assigned now, else in stock)."""
    row = conn.execute(
        select(devices.c.kind, devices.c.retired_at).where(devices.c.id == device)
    ).first()
    if row is None or row.kind != TAG:
        raise Invalid(f"device {device} is not a registered tag")
    if row.retired_at is not None:
        raise Invalid(f"tag {device} is retired")
    if _latest(conn, device) is not None:
        raise Conflict(f"tag {device} is already in a pool")
    a = assignments.c
    fitted = conn.execute(
        select(a.id, subjects.c.unit_id)
        .join(subjects, subjects.c.id == a.subject_id)
        .where(a.device == device, a.ends_at.is_(None))
    ).first()
    if fitted is not None and fitted.unit_id != unit_id:
        raise Conflict(f"tag {device} is fitted to another unit's subject")
    state = IN_STOCK if fitted is None else FITTED
    _append(conn, device, unit_id, state, user_id, now, note, fitted.id if fitted else None)
    return state


def move(conn: Connection, device: int, state: str, user_id: int, now: float, note: str) -> None:
    """An officer's change of state (charging, cleaning, faulty, back in stock, retired)."""
    row = _latest(conn, device)
    if row is None:
        raise Conflict(f"tag {device} is in no pool")
    if state not in MOVES[row.state]:
        allowed = ", ".join(MOVES[row.state]) or "nothing (it changes with its assignment)"
        raise Conflict(f"a tag {row.state} can move to {allowed}, not {state}")
    if state == RETIRED:
        # The registry's meaning of retired: its frames are refused from now on.
        conn.execute(update(devices).where(devices.c.id == device).values(retired_at=now))
    _append(conn, device, int(row.unit_id), state, user_id, now, note)


def assignment_started(
    conn: Connection, device: int, assignment_id: int, user_id: int | None, now: float
) -> None:
    """A tag was fitted: a pool tag must be free (not faulty, dirty or retired)."""
    row = _latest(conn, device)
    if row is None:
        return
    if row.state not in FREE:
        raise Conflict(f"tag {device} is {row.state}; fit a tag that is in stock or charging")
    _append(conn, device, int(row.unit_id), FITTED, user_id, now, "", assignment_id)


def remove(
    conn: Connection, assignment_id: int, ends_at: int, user_id: int | None, now: float
) -> None:
    """The equipment came off: the assignment ends at `ends_at`, a pool tag is removed."""
    a = assignments.c
    device = conn.execute(select(a.device).where(a.id == assignment_id)).scalar_one()
    conn.execute(update(assignments).where(a.id == assignment_id).values(ends_at=ends_at))
    row = _latest(conn, device)
    if row is not None and row.state == FITTED:
        _append(conn, device, int(row.unit_id), REMOVED, user_id, now, "", assignment_id)


def history(conn: Connection, device: int) -> list[dict[str, Any]]:
    s = tag_states.c
    rows = conn.execute(select(tag_states).where(s.device == device).order_by(s.id))
    return [dict(r._mapping) for r in rows]


def drain(reports: list[tuple[int, int, int]]) -> float | None:
    """Median fall in level (points per hour) between consecutive (t, level, flags) reports
    while not charging; None without two such reports."""
    rates = []
    for (t0, l0, f0), (t1, l1, f1) in itertools.pairwise(reports):
        dt = t1 - t0
        if (f0 | f1) & FLAG_CHARGING or not 0 < dt <= MAX_REPORT_GAP_S or l1 > l0:
            continue
        rates.append((l0 - l1) * 3600 / dt)
    return round(statistics.median(rates), 3) if rates else None


def battery_health(conn: Connection, device: int, now: float) -> list[AssignmentHealth]:
    """Per assignment of the tag (newest HEALTH_ASSIGNMENTS, oldest first), its battery."""
    a, e = assignments.c, device_events.c
    spans = conn.execute(
        select(a.id, a.subject_id, a.starts_at, a.ends_at)
        .where(a.device == device, a.role == TAG)
        .order_by(a.starts_at.desc(), a.id.desc())
        .limit(HEALTH_ASSIGNMENTS)
    ).all()
    out: list[AssignmentHealth] = []
    for s in reversed(spans):
        end = s.ends_at if s.ends_at is not None else int(now)
        reports = [
            (int(r.ts), int(r.data.get("level", 0)), int(r.data.get("flags", 0)))
            for r in conn.execute(
                select(e.ts, e.data)
                .where(e.device == device, e.kind == "battery", e.ts.between(s.starts_at, end))
                .order_by(e.ts, e.id)
            )
        ]
        out.append(
            AssignmentHealth(
                int(s.id),
                int(s.subject_id),
                int(s.starts_at),
                s.ends_at,
                len(reports),
                min((lv for _, lv, _ in reports), default=None),
                drain(reports),
            )
        )
    return out


def due_for_service(health: list[AssignmentHealth]) -> bool:
    drains = [h.drain_pct_per_h for h in health if h.drain_pct_per_h]
    return len(drains) >= 2 and drains[-1] >= SERVICE_DRAIN_RATIO * drains[0]


def _in_pool(unit_id: int) -> Any:
    """The newest state row of every tag in this unit's pool, by tag."""
    s = tag_states.c
    newest = select(func.max(s.id)).group_by(s.device).scalar_subquery()
    return select(tag_states).where(s.id.in_(newest), s.unit_id == unit_id).order_by(s.device)


def unit_tags(conn: Connection, unit_id: int) -> list[int]:
    """The tags in this unit's pool now, retired ones left out."""
    rows = conn.execute(_in_pool(unit_id))
    return [int(r.device) for r in rows if r.state != RETIRED]


def unit_pool(conn: Connection, unit_id: int, now: float) -> list[TagEntry]:
    """Every tag whose newest state is in this unit's pool, retired ones included."""
    rows = conn.execute(_in_pool(unit_id))
    out = []
    for r in rows:
        entry = TagEntry(int(r.device), r.state, float(r.at), r.assignment_id)
        if r.state != RETIRED:
            entry.health = battery_health(conn, entry.device, now)
            entry.due_for_service = due_for_service(entry.health)
        out.append(entry)
    return out


def counts(entries: list[TagEntry]) -> dict[str, Any]:
    """By state, plus free (in stock or charging) and due for service, and the summary
    sentence the pool view shows ("3 free, 1 due for service")."""
    by_state = Counter(t.state for t in entries)
    free = sum(by_state[s] for s in FREE)
    due = sum(1 for t in entries if t.due_for_service)
    return {
        "by_state": {s: by_state[s] for s in STATES},
        "free": free,
        "due_for_service": due,
        "summary": f"{free} free, {due} due for service",
    }
