"""The peers a page goes to, run on loopback: a mail relay and a Web Push service.

- `Mailbox`: a real SMTP server (aiosmtpd) that keeps every message it accepts, stamped with
  the clock it is given (the simulator's), and can be told to refuse the next few (451).
- `PushService`: a push service stand-in. Like a real one it knows each subscription's
  application server key from when the browser subscribed, and refuses a request whose
  VAPID JWT (RFC 8292) is not signed by that key, is for another audience or has expired;
  it then decrypts the aes128gcm payload (RFC 8291) with the subscription's private key and
  auth secret — the browser's half, which `Browser` holds — using http_ece, and keeps it.
  404 for an unknown subscription (as a push service answers after an unsubscribe).
- `Browser`: a browser's push subscription keys (P-256 key pair and 16-byte auth secret).

Tests use them as fixtures; the on-call simulation (sim/oncall.py) reads pages from them."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import jwt
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from backend.broker import free_port

Now = Callable[[], float]


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _Waitable:
    def __init__(self) -> None:
        self._cond = threading.Condition()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(ready, timeout)


@dataclass(frozen=True)
class Mail:
    at: float
    to: tuple[str, ...]
    message: EmailMessage

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        return "" if part is None else str(part.get_content())


class Mailbox(_Waitable):
    def __init__(self, now: Now = time.time) -> None:
        super().__init__()
        self.now = now
        self.mails: list[Mail] = []
        self.refuse_next = 0
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def start(self) -> Mailbox:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return "451 4.3.0 try again later"
        msg = message_from_bytes(envelope.content, policy=email_policy.default)
        assert isinstance(msg, EmailMessage)
        with self._cond:
            self.mails.append(Mail(self.now(), tuple(envelope.rcpt_tos), msg))
            self._cond.notify_all()
        return "250 OK"

    def to(self, address: str) -> list[Mail]:
        with self._cond:
            return [m for m in self.mails if address in m.to]

    def wait(self, count: int, timeout: float = 30.0) -> bool:
        return self._wait(lambda: len(self.mails) >= count, timeout)


@dataclass
class Browser:
    """A browser's side of one push subscription."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        return b64url(
            self.key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def subscription(self, endpoint: str) -> dict[str, Any]:
        """As PushSubscription.toJSON() gives it."""
        return {"endpoint": endpoint, "keys": {"p256dh": self.p256dh, "auth": b64url(self.auth)}}


@dataclass(frozen=True)
class Delivery:
    at: float
    subscription: str
    payload: dict[str, Any]
    ttl: int


class PushService(_Waitable):
    def __init__(self, now: Now = time.time) -> None:
        super().__init__()
        self.now = now
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.deliveries: list[Delivery] = []
        self.refused: list[str] = []  # why each refused request was refused
        self.fail_next = 0  # answer 503 to the next n (a push service having a bad time)
        self._subs: dict[str, tuple[Browser, bytes]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> PushService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def subscribe(self, name: str, application_server_key: str) -> tuple[Browser, str]:
        """A browser subscribes with the server's VAPID public key: (its keys, endpoint)."""
        browser = Browser()
        self._subs[name] = (browser, b64url_decode(application_server_key))
        return browser, f"{self.origin}/push/{name}"

    def unsubscribe(self, name: str) -> None:
        self._subs.pop(name, None)

    def for_subscription(self, name: str) -> list[Delivery]:
        with self._cond:
            return [d for d in self.deliveries if d.subscription == name]

    def wait(self, count: int, timeout: float = 30.0) -> bool:
        return self._wait(lambda: len(self.deliveries) >= count, timeout)

    def _accept(self, name: str, headers: Any, body: bytes) -> tuple[int, str]:
        if name not in self._subs:
            return 404, "no such subscription"
        browser, server_key = self._subs[name]
        scheme, _, params = headers.get("Authorization", "").partition(" ")
        parts = dict(p.split("=", 1) for p in params.split(",") if "=" in p)
        if scheme.lower() != "vapid" or "t" not in parts or "k" not in parts:
            return 401, "no VAPID authorization"
        if b64url_decode(parts["k"]) != server_key:
            return 403, "not the key the subscription was made with"
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), server_key)
        try:
            claims = jwt.decode(
                parts["t"],
                public,
                algorithms=["ES256"],
                audience=self.origin,
                options={"require": ["exp", "aud", "sub"]},
            )
        except jwt.PyJWTError as e:
            return 403, f"VAPID JWT refused: {e}"
        if claims["exp"] > time.time() + 24 * 3600:
            return 403, "VAPID JWT expiry more than 24 h ahead (RFC 8292)"
        if headers.get("Content-Encoding") != "aes128gcm":
            return 415, "payload not aes128gcm"
        try:
            plain = http_ece.decrypt(
                body, private_key=browser.key, auth_secret=browser.auth, version="aes128gcm"
            )
        except Exception as e:
            return 400, f"payload does not decrypt: {type(e).__name__}"
        delivery = Delivery(self.now(), name, json.loads(plain), int(headers.get("TTL", "0")))
        with self._cond:
            self.deliveries.append(delivery)
            self._cond.notify_all()
        return 201, ""

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                name = self.path.removeprefix("/push/")
                if service.fail_next > 0:
                    service.fail_next -= 1
                    status, why = 503, "unavailable"
                else:
                    status, why = service._accept(name, self.headers, body)
                if status >= 400:
                    service.refused.append(why)
                self.send_response(status)
                self.send_header("Content-Length", str(len(why)))
                self.end_headers()
                self.wfile.write(why.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
