"""Object-level authorization through the one dependency: ownership, shares with scopes
and expiry, 404 for what a caller may not see, lists that never leak, partner field
limits, WebSocket streams, and the audit record every consultation leaves."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from starlette.websockets import WebSocketDisconnect

from backend.clock import ManualClock
from backend.storage.schema import audit_log
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import UNIT_A, UNIT_B, World


def _get(client: TestClient, token: str, path: str, **params: str) -> tuple[int, object]:
    r = client.get(path, headers=bearer(token), params=params)
    return r.status_code, r.json()


def _audit(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [
            dict(r) for r in conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings()
        ]


def test_an_officer_gets_404_for_another_units_subject_whether_or_not_it_exists(
    client: TestClient, world: World
) -> None:
    t = login(client, "officer.turnaround")
    foreign = world.subjects["B-1"]
    status, body = _get(client, t, f"/probe/subjects/{foreign}/view")
    assert (status, body) == (404, {"detail": "subject not found"})
    missing = max(world.subjects.values()) + 100
    assert _get(client, t, f"/probe/subjects/{missing}/view") == (status, body)
    assert _get(client, t, f"/probe/subjects/{world.subjects['A-1']}/view")[0] == 200


def test_a_share_grants_its_scopes_only_and_never_manage(client: TestClient, world: World) -> None:
    t = login(client, "officer.mosovo")
    shared = world.subjects["A-2"]
    got = {
        scope: _get(client, t, f"/probe/subjects/{shared}/{scope}", purpose="MAPPA review")[0]
        for scope in ("view", "live", "alerts", "trail", "reports", "manage")
    }
    assert got == {
        "view": 200, "live": 200, "alerts": 200, "trail": 403, "reports": 403, "manage": 403,
    }  # fmt: skip
    # The unshared subject of the same unit stays invisible.
    assert _get(client, t, f"/probe/subjects/{world.subjects['A-1']}/view")[0] == 404


def test_a_partner_sees_only_the_fields_its_share_grants(client: TestClient, world: World) -> None:
    owner = login(client, "officer.turnaround")
    partner = login(client, "partner.probation")
    shared = world.subjects["A-2"]
    _, mine = _get(client, owner, f"/probe/subjects/{shared}/view")
    _, theirs = _get(client, partner, f"/probe/subjects/{shared}/trail", purpose="licence check")
    assert isinstance(mine, dict) and isinstance(theirs, dict)
    assert mine["risk_notes"] == "risk notes of A-2"
    assert theirs["risk_notes"] is None
    assert theirs["owner"] is False and mine["owner"] is True
    assert theirs["scopes"] == ["reports", "trail", "view"]
    assert _get(client, partner, f"/probe/subjects/{shared}/live")[0] == 403


def test_administrators_and_auditors_see_no_subject_data(client: TestClient, world: World) -> None:
    for user in ("administrator.turnaround", "auditor.turnaround"):
        t = login(client, user)
        assert _get(client, t, f"/probe/subjects/{world.subjects['A-1']}/view")[0] == 404
        assert _get(client, t, "/probe/subjects") == (200, [])


def test_lists_contain_exactly_the_visible_subjects(client: TestClient, world: World) -> None:
    def refs(user: str) -> set[str]:
        status, body = _get(client, login(client, user), "/probe/subjects")
        assert status == 200 and isinstance(body, list)
        return {s["reference"] for s in body}

    assert refs("officer.turnaround") == {"A-1", "A-2"}
    assert refs("officer.mosovo") == {"B-1", "A-2"}
    assert refs("partner.probation") == {"A-2"}


def test_revoked_and_expired_shares_stop_access_at_once(
    client: TestClient, world: World, api_clock: ManualClock
) -> None:
    mosovo = login(client, "officer.mosovo")
    partner = login(client, "partner.probation")
    shared = world.subjects["A-2"]
    sup = login(client, "supervisor.turnaround")
    r = client.delete(f"/api/shares/{world.shares['A-2>B']}", headers=bearer(sup))
    assert r.status_code == 200 and r.json()["active"] is False
    assert _get(client, mosovo, f"/probe/subjects/{shared}/live")[0] == 404
    assert _get(client, partner, f"/probe/subjects/{shared}/view")[0] == 200
    api_clock.advance(31 * 86400)
    partner = login(client, "partner.probation")
    assert _get(client, partner, f"/probe/subjects/{shared}/view")[0] == 404
    assert _get(client, partner, "/probe/subjects") == (200, [])


def test_only_the_owning_units_supervisor_creates_and_revokes_shares(
    client: TestClient, world: World, api_clock: ManualClock
) -> None:
    subject = world.subjects["A-1"]
    body = {
        "unit_id": world.units[UNIT_B],
        "scopes": ["live"],
        "purpose": "joint operation",
        "expires_at": api_clock.now() + 3600,
    }
    officer = login(client, "officer.turnaround")
    r = client.post(f"/api/subjects/{subject}/shares", json=body, headers=bearer(officer))
    assert r.status_code == 403
    foreign_sup = login(client, "supervisor.mosovo")
    r = client.post(f"/api/subjects/{subject}/shares", json=body, headers=bearer(foreign_sup))
    assert r.status_code == 404
    sup = login(client, "supervisor.turnaround")
    r = client.post(f"/api/subjects/{subject}/shares", json=body, headers=bearer(sup))
    assert r.status_code == 201, r.text
    share_id = r.json()["id"]
    mosovo = login(client, "officer.mosovo")
    assert _get(client, mosovo, f"/probe/subjects/{subject}/live")[0] == 200
    # The receiving unit can see the share but not revoke it.
    assert _get(client, mosovo, f"/api/shares/{share_id}")[0] == 200
    assert client.delete(f"/api/shares/{share_id}", headers=bearer(foreign_sup)).status_code == 403
    # Bad shares are refused with a reason.
    for bad in (
        {**body, "unit_id": world.units[UNIT_A]},
        {**body, "expires_at": api_clock.now() - 1},
        {**body, "scopes": ["manage"]},
        {**body, "purpose": ""},
    ):
        r = client.post(f"/api/subjects/{subject}/shares", json=bad, headers=bearer(sup))
        assert r.status_code == 422, bad


def test_trail_requires_a_stated_purpose(client: TestClient, world: World) -> None:
    t = login(client, "officer.turnaround")
    path = f"/probe/subjects/{world.subjects['A-1']}/trail"
    assert _get(client, t, path)[0] == 422
    assert _get(client, t, path, purpose="x")[0] == 422
    assert _get(client, t, path, purpose="burglary enquiry 24/1234")[0] == 200


def test_every_consultation_denial_and_disclosure_is_audited(
    client: TestClient, world: World, api_engine: Engine
) -> None:
    own = login(client, "officer.turnaround")
    mosovo = login(client, "officer.mosovo")
    a1, a2 = world.subjects["A-1"], world.subjects["A-2"]
    _get(client, own, f"/probe/subjects/{a1}/trail", purpose="burglary enquiry")
    _get(client, mosovo, f"/probe/subjects/{a2}/live", purpose="joint MAPPA case")
    _get(client, mosovo, f"/probe/subjects/{a1}/live")
    records = [r for r in _audit(api_engine) if not str(r["action"]).startswith("auth.")]
    summary = [
        (r["action"], r["actor"], r["subject_ids"], r["scope"], r["purpose"]) for r in records
    ]
    assert summary == [
        ("read.trail", "officer.turnaround", [a1], "trail", "burglary enquiry"),
        ("disclose.live", "officer.mosovo", [a2], "live", "joint MAPPA case"),
        ("access.denied", "officer.mosovo", [a1], "live", None),
    ]
    assert records[1]["detail"]["share_ids"] == [world.shares["A-2>B"]]  # type: ignore[index]
    assert all(len(str(r["request_id"])) == 32 for r in records)


def test_an_object_of_a_foreign_subject_is_404_like_a_missing_one(
    client: TestClient, world: World
) -> None:
    t = login(client, "officer.turnaround")
    own = world.subjects["A-1"] * 10 + 3
    foreign = world.subjects["B-1"] * 10 + 3
    assert _get(client, t, f"/probe/objects/{own}") == (
        200,
        {"object_id": own, "subject_id": world.subjects["A-1"]},
    )
    assert _get(client, t, f"/probe/objects/{foreign}") == (404, {"detail": "object not found"})
    assert _get(client, t, "/probe/objects/999999") == (404, {"detail": "object not found"})


def test_websocket_streams_go_through_the_same_dependency(client: TestClient, world: World) -> None:
    own = login(client, "officer.turnaround")
    path = f"/probe/ws/subjects/{world.subjects['A-1']}/live"
    with client.websocket_connect(path, headers=bearer(own)) as ws:
        assert ws.receive_json()["reference"] == "A-1"
    # A browser passes the token as a query parameter.
    with client.websocket_connect(f"{path}?access_token={own}") as ws:
        assert ws.receive_json()["reference"] == "A-1"
    mosovo = login(client, "officer.mosovo")
    for headers in (bearer(mosovo), {}):
        with (
            pytest.raises(WebSocketDisconnect) as e,
            client.websocket_connect(path, headers=headers),
        ):
            pass
        assert e.value.code == 1008


def test_streams_recheck_their_session_and_visibility_when_they_send(
    client: TestClient, world: World, api_engine: Engine, api_clock: ManualClock, app: object
) -> None:
    from sqlalchemy import select as sql_select

    from backend.api.deps import Auditor, StreamAccess, Visible
    from backend.security.access import User
    from backend.storage.schema import subjects

    token = login(client, "officer.mosovo")
    me = client.get("/api/auth/me", headers=bearer(token)).json()
    ctx = app.state.tagwatch  # type: ignore[attr-defined]
    user = ctx.sessions.authenticate(api_engine.connect(), token, api_clock.now())
    assert isinstance(user, User)
    stream = StreamAccess(user, "live", "test", Auditor(user, "r" * 32, api_clock, api_engine))
    assert stream.session_active(api_clock.now())

    def ids(v: Visible) -> set[int]:
        with api_engine.connect() as conn:
            return set(
                conn.execute(sql_select(subjects.c.id).where(v.where(subjects.c.id))).scalars()
            )

    a1, a2, b1 = (world.subjects[k] for k in ("A-1", "A-2", "B-1"))
    assert ids(stream.visible(api_clock.now())) == {b1, a2}
    assert stream.deliverable({a1, a2, b1}, api_clock.now()) == {a2, b1}
    api_clock.advance(31 * 86400)  # the share to MOSOVO has expired
    assert ids(stream.visible(api_clock.now())) == {b1}
    assert stream.deliverable({a2, b1}, api_clock.now()) == {b1}
    assert not stream.session_active(api_clock.now())  # the session expired too
    assert me["unit_id"] == user.unit_id
