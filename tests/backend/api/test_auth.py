"""Login, tokens, refresh rotation, revocation, lock-out, TOTP and login rate limits."""

from __future__ import annotations

from pathlib import Path

import jwt
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from backend.api.app import create_app
from backend.clock import ManualClock
from backend.security import totp
from backend.storage.schema import audit_log
from tests.backend.api.conftest import api_settings, bearer, login
from tests.backend.api.world import PASSWORD, World

OFFICER = "officer.turnaround"


def _token(client: TestClient, **form: str) -> tuple[int, dict[str, object]]:
    r = client.post("/api/auth/token", data=form)
    return r.status_code, r.json()


def _actions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r.action for r in conn.execute(select(audit_log).order_by(audit_log.c.id))]


def test_login_issues_a_short_lived_bearer_token_and_a_refresh_token(
    client: TestClient, world: World, api_clock: ManualClock
) -> None:
    status, body = _token(client, username=OFFICER, password=PASSWORD)
    assert status == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    claims = jwt.decode(str(body["access_token"]), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900
    me = client.get("/api/auth/me", headers=bearer(str(body["access_token"])))
    assert me.status_code == 200
    assert me.json()["username"] == OFFICER and me.json()["role"] == "officer"
    # Expiry follows the backend clock.
    api_clock.advance(901)
    again = client.get("/api/auth/me", headers=bearer(str(body["access_token"])))
    assert again.status_code == 401
    assert again.headers["www-authenticate"] == "Bearer"


def test_wrong_password_and_unknown_user_get_the_same_answer(
    client: TestClient, world: World, api_engine: Engine
) -> None:
    s1, b1 = _token(client, username=OFFICER, password="wrong password!!")
    s2, b2 = _token(client, username="nobody", password=PASSWORD)
    assert (s1, b1) == (s2, b2) == (401, {"detail": "invalid credentials"})
    assert _actions(api_engine).count("auth.login_failed") == 2


def test_a_forged_or_tampered_token_is_refused(client: TestClient, world: World) -> None:
    token = login(client, OFFICER)
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "sub": "1"}, "x" * 32, algorithm="HS256")
    none_alg = jwt.encode({**claims}, None, algorithm="none")  # type: ignore[arg-type]
    for bad in (forged, none_alg, token[:-2] + "AA", "garbage"):
        assert client.get("/api/auth/me", headers=bearer(bad)).status_code == 401
    assert client.get("/api/auth/me").status_code == 401


def test_lock_out_after_repeated_failures_then_unlock_by_time(
    client: TestClient, world: World, api_clock: ManualClock, api_engine: Engine
) -> None:
    for _ in range(5):
        assert _token(client, username=OFFICER, password="not the password")[0] == 401
    # Locked: even the right password is refused, with the same answer.
    assert _token(client, username=OFFICER, password=PASSWORD) == (
        401,
        {"detail": "invalid credentials"},
    )
    api_clock.advance(901)
    assert _token(client, username=OFFICER, password=PASSWORD)[0] == 200
    with api_engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.detail).where(audit_log.c.action == "auth.login_failed")
        ).all()
    assert [r.detail["reason"] for r in rows] == ["bad_password"] * 5 + ["locked"]


def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_session(
    client: TestClient, world: World
) -> None:
    _, first = _token(client, username=OFFICER, password=PASSWORD)
    status, second = _token(
        client, grant_type="refresh_token", refresh_token=str(first["refresh_token"])
    )
    assert status == 200
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        client.get("/api/auth/me", headers=bearer(str(second["access_token"]))).status_code == 200
    )
    # The old refresh token again: a thief or a replay. The whole session dies.
    status, _ = _token(
        client, grant_type="refresh_token", refresh_token=str(first["refresh_token"])
    )
    assert status == 401
    assert (
        client.get("/api/auth/me", headers=bearer(str(second["access_token"]))).status_code == 401
    )
    status, _ = _token(
        client, grant_type="refresh_token", refresh_token=str(second["refresh_token"])
    )
    assert status == 401


def test_logout_revokes_access_and_refresh_tokens_at_once(client: TestClient, world: World) -> None:
    _, body = _token(client, username=OFFICER, password=PASSWORD)
    access = str(body["access_token"])
    assert client.post("/api/auth/logout", headers=bearer(access)).status_code == 204
    assert client.get("/api/auth/me", headers=bearer(access)).status_code == 401
    status, _ = _token(client, grant_type="refresh_token", refresh_token=str(body["refresh_token"]))
    assert status == 401
    # Another session of the same user is untouched.
    other = login(client, OFFICER)
    assert client.get("/api/auth/me", headers=bearer(other)).status_code == 200


def test_disabling_a_user_revokes_its_tokens_and_blocks_login(
    client: TestClient, world: World
) -> None:
    victim = login(client, OFFICER)
    admin = login(client, "administrator.turnaround")
    user_id = world.users[OFFICER][0]
    r = client.patch(f"/api/users/{user_id}", json={"disabled": True}, headers=bearer(admin))
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert client.get("/api/auth/me", headers=bearer(victim)).status_code == 401
    assert _token(client, username=OFFICER, password=PASSWORD)[0] == 401
    r = client.patch(f"/api/users/{user_id}", json={"disabled": False}, headers=bearer(admin))
    assert _token(client, username=OFFICER, password=PASSWORD)[0] == 200


def test_a_role_change_takes_effect_on_the_next_request(client: TestClient, world: World) -> None:
    auditor = login(client, "auditor.turnaround")
    assert client.get("/api/audit", headers=bearer(auditor)).status_code == 200
    admin = login(client, "administrator.turnaround")
    uid = world.users["auditor.turnaround"][0]
    client.patch(f"/api/users/{uid}", json={"role": "officer"}, headers=bearer(admin))
    # Role changes revoke sessions; even a token that survived would carry the old role
    # only in a claim the server does not trust.
    assert client.get("/api/audit", headers=bearer(auditor)).status_code == 401
    again = login(client, "auditor.turnaround")
    assert client.get("/api/audit", headers=bearer(again)).status_code == 403


def test_totp_enrolment_then_login_needs_a_fresh_code(
    client: TestClient, world: World, api_clock: ManualClock
) -> None:
    token = login(client, OFFICER)
    r = client.post("/api/auth/totp/enroll", json={"password": PASSWORD}, headers=bearer(token))
    assert r.status_code == 200
    secret = _b32decode(r.json()["secret"])
    assert r.json()["uri"].startswith("otpauth://totp/tagwatch%3Aofficer.turnaround?")
    # Until confirmed, login does not ask for a code.
    assert _token(client, username=OFFICER, password=PASSWORD)[0] == 200
    bad = client.post("/api/auth/totp/confirm", json={"code": "000000"}, headers=bearer(token))
    assert bad.status_code == 403 or totp.totp(secret, api_clock.now()) == "000000"
    code = totp.totp(secret, api_clock.now())
    ok = client.post("/api/auth/totp/confirm", json={"code": code}, headers=bearer(token))
    assert ok.status_code == 204
    assert _token(client, username=OFFICER, password=PASSWORD) == (
        401,
        {"detail": "one-time code required"},
    )
    # The code used to confirm is spent: the same one cannot log in.
    assert _token(client, username=OFFICER, password=PASSWORD, otp=code)[0] == 401
    api_clock.advance(totp.STEP_S)
    code = totp.totp(secret, api_clock.now())
    assert _token(client, username=OFFICER, password=PASSWORD, otp=code)[0] == 200
    assert _token(client, username=OFFICER, password=PASSWORD, otp=code)[0] == 401  # replay
    me = client.get("/api/auth/me", headers=bearer(token))
    assert me.json()["totp_enabled"] is True


def test_totp_matches_rfc6238_test_vectors() -> None:
    # RFC 6238 appendix B, SHA-1, 8 digits.
    secret = b"12345678901234567890"
    vectors = {
        59: "94287082",
        1111111109: "07081804",
        1234567890: "89005924",
        2000000000: "69279037",
    }
    for t, code in vectors.items():
        assert totp.totp(secret, t, digits=8) == code


def test_login_rate_limit_answers_429_with_retry_after(
    tmp_path: Path, api_engine: Engine, api_clock: ManualClock
) -> None:
    app = create_app(api_settings(tmp_path, login_rate_per_minute=3), api_clock, api_engine)
    with TestClient(app) as client:
        codes = [_token(client, username="x", password="y" * 12)[0] for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        r = client.post("/api/auth/token", data={"username": "x", "password": "y" * 12})
        assert 0 < int(r.headers["retry-after"]) <= 61
        api_clock.advance(61)
        assert _token(client, username="x", password="y" * 12)[0] == 401


def test_password_change_revokes_every_session(client: TestClient, world: World) -> None:
    a = login(client, OFFICER)
    b = login(client, OFFICER)
    new = "a much better passphrase"
    r = client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": new},
        headers=bearer(a),
    )
    assert r.status_code == 204
    assert client.get("/api/auth/me", headers=bearer(b)).status_code == 401
    assert _token(client, username=OFFICER, password=PASSWORD)[0] == 401
    assert _token(client, username=OFFICER, password=new)[0] == 200


def _b32decode(text: str) -> bytes:
    import base64

    return base64.b32decode(text + "=" * (-len(text) % 8))
