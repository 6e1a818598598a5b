"""Victim devices linked to orders: the one place a link is made, ended and read, and the
victim's own positions and the warnings sent to the device are read.

A link (victim_devices) names the order, the proximity rule's warning and alert distances,
how long the device may be silent, and victim-safe mode; making it also assigns the device to
the order's subject in role `victim` from the link's start, which is what attributes the
device's frames to the subject's rule evaluation (backend/rules/store.py). Ending it ends
that assignment. Both bump the subject's configuration version (the rules start afresh).

Bounds (docs/rules.md, "Proximity"): 50 <= alert_m < warn_m <= 5000 m; silent_s from 300 s
to 7 days; a device is linked to at most one order at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from backend.device_commands import NOTIFY_COMMAND_KEYS, RAN, answers, notify_message
from backend.services import monitoring
from backend.services.errors import Conflict, Invalid, NotFound
from backend.storage import position_queries
from backend.storage.schema import (
    VICTIM,
    assignments,
    device_commands,
    devices,
    orders,
    victim_devices,
)

MIN_ALERT_M, MAX_WARN_M = 50, 5000
MIN_SILENT_S, MAX_SILENT_S = 300, 7 * 86400


@dataclass(frozen=True)
class Warned:
    """A warning sent to a victim device, and whether the device acknowledged running it
    (a command_result for its command sequence saying it ran: device_commands.RAN)."""

    seq: int
    message: int  # backend/rules/proximity.py NOTIFY_*
    about: int  # the episode's start (event time)
    sent_at: float
    acknowledged: bool


@dataclass(frozen=True)
class Link:
    id: int
    device: int
    order_id: int
    subject_id: int
    warn_m: int
    alert_m: int
    silent_s: int | None
    victim_safe: bool
    starts_at: int
    ends_at: int | None


def check(warn_m: int, alert_m: int, silent_s: int | None) -> None:
    if not MIN_ALERT_M <= alert_m < warn_m <= MAX_WARN_M:
        raise Invalid(
            f"distances must satisfy {MIN_ALERT_M} <= alert_m < warn_m <= {MAX_WARN_M} m; "
            f"got alert_m={alert_m}, warn_m={warn_m}"
        )
    if silent_s is not None and not MIN_SILENT_S <= silent_s <= MAX_SILENT_S:
        raise Invalid(
            f"silent_s must be between {MIN_SILENT_S} and {MAX_SILENT_S} s; got {silent_s}"
        )


def link(
    conn: Connection,
    order_id: int,
    device: int,
    starts_at: int,
    now: float,
    warn_m: int = 500,
    alert_m: int = 200,
    silent_s: int | None = None,
    victim_safe: bool = True,
    subject_id: int | None = None,
) -> Link:
    """Link a registered victim device to an order (of `subject_id`, if given) from event
    time `starts_at`."""
    check(warn_m, alert_m, silent_s)
    order = conn.execute(select(orders).where(orders.c.id == order_id)).first()
    if order is None or (subject_id is not None and order.subject_id != subject_id):
        raise Invalid(f"order {order_id} is not one of this subject's orders")
    kind = conn.execute(select(devices.c.kind).where(devices.c.id == device)).scalar()
    if kind != VICTIM:
        raise Invalid(f"device {device} is not a registered victim device")
    v = victim_devices.c
    current = conn.execute(
        select(v.order_id).where(v.device == device, v.ends_at.is_(None))
    ).scalar()
    if current is not None:
        raise Conflict(f"device {device} is already linked to order {current}")
    new_id = conn.execute(
        insert(victim_devices).values(
            device=device,
            order_id=order_id,
            subject_id=order.subject_id,
            warn_m=warn_m,
            alert_m=alert_m,
            silent_s=silent_s,
            victim_safe=victim_safe,
            starts_at=starts_at,
            ends_at=None,
            created_at=now,
        )
    ).inserted_primary_key
    assert new_id is not None
    conn.execute(
        insert(assignments).values(
            subject_id=order.subject_id,
            device=device,
            role=VICTIM,
            starts_at=starts_at,
            ends_at=None,
            created_at=now,
        )
    )
    monitoring.changed(conn, order.subject_id, now)
    return get(conn, int(new_id[0]))


def unlink(conn: Connection, link_id: int, ends_at: int, now: float) -> Link:
    """End a link (and the device's assignment) at event time `ends_at`."""
    found = get(conn, link_id)
    if found.ends_at is not None:
        raise Conflict(f"victim link {link_id} already ended")
    if ends_at < found.starts_at:
        raise Invalid("a link cannot end before it starts")
    conn.execute(
        update(victim_devices).where(victim_devices.c.id == link_id).values(ends_at=ends_at)
    )
    a = assignments.c
    conn.execute(
        update(assignments)
        .where(a.device == found.device, a.role == VICTIM, a.ends_at.is_(None))
        .values(ends_at=ends_at)
    )
    monitoring.changed(conn, found.subject_id, now)
    return get(conn, link_id)


def get(conn: Connection, link_id: int) -> Link:
    row = conn.execute(_LINKS.where(victim_devices.c.id == link_id)).first()
    if row is None:
        raise NotFound(f"victim link {link_id} does not exist")
    return _link(row)


def of_subject(conn: Connection, subject_id: int) -> list[Link]:
    q = _LINKS.where(victim_devices.c.subject_id == subject_id).order_by(victim_devices.c.id)
    return [_link(r) for r in conn.execute(q)]


_LINKS = select(victim_devices)


def _link(r: Any) -> Link:
    return Link(
        r.id,
        r.device,
        r.order_id,
        r.subject_id,
        r.warn_m,
        r.alert_m,
        r.silent_s,
        bool(r.victim_safe),
        r.starts_at,
        r.ends_at,
    )


def warnings(conn: Connection, device: int) -> list[Warned]:
    """The warnings sent to a victim device (each send: a warning not acknowledged goes again
    under a new command sequence, backend/device_commands.py), oldest first, with their
    acknowledgement."""
    c = device_commands.c
    rows = conn.execute(
        select(c.seq, c.key, c.value, c.at)
        .where(
            c.device == device,
            c.key >= NOTIFY_COMMAND_KEYS.start,
            c.key < NOTIFY_COMMAND_KEYS.stop,
        )
        .order_by(c.seq)
    ).all()
    since = min((float(r.at) for r in rows), default=0.0)
    found = answers(conn, [(device, r.seq) for r in rows], since)
    return [
        Warned(r.seq, notify_message(r.key), r.value, r.at, found.get((device, r.seq)) in RAN)
        for r in rows
    ]


def positions(conn: Connection, link: Link, t0: int, t1: int) -> list[Any]:
    """The victim's own fixes in [t0, t1] within the link's span. Only with victim-safe mode
    off: with it on, no one is shown them (the proximity rule still uses them)."""
    if link.victim_safe:
        raise Conflict(
            "victim-safe mode is on for this link: the victim's positions are not shown to "
            "anyone (only the distance is used)"
        )
    lo = max(t0, link.starts_at)
    hi = t1 if link.ends_at is None else min(t1, link.ends_at - 1)
    return [] if lo > hi else position_queries.trail(conn, link.device, lo, hi)
