"""Evaluation: outcomes officers record, and the pseudonymised cohort researchers read
(JSON and CSV) against the compliance scenario's truth; nobody named or placed in either;
small counts suppressed; every read audited."""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any, get_args

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from backend.api.routes import users as users_route
from backend.investigations import reports as rp
from backend.rules import store
from backend.security import access, roles
from backend.services import research
from backend.storage.schema import TAG as TAG_ROLE
from backend.storage.schema import alerts, audit_log, orders, subjects
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import UNIT_A, UNIT_B, World
from tests.backend.conftest import ENGINES
from tests.backend.investigations.scenario import P0, P1, ComplianceTruth, Stage, local

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


@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)
def test_outcomes_are_corrected_and_withdrawn_by_the_owning_unit_and_audited(
    client: TestClient, world: World, api_engine: Engine
) -> None:
    a1, a2 = world.subjects["A-1"], world.subjects["A-2"]
    officer = _as(client, "officer.turnaround")
    oid = _outcome(client, "officer.turnaround", a1, kind="recalled", note="first").json()["id"]
    url = f"/api/outcomes/{oid}"
    fix = {"kind": "reoffended", "occurred_on": "2026-08-30", "reason": "the recall was for B"}
    r = client.patch(url, json=fix, headers=officer)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["kind"], got["occurred_on"], got["note"]) == ("reoffended", "2026-08-30", "first")
    assert got["corrected_by"] == world.users["officer.turnaround"][0] and got["corrected_at"]
    # Judged as when recorded: a clear 422 and nothing changed; a reason is required.
    for bad in ({"occurred_on": "2031-01-01", "reason": "typo"}, {"kind": "escaped",
                "reason": "typo"}, {"note": "x" * 2001, "reason": "typo"}, {"kind": "other"},
                {"kind": "other", "reason": ""}, {"kind": None, "reason": "typo"}):  # fmt: skip
        r = client.patch(url, json=bad, headers=officer)
        assert r.status_code == 422, (bad, r.text)
    # Not theirs to change: another unit, a researcher, a partner; an outcome through
    # another subject's id does not exist for anyone but its unit.
    for user in ("officer.mosovo", "researcher.turnaround", "partner.probation"):
        r = client.patch(url, json={"kind": "other", "reason": "mine now"},
                         headers=_as(client, user))  # fmt: skip
        assert r.status_code in (403, 404), (user, r.text)
        r = client.post(f"{url}/withdrawal", json={"reason": "mine now"},
                        headers=_as(client, user))  # fmt: skip
        assert r.status_code in (403, 404), (user, r.text)
    assert client.patch("/api/outcomes/999999", json=fix, headers=officer).status_code == 404

    r = client.post(f"{url}/withdrawal", json={"reason": "recorded for the wrong person"},
                    headers=_as(client, "supervisor.turnaround"))  # fmt: skip
    assert r.status_code == 200 and r.json()["withdrawal_reason"] == "recorded for the wrong person"
    twice = client.post(f"{url}/withdrawal", json={"reason": "twice"}, headers=officer)
    late = client.patch(url, json={"kind": "other", "reason": "late"}, headers=officer)
    for again in (twice, late):
        assert again.status_code == 409 and "withdrawn" in again.text
    listed = client.get(f"/api/subjects/{a1}/outcomes", headers=officer).json()
    assert [(o["id"], o["kind"], o["withdrawn_at"] is not None) for o in listed] == [
        (oid, "reoffended", True)
    ]
    assert client.get(f"/api/subjects/{a2}/outcomes", headers=officer).json() == []

    with api_engine.connect() as conn:
        log = conn.execute(
            select(audit_log.c.action, audit_log.c.subject_ids, audit_log.c.detail)
            .where(audit_log.c.action.like("outcome.%")).order_by(audit_log.c.id)
        ).all()  # fmt: skip
    assert [(e.action, e.subject_ids) for e in log] == [
        ("outcome.record", [a1]), ("outcome.correct", [a1]), ("outcome.withdraw", [a1])
    ]  # fmt: skip
    assert log[1].detail["changed"] == {"kind": ["recalled", "reoffended"],
                                        "occurred_on": ["2026-09-01", "2026-08-30"]}  # fmt: skip
    assert log[1].detail["reason"] == "the recall was for B"


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
    # One recorded in error and withdrawn: it counts nowhere.
    wrong = _outcome(client, "officer.turnaround", compliance.subject, kind="reoffended").json()
    r = client.post(f"/api/outcomes/{wrong['id']}/withdrawal", json={"reason": "wrong subject"},
                    headers=_as(client, "supervisor.turnaround"))  # fmt: skip
    assert r.status_code == 200, r.text

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
    # Week by week (the period is one week from its Monday): five wearers, all their wear
    # days; the one subject's few nights are not given.
    wear = sum(row["wear_days"] for row in cohort["rows"])
    (week,) = cohort["weeks"]
    assert (week["week"], week["wearers"]) == ("2026-09-21", 5)
    assert week["wear_days"] == pytest.approx(wear, abs=0.01)
    assert (week["nights_kept"], week["nights_broken"]) == (None, None)

    e = client.get("/api/research/export.csv", params=PERIOD,
                   headers=_as(client, "supervisor.turnaround"))  # fmt: skip
    assert e.status_code == 200 and e.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(e.text)))
    assert {row["pid"] for row in table} == set(pids)
    by_pid = {row["pid"]: row for row in table}
    assert by_pid[mine["pid"]]["nights_broken"] == "1"
    assert by_pid[mine["pid"]]["outcomes"] == "recalled"
    assert by_pid[quiet[0]["pid"]]["alerts_by_type.not_charged"] == "0"

    p = client.get("/api/research/export.parquet", params=PERIOD,
                   headers=_as(client, "researcher.turnaround"))  # fmt: skip
    assert p.status_code == 200, p.text
    assert p.headers["content-type"] == "application/vnd.apache.parquet"
    parquet = pq.read_table(io.BytesIO(p.content))
    assert parquet.column_names == list(table[0])  # the CSV's columns, in its order
    assert parquet.schema.field("wear_days").type == pa.float64()
    assert parquet.schema.field("nights_broken").type == pa.int64()
    assert parquet.to_pylist() == [
        {c: (v if c in ("pid", "outcomes") else float(v) if c == "wear_days" else int(v))
         for c, v in row.items()}
        for row in table
    ]  # fmt: skip

    # Nobody is named or placed in any answer.
    with api_engine.connect() as conn:
        people = conn.execute(select(subjects.c.name, subjects.c.reference, subjects.c.id)).all()
    assert len(people) >= 8
    for text in (r.text, e.text, p.content.decode("latin-1")):
        for name, reference, _ in people:
            assert name not in text and reference not in text, (name, reference)
        for word in ("coordinates", "latitude", "lat_e7", "geometry", "subject_id", "risk"):
            assert word not in text, word

    # A unit's cohort of one gives no rows and no figures at all: its totals would be the
    # one subject's, however large.
    b = client.get("/api/research/cohort", params=PERIOD, headers=_as(client, "researcher.mosovo"))
    assert b.status_code == 200
    assert (b.json()["subjects"], b.json()["rows"]) == (None, [])
    assert b.json()["totals"] and set(b.json()["totals"].values()) == {None}
    assert [(w["wearers"], w["wear_days"]) for w in b.json()["weeks"]] == [(None, None)]
    assert research.pseudonym(key, lone) not in b.text
    empty = client.get("/api/research/export.parquet", params=PERIOD,
                       headers=_as(client, "researcher.mosovo"))  # fmt: skip
    assert pq.read_table(io.BytesIO(empty.content)).column_names == research.ROW_COLUMNS

    # Each read is in the audit log with the subjects it covered, an export with its format.
    with api_engine.connect() as conn:
        got = [
            (row.action, row.subject_ids, row.detail.get("format"))
            for row in conn.execute(
                select(audit_log).where(audit_log.c.action.like("research.%"))
                .order_by(audit_log.c.id)
            )
        ]  # fmt: skip
    cohort_ids = sorted(pids.values())
    assert got == [
        ("research.cohort", cohort_ids, None),
        ("research.export", cohort_ids, "csv"),
        ("research.export", cohort_ids, "parquet"),
        ("research.cohort", [lone], None),
        ("research.export", [lone], "parquet"),
    ]


def test_only_researchers_and_supervisors_read_the_cohort(client: TestClient, world: World) -> None:
    for user in ("officer.turnaround", "partner.probation", "auditor.turnaround",
                 "administrator.turnaround"):  # fmt: skip
        for url in ("/api/research/cohort", "/api/research/export.csv",
                    "/api/research/export.parquet"):  # fmt: skip
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


def test_weeks_run_monday_to_monday_in_the_subjects_zone() -> None:
    """The week series cuts wear at local Mondays 00:00 (the Sunday the clocks go back has
    25 hours) and counts nights by the night's date; a night in progress counts nowhere."""
    start, end = local("2026-10-24 12:00"), local("2026-10-27 12:00")
    rep = rp.Compliance(1, "R", "N", "Europe/London", start, end, end)
    rep.monitored = [(start, end)]
    states: dict[str, rp.NightStatus] = {
        "2026-10-25": "kept", "2026-10-26": "broken", "2026-10-27": "in_progress",
    }  # fmt: skip
    rep.nights = [rp.Night(night, 0, 0, status, 0.0, []) for night, status in states.items()]
    weeks = research._by_week(rep)
    assert weeks == {
        "2026-10-19": {"wear_s": 37 * 3600, "nights_kept": 1, "wearers": 1},
        "2026-10-26": {"wear_s": 36 * 3600, "nights_broken": 1, "wearers": 1},
    }
    five = research._week("2026-10-19", Counter({k: 5 * v for k, v in weeks["2026-10-19"].items()}))
    assert five == {"week": "2026-10-19", "wearers": 5, "wear_days": round(5 * 37 / 24, 2),
                    "nights_kept": 5, "nights_broken": 0}  # fmt: skip
    assert set(research._week("2026-10-19", weeks["2026-10-19"]).values()) == {"2026-10-19", None}


@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)
def test_a_subject_shared_for_research_is_in_the_receiving_units_cohort_and_nowhere_else(
    app: FastAPI, client: TestClient, world: World, api_engine: Engine, api_clock: Any
) -> None:
    """A share that grants research puts the subject in the receiving unit's cohort (under
    its pseudonym) while it is in force, and shows it to nobody there; a share without it
    (live here) leaves the cohort alone; a revoked one counts no more."""
    stage = Stage(api_engine, api_clock)
    (x,) = _monitored_subjects(stage, world.units[UNIT_A], ["A-R1"], 7201)
    (y,) = _monitored_subjects(stage, world.units[UNIT_A], ["A-R2"], 7202)
    api_clock.set(P1 + 3600)  # the period is over: all of it monitored
    now = api_clock.now()
    supervisor = _as(client, "supervisor.turnaround")

    def share(subject: int, scopes: list[str]) -> int:
        body = {"unit_id": world.units[UNIT_B], "scopes": scopes, "purpose": "evaluation",
                "expires_at": now + 86400}  # fmt: skip
        r = client.post(f"/api/subjects/{subject}/shares", json=body, headers=supervisor)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def cohort_of_b() -> list[int]:
        with api_engine.connect() as conn:
            found = research.cohort(conn, b"k" * 32, world.units[UNIT_B], P0, P1, now)
        return list(found["subject_ids"])

    alone = cohort_of_b()
    assert x not in alone and y not in alone
    research_share = share(x, ["research"])
    share(y, ["live"])
    assert cohort_of_b() == sorted([*alone, x])
    # Nobody in unit B sees X: not its name, not that it exists.
    for user in ("officer.mosovo", "supervisor.mosovo", "researcher.mosovo"):
        who = _as(client, user)
        assert client.get(f"/api/subjects/{x}", headers=who).status_code == 404, user
        listed = client.get("/api/subjects", headers=who)
        assert x not in {s["id"] for s in listed.json()} if listed.status_code == 200 else True
    uid, unit, role = world.users["officer.mosovo"]
    with api_engine.connect() as conn:  # what every list query of the unit is filtered by
        seen = conn.execute(
            access.visible_subject_ids(access.User(uid, "officer.mosovo", unit, role), "view", now)
        ).scalars().all()  # fmt: skip
    assert x not in seen and y in seen
    officer_b = _as(client, "officer.mosovo")
    assert client.get(f"/api/subjects/{y}", headers=officer_b).status_code == 200
    r = client.get("/api/research/cohort", params=PERIOD, headers=_as(client, "researcher.mosovo"))
    assert r.status_code == 200 and "A-R1" not in r.text
    with api_engine.connect() as conn:
        last = conn.execute(
            select(audit_log.c.subject_ids).where(audit_log.c.action == "research.cohort")
            .order_by(audit_log.c.id.desc()).limit(1)
        ).scalar_one()  # fmt: skip
    assert x in last  # the auditor can tell the shared subject was in B's extract

    assert client.delete(f"/api/shares/{research_share}", headers=supervisor).status_code == 200
    assert cohort_of_b() == alone
