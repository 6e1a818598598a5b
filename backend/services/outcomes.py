"""Outcomes of a subject's episode of monitoring, recorded by the officers of its unit for
evaluation (docs/operations.md, "Evaluation"): what happened (reoffended, recalled,
completed, withdrawn, other), on which civil date, with a note and, if known, the order it
ends. The cohort figures (backend/services/research.py) count them by kind.

An outcome recorded wrongly is corrected in place (its last correction's time and author
kept; what changed, from what, is in the audit log), or withdrawn with a reason: kept, shown
as withdrawn, no longer counted, and no longer changeable. Withdrawn outcomes still count
towards the bound of outcomes per subject, so the table stays bounded."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from backend import bounds
from backend.rules.schedule import DEFAULT_TZ, local_date
from backend.services.errors import Conflict, Invalid, NotFound
from backend.storage.schema import orders, outcomes, subject_monitoring

KINDS = ("reoffended", "recalled", "completed", "withdrawn", "other")
EARLIEST = date(2000, 1, 1)


def of_subject(conn: Connection, subject_id: int) -> list[Any]:
    q = select(outcomes).where(outcomes.c.subject_id == subject_id).order_by(outcomes.c.id)
    return list(conn.execute(q))


def get(conn: Connection, outcome_id: int) -> Any:
    return conn.execute(select(outcomes).where(outcomes.c.id == outcome_id)).one()


def _check(
    conn: Connection, subject_id: int, kind: str, occurred_on: date, order_id: int | None,
    now: float,
) -> None:  # fmt: skip
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}")
    # The subject's civil date: officers record in local time, so "today" there is
    # tomorrow in UTC for an hour or more every night (00:00-01:00 in British summer time).
    tz = conn.execute(
        select(subject_monitoring.c.tz).where(subject_monitoring.c.subject_id == subject_id)
    ).scalar()
    today = local_date(int(now), tz or DEFAULT_TZ)
    if not EARLIEST <= occurred_on <= today:
        raise Invalid(f"occurred_on must be between {EARLIEST} and today ({today})")
    if order_id is not None:
        owner = conn.execute(select(orders.c.subject_id).where(orders.c.id == order_id)).scalar()
        if owner != subject_id:
            raise Invalid("order_id must name one of this subject's orders")


def record(
    conn: Connection,
    subject_id: int,
    kind: str,
    occurred_on: date,
    note: str,
    order_id: int | None,
    user_id: int,
    now: float,
) -> int:
    _check(conn, subject_id, kind, occurred_on, order_id, now)
    count = conn.execute(
        select(func.count()).where(outcomes.c.subject_id == subject_id)
    ).scalar_one()
    if count >= bounds.MAX_OUTCOMES:
        raise Conflict(f"a subject has at most {bounds.MAX_OUTCOMES} outcomes")
    return int(
        conn.execute(
            insert(outcomes)
            .values(
                subject_id=subject_id, order_id=order_id, kind=kind,
                occurred_on=occurred_on.isoformat(), note=note, recorded_by=user_id,
                recorded_at=now,
            )
            .returning(outcomes.c.id)
        ).scalar_one()
    )  # fmt: skip


FIELDS = ("kind", "occurred_on", "note", "order_id")


def _open(conn: Connection, outcome_id: int) -> Any:
    row = conn.execute(select(outcomes).where(outcomes.c.id == outcome_id)).first()
    if row is None:
        raise NotFound("outcome not found")
    if row.withdrawn_at is not None:
        raise Conflict("this outcome was withdrawn: record a new one instead")
    return row


def correct(
    conn: Connection, outcome_id: int, changes: dict[str, Any], user_id: int, now: float
) -> dict[str, Any]:
    """Change some of kind, occurred_on (a date), note, order_id, judged as when recorded.
    Returns what changed, each field as [before, after] (the note only as changed: its text
    stays out of the audit log); nothing changed, nothing is written."""
    row = _open(conn, outcome_id)
    new = {f: changes.get(f, getattr(row, f)) for f in FIELDS}
    if isinstance(new["occurred_on"], date):
        new["occurred_on"] = new["occurred_on"].isoformat()
    when = date.fromisoformat(new["occurred_on"])
    _check(conn, row.subject_id, new["kind"], when, new["order_id"], now)
    changed: dict[str, Any] = {
        f: [getattr(row, f), new[f]] for f in FIELDS if new[f] != getattr(row, f)
    }
    if changed:
        conn.execute(
            update(outcomes)
            .where(outcomes.c.id == outcome_id)
            .values(**{f: new[f] for f in changed}, corrected_at=now, corrected_by=user_id)
        )
    if "note" in changed:
        changed["note"] = True
    return changed


def withdraw(conn: Connection, outcome_id: int, reason: str, user_id: int, now: float) -> None:
    """Withdrawn: kept with who withdrew it, when and why; counted nowhere from now on."""
    _open(conn, outcome_id)
    conn.execute(
        update(outcomes)
        .where(outcomes.c.id == outcome_id, outcomes.c.withdrawn_at.is_(None))
        .values(withdrawn_at=now, withdrawn_by=user_id, withdrawal_reason=reason)
    )
