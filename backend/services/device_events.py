"""A subject's timeline: what its tag and home unit reported while fitted to it (tamper,
battery, charging, mode, link, status...) and the home unit's presence reports about the
tag (kind `presence`, data `state` 1 home / 0 away), newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from backend.services.assignments import within
from backend.storage.schema import HOME_UNIT, TAG, assignments, device_events, presence


def timeline(
    conn: Connection, subject_id: int, start: int, end: int, limit: int
) -> list[dict[str, Any]]:
    a, e, q = assignments.c, device_events.c, presence.c
    out: list[dict[str, Any]] = []
    for dev, role, s, until in conn.execute(
        # The subject's own devices: a victim's device linked to its order is the victim's
        # (read only with the victim scope: backend/services/victims.py).
        select(a.device, a.role, a.starts_at, a.ends_at).where(
            a.subject_id == subject_id, a.role.in_((TAG, HOME_UNIT))
        )
    ):
        span = within((s, until), start, end)
        if span is None:
            continue
        for r in conn.execute(
            select(e.ts, e.kind, e.data, e.late)
            .where(e.device == dev, e.ts.between(*span))
            .order_by(e.ts.desc())
            .limit(limit)
        ):
            data = r.data if isinstance(r.data, dict) else {"value": r.data}
            out.append({"t": r.ts, "device": dev, "role": role, "kind": r.kind, "data": data,
                        "late": bool(r.late)})  # fmt: skip
        if role != TAG:
            continue
        for p in conn.execute(
            select(q.ts, q.home_unit, q.state, q.rssi, q.late)
            .where(q.tag == dev, q.ts.between(*span))
            .order_by(q.ts.desc())
            .limit(limit)
        ):
            out.append({"t": p.ts, "device": p.home_unit, "role": HOME_UNIT, "kind": "presence",
                        "data": {"state": p.state, "rssi": p.rssi, "tag": dev},
                        "late": bool(p.late)})  # fmt: skip
    out.sort(key=lambda x: x["t"] or 0, reverse=True)
    return out[:limit]
