"""A small multi-agency world for API tests: two police units (each with every role), a
partner unit, subjects owned by each police unit, and shares between them."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from backend.clock import Clock
from backend.security import access, roles
from backend.security.passwords import Passwords

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
        w.units[UNIT_A] = access.create_unit(conn, UNIT_A, "police", now)
        w.units[UNIT_B] = access.create_unit(conn, UNIT_B, "police", now)
        w.units[PARTNER_UNIT] = access.create_unit(conn, PARTNER_UNIT, "partner", now)
        for unit in (UNIT_A, UNIT_B):
            for role in roles.ROLES:
                name = w.user(unit, role)
                uid = access.create_user(
                    conn, passwords, username=name, display_name=name,
                    unit_id=w.units[unit], role=role, password=PASSWORD, now=now,
                )  # fmt: skip
                w.users[name] = (uid, w.units[unit], role)
        name = w.user(PARTNER_UNIT, roles.PARTNER)
        uid = access.create_user(
            conn, passwords, username=name, display_name=name,
            unit_id=w.units[PARTNER_UNIT], role=roles.PARTNER, password=PASSWORD, now=now,
        )  # fmt: skip
        w.users[name] = (uid, w.units[PARTNER_UNIT], roles.PARTNER)
        for ref, unit in (("A-1", UNIT_A), ("A-2", UNIT_A), ("B-1", UNIT_B)):
            w.subjects[ref] = access.create_subject(
                conn, reference=ref, name=f"Subject {ref}", unit_id=w.units[unit],
                risk_notes=f"risk notes of {ref}", now=now,
            )  # fmt: skip
        sup_a = w.users[w.user(UNIT_A, roles.SUPERVISOR)][0]
        # A-2 is shared with MOSOVO for live position and alerts, and with probation for
        # its trail and reports.
        w.shares["A-2>B"] = access.create_share(
            conn, subject_id=w.subjects["A-2"], unit_id=w.units[UNIT_B],
            scopes=frozenset({roles.LIVE, roles.ALERTS}), purpose="joint MAPPA case",
            expires_at=now + 30 * 86400, created_by=sup_a, now=now,
        )  # fmt: skip
        w.shares["A-2>P"] = access.create_share(
            conn, subject_id=w.subjects["A-2"], unit_id=w.units[PARTNER_UNIT],
            scopes=frozenset({roles.TRAIL, roles.REPORTS}), purpose="licence supervision",
            expires_at=now + 30 * 86400, created_by=sup_a, now=now,
        )  # fmt: skip
    return w
