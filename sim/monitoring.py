"""The simulated subjects as the backend's monitoring domain knows them: a unit, one subject
per simulated person with a voluntary-scheme order, their tag and home unit assigned, the
scenario's curfew, a charging schedule of an hour a day (sim.params.CHARGE_MIN_MINUTES),
their exclusion zones (town centres, a victim's address) and their home as a zone, written
to the backend's tables before the run (backend/storage/schema.py, "Monitoring"), so the
rules (backend/rules) evaluate the run's data as they would live."""

from __future__ import annotations

import time

import numpy as np
from sqlalchemy import Engine, insert

from backend.services import subjects, units
from backend.storage.database import IMMEDIATE
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    assignments,
    charging_schedules,
    curfews,
    orders,
    subject_monitoring,
    zones,
)
from sim.generate import Simulation
from sim.params import CHARGE_MIN_MINUTES

UNIT_NAME = "Dorset IOM (simulated)"
HOME_RADIUS_M = 60.0  # the home as a zone: GPS fixes inside it count as at home
DAYS = "mon,tue,wed,thu,fri,sat,sun"


def register(
    engine: Engine, sim: Simulation, tags: set[int] | None = None, fitted_ms: int | None = None
) -> dict[int, int]:
    """Write the monitoring configuration; returns backend subject id -> simulation index.
    Orders and tags begin at `fitted_ms` (default: the scenario's start): a run of a part
    of a day fits its tags where it begins, so no rule counts the hours before as silence."""
    now = time.time()
    start = (sim.start_ms if fitted_ms is None else fitted_ms) // 1000
    cur = sim.scenario.population.curfew
    tz = sim.scenario.timezone
    w = sim.world
    out: dict[int, int] = {}
    with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
        unit = units.create(conn, UNIT_NAME, "police", now)
        for s in sim.subjects:
            if tags is not None and s.tag_id not in tags:
                continue
            sid = subjects.create(
                conn,
                reference=f"SIM-{sim.seed}-{s.index:05d}",
                name=f"Simulated subject {s.index} ({s.profile})",
                unit_id=unit,
                risk_notes="",
                now=now,
            )
            out[sid] = s.index
            conn.execute(
                insert(subject_monitoring).values(
                    subject_id=sid, tz=tz, config_version=1, updated_at=now
                )
            )
            conn.execute(
                insert(orders).values(
                    subject_id=sid, kind="voluntary", reference=f"VOL-{s.index}",
                    starts_at=start, ends_at=None, comms_loss_s=None, curfew_grace_s=None,
                    conditions="curfew and exclusion zones", created_at=now,
                )
            )  # fmt: skip
            for device, role in ((s.tag_id, TAG), (s.home_unit_id, HOME_UNIT)):
                conn.execute(
                    insert(assignments).values(
                        subject_id=sid, device=device, role=role, starts_at=start,
                        ends_at=None, created_at=now,
                    )
                )  # fmt: skip
            conn.execute(
                insert(curfews).values(
                    subject_id=sid, days=DAYS, start=cur.start, end=cur.end, tz=tz,
                    created_at=now,
                )
            )  # fmt: skip
            conn.execute(
                insert(charging_schedules).values(
                    subject_id=sid, min_minutes=CHARGE_MIN_MINUTES, created_at=now
                )
            )
            hx, hy = w.place_xy[s.home]
            circles = [("home", "home", float(hx), float(hy), HOME_RADIUS_M, False)]
            for name in s.exclusion:
                z = w.zone(name)
                circles.append((name, "exclusion", z.x, z.y, z.radius_m, z.kind == "victim"))
            for name, kind, x, y, r, victim in circles:
                lat, lon = w.to_latlon(np.array([x]), np.array([y]))
                conn.execute(
                    insert(zones).values(
                        subject_id=sid, name=name, kind=kind, shape="circle",
                        geometry={"type": "Point", "coordinates": [float(lon[0]), float(lat[0])]},
                        radius_m=r, width_m=0.0, buffer_m=0.0, victim=victim, schedule=[],
                        dwell_s=None, created_at=now,
                    )
                )  # fmt: skip
    return out
