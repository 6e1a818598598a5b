"""The dispatcher end to end on each engine: an alert raised through the alert workflow
pages the first officer on call at once by e-mail (a real SMTP server) and Web Push (a push
service stand-in that checks the VAPID signature and decrypts the payload), escalates to the
second when nobody acknowledges, stops when the link is used, retries failed sends with
back-off, and loses nothing across a restart."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, select, text, update

from backend.clock import ManualClock
from backend.notify import ack
from backend.notify import outbox as ob
from backend.notify.ack import AckTokens
from backend.rules import store
from backend.rules.evaluator import Changes
from backend.rules.model import Episode
from backend.rules.store import SqlRepository
from backend.storage.database import IMMEDIATE, is_sqlite
from backend.storage.schema import (
    alert_actions,
    alerts,
    audit_log,
    notification_outbox,
    notification_pages,
    push_subscriptions,
)
from sim.notify_peers import Mailbox, PushService
from tests.backend.conftest import migrated
from tests.backend.notify.conftest import (
    NAME,
    REFERENCE,
    build_unit,
    make_dispatcher,
    raise_alert,
    settings_for,
)

TOKEN = re.compile(r"/web/#/ack/([A-Za-z0-9_.-]+)")


def _rows(engine: Engine, kind: str) -> list[tuple[str, int]]:
    o = notification_outbox.c
    with engine.connect() as conn:
        return [
            (r.state, r.attempts)
            for r in conn.execute(select(o.state, o.attempts).where(o.kind == kind).order_by(o.id))
        ]


def _audit(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(audit_log.c.action)
                .where(audit_log.c.action.like("notification.%"))
                .order_by(audit_log.c.id)
            ).scalars()
        )


def test_a_strap_cut_pages_by_email_and_push_at_once_and_escalates(
    engine: Engine, clock: ManualClock, tmp_path: Path, mailbox: Mailbox, push_service: PushService
) -> None:
    settings = settings_for(tmp_path, mailbox)
    d = make_dispatcher(engine, settings, clock)
    assert d.push is not None
    u = build_unit(engine, push_service, d.push.public_key, escalate_after_s=300)
    now = clock.now()
    raise_alert(engine, u.subject, now)
    # Nothing is sent in the rules' transaction: the dispatcher's step does it.
    assert mailbox.mails == [] and push_service.deliveries == []
    d.step()  # plan: the first officer's page, its e-mail, push and escalation
    d.step()  # the sends
    mail = mailbox.to(f"u{u.first}@example.org")
    assert len(mail) == 1 and mail[0].at == now
    body = mail[0].body
    assert "strap tamper" in mail[0].message["Subject"] and "critical" in body
    # Neither who nor where: a link to sign in.
    for secret in (NAME, REFERENCE, "50.71", "-2.44", "Example"):
        assert secret not in body and secret not in str(mail[0].message["Subject"])
    link = TOKEN.search(body)
    assert link and body.count("https://tagwatch.example.police.uk/web/#/ack/") == 1
    pushed = push_service.for_subscription(f"user{u.first}")
    assert len(pushed) == 1 and pushed[0].at == now and pushed[0].ttl > 0, push_service.refused
    assert pushed[0].payload["url"] == link.group(0).join(
        ["https://tagwatch.example.police.uk", ""]
    )
    assert NAME not in str(pushed[0].payload) and "50.71" not in str(pushed[0].payload)
    assert push_service.for_subscription(f"user{u.second}") == []

    # Five minutes with no acknowledgement: the second officer is paged.
    clock.advance(299)
    d.step()
    assert mailbox.to(f"u{u.second}@example.org") == []
    clock.advance(1)
    d.step()
    d.step()
    second = mailbox.to(f"u{u.second}@example.org")
    assert len(second) == 1 and "Escalated to you" in second[0].body
    assert len(push_service.for_subscription(f"user{u.second}")) == 1
    with engine.connect() as conn:
        p = notification_pages.c
        pages = conn.execute(select(p.level, p.user_id, p.state).order_by(p.id)).all()
    assert [tuple(p) for p in pages] == [(0, u.first, "escalated"), (1, u.second, "paged")]

    # The second officer acknowledges from the link: the escalation stops there.
    m2 = TOKEN.search(second[0].body)
    assert m2 is not None
    page_id, exp = d.tokens.page_of(m2.group(1))
    with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
        out = ack.acknowledge(conn, page_id, exp, u.second, clock.advance(60))
    assert out.result == "acknowledged"
    with engine.connect() as conn:
        a = conn.execute(select(alerts.c.state, alerts.c.acknowledged_by)).one()
    assert tuple(a) == (store.ACKNOWLEDGED, u.second)
    clock.advance(3600)
    d.step()
    assert len(mailbox.mails) == 2 and len(push_service.deliveries) == 2
    assert _rows(engine, ob.ESCALATE)[-1][0] == ob.DROPPED
    assert _audit(engine) == [
        "notification.paged", "notification.sent", "notification.sent",
        "notification.escalated", "notification.paged", "notification.sent", "notification.sent",
        "notification.acknowledged",
    ]  # fmt: skip
    assert d.counts[("email", "sent")] == 2 and d.counts[("push", "sent")] == 2


def test_the_link_is_single_use_expires_and_only_for_the_officer_paged(
    engine: Engine, clock: ManualClock, tmp_path: Path, mailbox: Mailbox
) -> None:
    settings = settings_for(tmp_path, mailbox, notify_ack_ttl_s=600)
    d = make_dispatcher(engine, settings, clock, push=False)
    u = build_unit(engine, None, None)
    raise_alert(engine, u.subject, clock.now())
    d.step()
    d.step()
    (mail,) = mailbox.mails
    m = TOKEN.search(mail.body)
    assert m is not None
    page_id, exp = d.tokens.page_of(m.group(1))

    def use(user: int, at: float) -> ack.AckOutcome:
        with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            return ack.acknowledge(conn, page_id, exp, user, at)

    forged = AckTokens(b"k" * 32).issue(page_id, exp)  # signed with another key
    for bad in ("", "x.y.z", m.group(1)[:-2] + "AA", forged):
        try:
            d.tokens.page_of(bad)
        except ack.AckError as e:
            assert e.status == 422
        else:
            raise AssertionError(f"accepted {bad!r}")
    for user, status in ((u.second, 403), (u.supervisor, 403)):
        try:
            use(user, clock.now())
        except ack.AckError as e:
            assert e.status == status
        else:
            raise AssertionError("another officer used the link")
    try:
        use(u.first, clock.now() + 600)
    except ack.AckExpired:
        pass
    else:
        raise AssertionError("an expired link was accepted")
    assert use(u.first, clock.now() + 599).result == "acknowledged"
    # Used again by the officer paged (a double tap, the e-mail and the push both opened):
    # told how the alert stands, nothing written twice.
    assert use(u.first, clock.now() + 599).result == "already"
    assert _audit(engine).count("notification.acknowledged") == 1
    with engine.connect() as conn:
        c = alert_actions.c
        acks = conn.execute(select(c.user_id).where(c.action == "acknowledged")).scalars().all()
    assert acks == [u.first]


def test_two_uses_of_a_link_at_once_acknowledge_once(
    engine: Engine, clock: ManualClock, tmp_path: Path, mailbox: Mailbox
) -> None:
    """The second use waits for the first's transaction (PostgreSQL: on the page's row,
    which the test sees it waiting for; SQLite: on the write lock) and then answers
    "already": not a refusal, and not a second acknowledgement."""
    settings = settings_for(tmp_path, mailbox)
    d = make_dispatcher(engine, settings, clock, push=False)
    u = build_unit(engine, None, None)
    raise_alert(engine, u.subject, clock.now())
    d.step()
    d.step()
    m = TOKEN.search(mailbox.mails[0].body)
    assert m is not None
    page_id, exp = d.tokens.page_of(m.group(1))
    second: list[ack.AckOutcome | Exception] = []

    def use_again() -> None:
        try:
            with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
                second.append(ack.acknowledge(conn, page_id, exp, u.first, clock.now()))
        except Exception as e:
            second.append(e)

    with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
        first = ack.acknowledge(conn, page_id, exp, u.first, clock.now())
        other = threading.Thread(target=use_again)
        other.start()
        if not is_sqlite(engine):
            _wait_for_a_lock_wait(engine)
    other.join(60)
    assert first.result == "acknowledged" and [getattr(r, "result", r) for r in second] == [
        "already"
    ]
    assert _audit(engine).count("notification.acknowledged") == 1
    with engine.connect() as conn:
        c = alert_actions.c
        assert conn.execute(select(func.count()).where(c.action == "acknowledged")).scalar() == 1


def _wait_for_a_lock_wait(engine: Engine) -> None:
    """Until a PostgreSQL session of this database waits for a row lock."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar()
        if waiting:
            return
    raise AssertionError("the second use never waited for the first")


def test_a_flapping_condition_pages_once(
    engine: Engine, clock: ManualClock, tmp_path: Path, mailbox: Mailbox
) -> None:
    settings = settings_for(tmp_path, mailbox)
    d = make_dispatcher(engine, settings, clock, push=False)
    u = build_unit(engine, None, None, dedup_s=1800, escalate_after_s=7200)
    raise_alert(engine, u.subject, clock.now())
    d.step()
    d.step()
    assert len(mailbox.mails) == 1
    # Resolved, then the same condition again ten minutes later: the alert reopens and
    # the plan is dropped as a duplicate. After the de-duplication time it pages again.
    for gap, expected in ((600, 1), (1800, 2)):
        with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            conn.execute(update(alerts).values(state=store.RESOLVED))
        now = clock.advance(gap)
        raise_alert(engine, u.subject, now, start=int(now) - 5)
        d.step()
        d.step()
        assert len(mailbox.mails) == expected
    assert d.counts[("plan", "deduplicated")] == 1
    assert "notification.deduplicated" in _audit(engine)


def test_quiet_hours_defer_a_page_to_their_end(
    engine: Engine, clock: ManualClock, tmp_path: Path, mailbox: Mailbox
) -> None:
    settings = settings_for(tmp_path, mailbox)
    d = make_dispatcher(engine, settings, clock, push=False)
    # The clock starts at 2026-09-21 16:13:20 BST (15:13:20 UTC): inside 16:00-17:00.
    u = build_unit(engine, None, None, quiet=("16:00", "17:00"))
    raise_alert(engine, u.subject, clock.now())
    d.step()
    assert mailbox.mails == [] and d.counts[("plan", "deferred")] == 1
    clock.advance(46 * 60 + 40 - 1)  # 16:59:59 local
    d.step()
    assert mailbox.mails == []
    clock.advance(1)
    d.step()
    d.step()
    assert len(mailbox.mails) == 1


def test_failed_sends_are_retried_with_backoff_counted_and_bounded(
    engine: Engine, clock: ManualClock, tmp_path: Path, mailbox: Mailbox, push_service: PushService
) -> None:
    settings = settings_for(tmp_path, mailbox, notify_max_attempts=3, notify_retry_base_s=30)
    d = make_dispatcher(engine, settings, clock)
    assert d.push is not None
    u = build_unit(engine, push_service, d.push.public_key, escalate_after_s=3600)
    mailbox.refuse_next = 1
    push_service.fail_next = 5
    raise_alert(engine, u.subject, clock.now())
    d.step()
    d.step()
    assert mailbox.mails == [] and _rows(engine, ob.EMAIL) == [(ob.PENDING, 1)]
    clock.advance(29)
    d.step()
    assert mailbox.mails == []  # not before its back-off
    clock.advance(1)
    d.step()
    assert len(mailbox.mails) == 1 and _rows(engine, ob.EMAIL) == [(ob.SENT, 2)]
    # The push: 30 s, then 60 s back-off, then the third attempt is the last.
    clock.advance(60)
    d.step()
    assert _rows(engine, ob.PUSH) == [(ob.FAILED, 3)]
    assert d.counts[("push", "retried")] == 2 and d.counts[("push", "failed")] == 1
    assert d.counts[("email", "retried")] == 1 and d.counts[("email", "sent")] == 1
    assert "notification.failed" in _audit(engine)


def test_a_subscription_the_push_service_has_forgotten_is_removed(
    engine: Engine, clock: ManualClock, tmp_path: Path, mailbox: Mailbox, push_service: PushService
) -> None:
    settings = settings_for(tmp_path, mailbox)
    d = make_dispatcher(engine, settings, clock)
    assert d.push is not None
    u = build_unit(engine, push_service, d.push.public_key)
    push_service.unsubscribe(f"user{u.first}")
    raise_alert(engine, u.subject, clock.now())
    d.step()
    d.step()
    assert _rows(engine, ob.PUSH) == [(ob.FAILED, 1)]  # a 404 is not retried
    with engine.connect() as conn:
        left = conn.execute(select(push_subscriptions.c.user_id)).scalars().all()
    assert left == [u.second]


def test_nothing_is_lost_across_a_restart(
    engine: Engine, clock: ManualClock, tmp_path: Path, mailbox: Mailbox
) -> None:
    settings = settings_for(tmp_path, mailbox)
    u = build_unit(engine, None, None)
    raise_alert(engine, u.subject, clock.now())
    # A dispatcher claimed the e-mail and died before sending it (its lease holds the row).
    first = make_dispatcher(engine, settings, clock, push=False)
    first.step()
    o = notification_outbox.c
    with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
        (row_id,) = conn.execute(select(o.id).where(o.kind == ob.EMAIL)).scalars()
        assert first._claim(conn, row_id, clock.now())
    second = make_dispatcher(engine, settings, clock, push=False)
    second.step()
    assert mailbox.mails == []  # the lease is someone else's
    clock.advance(first.lease_s + 1)
    second.step()
    assert len(mailbox.mails) == 1 and _rows(engine, ob.EMAIL) == [(ob.SENT, 1)]


def test_the_hand_over_commits_with_the_alert_or_not_at_all(
    engine: Engine, clock: ManualClock
) -> None:
    u = build_unit(engine, None, None)
    try:
        with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            ep = Episode(u.subject, "tamper", "strap_tamper", "strap", 1, 1, 1, severity="critical")
            SqlRepository(conn, clock.now()).apply_episodes(Changes(raised=[ep]))
            raise RuntimeError("the rules' transaction fails after raising")
    except RuntimeError:
        pass
    with engine.connect() as conn:
        assert conn.execute(select(notification_outbox)).all() == []
        assert conn.execute(select(alerts)).all() == []
    raise_alert(engine, u.subject, clock.now())
    assert _rows(engine, ob.PLAN) == [(ob.PENDING, 0)]


def test_every_write_of_a_page_is_in_an_immediate_transaction(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: ManualClock,
    mailbox: Mailbox,
    push_service: PushService,
) -> None:
    """SQLite: a transaction begun deferred that reads and then writes fails at once with
    "database is locked" if another connection (a request of the API the dispatcher runs
    in, ingest's rules) commits in between; the busy timeout does not cover it. So, as the
    rules' sink, the sessions and the purge do, each write of a page's life (plan, sends,
    escalation, acknowledgement, the escalation dropped) is in BEGIN IMMEDIATE."""
    engine = migrated(request, f"sqlite:///{tmp_path / 'immediate.db'}")
    settings = settings_for(tmp_path, mailbox)
    d = make_dispatcher(engine, settings, clock)
    assert d.push is not None
    u = build_unit(engine, push_service, d.push.public_key, escalate_after_s=300)
    deferred: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _write(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE") and not conn.get_execution_options().get(
            "sqlite_immediate"
        ):
            deferred.append(statement)

    raise_alert(engine, u.subject, clock.now())
    d.step()
    d.step()
    clock.advance(301)
    d.step()
    d.step()
    (second,) = mailbox.to(f"u{u.second}@example.org")
    m = TOKEN.search(second.body)
    assert m is not None
    page_id, exp = d.tokens.page_of(m.group(1))
    with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
        assert ack.acknowledge(conn, page_id, exp, u.second, clock.now()).result == "acknowledged"
    clock.advance(3600)
    d.step()
    assert _rows(engine, ob.ESCALATE)[-1][0] == ob.DROPPED
    assert deferred == []
    engine.dispose()
