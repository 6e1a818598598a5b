"""Outcomes of a subject's episode of monitoring, recorded by the officers of its unit for
evaluation (docs/operations.md, "Evaluation"): what happened (reoffended, recalled,
completed, withdrawn, other), on which civil date, with a note and, if known, the order it
ends. The cohort figures (backend/services/research.py) count them by kind."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from backend import bounds
from backend.services.errors import Conflict, Invalid
from backend.storage.schema import orders, outcomes

KINDS = ("reoffended", "recalled", "completed", "withdrawn", "other")
EARLIEST = date(2000, 1, 1)


def of_subject(conn: Connection, subject_id: int) -> list[Any]:
    q = select(outcomes).where(outcomes.c.subject_id == subject_id).order_by(outcomes.c.id)
    return list(conn.execute(q))


def get(conn: Connection, outcome_id: int) -> Any:
    return conn.execute(select(outcomes).where(outcomes.c.id == outcome_id)).one()


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
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}")
    today = datetime.fromtimestamp(now, UTC).date()
    if not EARLIEST <= occurred_on <= today:
        raise Invalid(f"occurred_on must be between {EARLIEST} and today ({today})")
    if order_id is not None:
        owner = conn.execute(select(orders.c.subject_id).where(orders.c.id == order_id)).scalar()
        if owner != subject_id:
            raise Invalid("order_id must name one of this subject's orders")
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
