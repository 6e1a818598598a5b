"""A subject's enrolment on a scheme, its consent and the withdrawal of it.

The lifecycle: enrol (consent recorded: when, the kinds of unit the wearer agreed their data
may be shared with, the witness, the signed document's reference, when to review it) ->
withdraw (the wearer's decision, dated; opens a removal task and revokes the shares in
force) -> removal recorded (the equipment came off at `removed_at`: the subject's
assignments end then and the enrolment exits). From the removal on, ingest refuses what the
subject's devices send dated at or after it (stops.py), until a device is fitted to someone
again. What was stored before stays and ages out under the unit's retention purge like
everyone's (backend/storage/retention.py): withdrawal is not erasure, the record of the
monitoring period is kept for as long as any other.

Functions take a connection in the caller's transaction and refuse with a sentence for the
caller (errors.py): Conflict when the step does not fit the enrolment's state, Invalid for a
date that cannot be right whatever the state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, insert, select, update

from backend.security import roles
from backend.services import monitoring, pool, shares
from backend.services.errors import Conflict, Invalid
from backend.storage.schema import assignments, enrolments, removal_tasks, subjects, units


@dataclass(frozen=True)
class Consent:
    scheme: str
    consent_at: int
    sharing: frozenset[str]
    witnessed_by: str
    document_ref: str
    review_at: int


def enrolment_rows(conn: Connection, subject_id: int) -> list[dict[str, Any]]:
    """The subject's enrolments, oldest first, each with its removal task (or None)."""
    e, r = enrolments.c, removal_tasks.c
    tasks = {
        row.enrolment_id: dict(row._mapping)
        for row in conn.execute(select(removal_tasks).where(r.subject_id == subject_id))
    }
    rows = conn.execute(select(enrolments).where(e.subject_id == subject_id).order_by(e.id))
    return [{**row._mapping, "removal": tasks.get(row.id)} for row in rows]


def current(conn: Connection, subject_id: int) -> Any:
    """The subject's enrolment that has not exited, or None."""
    e = enrolments.c
    return conn.execute(
        select(enrolments).where(e.subject_id == subject_id, e.exited_at.is_(None))
    ).first()


def may_fit(conn: Connection, subject_id: int) -> None:
    """Equipment may be fitted unless the subject's consent is withdrawn (a subject on no
    voluntary scheme has no enrolment and is fitted under their order)."""
    row = current(conn, subject_id)
    if row is not None and row.withdrawn_at is not None:
        raise Conflict("the subject withdrew consent; record the removal, not a fitting")


def may_share(conn: Connection, subject_id: int, unit_id: int) -> None:
    """A share of an enrolled subject must fall within their consent: the receiving unit's
    kind among those they agreed to, and no new share once they withdrew."""
    row = current(conn, subject_id)
    if row is None:
        return
    if row.withdrawn_at is not None:
        raise Conflict("the wearer withdrew consent: their data is not shared further")
    kind = conn.execute(select(units.c.kind).where(units.c.id == unit_id)).scalar()
    if kind is not None and kind not in roles.parse_scopes(row.sharing):
        raise Conflict(f"the wearer's consent does not cover sharing with {kind} units")


def enrol(conn: Connection, subject_id: int, consent: Consent, user_id: int, now: float) -> int:
    if not consent.sharing <= frozenset(roles.UNIT_KINDS):
        raise Invalid(f"sharing is a subset of {', '.join(roles.UNIT_KINDS)}")
    if consent.review_at <= consent.consent_at:
        raise Invalid("review_at must be after consent_at")
    if current(conn, subject_id) is not None:
        raise Conflict("the subject is already enrolled; withdraw and remove first")
    return int(
        conn.execute(
            insert(enrolments)
            .values(
                subject_id=subject_id,
                scheme=consent.scheme,
                consent_at=consent.consent_at,
                sharing=roles.format_scopes(consent.sharing),
                witnessed_by=consent.witnessed_by,
                document_ref=consent.document_ref,
                review_at=consent.review_at,
                created_by=user_id,
                created_at=now,
                updated_at=now,
            )
            .returning(enrolments.c.id)
        ).scalar_one()
    )


def review(conn: Connection, subject_id: int, review_at: int, now: float) -> None:
    """Consent reviewed with the wearer: the next review is due at `review_at`."""
    row = current(conn, subject_id)
    if row is None or row.withdrawn_at is not None:
        raise Conflict("the subject has no consent in force to review")
    if review_at <= row.consent_at:
        raise Invalid("review_at must be after consent_at")
    conn.execute(
        update(enrolments)
        .where(enrolments.c.id == row.id)
        .values(review_at=review_at, updated_at=now)
    )


@dataclass(frozen=True)
class Withdrawn:
    removal_task: int
    revoked_shares: list[int]


def withdraw(
    conn: Connection, subject_id: int, withdrawn_at: int, note: str, user_id: int, now: float
) -> Withdrawn:
    """Record the wearer's withdrawal: a removal task opens, and the subject's shares in force
    are revoked at once (sharing rested on the consent just withdrawn; a partner must not
    keep reading until a share expires)."""
    row = current(conn, subject_id)
    if row is None:
        raise Conflict("the subject is not enrolled")
    if row.withdrawn_at is not None:
        raise Conflict("consent is already withdrawn")
    if withdrawn_at < row.consent_at:
        raise Invalid("withdrawn_at must not be before consent_at")
    conn.execute(
        update(enrolments)
        .where(enrolments.c.id == row.id)
        .values(withdrawn_at=withdrawn_at, withdrawal_note=note, updated_at=now)
    )
    task = conn.execute(
        insert(removal_tasks)
        .values(subject_id=subject_id, enrolment_id=row.id, opened_at=now, opened_by=user_id)
        .returning(removal_tasks.c.id)
    ).scalar_one()
    in_force = [r.id for r in shares.of_subject(conn, subject_id)
                if r.revoked_at is None and r.expires_at > now]  # fmt: skip
    revoked = [share_id for share_id in in_force if shares.revoke(conn, share_id, now)]
    return Withdrawn(int(task), revoked)


def complete_removal(
    conn: Connection, subject_id: int, removed_at: int, user_id: int, now: float
) -> list[int]:
    """The equipment came off at `removed_at`: the subject's open assignments end then (their
    tags go to `removed` in the pool), the removal task is done and the enrolment exits.
    Returns the devices whose data is refused from then on."""
    row = current(conn, subject_id)
    if row is None or row.withdrawn_at is None:
        raise Conflict("there is no open removal task: consent has not been withdrawn")
    if removed_at < row.withdrawn_at:
        raise Invalid("removed_at must not be before the withdrawal")
    a = assignments.c
    open_rows = conn.execute(
        select(a.id, a.device, a.role, a.starts_at).where(
            a.subject_id == subject_id, a.ends_at.is_(None)
        )
    ).all()
    if any(r.starts_at >= removed_at for r in open_rows):
        raise Invalid("removed_at must be after the current equipment was fitted")
    for r in open_rows:
        pool.remove(conn, r.id, removed_at, user_id, now)
    conn.execute(
        update(removal_tasks)
        .where(removal_tasks.c.enrolment_id == row.id, removal_tasks.c.done_at.is_(None))
        .values(done_at=now, done_by=user_id, removed_at=removed_at)
    )
    conn.execute(
        update(enrolments)
        .where(enrolments.c.id == row.id)
        .values(exited_at=removed_at, updated_at=now)
    )
    monitoring.changed(conn, subject_id, now)
    return sorted({int(r.device) for r in open_rows})


def open_removals(conn: Connection, subject_ids: Select[Any]) -> list[Any]:
    """Removal tasks not yet done of these subjects, oldest first, with each subject's
    reference and the withdrawal's date."""
    r, e, s = removal_tasks.c, enrolments.c, subjects.c
    return list(
        conn.execute(
            select(r.id, r.subject_id, s.reference.label("subject_reference"),
                   e.withdrawn_at, r.opened_at)
            .join(enrolments, e.id == r.enrolment_id)
            .join(subjects, s.id == r.subject_id)
            .where(r.done_at.is_(None), r.subject_id.in_(subject_ids))
            .order_by(r.opened_at, r.id)
        )
    )  # fmt: skip
