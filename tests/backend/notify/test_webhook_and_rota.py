"""The outgoing webhook (HMAC-signed, retried with back-off, bounded) against a receiver on
loopback that checks the signature as a force's paging system would; and the bounds on
what a supervisor puts in a rota or policy and an officer's browser subscribes with."""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from backend.broker import free_port
from backend.clock import ManualClock
from backend.notify.channels import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    webhook_key,
    webhook_signature,
)
from backend.services import oncall as rota
from backend.storage.database import IMMEDIATE
from sim.notify_peers import Browser, b64url
from tests.backend.conftest import T0
from tests.backend.notify.conftest import (
    SERVER_KEY,
    build_unit,
    make_dispatcher,
    raise_alert,
    settings_for,
)


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.answers: list[int] = []  # status for each request in turn; then 204
        self.accepted: list[dict[str, Any]] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                policy = int(self.path.rsplit("/", 1)[1])
                want = webhook_signature(
                    webhook_key(SERVER_KEY, policy), self.headers[TIMESTAMP_HEADER], body
                )
                ok = hmac.compare_digest(want, self.headers[SIGNATURE_HEADER])
                status = receiver.answers.pop(0) if receiver.answers else 204
                if not ok:
                    receiver.bad_signatures += 1
                    status = 401
                elif status < 300:
                    receiver.accepted.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_the_webhook_is_signed_retried_with_backoff_and_bounded(
    engine: Engine, clock: ManualClock, tmp_path: Path, receiver: Receiver
) -> None:
    settings = settings_for(tmp_path, None, notify_max_attempts=3, notify_retry_base_s=10)
    d = make_dispatcher(engine, settings, clock, push=False)
    # The policy id is 1 in a fresh database: the receiver knows it from the path.
    u = build_unit(engine, None, None, webhook_url=f"http://127.0.0.1:{receiver.port}/hook/1")
    assert u.policy == 1
    receiver.answers = [503]
    raise_alert(engine, u.subject, clock.now())
    d.step()
    d.step()
    assert receiver.accepted == [] and d.counts[("webhook", "retried")] == 1
    clock.advance(10)
    d.step()
    (body,) = receiver.accepted
    assert body["type"] == "strap_tamper" and body["level"] == 0 and "/web/#/ack/" in body["link"]
    assert receiver.bad_signatures == 0
    # A receiver that keeps failing is tried max_attempts times, then given up on.
    receiver.answers = [500] * 10
    clock.advance(300)  # the escalation: the second officer's page, its webhook
    for wait in (0, 10, 20):
        clock.advance(wait)
        d.step()
        d.step()
    assert d.counts[("webhook", "failed")] == 1 and len(receiver.accepted) == 1
    assert len(receiver.answers) == 10 - 3


def test_rota_policy_and_subscription_bounds(engine: Engine, clock: ManualClock) -> None:
    u = build_unit(engine, None, None)
    now = clock.now()

    def shift(**kw: Any) -> rota.ShiftIn:
        base: dict[str, Any] = {
            "user_id": u.first, "rank": 1, "starts_at": now, "ends_at": now + 3600,
            "channels": ["email"], "email": "a@example.org",
        }  # fmt: skip
        base.update(kw)
        return rota.ShiftIn(**base)

    bad_shifts = [
        shift(ends_at=now),
        shift(ends_at=now + 32 * 86_400),
        shift(rank=0),
        shift(rank=10),
        shift(channels=[]),
        shift(channels=["sms"]),
        shift(email=None),
        shift(user_id=9999),
    ]
    bad_policies = [
        rota.PolicyIn("*", "urgent", 300, 0, None, None, "Europe/London", None),
        rota.PolicyIn("*", "high", 5, 0, None, None, "Europe/London", None),
        rota.PolicyIn("*", "high", 300, -1, None, None, "Europe/London", None),
        rota.PolicyIn("*", "high", 300, 0, "23:00", None, "Europe/London", None),
        rota.PolicyIn("*", "high", 300, 0, "25:00", "07:00", "Europe/London", None),
        rota.PolicyIn("*", "high", 300, 0, None, None, "Mars/Olympus", None),
        rota.PolicyIn("*", "high", 300, 0, None, None, "UTC", "http://10.1.1.1/hook"),
    ]
    key = Browser()
    good_keys = (key.p256dh, b64url(key.auth))
    with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
        for s in bad_shifts:
            with pytest.raises(rota.Invalid):
                rota.add_shift(conn, u.unit, s, now)
        for p in bad_policies:
            with pytest.raises(rota.Invalid):
                rota.set_policy(conn, u.unit, p, now)
        for endpoint, p256dh, auth in (
            ("https://attacker.example/push", *good_keys),
            ("http://127.0.0.1:1/push/x", "AAAA", good_keys[1]),
            ("http://127.0.0.1:1/push/x", good_keys[0], "!!"),
        ):
            with pytest.raises(rota.Invalid):
                rota.subscribe(conn, u.first, endpoint, p256dh, auth, ["127.0.0.1"], now)
        # A supervisor of another unit's officer, or a partner, is never on this rota.
        other = build_other_unit_user(conn)
        with pytest.raises(rota.Invalid):
            rota.add_shift(conn, u.unit, shift(user_id=other), now)
        for i in range(rota.MAX_SUBSCRIPTIONS_PER_USER):
            rota.subscribe(
                conn, u.supervisor, f"http://127.0.0.1:1/push/{i}", *good_keys, ["127.0.0.1"], now
            )
        with pytest.raises(rota.Invalid):
            rota.subscribe(
                conn, u.supervisor, "http://127.0.0.1:1/push/x", *good_keys, ["127.0.0.1"], now
            )
        # The same browser subscribing again replaces its row (no count).
        rota.subscribe(
            conn, u.supervisor, "http://127.0.0.1:1/push/0", *good_keys, ["127.0.0.1"], now
        )
        # Setting a policy for a type again replaces it.
        again = rota.PolicyIn("*", "critical", 600, 0, None, None, "UTC", None)
        assert rota.set_policy(conn, u.unit, again, now) == u.policy
        assert [p["min_severity"] for p in rota.policies(conn, u.unit)] == ["critical"]


def build_other_unit_user(conn: Any) -> int:
    from backend.services import units
    from tests.backend.notify.conftest import _user

    other_unit = units.create(conn, "MOSOVO", "police", T0)
    return _user(conn, "pc.other", other_unit, "officer")
