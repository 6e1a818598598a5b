"""Demo logins for two units, for `make demo`: the unit that owns the demo's subjects (the
simulator's) and a second police unit that sees some of them through a share, so the demo
shows what each unit may see. Passwords are generated per run and printed, never fixed.

    logins = seed_demo_accounts(engine, passwords, now, owner_unit="Dorset IOM (simulated)")
    for line in format_logins(logins, "http://127.0.0.1:8080"): print(line)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from backend.security import roles
from backend.security.passwords import Passwords
from backend.services import shares as share_records
from backend.services import units as unit_records
from backend.services import users as user_records
from backend.storage.database import IMMEDIATE
from backend.storage.schema import subjects, users

OTHER_UNIT = "MOSOVO (demo)"
SHARE_PURPOSE = "demo: joint case with MOSOVO"
SHARE_DAYS = 30


@dataclass(frozen=True)
class DemoLogin:
    unit: str
    role: str
    username: str
    password: str


def _password() -> str:
    return secrets.token_urlsafe(12)  # 16 characters, over the 12-character minimum


def seed_demo_accounts(
    engine: Engine,
    passwords: Passwords,
    now: float,
    *,
    owner_unit: str,
    other_unit: str = OTHER_UNIT,
    share: int = 2,
) -> list[DemoLogin]:
    """Create (or reset the passwords of) a supervisor and an officer in each unit, an
    administrator and an auditor in the owner unit, and share the owner unit's first
    `share` subjects with the other unit (live position, trail and alerts). Units missing
    are created. Returns the logins, owner unit first."""
    out: list[DemoLogin] = []
    with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
        unit_ids: dict[str, int] = {}
        for name in (owner_unit, other_unit):
            found = unit_records.by_name(conn, name)
            unit_ids[name] = found if found is not None else unit_records.create(
                conn, name, "police", now
            )  # fmt: skip
        prefix = {owner_unit: "iom", other_unit: "mosovo"}
        wanted = [(owner_unit, r) for r in (roles.SUPERVISOR, roles.OFFICER)]
        wanted += [(other_unit, r) for r in (roles.SUPERVISOR, roles.OFFICER)]
        wanted += [(owner_unit, roles.ADMINISTRATOR), (owner_unit, roles.AUDITOR)]
        user_ids: dict[tuple[str, str], int] = {}
        for unit, role in wanted:
            username = f"{prefix[unit]}.{role}" if role in (roles.SUPERVISOR, roles.OFFICER) else (
                f"demo.{role}"
            )  # fmt: skip
            password = _password()
            existing = conn.execute(select(users.c.id).where(users.c.username == username)).scalar()
            if existing is None:
                uid = user_records.create(
                    conn, passwords, username=username, display_name=f"Demo {role} ({unit})",
                    unit_id=unit_ids[unit], role=role, password=password, now=now,
                )  # fmt: skip
            else:
                uid = int(existing)
                conn.execute(
                    update(users)
                    .where(users.c.id == uid)
                    .values(
                        password_hash=passwords.hash(password),
                        unit_id=unit_ids[unit],
                        role=role,
                        disabled_at=None,
                        locked_until=None,
                        failed_logins=0,
                    )
                )
            user_ids[(unit, role)] = uid
            out.append(DemoLogin(unit, role, username, password))
        first = conn.execute(
            select(subjects.c.id)
            .where(subjects.c.unit_id == unit_ids[owner_unit])
            .order_by(subjects.c.id)
            .limit(share)
        ).scalars()
        for sid in first:
            share_records.create(
                conn,
                subject_id=sid,
                unit_id=unit_ids[other_unit],
                scopes=frozenset({roles.LIVE, roles.TRAIL, roles.ALERTS}),
                purpose=SHARE_PURPOSE,
                expires_at=now + SHARE_DAYS * 86400,
                created_by=user_ids[(owner_unit, roles.SUPERVISOR)],
                now=now,
            )
    return out


def format_logins(logins: list[DemoLogin], base_url: str) -> list[str]:
    """Lines to print: the web address, then one login per line."""
    lines = [f"Web application: {base_url.rstrip('/')}/web/"]
    width = max((len(x.username) for x in logins), default=0)
    for x in logins:
        lines.append(f"  {x.username:<{width}}  {x.password}  ({x.role}, {x.unit})")
    return lines
