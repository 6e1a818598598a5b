"""A small multi-agency world for API tests: two police units (each with every role), a
partner unit, subjects owned by each police unit, and shares between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select

from backend.clock import Clock, ManualClock
from backend.rules import store
from backend.rules.evaluator import Changes
from backend.rules.model import Episode
from backend.rules.store import SqlRepository
from backend.security import roles
from backend.security.passwords import Passwords
from backend.services import consent, outcomes, shares, subjects, units, users, victims
from backend.storage.database import IMMEDIATE
from backend.storage.schema import (
    alerts,
    assignments,
    charging_schedules,
    curfew_exceptions,
    curfews,
    orders,
    zones,
)
from firmware import frame as fr
from tests.backend.investigations.scenario import Fix, Stage, at

PASSWORD = "correct horse battery staple"
UNIT_A, UNIT_B, PARTNER_UNIT = "Turnaround (IOM)", "MOSOVO", "Probation"


@dataclass
class World:
    units: dict[str, int] = field(default_factory=dict)
    # username -> (user id, unit id, role)
    users: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    subjects: dict[str, int] = field(default_factory=dict)
    shares: dict[str, int] = field(default_factory=dict)

    def user(self, unit: str, role: str) -> str:
        return f"{role}.{unit.split()[0].lower()}"


def build(engine: Engine, passwords: Passwords, clock: Clock) -> World:
    w = World()
    now = clock.now()
    with engine.begin() as conn:
        w.units[UNIT_A] = units.create(conn, UNIT_A, "police", now)
        w.units[UNIT_B] = units.create(conn, UNIT_B, "police", now)
        w.units[PARTNER_UNIT] = units.create(conn, PARTNER_UNIT, "partner", now)
        for unit in (UNIT_A, UNIT_B):
            for role in roles.ROLES:
                name = w.user(unit, role)
                uid = users.create(
                    conn, passwords, username=name, display_name=name,
                    unit_id=w.units[unit], role=role, password=PASSWORD, now=now,
                )  # fmt: skip
                w.users[name] = (uid, w.units[unit], role)
        name = w.user(PARTNER_UNIT, roles.PARTNER)
        uid = users.create(
            conn, passwords, username=name, display_name=name,
            unit_id=w.units[PARTNER_UNIT], role=roles.PARTNER, password=PASSWORD, now=now,
        )  # fmt: skip
        w.users[name] = (uid, w.units[PARTNER_UNIT], roles.PARTNER)
        for ref, unit in (("A-1", UNIT_A), ("A-2", UNIT_A), ("B-1", UNIT_B)):
            w.subjects[ref] = subjects.create(
                conn, reference=ref, name=f"Subject {ref}", unit_id=w.units[unit],
                risk_notes=f"risk notes of {ref}", now=now,
            )  # fmt: skip
        sup_a = w.users[w.user(UNIT_A, roles.SUPERVISOR)][0]
        # A-2 is shared with MOSOVO for live position and alerts, and with probation for
        # its trail and reports.
        w.shares["A-2>B"] = shares.create(
            conn, subject_id=w.subjects["A-2"], unit_id=w.units[UNIT_B],
            scopes=frozenset({roles.LIVE, roles.ALERTS}), purpose="joint MAPPA case",
            expires_at=now + 30 * 86400, created_by=sup_a, now=now,
        )  # fmt: skip
        w.shares["A-2>P"] = shares.create(
            conn, subject_id=w.subjects["A-2"], unit_id=w.units[PARTNER_UNIT],
            scopes=frozenset({roles.TRAIL, roles.REPORTS}), purpose="licence supervision",
            expires_at=now + 30 * 86400, created_by=sup_a, now=now,
        )  # fmt: skip
    return w


def raise_alert(engine: Engine, subject: int, start: int, now: float) -> int:
    """A strap-tamper alert of `subject` stored the way the rules store one; its id."""
    ep = Episode(subject, "tamper", "strap_tamper", f"sensor{start}", start, 1, start)
    # BEGIN IMMEDIATE, as the rules' sink writes: a deferred transaction that reads and then
    # writes fails at once with "database is locked" on SQLite when the served app commits
    # in between (the busy timeout does not cover a stale read snapshot).
    with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
        SqlRepository(conn, now).apply(subject, Changes(raised=[ep]))
        found = conn.execute(
            select(alerts.c.id).where(alerts.c.subject_id == subject, alerts.c.start == start)
        ).scalar_one()
    return int(found)


# Roles of each receiving unit in the share-scope world, and their usernames.
RECEIVING_ROLES = (roles.SUPERVISOR, roles.OFFICER, roles.PARTNER)


def receiver(unit: str, role: str) -> str:
    return f"{role}.r-{unit}"


TAG, HOME, CONTROL_TAG, SPARE_TAG = 5001, 5101, 5002, 5003
VICTIM_DEVICE = 7301  # the victim's own device, linked to A-3's order (victim-safe mode off)
SPARE_VICTIM_DEVICE = 7302  # registered, not linked


@dataclass
class Scoped:
    """A-3, a subject of unit A with one of every kind of object reached through a subject
    (order, curfew, exception, home and victim zones, equipment, charging schedule, fixes,
    presence, a device event, an alert, an enrolment with its consent, an outcome), shared
    with one unit per entry of `grants` (`R <name>`: a supervisor, an officer and a
    partner), each share granting those scopes. C-1, also of unit A, is shared with each of
    those units and with MOSOVO for live and alerts: its events, sent after A-3's, tell a
    stream's reader that A-3's would have come by then."""

    subject: int
    control: int
    units: dict[str, int]
    ids: dict[str, int]
    stage: Stage
    t: int  # the time of A-3's data


def build_scoped(
    engine: Engine,
    passwords: Passwords,
    clock: ManualClock,
    world: World,
    grants: dict[str, set[str]],
) -> Scoped:
    now = clock.now()
    t = int(now) - 600
    stage = Stage(engine, clock)
    ids: dict[str, int] = {}
    sid = stage.subject("A-3", world.units[UNIT_A])
    control = stage.subject("C-1", world.units[UNIT_A])
    for dev, kind in ((HOME, "home_unit"), (CONTROL_TAG, "tag"), (SPARE_TAG, "tag")):
        stage.device(dev, kind)
    stage.device(TAG, "tag", home_unit=HOME)  # only its paired unit speaks for its presence
    stage.assign(control, CONTROL_TAG, "tag", t - 86400)
    stage.assign(sid, HOME, "home_unit", t - 86400)
    lat_e7, lon_e7 = at(0, 0)
    here = {"type": "Point", "coordinates": [lon_e7 / 1e7, lat_e7 / 1e7]}

    def add(table: Any, **values: Any) -> int:
        with engine.begin() as conn:
            new = conn.execute(
                insert(table).values(created_at=now, **values).returning(table.c.id)
            ).scalar_one()
            store.bump_config(conn, sid, now)
        return int(new)

    ids["assignment"] = add(assignments, subject_id=sid, device=TAG, role="tag",
                            starts_at=t - 86400, ends_at=None)  # fmt: skip
    ids["order"] = add(orders, subject_id=sid, kind="licence", reference="ORD-A-3",
                       starts_at=t - 86400, ends_at=None, comms_loss_s=86400,
                       curfew_grace_s=None, conditions="no contact with the victim")  # fmt: skip
    ids["curfew"] = add(curfews, subject_id=sid, days="mon,tue", start="19:00", end="07:00",
                        tz="Europe/London")  # fmt: skip
    ids["exception"] = add(curfew_exceptions, subject_id=sid, kind="excused", starts_at=t,
                           ends_at=t + 3600, reason="hospital appointment")  # fmt: skip
    zone = {"shape": "circle", "geometry": here, "width_m": 0, "buffer_m": 0, "schedule": [],
            "dwell_s": None}  # fmt: skip
    ids["zone"] = add(zones, subject_id=sid, name="home", kind="home", radius_m=50,
                      victim=False, **zone)  # fmt: skip
    ids["victim_zone"] = add(zones, subject_id=sid, name="victim's address", kind="exclusion",
                             radius_m=500, victim=True, **zone)  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            insert(charging_schedules).values(subject_id=sid, min_minutes=60, created_at=now)
        )
    stage.device(VICTIM_DEVICE, "victim")
    stage.device(SPARE_VICTIM_DEVICE, "victim")
    with engine.begin() as conn:
        ids["victim_link"] = victims.link(
            conn, ids["order"], VICTIM_DEVICE, t - 86400, now, victim_safe=False
        ).id
    stage.deliver(stage.fixes(TAG, [Fix(t - 300, 0, 0), Fix(t, 10, 10)]))
    # The victim, 3 km away: their positions, stored, must show only where the victim
    # scope lets them.
    stage.deliver(stage.fixes(VICTIM_DEVICE, [Fix(t - 280, 3000, 0), Fix(t - 20, 3010, 0)]))
    stage.deliver([stage.presence(HOME, TAG, t, home=True)])
    stage.deliver([stage.tag_records(TAG, t, [fr.Record(fr.BATTERY, (0, 17, 0, 3600, 20))])])
    ids["alert"] = raise_alert(engine, sid, t, now)
    with engine.begin() as conn:
        ids["enrolment"] = consent.enrol(
            conn, sid,
            consent.Consent("IOM voluntary", t - 86400, frozenset({"police", "partner"}), "Sgt A-3",
                            "CF-A-3", t + 90 * 86400),
            world.users[world.user(UNIT_A, roles.SUPERVISOR)][0], now,
        )  # fmt: skip
        ids["outcome"] = outcomes.record(
            conn, sid, "completed", datetime.fromtimestamp(t, UTC).date(), "the matrix outcome",
            None, world.users[world.user(UNIT_A, roles.OFFICER)][0], now,
        )  # fmt: skip

    received: dict[str, int] = {}
    sup_a = world.users[world.user(UNIT_A, roles.SUPERVISOR)][0]
    with engine.begin() as conn:

        def share(subject: int, unit: int, granted: set[str]) -> None:
            shares.create(
                conn, subject_id=subject, unit_id=unit, scopes=frozenset(granted),
                purpose="share-scope matrix", expires_at=now + 30 * 86400, created_by=sup_a,
                now=now,
            )  # fmt: skip

        for name, granted in grants.items():
            received[name] = units.create(conn, f"R {name}", "partner", now)
            for role in RECEIVING_ROLES:
                users.create(
                    conn, passwords, username=receiver(name, role),
                    display_name=receiver(name, role), unit_id=received[name], role=role,
                    password=PASSWORD, now=now,
                )  # fmt: skip
            share(sid, received[name], granted)
            share(control, received[name], {roles.LIVE, roles.ALERTS})
        share(control, world.units[UNIT_B], {roles.LIVE, roles.ALERTS})
    return Scoped(sid, control, received, ids, stage, t)
