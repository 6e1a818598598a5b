"""A unit with an officer, a subject and registered tags, on each engine, and an ingest
pipeline that stores what the tags send (the publisher is a list)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Engine, insert

from backend.clock import ManualClock
from backend.ingest import DeviceDirectory, Ingest, Message
from backend.registry import Device, Registry
from backend.security import roles
from backend.services import subjects, units
from backend.settings import Settings
from backend.storage.schema import HOME_UNIT, TAG, assignments, users
from firmware import topics

TAGS = (7001, 7002, 7003)
HOME = 7101


@dataclass
class Unit:
    engine: Engine
    clock: ManualClock
    unit_id: int
    officer: int
    subject: int
    devices: dict[int, Device]
    ingest: Ingest
    published: list[tuple[str, bytes]] = field(default_factory=list)

    def send(self, device: int, payloads: Sequence[bytes]) -> None:
        self.ingest.process([Message(topics.tag_up(device), p) for p in payloads])

    def assign(self, device: int, starts_at: int, ends_at: int | None = None) -> int:
        role = HOME_UNIT if device == HOME else TAG
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(assignments)
                    .values(subject_id=self.subject, device=device, role=role,
                            starts_at=starts_at, ends_at=ends_at, created_at=self.clock.now())
                    .returning(assignments.c.id)
                ).scalar_one()
            )  # fmt: skip


@pytest.fixture
def unit(engine: Engine, registry: Registry, clock: ManualClock) -> Unit:
    now = clock.now()
    with engine.begin() as conn:
        unit_id = units.create(conn, "Turnaround (IOM)", "police", now)
        officer = conn.execute(
            insert(users)
            .values(username="pc.one", display_name="PC One", unit_id=unit_id,
                    role=roles.OFFICER, password_hash="-", failed_logins=0, created_at=now)
            .returning(users.c.id)
        ).scalar_one()  # fmt: skip
        subject = subjects.create(
            conn, reference="V-1", name="Volunteer One", unit_id=unit_id, risk_notes="",
            now=now,
        )  # fmt: skip
    devs = {t: registry.register(t, TAG) for t in TAGS}
    devs[HOME] = registry.register(HOME, HOME_UNIT)
    published: list[tuple[str, bytes]] = []

    def publish(topic: str, payload: bytes) -> bool:
        published.append((topic, payload))
        return True

    # No device cache: each batch sees the registry as it is (the cache's lag is its own
    # documented bound, DeviceDirectory.ttl_s).
    ingest = Ingest(engine, DeviceDirectory(registry, ttl_s=0), publish, Settings(), clock)
    return Unit(engine, clock, unit_id, int(officer), subject, devs, ingest, published)
