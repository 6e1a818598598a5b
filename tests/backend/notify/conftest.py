"""Notification fixtures: a real SMTP server (aiosmtpd) and a push service stand-in on
loopback (sim/notify_peers.py), both stamping what they receive with the test's backend
clock; and a unit with two officers on call, a supervisor, a subject and a policy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, insert

from backend.clock import ManualClock
from backend.notify.channels import Email, Push, Webhook
from backend.notify.dispatcher import Dispatcher
from backend.rules.evaluator import Changes
from backend.rules.model import Episode
from backend.rules.store import SqlRepository
from backend.services import oncall as rota
from backend.services import subjects, units
from backend.settings import Settings
from backend.storage.database import IMMEDIATE
from backend.storage.schema import users
from sim.notify_peers import Browser, Mailbox, PushService
from tests.backend.conftest import T0

SERVER_KEY = bytes(range(32))
NAME = "Jonathan Example-Subject"
REFERENCE = "IOM-REF-77"


@pytest.fixture
def mailbox(clock: ManualClock) -> Iterator[Mailbox]:
    box = Mailbox(clock.now).start()
    yield box
    box.stop()


@pytest.fixture
def push_service(clock: ManualClock) -> Iterator[PushService]:
    svc = PushService(clock.now).start()
    yield svc
    svc.stop()


def settings_for(tmp_path: Path, mailbox: Mailbox | None, **kw: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "public_url": "https://tagwatch.example.police.uk",
        "smtp_host": "127.0.0.1" if mailbox else "",
        "smtp_port": mailbox.port if mailbox else 25,
        "smtp_from": "alerts@tagwatch.example.police.uk",
        "push_hosts": ["127.0.0.1"],
        "notify_retry_base_s": 30.0,
        "notify_max_attempts": 3,
        "notify_send_timeout_s": 5.0,
    }
    values.update(kw)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class Unit:
    unit: int
    subject: int
    first: int  # rank 1 on call
    second: int  # rank 2
    supervisor: int
    policy: int
    browsers: dict[int, Browser]


def _user(conn: Connection, name: str, unit: int, role: str) -> int:
    # Straight into the table: nobody signs in here, and argon2 would only cost time.
    return int(
        conn.execute(
            insert(users)
            .values(
                username=name, display_name=name, unit_id=unit, role=role, password_hash="x",
                failed_logins=0, created_at=T0,
            )
            .returning(users.c.id)
        ).scalar_one()
    )  # fmt: skip


def build_unit(
    engine: Engine,
    push_service: PushService | None,
    push_key: str | None,
    escalate_after_s: int = 300,
    dedup_s: int = 1800,
    quiet: tuple[str, str] | None = None,
    webhook_url: str | None = None,
) -> Unit:
    with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
        unit = units.create(conn, "IOM night", "police", T0)
        subject = subjects.create(
            conn, reference=REFERENCE, name=NAME, unit_id=unit, risk_notes="", now=T0
        )
        first = _user(conn, "pc.first", unit, "officer")
        second = _user(conn, "pc.second", unit, "officer")
        supervisor = _user(conn, "sgt", unit, "supervisor")
        browsers: dict[int, Browser] = {}
        for rank, uid in ((1, first), (2, second)):
            rota.add_shift(
                conn,
                unit,
                rota.ShiftIn(uid, rank, T0, T0 + 86_400, ["email", "push"], f"u{uid}@example.org"),
                T0,
            )
            if push_service is not None and push_key is not None:
                browser, endpoint = push_service.subscribe(f"user{uid}", push_key)
                browsers[uid] = browser
                sub = browser.subscription(endpoint)
                rota.subscribe(
                    conn, uid, endpoint, sub["keys"]["p256dh"], sub["keys"]["auth"],
                    ["127.0.0.1"], T0,
                )  # fmt: skip
        policy = rota.set_policy(
            conn,
            unit,
            rota.PolicyIn(
                "*",
                "high",
                escalate_after_s,
                dedup_s,
                quiet[0] if quiet else None,
                quiet[1] if quiet else None,
                "Europe/London",
                webhook_url,
            ),
            T0,
        )
    return Unit(unit, subject, first, second, supervisor, policy, browsers)


def raise_alert(
    engine: Engine, subject: int, now: float, start: int | None = None, type_: str = "strap_tamper"
) -> None:
    """Through the alert workflow itself (the rules' hand-over point)."""
    start = int(now) - 20 if start is None else start
    ep = Episode(
        subject=subject, rule="tamper", type=type_, subkey="strap", start=start, version=1,
        confirmed_t=start, severity="critical",
        evidence=[{"lat": 50.7151234, "lon": -2.4401234}],
    )  # fmt: skip
    with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
        SqlRepository(conn, now).apply_episodes(Changes(raised=[ep]))


def make_dispatcher(
    engine: Engine, settings: Settings, clock: ManualClock, push: bool = True
) -> Dispatcher:
    return Dispatcher(
        engine,
        settings,
        SERVER_KEY,
        clock,
        email=Email(settings),
        push=Push(settings) if push else None,
        webhook=Webhook(settings, SERVER_KEY),
    )
