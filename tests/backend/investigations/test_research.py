"""Evaluation: outcomes officers record, and the pseudonymised cohort researchers read
(JSON and CSV) against the compliance scenario's truth; nobody named or placed in either;
small counts suppressed; every read audited."""

from __future__ import annotations

import csv
import io
from typing import Any, get_args

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from backend.api.routes import users as users_route
from backend.rules import store
from backend.security import roles
from backend.services import research
from backend.storage.schema import TAG as TAG_ROLE
from backend.storage.schema import alerts, audit_log, orders, subjects
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import UNIT_A, UNIT_B, World
from tests.backend.conftest import ENGINES
from tests.backend.investigations.scenario import P0, P1, ComplianceTruth, Stage

PERIOD = {"from": P0, "to": P1}


def _as(client: TestClient, user: str) -> dict[str, str]:
    return bearer(login(client, user))


def _outcome(client: TestClient, user: str, subject: int, **body: Any) -> Any:
    body = {"kind": "completed", "occurred_on": "2026-09-01", **body}
    return client.post(f"/api/subjects/{subject}/outcomes", json=body, headers=_as(client, user))


@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)
def test_officers_of_the_owning_unit_record_outcomes(
    client: TestClient, world: World, api_engine: Engine
) -> None:
    a1, b1 = world.subjects["A-1"], world.subjects["B-1"]
    with api_engine.begin() as conn:
        foreign_order = conn.execute(
            orders.insert().values(
                subject_id=b1, kind="licence", reference="ORD-B", starts_at=P0, ends_at=None,
                conditions="", created_at=P0,
            ).returning(orders.c.id)
        ).scalar_one()  # fmt: skip
    r = _outcome(client, "officer.turnaround", a1, kind="recalled", note="licence recall")
    assert r.status_code == 201, r.text
    assert (r.json()["kind"], r.json()["occurred_on"]) == ("recalled", "2026-09-01")
    listed = client.get(
        f"/api/subjects/{a1}/outcomes", headers=_as(client, "supervisor.turnaround")
    )
    assert [o["note"] for o in listed.json()] == ["licence recall"]
    # Bad input: a clear 422 and nothing stored.
    for bad in ({"kind": "escaped"}, {"occurred_on": "2031-01-01"}, {"occurred_on": "1999-12-31"},
                {"occurred_on": "2026-02-30"}, {"order_id": foreign_order},
                {"note": "x" * 2001}):  # fmt: skip
        r = _outcome(client, "officer.turnaround", a1, **bad)
        assert r.status_code == 422, (bad, r.text)
        assert "detail" in r.json()
    # Another unit, a researcher, a partner: the subject is not theirs to see.
    for user in ("officer.mosovo", "researcher.turnaround", "researcher.mosovo"):
        assert _outcome(client, user, a1).status_code == 404, user
    listed = client.get(f"/api/subjects/{a1}/outcomes", headers=_as(client, "officer.turnaround"))
    assert len(listed.json()) == 1
    with api_engine.connect() as conn:
        entry = conn.execute(select(audit_log).where(audit_log.c.action == "outcome.record")).one()
    assert entry.subject_ids == [a1] and entry.detail["kind"] == "recalled"


def _monitored_subjects(stage: Stage, unit: int, refs: list[str], first_tag: int) -> list[int]:
    """Subjects wearing a tag (no data) through the scenario's period."""
    out = []
    for i, ref in enumerate(refs):
        sid = stage.subject(ref, unit)
        stage.device(first_tag + i, TAG_ROLE)
        stage.assign(sid, first_tag + i, TAG_ROLE, P0 - 86400)
        out.append(sid)
    return out


def test_researchers_read_the_cohort_under_pseudonyms(
    app: FastAPI,
    client: TestClient,
    compliance: ComplianceTruth,
    api_engine: Engine,
    api_clock: Any,
    world: World,
) -> None:
    stage = Stage(api_engine, api_clock)
    others = _monitored_subjects(stage, world.units[UNIT_A], [f"A-C{i}" for i in range(4)], 7001)
    (lone,) = _monitored_subjects(stage, world.units[UNIT_B], ["B-C0"], 7101)
    with api_engine.begin() as conn:
        rows = {r.type: r.id for r in conn.execute(select(alerts))}
        officer = world.users["officer.turnaround"][0]
        store.resolve(conn, rows["curfew_breach"], officer, "breach_confirmed", "seen", P1)
    assert _outcome(client, "officer.turnaround", compliance.subject, kind="recalled",
                    occurred_on="2026-09-24").status_code == 201  # fmt: skip

    r = client.get(
        "/api/research/cohort", params=PERIOD, headers=_as(client, "researcher.turnaround")
    )
    assert r.status_code == 200, r.text
    cohort = r.json()
    key = app.state.tagwatch.research_key
    pids = {research.pseudonym(key, s): s for s in [compliance.subject, *others]}
    assert sorted(row["pid"] for row in cohort["rows"]) == sorted(pids)
    mine = next(row for row in cohort["rows"] if pids[row["pid"]] == compliance.subject)
    kept = sum(1 for ok, _ in compliance.nights.values() if ok)
    assert (mine["nights_kept"], mine["nights_broken"]) == (kept, len(compliance.nights) - kept)
    assert mine["zone_events"] == {"exclusion_entry": 1}
    assert mine["alerts_by_outcome"]["breach_confirmed"] == 1
    assert mine["alerts_by_type"]["not_charged"] == 1
    assert mine["outcomes"] == ["recalled"]
    assert mine["wear_days"] == pytest.approx((P1 - P0) / 86400, abs=0.01)
    quiet = [row for row in cohort["rows"] if row["pid"] != mine["pid"]]
    assert all(row["nights_broken"] == 0 and row["outcomes"] == [] for row in quiet)
    # Aggregates: five subjects is shown; one broken night, one recall are not.
    assert cohort["subjects"] == 5 and cohort["min_cell_count"] == 5
    assert cohort["totals"]["nights_broken"] is None
    assert cohort["totals"]["outcomes.recalled"] is None

    e = client.get("/api/research/export.csv", params=PERIOD,
                   headers=_as(client, "supervisor.turnaround"))  # fmt: skip
    assert e.status_code == 200 and e.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(e.text)))
    assert {row["pid"] for row in table} == set(pids)
    by_pid = {row["pid"]: row for row in table}
    assert by_pid[mine["pid"]]["nights_broken"] == "1"
    assert by_pid[mine["pid"]]["outcomes"] == "recalled"
    assert by_pid[quiet[0]["pid"]]["alerts_by_type.not_charged"] == "0"

    # Nobody is named or placed in either answer.
    with api_engine.connect() as conn:
        people = conn.execute(select(subjects.c.name, subjects.c.reference, subjects.c.id)).all()
    assert len(people) >= 8
    for text in (r.text, e.text):
        for name, reference, _ in people:
            assert name not in text and reference not in text, (name, reference)
        for word in ("coordinates", "latitude", "lat_e7", "geometry", "subject_id", "risk"):
            assert word not in text, word

    # A unit's cohort of one gives no rows and no small counts.
    b = client.get("/api/research/cohort", params=PERIOD, headers=_as(client, "researcher.mosovo"))
    assert b.status_code == 200
    assert (b.json()["subjects"], b.json()["rows"]) == (None, [])
    assert research.pseudonym(key, lone) not in b.text

    # Each read is in the audit log with the subjects it covered.
    with api_engine.connect() as conn:
        got = {
            row.action: row.subject_ids
            for row in conn.execute(
                select(audit_log).where(audit_log.c.action.like("research.%"))
                .order_by(audit_log.c.id)
            )
        }  # fmt: skip
    assert got["research.cohort"] == [lone]  # the last cohort read: MOSOVO's
    assert got["research.export"] == sorted(pids.values())


def test_only_researchers_and_supervisors_read_the_cohort(client: TestClient, world: World) -> None:
    for user in ("officer.turnaround", "partner.probation", "auditor.turnaround",
                 "administrator.turnaround"):  # fmt: skip
        for url in ("/api/research/cohort", "/api/research/export.csv"):
            r = client.get(url, params=PERIOD, headers=_as(client, user))
            assert r.status_code == 403, (user, url, r.text)
    r = client.get("/api/research/cohort", params={"from": P0, "to": P0 + 93 * 86400},
                   headers=_as(client, "researcher.turnaround"))  # fmt: skip
    assert r.status_code == 422 and "92 days" in r.text


def test_administrators_create_researchers(client: TestClient, world: World) -> None:
    """The account API takes every role there is, the researcher among them."""
    assert get_args(users_route.Role) == roles.ROLES
    body = {"username": "stats", "unit_id": world.units[UNIT_A], "role": "researcher",
            "password": "correct horse battery staple"}  # fmt: skip
    r = client.post("/api/users", json=body, headers=_as(client, "administrator.turnaround"))
    assert r.status_code == 201, r.text
    me = client.get("/api/auth/me", headers=_as(client, "stats")).json()
    assert me["role"] == "researcher"
