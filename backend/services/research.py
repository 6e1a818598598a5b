"""Cohort figures for evaluation (docs/operations.md, "Evaluation"): a unit's subjects
monitored over a period, each under a pseudonymous id, with wear days, curfew nights kept
and broken, zone events, alerts by type and by outcome, and the outcomes officers recorded;
and the cohort's aggregate counts with small ones suppressed.

Every figure comes from the compliance report (backend/investigations/reports.py), the one
place curfew nights, zone events and alert outcomes are computed. Nothing that names or
places a subject leaves here: no name, reference, date of birth, position, zone geometry,
alert id or time; rows are ordered by pseudonym, not by id."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from typing import Any

from sqlalchemy import Connection, select

from backend import bounds
from backend.investigations import reports as rp
from backend.storage.schema import outcomes, subjects

PSEUDONYM_LABEL = b"tagwatch research pseudonym v1"
PSEUDONYM_HEX = 16  # 64 bits: no collision in any plausible cohort
ROW_COLUMNS = ["pid", "wear_days", "nights_kept", "nights_broken", "outcomes"]


def pseudonym_key(server_key: bytes) -> bytes:
    """The research key: derived from the server key, never stored. The same subject has
    the same pseudonym in every export (follow-up studies link them); without the server
    key no pseudonym leads back to a subject."""
    return hmac.new(server_key, PSEUDONYM_LABEL, hashlib.sha256).digest()


def pseudonym(key: bytes, subject_id: int) -> str:
    return hmac.new(key, b"subject:%d" % subject_id, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


def suppressed(count: int) -> int | None:
    """An aggregate count, or None when it is from 1 to below bounds.MIN_CELL_COUNT."""
    return None if 0 < count < bounds.MIN_CELL_COUNT else count


def cohort(
    conn: Connection, key: bytes, unit_id: int, start: int, end: int, now: float
) -> dict[str, Any]:
    """The unit's own subjects monitored in [start, end) (at most 92 days, as a report):
    `subject_ids` (for the audit record only), `rows` per pseudonym (empty when the cohort
    is smaller than bounds.MIN_CELL_COUNT) and `totals`, suppressed as `suppressed`."""
    rp.check_period(start, end)
    ids = conn.execute(
        select(subjects.c.id).where(subjects.c.unit_id == unit_id).order_by(subjects.c.id)
    ).scalars()
    recorded: dict[int, list[str]] = {}
    for sid, kind in conn.execute(
        select(outcomes.c.subject_id, outcomes.c.kind)
        .join(subjects, subjects.c.id == outcomes.c.subject_id)
        .where(subjects.c.unit_id == unit_id)
        .order_by(outcomes.c.id)
    ):
        recorded.setdefault(int(sid), []).append(str(kind))
    rows: list[dict[str, Any]] = []
    cohort_ids: list[int] = []
    totals: Counter[str] = Counter()
    for sid in ids:
        rep = rp.compliance(conn, int(sid), start, end, now)
        if not rep.monitored:
            continue
        cohort_ids.append(int(sid))
        row = {
            "pid": pseudonym(key, int(sid)),
            "wear_days": round(sum(b - a for a, b in rep.monitored) / 86400, 2),
            "nights_kept": rep.nights_kept,
            "nights_broken": rep.nights_broken,
            "zone_events": dict(Counter(e["type"] for e in rep.zone_events)),
            "alerts_by_type": rep.alerts_by_type,
            "alerts_by_outcome": rep.alerts_by_outcome,
            "outcomes": recorded.get(int(sid), []),
        }
        rows.append(row)
        totals.update(_counts(row))
    rows.sort(key=lambda r: r["pid"])
    return {
        "from": start,
        "to": end,
        "min_cell_count": bounds.MIN_CELL_COUNT,
        "subject_ids": cohort_ids,
        "subjects": suppressed(len(rows)),
        "totals": {k: suppressed(v) for k, v in sorted(totals.items())},
        "rows": rows if len(rows) >= bounds.MIN_CELL_COUNT else [],
    }


def _counts(row: dict[str, Any]) -> Counter[str]:
    c: Counter[str] = Counter(nights_kept=row["nights_kept"], nights_broken=row["nights_broken"])
    for prefix in ("zone_events", "alerts_by_type", "alerts_by_outcome"):
        c.update({f"{prefix}.{k}": v for k, v in row[prefix].items()})
    c.update(f"outcomes.{k}" for k in row["outcomes"])
    return c


def flat(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows as CSV cells (a column per zone event type, alert type, alert outcome; the
    outcomes joined by ";") and their columns."""
    out, extra = [], set()
    for r in rows:
        cells = {c: r[c] for c in ROW_COLUMNS}
        cells["outcomes"] = ";".join(r["outcomes"])
        for prefix in ("zone_events", "alerts_by_type", "alerts_by_outcome"):
            cells.update({f"{prefix}.{k}": v for k, v in r[prefix].items()})
        extra |= set(cells) - set(ROW_COLUMNS)
        out.append(cells)
    columns = ROW_COLUMNS + sorted(extra)
    return [{c: cells.get(c, 0) for c in columns} for cells in out], columns
