"""The retention purge covers the notification tables: the dispatcher's finished outbox rows
by when they finished, and pages once no outbox row refers to them; work still pending
(an escalation not yet due) is never purged, nor the page it escalates."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select

from backend.clock import ManualClock
from backend.storage.retention import purge
from backend.storage.schema import alerts, audit_log, notification_outbox, notification_pages
from sim.notify_peers import Mailbox
from tests.backend.notify.conftest import build_unit, make_dispatcher, raise_alert, settings_for

DAY = 86_400


def _left(engine: Engine) -> tuple[list[tuple[str, str]], int]:
    o = notification_outbox.c
    with engine.connect() as conn:
        rows = conn.execute(select(o.kind, o.state).order_by(o.id)).all()
        pages = len(conn.execute(select(notification_pages.c.id)).all())
    return [(r.kind, r.state) for r in rows], pages


def test_the_purge_takes_finished_notifications_and_keeps_pending_ones(
    engine: Engine, clock: ManualClock, tmp_path: Path, mailbox: Mailbox
) -> None:
    settings = settings_for(tmp_path, mailbox, retention_notifications_days=1)
    d = make_dispatcher(engine, settings, clock, push=False)
    u = build_unit(engine, None, None, escalate_after_s=DAY)
    raise_alert(engine, u.subject, clock.now())
    d.step()  # plan: the first officer's page, its e-mail and its escalation
    d.step()  # the e-mail
    assert _left(engine) == ([("plan", "sent"), ("email", "sent"), ("escalate", "pending")], 1)

    # Two days on, the dispatcher stopped meanwhile: the plan and the e-mail are past the
    # day kept; the escalation, due but not done, stays, and so does the page it refers to.
    clock.advance(2 * DAY)
    deleted = purge(engine, settings, clock, actor="test")
    assert (deleted["notification_outbox"], deleted["notification_pages"]) == (2, 0)
    assert _left(engine) == ([("escalate", "pending")], 1)

    # The escalation runs (the second officer paged, then nobody left), all done; two days
    # later nothing of it is left but the alert and the audit log.
    d.step()
    d.step()
    clock.advance(DAY + 1)
    d.step()
    rows, pages = _left(engine)
    assert pages == 2 and rows and all(state != "pending" for _, state in rows), rows
    clock.advance(2 * DAY)
    deleted = purge(engine, settings, clock, actor="test")
    assert (deleted["notification_outbox"], deleted["notification_pages"]) == (len(rows), 2)
    assert _left(engine) == ([], 0)
    with engine.connect() as conn:
        assert len(conn.execute(select(alerts.c.id)).all()) == 1
        purged = conn.execute(
            select(audit_log.c.detail).where(audit_log.c.action == "retention.purge")
        ).scalars().all()  # fmt: skip
    classes = [p["data_class"] for p in purged if p["data_class"].startswith("notification")]
    assert classes == ["notification_outbox", "notification_pages"] * 2
