"""The audit log is a hash chain: verification finds an edited, removed or inserted record;
appends from many threads (and the retention purge) stay one chain, on SQLite and
PostgreSQL; auditors read it, export it as CSV, and their reading is audited too."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, insert, select, update
from typer.testing import CliRunner

from backend import cli
from backend.clock import ManualClock
from backend.security import audit
from backend.settings import Settings
from backend.storage.retention import DATA_CLASSES, purge
from backend.storage.schema import audit_log
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import World
from tests.backend.conftest import ENGINES


def _fill(engine: Engine, n: int, at: float = 1000.0) -> None:
    for i in range(n):
        audit.append_now(
            engine,
            audit.Entry("officer", "read.trail", {"i": i, "path": "/x"}, 7, 1, [3, 1], "trail",
                        "enquiry ü", "r" * 32),
            at + i,
        )  # fmt: skip


def test_an_intact_chain_verifies_and_the_retention_purge_is_in_it(
    engine: Engine, clock: ManualClock
) -> None:
    _fill(engine, 5)
    purge(engine, Settings(), clock)
    _fill(engine, 2)
    with engine.connect() as conn:
        v = audit.verify(conn)
        purges = conn.execute(
            select(func.count()).where(audit_log.c.action == "retention.purge")
        ).scalar()
    assert purges == len(DATA_CLASSES)  # one record per data class, even with nothing purged
    assert v.ok and v.checked == 7 + len(DATA_CLASSES) and v.first_bad_id is None
    assert v.head == audit.head(engine.connect())


def test_verification_finds_an_edited_record(engine: Engine) -> None:
    _fill(engine, 6)
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.id == 4).values(purpose="nothing to see"))
    with engine.connect() as conn:
        v = audit.verify(conn)
    assert (v.ok, v.first_bad_id, v.reason) == (False, 4, "hash does not match the record")


def test_verification_finds_a_removed_record(engine: Engine) -> None:
    _fill(engine, 6)
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.id == 3))
    with engine.connect() as conn:
        v = audit.verify(conn)
    assert (v.ok, v.first_bad_id, v.reason) == (False, 4, "prev_hash does not link")


def test_verification_finds_a_record_rehashed_in_place(engine: Engine) -> None:
    """An editor who recomputes the edited record's own hash still breaks the next link."""
    _fill(engine, 5)
    with engine.begin() as conn:
        row = dict(conn.execute(select(audit_log).where(audit_log.c.id == 2)).mappings().one())
        row["actor"] = "someone else"
        new_hash = audit.chain_hash(row["prev_hash"], row)
        conn.execute(
            update(audit_log).where(audit_log.c.id == 2).values(actor="someone else", hash=new_hash)
        )
    with engine.connect() as conn:
        v = audit.verify(conn)
    assert (v.ok, v.first_bad_id) == (False, 3)


def test_a_record_inserted_without_the_chain_is_found(engine: Engine) -> None:
    _fill(engine, 3)
    with engine.begin() as conn:
        conn.execute(insert(audit_log).values(at=1.0, actor="x", action="y", detail={}))
    with engine.connect() as conn:
        v = audit.verify(conn)
    assert (v.ok, v.first_bad_id) == (False, 4)


def test_concurrent_appends_form_one_chain(engine: Engine) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            _fill(engine, 15)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        v = audit.verify(conn)
    assert v.ok and v.checked == 60


def test_auditors_search_export_and_verify_through_the_api(
    client: TestClient, world: World, api_engine: Engine
) -> None:
    officer = login(client, "officer.turnaround")
    a1 = world.subjects["A-1"]
    client.get(
        f"/probe/subjects/{a1}/trail", params={"purpose": "enquiry 1"}, headers=bearer(officer)
    )
    auditor = login(client, "auditor.mosovo")
    r = client.get("/api/audit", params={"subject_id": a1}, headers=bearer(auditor))
    assert r.status_code == 200
    records = r.json()["records"]
    assert [(x["action"], x["purpose"]) for x in records] == [("read.trail", "enquiry 1")]
    assert records[0]["subject_references"] == ["A-1"]
    # By the people's names for them: the username and the subject's reference.
    by_name = {"actor": "officer.turnaround", "subject": "A-1"}
    r = client.get("/api/audit", params=by_name, headers=bearer(auditor))
    assert [(x["action"], x["actor"]) for x in r.json()["records"]] == [
        ("read.trail", "officer.turnaround")
    ]
    nobody = {"actor": "auditor.mosovo", "subject": "A-1"}
    assert client.get("/api/audit", params=nobody, headers=bearer(auditor)).json()["records"] == []
    unknown = client.get("/api/audit", params={"subject": "NO-SUCH"}, headers=bearer(auditor))
    assert unknown.json()["records"] == []
    r = client.get("/api/audit", params={"action": "auth.", "limit": 1}, headers=bearer(auditor))
    assert len(r.json()["records"]) == 1 and r.json()["next_after_id"] is not None
    r = client.get("/api/audit/export.csv", headers=bearer(auditor))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[0]["prev_hash"] == audit.GENESIS
    # The CSV carries everything needed to re-verify the chain away from the database.
    assert audit.verify_rows(audit.from_csv(io.StringIO(r.text, newline=""))).ok
    assert client.get("/api/audit/verify", headers=bearer(auditor)).json()["ok"] is True
    with api_engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.id == 2).values(actor="nobody"))
    v = client.get("/api/audit/verify", headers=bearer(auditor)).json()
    assert (v["ok"], v["first_bad_id"]) == (False, 2)
    # Reading the log is itself in the log.
    with api_engine.connect() as conn:
        actions = set(conn.execute(select(audit_log.c.action)).scalars())
    assert {"audit.read", "audit.export", "audit.verify"} <= actions
    assert client.get("/api/audit", headers=bearer(officer)).status_code == 403


# What a spreadsheet runs: a cell beginning with one of these.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
TYPED = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "'quoted", "plain"]


@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)
def test_the_audit_export_shows_typed_formulas_as_text_and_still_verifies(
    client: TestClient, world: World, tmp_path: Path
) -> None:
    for name in TYPED:  # sign-in attempts: the typed username becomes the record's actor
        r = client.post("/api/auth/token", data={"username": name, "password": "x" * 12})
        assert r.status_code == 401
    auditor = bearer(login(client, "auditor.mosovo"))
    text = client.get("/api/audit/export.csv", headers=auditor).text
    cells = [c for row in csv.reader(io.StringIO(text, newline="")) for c in row]
    assert [c for c in cells if c.startswith(FORMULA_START)] == []
    # Read back, the records are what was stored: the typed names, and a chain that verifies
    # to the head the database gives.
    records = list(audit.from_csv(io.StringIO(text, newline="")))
    failed = [r["actor"] for r in records if r["action"] == "auth.login_failed"]
    assert failed == TYPED
    head = client.get("/api/audit/verify", headers=auditor).json()["head"]
    assert audit.verify_rows(records) == audit.Verification(True, len(records), head)
    # The same away from the database, with the command line.
    export = tmp_path / "audit.csv"
    export.write_text(text, newline="")
    result = CliRunner().invoke(cli.app, ["audit-verify", str(export)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["head"] == head
    export.write_text(text.replace("'=cmd|", "'=cnd|"), newline="")  # one record edited
    result = CliRunner().invoke(cli.app, ["audit-verify", str(export)])
    assert result.exit_code == 1, result.output
    bad = json.loads(result.output)
    edited = next(r["id"] for r in records if r["actor"] == TYPED[0])
    assert bad["ok"] is False and bad["first_bad_id"] == edited
