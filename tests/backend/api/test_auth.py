"""Login, tokens, refresh rotation, revocation, lock-out, TOTP and login rate limits."""

from __future__ import annotations

from pathlib import Path

import jwt
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, update

from backend.api.app import create_app
from backend.clock import ManualClock
from backend.security import totp
from backend.services import units
from backend.services import users as user_records
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import audit_log, users
from tests.backend.api.conftest import api_settings, bearer, login
from tests.backend.api.world import PASSWORD, World
from tests.backend.conftest import T0

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


def test_an_administrators_totp_reset_clears_it_and_ends_the_users_sessions(
    client: TestClient, world: World, api_clock: ManualClock
) -> None:
    token = login(client, OFFICER)
    r = client.post("/api/auth/totp/enroll", json={"password": PASSWORD}, headers=bearer(token))
    secret = _b32decode(r.json()["secret"])
    code = totp.totp(secret, api_clock.now())
    assert (
        client.post(
            "/api/auth/totp/confirm", json={"code": code}, headers=bearer(token)
        ).status_code
        == 204
    )
    api_clock.advance(totp.STEP_S)
    status, answer = _token(
        client, username=OFFICER, password=PASSWORD, otp=totp.totp(secret, api_clock.now())
    )
    assert status == 200, answer
    session = str(answer["access_token"])
    # A new authenticator half set up (the phone was lost during the change) ...
    api_clock.advance(totp.STEP_S)
    pending = client.post(
        "/api/auth/totp/enroll",
        json={"password": PASSWORD, "code": totp.totp(secret, api_clock.now())},
        headers=bearer(session),
    )
    assert pending.status_code == 200
    admin = login(client, "administrator.turnaround")
    user_id = world.users[OFFICER][0]
    r = client.patch(f"/api/users/{user_id}", json={"reset_totp": True}, headers=bearer(admin))
    assert r.status_code == 200 and r.json()["totp_enabled"] is False
    assert client.get("/api/auth/me", headers=bearer(session)).status_code == 401
    again = login(client, OFFICER)  # the password alone signs in again
    me = client.get("/api/auth/me", headers=bearer(again)).json()
    assert me["totp_enabled"] is False and me["totp_pending"] is False


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


# Changing the second factor --------------------------------------------------------------


class _Account:
    """One officer on an app over `engine`, signed in; codes from the backend's clock."""

    def __init__(self, client: TestClient, engine: Engine, clock: ManualClock) -> None:
        self.client, self.engine, self.clock = client, engine, clock
        self.token = login(client, OFFICER)

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)

    def post(self, path: str, **body: str) -> tuple[int, object]:
        r = self.client.post(f"/api/auth/{path}", json=body, headers=self.auth)
        return r.status_code, (r.json() if r.content else None)

    def enrol(self, **body: str) -> bytes:
        status, answer = self.post("totp/enroll", password=PASSWORD, **body)
        assert status == 200, answer
        assert isinstance(answer, dict)
        return _b32decode(answer["secret"])

    def enabled(self) -> bytes:
        """Enrol and confirm an authenticator; the clock moves on past the confirming code."""
        secret = self.enrol()
        assert self.post("totp/confirm", code=self.code(secret))[0] == 204
        self.next_step()
        return secret

    def code(self, secret: bytes) -> str:
        return totp.totp(secret, self.clock.now())

    def next_step(self) -> None:
        # A code is good once: the next check needs the next step's code.
        self.clock.advance(totp.STEP_S)

    def me(self) -> dict[str, object]:
        answer: dict[str, object] = self.client.get("/api/auth/me", headers=self.auth).json()
        return answer

    def sign_in(self, otp: str | None = None) -> tuple[int, dict[str, object]]:
        form = {"username": OFFICER, "password": PASSWORD}
        if otp is not None:
            form["otp"] = otp
        return _token(self.client, **form)

    def failed_logins(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(users.c.failed_logins).where(users.c.username == OFFICER)
                ).scalar_one()
            )

    def records(self, prefix: str) -> list[tuple[str, dict[str, object]]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(audit_log.c.action, audit_log.c.detail)
                .where(audit_log.c.action.startswith(prefix), audit_log.c.actor == OFFICER)
                .order_by(audit_log.c.id)
            ).all()
        return [(r.action, dict(r.detail)) for r in rows]


def _wrong(secret: bytes, now: float, *others: bytes) -> str:
    """Six digits no accepted step of `secret` (nor of `others`) gives at `now`."""
    valid = {
        totp.hotp(s, int(now // totp.STEP_S) + d) for s in (secret, *others) for d in (-1, 0, 1)
    }
    return next(c for c in (f"{k:06d}" for k in range(123456, 123600)) if c not in valid)


def _app_on(engine_url: str, tmp_path: Path, clock: ManualClock) -> tuple[TestClient, Engine]:
    engine = make_engine(engine_url)
    upgrade(engine)
    app = create_app(api_settings(tmp_path), clock, engine)
    ctx = app.state.tagwatch
    with engine.begin() as conn:
        unit = units.create(conn, "Turnaround", "police", clock.now())
        user_records.create(
            conn, ctx.passwords, username=OFFICER, display_name="Officer", unit_id=unit,
            role="officer", password=PASSWORD, now=clock.now(),
        )  # fmt: skip
    return TestClient(app), engine


def test_a_new_authenticator_is_pending_until_confirmed_and_the_old_one_stays_in_force(
    db_url: str, tmp_path: Path
) -> None:
    """On SQLite and PostgreSQL: re-enrolling needs the password and a current code from
    the enrolled authenticator; the new secret is pending (sign-in still needs the old
    one's codes, never just the password) until a code from the NEW secret confirms it,
    which swaps the two."""
    clock = ManualClock(T0)
    client, engine = _app_on(db_url, tmp_path, clock)
    with client:
        me = _Account(client, engine, clock)
        first = me.enrol()  # off: the password alone starts it
        assert me.me()["totp_enabled"] is False and me.me()["totp_pending"] is True
        assert me.sign_in()[0] == 200  # nothing confirmed: no code asked yet
        assert me.post("totp/confirm", code=me.code(first))[0] == 204
        assert me.me()["totp_enabled"] is True and me.me()["totp_pending"] is False

        # On: the password alone, a wrong code, or a wrong password is refused.
        me.next_step()
        assert me.post("totp/enroll", password=PASSWORD) == (
            403,
            {"detail": "one-time code required"},
        )
        wrong = _wrong(first, clock.now())
        assert me.post("totp/enroll", password=PASSWORD, code=wrong) == (
            403,
            {"detail": "one-time code not accepted"},
        )
        assert me.post("totp/enroll", password="not the password", code=me.code(first)) == (
            403,
            {"detail": "password does not match"},
        )
        # The right pair starts a replacement; the confirmed factor stays in force.
        used = me.code(first)
        second = me.enrol(code=used)
        assert second != first
        assert me.me()["totp_enabled"] is True and me.me()["totp_pending"] is True
        assert me.sign_in() == (401, {"detail": "one-time code required"})
        assert me.sign_in(used)[0] == 401  # the code that started it is spent
        me.next_step()
        assert me.sign_in(me.code(second)) == (401, {"detail": "one-time code not accepted"})
        assert me.sign_in(me.code(first))[0] == 200

        # Only a code from the NEW secret confirms it; then it replaces the old one.
        me.next_step()
        old_code = me.code(first)
        assert old_code != me.code(second)
        assert me.post("totp/confirm", code=old_code) == (403, {"detail": "code does not match"})
        assert me.me()["totp_pending"] is True
        assert me.post("totp/confirm", code=me.code(second))[0] == 204
        assert me.me()["totp_enabled"] is True and me.me()["totp_pending"] is False
        assert me.post("totp/confirm", code=me.code(second)) == (
            409,
            {"detail": "no TOTP enrolment in progress"},
        )
        me.next_step()
        assert me.sign_in(me.code(first)) == (401, {"detail": "one-time code not accepted"})
        assert me.sign_in(me.code(second))[0] == 200

        # Turning it off needs a current code from the authenticator now in force.
        me.next_step()
        assert me.post("totp/disable", password=PASSWORD)[0] == 403
        assert me.post("totp/disable", password=PASSWORD, code=me.code(first))[0] == 403
        assert me.post("totp/disable", password=PASSWORD, code=me.code(second))[0] == 204
        assert me.me()["totp_enabled"] is False
        assert me.sign_in()[0] == 200

        assert me.records("auth.totp") == [
            ("auth.totp_enroll_started", {"replacing": False}),
            ("auth.totp_enabled", {"replaced": False}),
            ("auth.totp_refused", {"operation": "enroll", "reason": "otp_required"}),
            ("auth.totp_refused", {"operation": "enroll", "reason": "bad_otp", "locked": False}),
            (
                "auth.totp_refused",
                {"operation": "enroll", "reason": "bad_password", "locked": False},
            ),
            ("auth.totp_enroll_started", {"replacing": True}),
            ("auth.totp_refused", {"operation": "confirm", "reason": "bad_otp"}),
            ("auth.totp_enabled", {"replaced": True}),
            ("auth.totp_refused", {"operation": "disable", "reason": "otp_required"}),
            ("auth.totp_refused", {"operation": "disable", "reason": "bad_otp", "locked": False}),
            ("auth.totp_disabled", {}),
        ]
    engine.dispose()


def test_wrong_codes_for_a_security_change_count_toward_the_lock_out(
    client: TestClient, world: World, api_clock: ManualClock, api_engine: Engine
) -> None:
    me = _Account(client, api_engine, api_clock)
    secret = me.enabled()
    # Failed sign-ins and failed checks of a signed-in user share one counter.
    for _ in range(2):
        assert me.sign_in(_wrong(secret, api_clock.now()))[0] == 401
    assert me.failed_logins() == 2
    # A missing code is a step of the form, not a guess: refused, not counted.
    assert me.post("totp/disable", password=PASSWORD)[0] == 403
    # A confirm that does not match is not a guess at anything in force: not counted.
    assert me.post("totp/confirm", code="123456")[0] == 409
    assert me.failed_logins() == 2
    for _ in range(2):
        bad = me.post("totp/disable", password=PASSWORD, code=_wrong(secret, api_clock.now()))
        assert bad == (403, {"detail": "one-time code not accepted"})
    assert me.post("totp/enroll", password="still not it", code=me.code(secret))[0] == 403
    # Five failures: locked. Sign-in says nothing more than "invalid credentials"; the
    # signed-in user is told, and even the right password and code are refused meanwhile.
    assert me.sign_in(me.code(secret)) == (401, {"detail": "invalid credentials"})
    r = client.post(
        "/api/auth/totp/disable",
        json={"password": PASSWORD, "code": me.code(secret)},
        headers=me.auth,
    )
    assert r.status_code == 429, r.text
    assert r.json() == {"detail": "account locked after repeated failed attempts"}
    assert 0 < int(r.headers["retry-after"]) <= 901
    assert me.me()["totp_enabled"] is True
    refused = me.records("auth.totp_refused")
    assert [(d["operation"], d["reason"], d.get("locked")) for _, d in refused] == [
        ("disable", "otp_required", None),
        ("disable", "bad_otp", False),
        ("disable", "bad_otp", False),
        ("enroll", "bad_password", True),
        ("disable", "locked", None),
    ]
    # After the lock-out (and past the access token's life) the right pair works again.
    api_clock.advance(901)
    status, token = me.sign_in(me.code(secret))
    assert status == 200
    me.token = str(token["access_token"])
    me.next_step()
    assert me.post("totp/disable", password=PASSWORD, code=me.code(secret))[0] == 204
    assert me.sign_in()[0] == 200


def test_a_reused_code_does_not_authorise_a_security_change(
    client: TestClient, world: World, api_clock: ManualClock, api_engine: Engine
) -> None:
    me = _Account(client, api_engine, api_clock)
    secret = me.enabled()
    code = me.code(secret)
    status, _ = me.sign_in(code)  # someone signs in with the code on the screen ...
    assert status == 200
    # ... and the same code, replayed, cannot turn the second factor off.
    assert me.post("totp/disable", password=PASSWORD, code=code) == (
        403,
        {"detail": "one-time code not accepted"},
    )
    assert me.failed_logins() == 1
    assert me.me()["totp_enabled"] is True


def test_turning_off_drops_an_enrolment_in_progress(
    client: TestClient, world: World, api_clock: ManualClock, api_engine: Engine
) -> None:
    me = _Account(client, api_engine, api_clock)
    secret = me.enrol()
    assert me.post("totp/disable", password=PASSWORD)[0] == 204  # off: the password is enough
    assert me.me()["totp_pending"] is False
    assert me.post("totp/confirm", code=me.code(secret))[0] == 409


def test_a_wrong_current_password_for_a_password_change_is_counted_and_audited(
    client: TestClient, world: World, api_clock: ManualClock, api_engine: Engine
) -> None:
    me = _Account(client, api_engine, api_clock)
    status, _ = me.post(
        "password", current_password="not my password", new_password="a new passphrase here"
    )
    assert status == 403
    assert me.failed_logins() == 1
    assert me.records("auth.password") == [
        (
            "auth.password_change_refused",
            {"operation": "password", "reason": "bad_password", "locked": False},
        )
    ]


def test_migration_moves_an_unconfirmed_enrolment_to_pending(db_url: str) -> None:
    """0004: a secret enrolled but never confirmed under the one-column layout becomes the
    pending one; a confirmed secret stays in force."""
    engine = make_engine(db_url)
    upgrade(engine, "0003_monitoring")
    with engine.begin() as conn:
        unit = units.create(conn, "Turnaround", "police", T0)
        for name, confirmed in (("pending.one", None), ("confirmed.one", float(T0))):
            conn.execute(
                insert(users).values(
                    username=name, display_name="", unit_id=unit, role="officer",
                    password_hash="x", totp_enc=name.encode(), totp_confirmed_at=confirmed,
                    totp_last_step=7, failed_logins=0, created_at=T0,
                )
            )  # fmt: skip
    upgrade(engine)
    with engine.connect() as conn:
        rows = {
            r.username: (r.totp_enc, r.totp_pending_enc, r.totp_last_step)
            for r in conn.execute(select(users))
        }
    assert rows == {
        "pending.one": (None, b"pending.one", None),
        "confirmed.one": (b"confirmed.one", None, 7),
    }
    engine.dispose()


def test_a_code_from_an_authenticator_reset_while_signing_in_is_refused(
    app: FastAPI, client: TestClient, world: World, api_clock: ManualClock, api_engine: Engine
) -> None:
    """Sign-in and re-authentication share one factor check: a code is used up only while
    the secret it matched is still the one in force. Here an administrator resets the
    user's TOTP (a lost phone) while the sign-in is verifying the password: the code of the
    old authenticator must not open a session."""
    me = _Account(client, api_engine, api_clock)
    secret = me.enabled()
    passwords = app.state.tagwatch.passwords
    verify = passwords.verify

    def verify_then_reset(stored: str | None, password: str) -> bool:
        ok: bool = verify(stored, password)
        with api_engine.begin() as conn:
            conn.execute(
                update(users)
                .where(users.c.username == OFFICER)
                .values(totp_enc=None, totp_confirmed_at=None, totp_last_step=None)
            )
        return ok

    passwords.verify = verify_then_reset
    try:
        assert me.sign_in(me.code(secret)) == (401, {"detail": "one-time code not accepted"})
    finally:
        passwords.verify = verify
    assert me.failed_logins() == 1
    assert me.sign_in()[0] == 200  # the reset stands: the password alone now signs in
