"""A night on call: events in a simulated run page a simulated on-call officer, who reads
their e-mail and pushes and acknowledges from the link after a delay, or not at all; the run
is scored by time to first notification and time to acknowledgement.

It runs the whole stack as `sim run` does — tags, home units, broker, ingest, rules — plus
the notification dispatcher (backend/notify), stepped by the simulator's clock after every
slice, a real SMTP server and a push service stand-in (sim/notify_peers.py) that stamp what
they receive with the simulator's clock. Each officer is a user of the simulated unit on the
rota at their rank, with an e-mail address and a push subscription. Reading the link's token,
an officer acknowledges through the same call the web app's acknowledgement makes after
signing in (backend.notify.ack.acknowledge); signing in itself is the web tests' concern.

Times are simulated seconds: a night runs in seconds of wall time."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from sqlalchemy import Engine, select

from backend.clock import ManualClock
from backend.notify import ack
from backend.notify.channels import Email, Push
from backend.notify.dispatcher import BATCH, Dispatcher
from backend.security.passwords import Passwords
from backend.services import oncall as rota
from backend.services import units, users
from backend.storage.database import IMMEDIATE
from backend.storage.schema import alerts, notification_pages
from sim.fleet import Fleet
from sim.monitoring import UNIT_NAME
from sim.notify_peers import Mailbox, PushService

LINK = re.compile(r"/web/#/ack/([A-Za-z0-9_.-]+)")
PUBLIC_URL = "https://tagwatch.sim.invalid"
MAX_STEPS = 20  # dispatcher steps per slice: a plan, its sends, a retry... never more


@dataclass
class OfficerSpec:
    name: str
    ack_after_s: float | None  # None: never acknowledges (asleep, phone flat)


def parse_officers(text: str) -> list[OfficerSpec]:
    """ "never,120" -> the first officer never acknowledges, the second after 120 s."""
    out = []
    for i, part in enumerate(p.strip() for p in text.split(",")):
        if part == "never":
            out.append(OfficerSpec(f"officer{i + 1}", None))
            continue
        try:
            wait = float(part)
        except ValueError:
            wait = -1.0
        if not 0 <= wait <= 86_400:
            raise ValueError(f"ack-after: {part!r} is neither 'never' nor 0-86400 seconds")
        out.append(OfficerSpec(f"officer{i + 1}", wait))
    if not 1 <= len(out) <= 9:
        raise ValueError("ack-after: one to nine officers")
    return out


def summary_lines(report: dict[str, Any]) -> list[str]:
    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f} s"

    lines = []
    for a in report["alerts"]:
        lines.append(
            f"alert {a['alert']} ({a['type']}): e-mail {s(a['first_email_s'])}, push "
            f"{s(a['first_push_s'])}, acknowledged {s(a['acknowledged_s'])} by "
            f"{a['acknowledged_by'] or 'nobody'} after {a['escalations']} escalation(s)"
        )
    n, k = report["time_to_first_notification_s"], report["time_to_acknowledgement_s"]
    lines.append(
        f"time to first notification: median {s(n['median'])}, max {s(n['max'])}; "
        f"to acknowledgement: median {s(k['median'])}, max {s(k['max'])}, "
        f"{k['missing']:.0f} never acknowledged"
    )
    return lines


@dataclass
class Officer:
    spec: OfficerSpec
    user_id: int
    email: str
    push: str  # the subscription's name at the push service stand-in
    seen: dict[int, float] = field(default_factory=dict)  # page id -> first read (sim s)
    acked: dict[int, float] = field(default_factory=dict)  # page id -> when acknowledged


class OnCall:
    """Wires notifications into a set-up Fleet (before `run`): officers on the rota in the
    given order (rank 1 first), one policy for the unit."""

    def __init__(
        self,
        fleet: Fleet,
        officers: list[OfficerSpec],
        escalate_after_s: int = 300,
        min_severity: str = "high",
    ) -> None:
        backend = fleet.backend
        if backend is None or not fleet.subject_of:
            raise ValueError("the on-call simulation needs the backend and its rules")
        self.backend = backend
        self.barrier_timeout_s = fleet.o.barrier_timeout_s
        self.engine: Engine = backend.engine
        self.clock: ManualClock = backend.clock
        self.mailbox = Mailbox(self.clock.now).start()
        self.push_service = PushService(self.clock.now).start()
        settings = backend.settings.model_copy(
            update={
                "public_url": PUBLIC_URL,
                "smtp_host": "127.0.0.1",
                "smtp_port": self.mailbox.port,
                "push_hosts": ["127.0.0.1"],
                "password_memory_kib": 1024,
                "password_time_cost": 1,
            }
        )
        server_key = bytes.fromhex(settings.server_key)
        push = Push(settings)
        self.dispatcher = Dispatcher(
            self.engine, settings, server_key, self.clock, email=Email(settings), push=push
        )
        sim = fleet.sim
        start = sim.start_ms / 1000 - 3600
        end = min(sim.end_ms / 1000 + fleet.o.drain_s + 3600, start + 31 * 86_400)
        passwords = Passwords(settings)
        self.officers: list[Officer] = []
        self.late_slices = 0  # slices the rules had not caught up with in time
        with self.engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            unit = units.by_name(conn, UNIT_NAME)
            assert unit is not None
            now = self.clock.now()
            for rank, spec in enumerate(officers, start=1):
                uid = users.create(
                    conn, passwords, username=f"oncall.{spec.name}", display_name=spec.name,
                    unit_id=unit, role="officer", password=secrets.token_urlsafe(18), now=now,
                )  # fmt: skip
                email = f"{spec.name}@oncall.sim.invalid"
                rota.add_shift(
                    conn, unit, rota.ShiftIn(uid, rank, start, end, ["email", "push"], email), now
                )
                browser, endpoint = self.push_service.subscribe(spec.name, push.public_key)
                sub = browser.subscription(endpoint)
                rota.subscribe(
                    conn, uid, endpoint, sub["keys"]["p256dh"], sub["keys"]["auth"],
                    settings.push_hosts, now,
                )  # fmt: skip
                self.officers.append(Officer(spec, uid, email, spec.name))
            rota.set_policy(
                conn,
                unit,
                rota.PolicyIn(
                    "*",
                    min_severity,
                    escalate_after_s,
                    1800,
                    None,
                    None,
                    sim.scenario.timezone,
                    None,
                ),
                now,
            )
        fleet.on_slice.append(self.step)

    def close(self) -> None:
        self.mailbox.stop()
        self.push_service.stop()

    def step(self, now: float) -> None:
        """One slice: the dispatcher works what is due, then every officer reads and acts."""
        # Alerts raised by this slice's data are then in the database, as they would be by
        # now in real time (the simulator runs faster than ingest's rules would notice).
        if not self.backend.wait_handed_over(self.barrier_timeout_s):
            self.late_slices += 1
        for _ in range(MAX_STEPS):
            if self.dispatcher.step(now) < BATCH:
                break
        # Sends in this step may have made more due now (a plan, then its sends).
        self.dispatcher.step(now)
        for o in self.officers:
            for at, text in self._inbox(o):
                m = LINK.search(text)
                if m is None:
                    continue
                page, exp = self.dispatcher.tokens.page_of(m.group(1))
                o.seen.setdefault(page, at)
                wait = o.spec.ack_after_s
                if wait is None or page in o.acked or now < o.seen[page] + wait:
                    continue
                with self.engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
                    ack.acknowledge(conn, page, exp, o.user_id, now)
                o.acked[page] = now

    def _inbox(self, o: Officer) -> list[tuple[float, str]]:
        mails = [(m.at, m.body) for m in self.mailbox.to(o.email)]
        pushes = [
            (d.at, str(d.payload.get("url", "")))
            for d in self.push_service.for_subscription(o.push)
        ]
        return mails + pushes

    def score(self) -> dict[str, Any]:
        """Per alert that paged: seconds (simulated) from the alert being raised to the first
        e-mail, the first push and the acknowledgement, who acknowledged, how far it was
        escalated; and medians and maxima over alerts."""
        p, a = notification_pages.c, alerts.c
        with self.engine.connect() as conn:
            pages = {r.id: r for r in conn.execute(select(p.id, p.alert_id, p.level, p.user_id))}
            paged = sorted({r.alert_id for r in pages.values()})
            rows = conn.execute(
                select(a.id, a.type, a.start, a.raised_at, a.acknowledged_at, a.acknowledged_by)
                .where(a.id.in_(paged))
            ).all()  # fmt: skip
        names = {o.user_id: o.spec.name for o in self.officers}
        first: dict[tuple[int, str], float] = {}
        for kind, received in (
            ("email", [(m.at, m.body) for m in self.mailbox.mails]),
            ("push", [(d.at, str(d.payload.get("url", ""))) for d in self.push_service.deliveries]),
        ):
            for at, text in received:
                m = LINK.search(text)
                if m is None:
                    continue
                alert = pages[self.dispatcher.tokens.page_of(m.group(1))[0]].alert_id
                first[(alert, kind)] = min(at, first.get((alert, kind), at))
        out = []
        for r in rows:
            email, push = first.get((r.id, "email")), first.get((r.id, "push"))
            sent = [t for t in (email, push) if t is not None]
            levels = [pg.level for pg in pages.values() if pg.alert_id == r.id]
            out.append(
                {
                    "alert": r.id,
                    "type": r.type,
                    "event_time": r.start,
                    "raised_after_event_s": r.raised_at - r.start,
                    "first_email_s": None if email is None else email - r.raised_at,
                    "first_push_s": None if push is None else push - r.raised_at,
                    "first_notification_s": min(sent) - r.raised_at if sent else None,
                    "acknowledged_s": (
                        None if r.acknowledged_at is None else r.acknowledged_at - r.raised_at
                    ),
                    "acknowledged_by": names.get(r.acknowledged_by),
                    "escalations": max(levels),
                }
            )

        def summary(key: str) -> dict[str, float | None]:
            vals = [float(x[key]) for x in out if x[key] is not None]
            return {
                "median": median(vals) if vals else None,
                "max": max(vals) if vals else None,
                "missing": float(len(out) - len(vals)),
            }

        return {
            "alerts": out,
            "time_to_first_notification_s": summary("first_notification_s"),
            "time_to_acknowledgement_s": summary("acknowledged_s"),
            "late_slices": self.late_slices,
            "dispatcher": {f"{k}.{o}": n for (k, o), n in sorted(self.dispatcher.counts.items())},
        }
