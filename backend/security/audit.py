"""The append-only, tamper-evident audit log.

Each record carries `prev_hash` (the previous record's hash) and `hash` = SHA-256 over
prev_hash and the record's canonical JSON. Editing a record changes its hash, deleting or
inserting one breaks the link of the next: `verify` finds the first broken record. The chain
proves integrity against someone who can edit rows but not recompute every later hash
unnoticed; docs/security.md says how to anchor the head hash outside the database.

Appends are serialized: on PostgreSQL by a transaction-scoped advisory lock, on SQLite by
the write lock the caller's transaction holds (open it with `database.IMMEDIATE`)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, insert, select, text

from backend import csv_cells
from backend.storage.database import IMMEDIATE, is_sqlite
from backend.storage.schema import audit_log

GENESIS = "0" * 64
# Arbitrary, fixed: the PostgreSQL advisory lock that serializes audit appends.
_PG_LOCK = 0x7461_6777  # "tagw"
# The fields the hash covers, in the canonical form (id is not covered: it is assigned by
# the database, and order is proven by the links).
HASHED = (
    "at",
    "actor",
    "action",
    "detail",
    "user_id",
    "unit_id",
    "subject_ids",
    "scope",
    "purpose",
    "request_id",
)
CSV_COLUMNS = ("id", *HASHED, "prev_hash", "hash")


@dataclass(frozen=True)
class Entry:
    """One audit record before it is chained."""

    actor: str
    action: str
    detail: dict[str, Any]
    user_id: int | None = None
    unit_id: int | None = None
    subject_ids: Sequence[int] | None = None
    scope: str | None = None
    purpose: str | None = None
    request_id: str | None = None


def canonical(record: dict[str, Any]) -> bytes:
    body = {k: record.get(k) for k in HASHED}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, record: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(record)).hexdigest()


def _lock(conn: Connection) -> None:
    if not is_sqlite(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})


def head(conn: Connection) -> str:
    """The hash of the newest record (GENESIS for an empty log)."""
    last = conn.execute(select(audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)).scalar()
    return str(last) if last else GENESIS


def append(conn: Connection, entry: Entry, at: float) -> int:
    """Append one record inside the caller's transaction; returns its id."""
    _lock(conn)
    record: dict[str, Any] = {
        "at": float(at),
        "actor": entry.actor,
        "action": entry.action,
        "detail": entry.detail,
        "user_id": entry.user_id,
        "unit_id": entry.unit_id,
        "subject_ids": sorted(entry.subject_ids) if entry.subject_ids is not None else None,
        # No empty strings where NULL is possible: the CSV export's empty cell is NULL.
        "scope": entry.scope or None,
        "purpose": entry.purpose or None,
        "request_id": entry.request_id or None,
    }
    # Round-trip the detail through JSON now so that what is hashed is exactly what the
    # database gives back (tuples become lists, keys become strings).
    record["detail"] = json.loads(json.dumps(record["detail"]))
    prev = head(conn)
    record["prev_hash"] = prev
    record["hash"] = chain_hash(prev, record)
    new_id = conn.execute(insert(audit_log).values(**record).returning(audit_log.c.id)).scalar()
    return int(new_id or 0)


def append_now(engine: Engine, entry: Entry, at: float) -> int:
    """Append in a transaction of its own."""
    with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
        return append(conn, entry, at)


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    head: str
    first_bad_id: int | None = None
    reason: str = ""


def verify_rows(rows: Iterable[RowMapping | dict[str, Any]]) -> Verification:
    prev = GENESIS
    n = 0
    for row in rows:
        rec = dict(row)
        n += 1
        if rec["prev_hash"] != prev:
            return Verification(False, n, prev, rec["id"], "prev_hash does not link")
        if chain_hash(prev, rec) != rec["hash"]:
            return Verification(False, n, prev, rec["id"], "hash does not match the record")
        prev = rec["hash"]
    return Verification(True, n, prev)


def verify(conn: Connection) -> Verification:
    """Walk the whole chain (streamed, oldest first)."""
    result = conn.execution_options(yield_per=1000).execute(
        select(audit_log).order_by(audit_log.c.id)
    )
    return verify_rows(result.mappings())


def rechain(conn: Connection) -> int:
    """Hash records that have no hash yet (those written before 0002_access), in id order,
    continuing from the last hashed record. Used once by the migration."""
    _lock(conn)
    cols = [audit_log.c[k] for k in CSV_COLUMNS]  # only 0002's columns: runs inside it
    rows = conn.execute(select(*cols).order_by(audit_log.c.id)).mappings().all()
    prev = GENESIS
    n = 0
    for row in rows:
        if row["hash"]:
            prev = row["hash"]
            continue
        rec = dict(row)
        h = chain_hash(prev, rec)
        conn.execute(
            audit_log.update().where(audit_log.c.id == row["id"]).values(prev_hash=prev, hash=h)
        )
        prev = h
        n += 1
    return n


def to_csv(rows: Iterable[RowMapping | dict[str, Any]]) -> Iterator[str]:
    """CSV lines (header first); JSON columns as compact JSON. Text cells are escaped against
    spreadsheet formulas (backend/csv_cells.py): what a login attempt typed as its username
    is shown, never run. `from_csv` reads the stored values back, to re-verify the chain."""
    buf = io.StringIO()
    writer = csv_cells.Writer(buf)
    writer.writerow(CSV_COLUMNS)
    yield buf.getvalue()
    for row in rows:
        buf.seek(0)
        buf.truncate()
        values = []
        for col in CSV_COLUMNS:
            v = row[col]
            if col in _JSON and v is not None:
                v = json.dumps(v, sort_keys=True, separators=(",", ":"))
            values.append("" if v is None else v)
        writer.writerow(values)
        yield buf.getvalue()


_JSON = ("detail", "subject_ids")
_INTEGERS = ("id", "user_id", "unit_id")
# Columns that may be NULL: an empty cell. `append` stores no empty strings in them, so an
# empty cell is NULL without ambiguity.
_NULLABLE = ("user_id", "unit_id", "subject_ids", "scope", "purpose", "request_id")


def from_csv(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The stored records of a `to_csv` export (its escaping undone), for `verify_rows`.
    Open the file with `newline=""`: a cell may hold a line break. ValueError names the
    line of a row that is not a record of the export."""
    reader = csv.DictReader(lines)
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        raise ValueError(f"not an audit export: the header must be {','.join(CSV_COLUMNS)}")
    for row in reader:
        if None in row or None in row.values():
            raise ValueError(f"line {reader.line_num}: {len(CSV_COLUMNS)} cells expected")
        rec: dict[str, Any] = {}
        for col in CSV_COLUMNS:
            cell = row[col]
            if cell == "" and col in _NULLABLE:
                rec[col] = None
            elif col in _JSON:
                rec[col] = json.loads(cell)
            elif col in _INTEGERS:
                rec[col] = int(cell)
            elif col == "at":
                rec[col] = float(cell)
            else:
                rec[col] = csv_cells.text(cell)
        yield rec
