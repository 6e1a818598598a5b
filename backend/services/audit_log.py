"""Reading the audit log (auditors): search, export and chain verification over
backend/security/audit.py's hash-chained records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, select

from backend.security import audit
from backend.storage.schema import audit_log, subjects

SCAN_BATCH = 500  # rows a search reads at a time while it filters by subject


@dataclass(frozen=True)
class Query:
    """Which records: a time range, a user, a unit, a subject (by id or by reference), an
    action prefix, an actor."""

    since: float | None = None
    until: float | None = None
    user_id: int | None = None
    unit_id: int | None = None
    subject_id: int | None = None
    action: str | None = None
    actor: str | None = None
    subject: str | None = None  # a subject reference

    def _select(self) -> Select[Any]:
        q = select(audit_log).order_by(audit_log.c.id)
        if self.since is not None:
            q = q.where(audit_log.c.at >= self.since)
        if self.until is not None:
            q = q.where(audit_log.c.at < self.until)
        if self.user_id is not None:
            q = q.where(audit_log.c.user_id == self.user_id)
        if self.unit_id is not None:
            q = q.where(audit_log.c.unit_id == self.unit_id)
        if self.action:
            q = q.where(audit_log.c.action.startswith(self.action, autoescape=True))
        if self.actor:
            q = q.where(audit_log.c.actor == self.actor)
        return q

    def _keep(self, conn: Connection) -> Any:
        # subject_ids is a JSON list: filtered here, portably, rather than in SQL. A
        # reference names subjects by id.
        named: set[int] | None = None
        if self.subject is not None:
            named = set(
                conn.execute(
                    select(subjects.c.id).where(subjects.c.reference == self.subject)
                ).scalars()
            )

        def keep(row: Any) -> bool:
            ids = row["subject_ids"] or ()
            if self.subject_id is not None and self.subject_id not in ids:
                return False
            return named is None or bool(named.intersection(ids))

        return keep

    def described(self) -> dict[str, Any]:
        """The filters given, for the audit record of the read itself."""
        return {k: v for k, v in vars(self).items() if v is not None}


def search(conn: Connection, query: Query, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` records after `after_id`, each with `subject_references` (the
    subjects' references, for people) where it names subjects."""
    keep = query._keep(conn)
    out: list[dict[str, Any]] = []
    result = conn.execution_options(yield_per=SCAN_BATCH).execute(
        query._select().where(audit_log.c.id > after_id)
    )
    for row in result.mappings():
        if keep(row):
            out.append(dict(row))
            if len(out) >= limit:
                break
    result.close()
    ids = {i for r in out for i in (r["subject_ids"] or ())}
    refs: dict[int, str] = {}
    if ids:
        refs = {
            r.id: r.reference
            for r in conn.execute(
                select(subjects.c.id, subjects.c.reference).where(subjects.c.id.in_(ids))
            )
        }
    for r in out:
        if r["subject_ids"]:
            r["subject_references"] = [refs.get(i, f"#{i}") for i in r["subject_ids"]]
    return out


def export_csv(engine: Engine, query: Query) -> Iterator[str]:
    """Every matching record as CSV (audit.to_csv), read in chunks on a connection of its
    own: the export may be long."""
    with engine.connect() as conn:
        keep = query._keep(conn)
        result = conn.execution_options(yield_per=1000).execute(query._select())
        yield from audit.to_csv(r for r in result.mappings() if keep(r))


def verify(conn: Connection) -> audit.Verification:
    return audit.verify(conn)
