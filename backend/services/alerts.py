"""Alerts: the filtered list, one alert with its episodes and history, the acknowledge and
resolve workflow (backend/rules/store.py owns the states), and the changes a live stream
follows (every raise, reopen, update, clear, acknowledgement and resolution is an
alert_actions row)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, func, select

from backend.rules import store
from backend.services.errors import Conflict
from backend.storage.schema import alert_actions, alert_episodes, alerts, subjects

STREAM_BATCH = 500


@dataclass(frozen=True)
class Filter:
    """Which alerts: of subjects in `visible` (the caller's, as SQL), and optionally of one
    owning unit, one subject, some types and states, overlapping [since, until]."""

    visible: Select[Any]
    unit: int | None = None
    subject: int | None = None
    types: Sequence[str] | None = None
    states: Sequence[str] | None = None
    since: int | None = None
    until: int | None = None

    def apply(self, q: Select[Any]) -> Select[Any]:
        q = q.where(alerts.c.subject_id.in_(self.visible))
        if self.unit is not None:
            q = q.where(subjects.c.unit_id == self.unit)
        if self.subject is not None:
            q = q.where(alerts.c.subject_id == self.subject)
        if self.types:
            q = q.where(alerts.c.type.in_(self.types))
        if self.states:
            q = q.where(alerts.c.state.in_(self.states))
        if self.since is not None:  # alerts whose condition overlaps [since, until]
            q = q.where((alerts.c.end.is_(None)) | (alerts.c.end >= self.since))
        if self.until is not None:
            q = q.where(alerts.c.start <= self.until)
        return q


def _base() -> Select[Any]:
    return select(alerts, subjects.c.unit_id).join(subjects, subjects.c.id == alerts.c.subject_id)


def listing(conn: Connection, which: Filter, limit: int, offset: int) -> list[Any]:
    """Newest first."""
    q = which.apply(_base()).order_by(alerts.c.start.desc(), alerts.c.id.desc())
    return list(conn.execute(q.limit(limit).offset(offset)))


def get(conn: Connection, alert_id: int) -> Any:
    return conn.execute(_base().where(alerts.c.id == alert_id)).one()


def episodes(conn: Connection, alert_id: int) -> list[Any]:
    q = select(alert_episodes).where(alert_episodes.c.alert_id == alert_id)
    return list(conn.execute(q.order_by(alert_episodes.c.start)))


def history(conn: Connection, alert_id: int) -> list[Any]:
    q = select(alert_actions).where(alert_actions.c.alert_id == alert_id)
    return list(conn.execute(q.order_by(alert_actions.c.id)))


def acknowledge(conn: Connection, alert_id: int, user_id: int, note: str | None, now: float) -> Any:
    """open -> acknowledged."""
    try:
        store.acknowledge(conn, alert_id, user_id, note, now)
    except store.WorkflowError as e:
        raise Conflict(str(e)) from e
    return get(conn, alert_id)


def resolve(
    conn: Connection, alert_id: int, user_id: int, outcome: str, note: str, now: float
) -> Any:
    """open or acknowledged -> resolved, with an outcome and a note."""
    try:
        store.resolve(conn, alert_id, user_id, outcome, note, now)
    except store.WorkflowError as e:
        raise Conflict(str(e)) from e
    return get(conn, alert_id)


def last_action(conn: Connection) -> int:
    """The newest alert action's id: where a stream that does not resume starts."""
    return int(conn.execute(select(func.max(alert_actions.c.id))).scalar() or 0)


def actions_after(conn: Connection, which: Filter, after_id: int) -> list[Any]:
    """The next alert actions after `after_id` (at most STREAM_BATCH), each with its alert
    (`action_id`, `action`)."""
    q = (
        which.apply(
            _base()
            .add_columns(
                alert_actions.c.id.label("action_id"), alert_actions.c.action.label("action")
            )
            .join(alert_actions, alert_actions.c.alert_id == alerts.c.id)
        )
        .where(alert_actions.c.id > after_id)
        .order_by(alert_actions.c.id)
        .limit(STREAM_BATCH)
    )
    return list(conn.execute(q))
