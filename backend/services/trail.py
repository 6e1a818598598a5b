"""A subject's trail: its fixes in a time range from every tag it wore then, in time order
(the one reading of it: the trail route, the evidence export and the zone preview)."""

from __future__ import annotations

from sqlalchemy import Connection

from backend.investigations.evidence import FixRef
from backend.investigations.exports import trail_points
from backend.services.errors import Invalid

MAX_WINDOW_S = 31 * 86400


def window(start: int | None, end: int | None, now: float) -> tuple[int, int]:
    """[from, to] of a trail-like read: `to` defaults to now, `from` to a day before it; at
    most 31 days."""
    end = int(now) if end is None else end
    start = end - 86400 if start is None else start
    if end < start or end - start > MAX_WINDOW_S:
        raise Invalid("`to` must be after `from`, at most 31 days later")
    return start, end


def points(conn: Connection, subject_id: int, start: int, end: int) -> list[FixRef]:
    return trail_points(conn, subject_id, start, end)
