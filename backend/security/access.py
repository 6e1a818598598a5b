"""Who may see what: the one place where unit ownership, shares and roles are turned into
answers (for one subject, user or share) and SQL (for lists). backend/api/deps.py turns
these into the guards every route takes; nothing else decides access.

Subjects are reached by unit and share scopes (roles.py); the records that belong to a
subject (orders, zones, alerts...) only through it (`SUBJECT_OBJECTS`). Users and shares
have their own visibility (`visible_users`, `visible_shares`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    false,
    literal,
    or_,
    select,
    true,
    union,
)

from backend.security import roles
from backend.services import pool
from backend.storage.schema import (
    alerts,
    assignments,
    curfew_exceptions,
    curfews,
    orders,
    outcomes,
    shares,
    subjects,
    users,
    victim_devices,
    zones,
)


@dataclass(frozen=True)
class User:
    """The authenticated caller."""

    id: int
    username: str
    unit_id: int
    role: str
    session_id: int = 0

    @property
    def actor(self) -> str:
        return self.username


@dataclass(frozen=True)
class SubjectAccess:
    """A subject the caller may see, and what it may do with it."""

    id: int
    reference: str
    name: str
    unit_id: int
    risk_notes: str
    created_at: float
    scopes: frozenset[str]
    # True when the caller's unit owns the subject; False when it sees it through a share
    # (every consultation is then also a disclosure to another unit, audited as such).
    owner: bool
    share_ids: tuple[int, ...] = field(default=())

    def can(self, scope: str) -> bool:
        return scope in self.scopes


def _active_share(unit_id: int, now: float) -> ColumnElement[bool]:
    return (
        (shares.c.unit_id == unit_id) & shares.c.revoked_at.is_(None) & (shares.c.expires_at > now)
    )


def _grants(scope: str) -> ColumnElement[bool]:
    # scopes is "a,b,c": pad with commas so that "live" cannot match a longer name.
    return (literal(",") + shares.c.scopes + literal(",")).like(f"%,{scope},%")


def visible_subject_ids(user: User, scope: str, now: float) -> Select[Any]:
    """SELECT of the ids of every subject `user` may use with `scope` at `now`: use it as
    `column.in_(visible_subject_ids(...))` in any list query so lists never leak."""
    if scope not in roles.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    parts: list[Select[Any]] = []
    if scope in roles.own_scopes(user.role):
        parts.append(select(subjects.c.id).where(subjects.c.unit_id == user.unit_id))
    if scope in roles.shared_scopes(user.role, frozenset(roles.SHAREABLE)):
        q = select(shares.c.subject_id).where(_active_share(user.unit_id, now))
        if scope != roles.VIEW:
            q = q.where(_grants(scope))
        else:  # a share that grants no read (research alone) shows nothing
            q = q.where(or_(*(_grants(s) for s in roles.SHARED_READS)))
        parts.append(q)
    if not parts:
        return select(subjects.c.id).where(false())
    if len(parts) == 1:
        return parts[0]
    return select(union(*parts).subquery().c[0])


def cohort_subject_ids(unit_id: int, now: float) -> Select[Any]:
    """SELECT of the subjects a unit's cohort counts: those it owns, and those another unit
    shares with it by a share in force at `now` that grants research (roles.RESEARCH)."""
    shared = select(shares.c.subject_id).where(_active_share(unit_id, now), _grants(roles.RESEARCH))
    return select(subjects.c.id).where(
        or_(subjects.c.unit_id == unit_id, subjects.c.id.in_(shared))
    )


def subject_access(
    conn: Connection, user: User, subject_id: int, now: float
) -> SubjectAccess | None:
    """The subject with the caller's scopes, or None when the caller may not see it at all
    (the API answers 404 then, whether or not it exists)."""
    return subject_accesses(conn, user, [subject_id], now).get(subject_id)


def subject_accesses(
    conn: Connection, user: User, subject_ids: Iterable[int], now: float
) -> dict[int, SubjectAccess]:
    """`subject_access` for many subjects at once, in two queries (a list's page): those the
    caller may not see are left out."""
    ids = sorted(set(subject_ids))
    if not ids:
        return {}
    rows = list(conn.execute(select(subjects).where(subjects.c.id.in_(ids))))
    foreign = [r.id for r in rows if r.unit_id != user.unit_id]
    granted: dict[int, list[tuple[int, str]]] = {}
    if foreign:
        for share in conn.execute(
            select(shares.c.id, shares.c.subject_id, shares.c.scopes)
            .where(shares.c.subject_id.in_(foreign), _active_share(user.unit_id, now))
            .order_by(shares.c.id)
        ):
            granted.setdefault(share.subject_id, []).append((share.id, share.scopes))
    out: dict[int, SubjectAccess] = {}
    for row in rows:
        owner = row.unit_id == user.unit_id
        active = granted.get(row.id, [])
        if owner:
            scopes = roles.own_scopes(user.role)
        else:
            given: frozenset[str] = frozenset()
            for _, text in active:
                given |= roles.parse_scopes(text)
            scopes = roles.shared_scopes(user.role, given)
        if not scopes:
            continue
        out[row.id] = SubjectAccess(
            row.id,
            row.reference,
            row.name,
            row.unit_id,
            row.risk_notes,
            row.created_at,
            scopes,
            owner,
            () if owner else tuple(i for i, _ in active),
        )
    return out


def permitted(
    conn: Connection, user: User, scope: str, subject_ids: Iterable[int], now: float
) -> set[int]:
    """The subjects among `subject_ids` that `user` may use with `scope` at `now` (a stream
    asks at the moment it sends, so what it read before a share ended is not sent after)."""
    ids = sorted(set(subject_ids))
    if not ids:
        return set()
    found = conn.execute(
        select(subjects.c.id).where(
            subjects.c.id.in_(ids), subjects.c.id.in_(visible_subject_ids(user, scope, now))
        )
    ).scalars()
    return {int(i) for i in found}


def owned_and_shared(
    conn: Connection, user: User, subject_ids: Iterable[int], now: float
) -> tuple[list[int], dict[int, list[int]]]:
    """Split subjects the caller was shown into its own unit's and those it sees through a
    share (each with the ids of the shares in force at `now`): a use of the latter is a
    disclosure to another unit."""
    ids = sorted(set(subject_ids))
    owned = {
        int(i)
        for i in conn.execute(
            select(subjects.c.id).where(subjects.c.id.in_(ids), subjects.c.unit_id == user.unit_id)
        ).scalars()
    }
    shared: dict[int, list[int]] = {i: [] for i in ids if i not in owned}
    if shared:
        for share_id, subject_id in conn.execute(
            select(shares.c.id, shares.c.subject_id)
            .where(shares.c.subject_id.in_(list(shared)), _active_share(user.unit_id, now))
            .order_by(shares.c.id)
        ):
            shared[int(subject_id)].append(int(share_id))
    return sorted(owned), shared


# Objects of a subject -----------------------------------------------------------------


@dataclass(frozen=True)
class SubjectObject:
    """A kind of record that belongs to one subject and is reached only through it: the
    caller needs the subject's scope, and one of a subject it may not see does not exist
    for it (404)."""

    kind: str  # as the API names it in answers ("curfew exception not found")
    param: str  # its id's path parameter
    table: Table

    def subject_of(self, conn: Connection, object_id: int) -> int | None:
        found = conn.execute(
            select(self.table.c.subject_id).where(self.table.c.id == object_id)
        ).scalar()
        return None if found is None else int(found)


SUBJECT_OBJECTS = {
    o.kind: o
    for o in (
        SubjectObject("order", "order_id", orders),
        SubjectObject("assignment", "assignment_id", assignments),
        SubjectObject("curfew", "curfew_id", curfews),
        SubjectObject("curfew exception", "exception_id", curfew_exceptions),
        SubjectObject("zone", "zone_id", zones),
        SubjectObject("alert", "alert_id", alerts),
        SubjectObject("outcome", "outcome_id", outcomes),
        SubjectObject("victim device link", "link_id", victim_devices),
    )
}


# Users and shares ---------------------------------------------------------------------


def visible_users(viewer: User) -> ColumnElement[bool]:
    """Accounts a user may see: its own, every account for administrators and auditors
    (they manage accounts, or need names for the log), its unit's for a supervisor."""
    if roles.may_read_directory(viewer.role):
        return true()
    clause: ColumnElement[bool] = users.c.id == viewer.id
    if viewer.role == roles.SUPERVISOR:
        clause = or_(clause, users.c.unit_id == viewer.unit_id)
    return clause


def user_visible(conn: Connection, viewer: User, user_id: int) -> bool:
    found = conn.execute(
        select(users.c.id).where(users.c.id == user_id, visible_users(viewer))
    ).first()
    return found is not None


def visible_shares(user: User) -> ColumnElement[bool]:
    """Shares a user may see: those of its unit's subjects (supervisors and officers) and
    those granted to its unit (any role that uses shares)."""
    owned = shares.c.subject_id.in_(select(subjects.c.id).where(subjects.c.unit_id == user.unit_id))
    received = shares.c.unit_id == user.unit_id
    if user.role in (roles.SUPERVISOR, roles.OFFICER):
        return or_(owned, received)
    if user.role == roles.PARTNER:
        return received
    return false()


def share_owner(conn: Connection, user: User, share_id: int) -> int | None:
    """The unit that owns the shared subject, if `user` may see the share (else None)."""
    found = conn.execute(
        select(subjects.c.unit_id)
        .join(shares, shares.c.subject_id == subjects.c.id)
        .where(shares.c.id == share_id, visible_shares(user))
    ).scalar()
    return None if found is None else int(found)


def may_revoke_share(user: User, owner_unit_id: int) -> bool:
    """Only a supervisor of the unit that owns the subject ends a share of it."""
    return roles.may_share(user.role) and user.unit_id == owner_unit_id


def pool_tag_visible(conn: Connection, user: User, device: int) -> bool:
    """A tag is visible in the pool to its unit's supervisors and officers only."""
    return roles.may_keep_pool(user.role) and pool.unit_of(conn, device) == user.unit_id
