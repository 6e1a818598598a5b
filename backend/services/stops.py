"""When ingest refuses a device's data because its wearer withdrew consent (consent.py): from
the recorded removal that ended the device's newest assignment. The registry reads this with
the device (backend/registry.py), so ingest's device cache carries it."""

from __future__ import annotations

from sqlalchemy import Connection, select

from backend.storage.schema import assignments, removal_tasks


def data_stop(conn: Connection, device: int) -> int | None:
    """From when (Unix s) ingest refuses this device's data: the removal that ended its
    newest assignment, when that assignment's wearer withdrew (None: accepted). Fitting the
    device to anyone again makes a newer assignment, which lifts the stop."""
    a, r = assignments.c, removal_tasks.c
    newest = conn.execute(
        select(a.subject_id, a.ends_at)
        .where(a.device == device)
        .order_by(a.starts_at.desc(), a.id.desc())
        .limit(1)
    ).first()
    if newest is None or newest.ends_at is None:
        return None
    stopped = conn.execute(
        select(r.id).where(
            r.subject_id == newest.subject_id,
            r.done_at.is_not(None),
            r.removed_at == newest.ends_at,
        )
    ).first()
    return None if stopped is None else int(newest.ends_at)
