"""The voluntary scheme through the HTTP API: consent, withdrawal and removal end to end
(with the tag pool following the equipment), the subject access bundle audited as a
disclosure, and the pool's own routes, with who may use each."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from backend.clock import ManualClock
from backend.storage.schema import audit_log
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import PARTNER_UNIT, UNIT_A, UNIT_B, World
from tests.backend.conftest import ENGINES
from tests.backend.investigations.scenario import Fix, Stage

DAY = 86_400
TAG, SPARE, HOME = 6001, 6002, 6101


def _consent(t: int) -> dict[str, object]:
    return {
        "scheme": "IOM voluntary",
        "consent_at": t,
        "sharing": ["police"],
        "witnessed_by": "Sgt Example",
        "document_ref": "CF-2026-7",
        "review_at": t + 90 * DAY,
    }


@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)
def test_consent_withdrawal_and_removal_end_to_end(
    client: TestClient, world: World, api_engine: Engine, api_clock: ManualClock
) -> None:
    now = int(api_clock.now())
    stage = Stage(api_engine, api_clock)
    for dev in (TAG, SPARE):
        stage.device(dev, "tag")
    subject = world.subjects["A-1"]
    officer = bearer(login(client, world.user(UNIT_A, "officer")))
    base = f"/api/subjects/{subject}"
    assert client.get(f"{base}/enrolments", headers=officer).json() == []
    r = client.post(f"{base}/enrolments", headers=officer, json=_consent(now - 3 * DAY))
    assert r.status_code == 201, r.text
    assert r.json()["sharing"] == ["police"] and r.json()["removal"] is None
    again = client.post(f"{base}/enrolments", headers=officer, json=_consent(now))
    assert again.status_code == 409 and "already enrolled" in again.json()["detail"]
    early = client.post(
        f"{base}/consent/review", headers=officer, json={"review_at": now - 4 * DAY}
    )
    assert early.status_code == 422 and "after consent_at" in early.json()["detail"]
    typo = client.post(f"{base}/enrolments", headers=officer, json=_consent(1000))
    assert typo.status_code == 422 and "ten years" in typo.json()["detail"]

    # Shared within the consent only (police units, not partners).
    supervisor = bearer(login(client, world.user(UNIT_A, "supervisor")))
    for unit, code in ((PARTNER_UNIT, 409), (UNIT_B, 201)):
        share = {"unit_id": world.units[unit], "scopes": ["live"], "purpose": "joint case",
                 "expires_at": now + DAY}  # fmt: skip
        r = client.post(f"{base}/shares", headers=supervisor, json=share)
        assert r.status_code == code, r.text
    assert (
        "does not cover sharing with partner units"
        in client.post(
            f"{base}/shares",
            headers=supervisor,
            json={**share, "unit_id": world.units[PARTNER_UNIT]},
        ).json()["detail"]
    )

    # Fitted from the pool through the equipment route.
    assert client.post("/api/pool", headers=officer, json={"device": TAG}).status_code == 201
    fit = client.post(
        f"{base}/assignments",
        headers=officer,
        json={"device": TAG, "role": "tag", "starts_at": now - 2 * DAY},
    )
    assert fit.status_code == 201, fit.text
    pool = client.get("/api/pool", headers=officer).json()
    assert [(t["device"], t["state"]) for t in pool["tags"]] == [(TAG, "fitted")]

    mosovo = bearer(login(client, world.user(UNIT_B, "officer")))
    assert client.get(base, headers=mosovo).status_code == 200  # by the share
    w = client.post(
        f"{base}/consent/withdrawal",
        headers=officer,
        json={"withdrawn_at": now - DAY, "note": "no longer wishes to take part"},
    )
    assert w.status_code == 200, w.text
    assert w.json()["withdrawn_at"] == now - DAY and w.json()["removal"]["done_at"] is None
    # Sharing rested on the consent: the share to MOSOVO ends with it.
    given = client.get(f"{base}/shares", headers=supervisor).json()
    assert [(x["unit_id"], x["active"]) for x in given] == [(world.units[UNIT_B], False)]
    assert client.get(base, headers=mosovo).status_code == 404  # no longer visible at all
    with api_engine.connect() as conn:
        detail = conn.execute(
            select(audit_log.c.detail).where(audit_log.c.action == "consent.withdraw")
        ).scalar_one()
    assert detail["revoked_shares"] == [given[0]["id"]]
    pool = client.get("/api/pool", headers=officer).json()
    assert [(x["subject_id"], x["withdrawn_at"]) for x in pool["removals"]] == [
        (subject, now - DAY)
    ]
    # No fitting after a withdrawal: the removal is what is due.
    refit = client.post(
        f"{base}/assignments",
        headers=officer,
        json={"device": SPARE, "role": "tag", "starts_at": now - 3600},
    )
    assert refit.status_code == 409 and "withdrew consent" in refit.json()["detail"]

    done = client.post(f"{base}/consent/removal", headers=officer, json={"removed_at": now - 600})
    assert done.status_code == 200, done.text
    assert done.json()["exited_at"] == now - 600
    equipment = client.get(f"{base}/assignments", headers=officer).json()
    assert [(a["device"], a["ends_at"]) for a in equipment] == [(TAG, now - 600)]
    pool = client.get("/api/pool", headers=officer).json()
    assert pool["removals"] == [] and pool["tags"][0]["state"] == "removed"
    with api_engine.connect() as conn:
        actions = [
            r.action
            for r in conn.execute(
                select(audit_log.c.action)
                .where(audit_log.c.action.like("consent.%"))
                .order_by(audit_log.c.id)
            )
        ]
    assert actions == ["consent.enrol", "consent.withdraw", "consent.removal"]
    # MOSOVO, no longer shared A-1, does not get its consent; a partner of the owning unit
    # reads it but cannot change it.
    assert client.get(f"{base}/enrolments", headers=mosovo).status_code == 404
    partner = bearer(login(client, world.user(UNIT_A, "partner")))
    assert client.get(f"{base}/enrolments", headers=partner).status_code == 200
    assert (
        client.post(f"{base}/consent/review", headers=partner, json={"review_at": now}).status_code
        == 403
    )


def test_subject_access_bundle_verifies_and_is_a_recorded_disclosure(
    client: TestClient, world: World, api_engine: Engine, api_clock: ManualClock
) -> None:
    now = int(api_clock.now())
    stage = Stage(api_engine, api_clock)
    stage.device(TAG, "tag")
    subject = world.subjects["A-1"]
    stage.assign(subject, TAG, "tag", now - DAY)
    stage.deliver(stage.fixes(TAG, [Fix(now - 3600 + 60 * i, 10.0 * i, 0) for i in range(5)]))
    officer = bearer(login(client, world.user(UNIT_A, "officer")))
    url = f"/api/exports/subjects/{subject}/subject-access.zip"
    r = client.get(url, headers=officer, params={"reference": "SAR-2026-3"})
    assert r.status_code == 200, r.text
    z = zipfile.ZipFile(io.BytesIO(r.content))
    man = json.loads(z.read("manifest.json"))
    assert man["kind"] == "subject_access" and man["reference"] == "SAR-2026-3"
    assert man["from"] == now - DAY
    with api_engine.connect() as conn:
        rec = conn.execute(select(audit_log).where(audit_log.c.id == man["audit_id"])).one()
    assert rec.action == "disclose.subject_access" and rec.subject_ids == [subject]
    assert rec.detail["files"] == man["files"]
    assert r.headers["X-Bundle-SHA256"] == hashlib.sha256(r.content).hexdigest()
    for f in man["files"]:
        assert hashlib.sha256(z.read(f["name"])).hexdigest() == f["sha256"]
    trail = next(f for f in man["files"] if f["name"] == "trail.geojson")
    assert trail["rows"] == 5
    # The owning unit's to give: a partner reading A-2's trail through a share gets
    # nothing, nor does a partner of the owning unit (manage scope).
    for user, subject_ref, code in (
        (world.user(UNIT_A, "partner"), "A-1", 403),
        ("partner.probation", "A-2", 403),
        (world.user(UNIT_B, "officer"), "A-1", 404),
    ):
        got = client.get(
            f"/api/exports/subjects/{world.subjects[subject_ref]}/subject-access.zip",
            headers=bearer(login(client, user)),
            params={"reference": "x"},
        )
        assert got.status_code == code, (user, got.text)
    missing = client.get(url, headers=officer)
    assert missing.status_code == 422


def test_pool_routes_keep_to_the_unit_and_its_officers(
    client: TestClient, world: World, api_engine: Engine, api_clock: ManualClock
) -> None:
    stage = Stage(api_engine, api_clock)
    for dev in (TAG, SPARE):
        stage.device(dev, "tag")
    stage.device(HOME, "home_unit")
    stage.assign(world.subjects["A-1"], SPARE, "tag", int(api_clock.now()) - DAY)
    officer = bearer(login(client, world.user(UNIT_A, "officer")))
    mosovo = bearer(login(client, world.user(UNIT_B, "supervisor")))
    assert client.post("/api/pool", headers=officer, json={"device": TAG}).status_code == 201
    for body, code, words in (
        ({"device": TAG}, 409, "already in a pool"),
        ({"device": HOME}, 422, "not a registered tag"),
        ({"device": 0}, 422, None),
        ({"device": SPARE}, 409, "fitted to another unit's subject"),
    ):
        r = client.post("/api/pool", headers=mosovo, json=body)
        assert r.status_code == code, r.text
        assert words is None or words in r.json()["detail"]
    moved = client.post(
        f"/api/pool/{TAG}/state", headers=officer, json={"state": "faulty", "note": "LED dead"}
    )
    assert moved.status_code == 200 and moved.json()["state"] == "faulty"
    bad = client.post(f"/api/pool/{TAG}/state", headers=officer, json={"state": "charging"})
    assert bad.status_code == 409 and "in_stock, retired" in bad.json()["detail"]
    history = client.get(f"/api/pool/{TAG}/history", headers=officer).json()
    assert [(x["state"], x["note"]) for x in history] == [("in_stock", ""), ("faulty", "LED dead")]
    # Another unit's tag is not there for MOSOVO; partners, administrators and auditors
    # keep no pool.
    assert client.get(f"/api/pool/{TAG}/history", headers=mosovo).status_code == 404
    assert (
        client.post(
            f"/api/pool/{TAG}/state", headers=mosovo, json={"state": "in_stock"}
        ).status_code
        == 404
    )
    assert client.get("/api/pool", headers=mosovo).json()["tags"] == []
    for role in ("partner", "administrator", "auditor"):
        token = bearer(login(client, world.user(UNIT_A, role)))
        assert client.get("/api/pool", headers=token).status_code == 403
        assert client.get(f"/api/pool/{TAG}/history", headers=token).status_code == 403
    counts = client.get("/api/pool", headers=officer).json()["counts"]
    assert counts["summary"] == "0 free, 0 due for service" and counts["by_state"]["faulty"] == 1
