"""A subject access request: the wearer's own data, every kind the evidence export knows
(trail as GeoJSON, GPX and KML, device events and alerts as CSV) over all the time any
device served them, plus their enrolments and consent, in the evidence export's bundle
with its hash manifest (backend/investigations/exports.py: the same code makes both, so the
wearer can verify their copy the same way a court can).

What is held is bounded by the retention purge (backend/storage/retention.py), so the
whole period is read; the route audits the disclosure with the files' hashes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from backend import csv_cells
from backend.investigations import exports as ex
from backend.services.consent import enrolment_rows
from backend.storage.schema import assignments

ENROLMENT_FILE = "enrolments.csv"
ENROLMENT_COLUMNS = (
    "id", "scheme", "consent_at", "sharing", "witnessed_by", "document_ref", "review_at",
    "withdrawn_at", "withdrawal_note", "exited_at", "removal_done_at", "removed_at",
)  # fmt: skip


def period(conn: Connection, subject_id: int, now: float) -> tuple[int, int]:
    """From the first assignment's start to now (or the last end, if later): every time a
    device could have recorded the subject."""
    a = assignments.c
    first, last_end = conn.execute(
        select(func.min(a.starts_at), func.max(a.ends_at)).where(a.subject_id == subject_id)
    ).one()
    t1 = max(int(now), int(last_end or 0))
    return (int(first) if first is not None else t1), t1


def enrolment_file(conn: Connection, subject_id: int) -> ex.ExportFile:
    rows = [
        {**r, "removal_done_at": (r["removal"] or {}).get("done_at"),
         "removed_at": (r["removal"] or {}).get("removed_at")}
        for r in enrolment_rows(conn, subject_id)
    ]  # fmt: skip
    data = csv_cells.table(rows, ENROLMENT_COLUMNS)
    return ex.ExportFile(ENROLMENT_FILE, data, len(rows), "text/csv")


def build(
    conn: Connection, subject_id: int, t0: int, t1: int, meta: dict[str, Any]
) -> list[ex.ExportFile]:
    """The files of the bundle (manifest and zip: ex.manifest, ex.bundle)."""
    files = ex.build_files(conn, subject_id, t0, t1, ex.FORMATS, meta)
    return [*files, enrolment_file(conn, subject_id)]
