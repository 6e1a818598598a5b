"""Consent and the scheme's lifecycle on real SQLite and PostgreSQL: enrolment, withdrawal,
the removal task, and ingest refusing what the subject's devices send after the removal."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from backend.ingest import WITHDRAWN
from backend.services import consent, pool
from backend.services.errors import Conflict, Invalid
from backend.storage.schema import assignments, enrolments, frames, positions, security_events
from firmware import frame as fr
from tests.backend.frames import acked, tag_frame
from tests.backend.services.conftest import HOME, TAGS, Unit

DAY = 86_400


def _consent(at: int) -> consent.Consent:
    return consent.Consent(
        scheme="IOM voluntary GPS",
        consent_at=at,
        sharing=frozenset({"police", "partner"}),
        witnessed_by="Sgt Example",
        document_ref="CONSENT-2026-014",
        review_at=at + 90 * DAY,
    )


def test_lifecycle_from_consent_to_exit(unit: Unit) -> None:
    now = int(unit.clock.now())
    tag = TAGS[0]
    with unit.engine.begin() as conn:
        eid = consent.enrol(conn, unit.subject, _consent(now - 10 * DAY), unit.officer, now)
        pool.add(conn, tag, unit.unit_id, unit.officer, now, "new stock")
    fitted = unit.assign(tag, now - 9 * DAY)
    home = unit.assign(HOME, now - 9 * DAY)
    with unit.engine.begin() as conn:
        pool.assignment_started(conn, tag, fitted, unit.officer, now)
        with pytest.raises(Conflict, match="already enrolled"):
            consent.enrol(conn, unit.subject, _consent(now), unit.officer, now)
        consent.review(conn, unit.subject, now + 60 * DAY, now)
        with pytest.raises(Conflict, match="not been withdrawn"):
            consent.complete_removal(conn, unit.subject, now, unit.officer, now)
        task = consent.withdraw(
            conn, unit.subject, now - DAY, "moving away", unit.officer, now
        ).removal_task
        with pytest.raises(Conflict, match="already withdrawn"):
            consent.withdraw(conn, unit.subject, now, "", unit.officer, now)
    [row] = consent.enrolment_rows(unit.engine.connect(), unit.subject)
    assert row["id"] == eid and row["withdrawn_at"] == now - DAY and row["exited_at"] is None
    assert row["review_at"] == now + 60 * DAY and row["sharing"] == "partner,police"
    assert row["removal"]["id"] == task and row["removal"]["done_at"] is None
    with unit.engine.begin() as conn:
        with pytest.raises(Invalid, match="before the withdrawal"):
            consent.complete_removal(conn, unit.subject, now - 2 * DAY, unit.officer, now)
        stopped = consent.complete_removal(conn, unit.subject, now - 3600, unit.officer, now)
    assert stopped == [tag, HOME]
    with unit.engine.connect() as conn:
        ends = dict(conn.execute(select(assignments.c.id, assignments.c.ends_at)).all())
        [row] = consent.enrolment_rows(conn, unit.subject)
        assert [s["state"] for s in pool.history(conn, tag)] == ["in_stock", "fitted", "removed"]
        assert consent.current(conn, unit.subject) is None
    assert ends == {fitted: now - 3600, home: now - 3600}
    assert row["exited_at"] == now - 3600 and row["removal"]["removed_at"] == now - 3600
    # After exit the subject may enrol again (a fresh consent).
    with unit.engine.begin() as conn:
        consent.enrol(conn, unit.subject, _consent(now), unit.officer, now)


def test_bad_consent_is_refused_with_a_sentence(unit: Unit) -> None:
    now = int(unit.clock.now())
    bad_scope = consent.Consent("s", now, frozenset({"press"}), "w", "d", now + DAY)
    backwards = consent.Consent("s", now, frozenset(), "w", "d", now - DAY)
    with unit.engine.begin() as conn:
        with pytest.raises(Invalid, match="subset of police, partner"):
            consent.enrol(conn, unit.subject, bad_scope, unit.officer, now)
        with pytest.raises(Invalid, match="after consent_at"):
            consent.enrol(conn, unit.subject, backwards, unit.officer, now)
        with pytest.raises(Conflict, match="not enrolled"):
            consent.withdraw(conn, unit.subject, now, "", unit.officer, now)
        assert conn.execute(select(func.count()).select_from(enrolments)).scalar() == 0


def test_ingest_refuses_data_dated_after_the_removal(unit: Unit) -> None:
    """Before the removal the tag's data is stored; a frame dated at or after it is a counted
    `withdrawn` rejection (acknowledged, so the tag frees it; no raw copy kept), while the
    other tags' data is untouched. Fitting the tag to someone again lifts the stop."""
    now = int(unit.clock.now())
    tag, other = TAGS[0], TAGS[1]
    key = unit.devices[tag].key
    with unit.engine.begin() as conn:
        consent.enrol(conn, unit.subject, _consent(now - 10 * DAY), unit.officer, now)
    unit.assign(tag, now - 9 * DAY)
    unit.send(tag, [tag_frame(tag, key, 1, now - 7200)])
    removed = now - 3600
    with unit.engine.begin() as conn:
        consent.withdraw(conn, unit.subject, now - 5000, "", unit.officer, now)
        consent.complete_removal(conn, unit.subject, removed, unit.officer, now)
    unit.send(tag, [tag_frame(tag, key, 2, removed - 1), tag_frame(tag, key, 3, removed),
                    tag_frame(tag, key, 4, now)])  # fmt: skip
    unit.send(other, [tag_frame(other, unit.devices[other].key, 1, now)])
    with unit.engine.connect() as conn:
        stored = sorted(conn.execute(select(frames.c.device, frames.c.seq)).all())
        events = conn.execute(select(security_events)).all()
        assert conn.execute(select(func.count()).select_from(positions)).scalar() == 3
    assert stored == [(tag, 1), (tag, 2), (other, 1)]
    assert [(e.reason, e.device, e.raw) for e in events] == [(WITHDRAWN, tag, b"")] * 2
    assert unit.ingest.rejections[(WITHDRAWN, tag)] == 2
    acks = set()
    for _, payload in unit.published:
        if fr.peek_device(payload) == tag:
            acks |= acked(payload, key)
    assert acks == {(1, s) for s in (1, 2, 3, 4)}
    # Fitted again (a newer assignment): its new data is accepted.
    unit.assign(tag, now - 60)
    unit.send(tag, [tag_frame(tag, key, 5, now)])
    with unit.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(frames)).scalar() == 4
