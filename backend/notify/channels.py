"""The three ways a page leaves the building: e-mail (SMTP, smtplib), Web Push (VAPID,
pywebpush) and an outgoing webhook (an HMAC-signed JSON POST for a force's own paging
system). Each `send` either returns or raises SendError, which says whether trying again
can help (the dispatcher retries with back-off) or not (a push subscription the push service
says is gone). Nothing here decides who is paged or when (dispatcher.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from backend.settings import Settings

WEBHOOK_LABEL = b"tagwatch webhook v1:"
SIGNATURE_HEADER = "X-Tagwatch-Signature"
TIMESTAMP_HEADER = "X-Tagwatch-Timestamp"
PUSH_TTL_S = 3600  # a page older than this is no use on a lock screen


class SendError(RuntimeError):
    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Message:
    """What a page says. By design it names no subject and no place: the alert's type,
    severity and time, and a link that asks the officer to sign in."""

    subject: str
    text: str
    link: str
    alert_id: int
    level: int

    def push_payload(self) -> bytes:
        return json.dumps(
            {
                "title": self.subject,
                "body": self.text,
                "url": self.link,
                "tag": f"alert-{self.alert_id}",
            }
        ).encode()


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: str
    auth: str


class Email:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def configured(self) -> bool:
        return bool(self.settings.smtp_host)

    def send(self, to: str, message: Message) -> None:
        s = self.settings
        if not s.smtp_host:
            raise SendError("no SMTP relay configured (TAGWATCH_SMTP_HOST)", retry=False)
        mail = EmailMessage()
        mail["From"] = s.smtp_from
        mail["To"] = to
        mail["Subject"] = message.subject
        mail.set_content(f"{message.text}\n\n{message.link}\n")
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.notify_send_timeout_s) as smtp:
                if s.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password)
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as e:
            raise SendError(f"the relay refused the recipient: {e}", retry=False) from e
        except (OSError, smtplib.SMTPException) as e:
            raise SendError(f"SMTP: {type(e).__name__}: {e}") from e


def load_vapid_key(settings: Settings) -> ec.EllipticCurvePrivateKey:
    """TAGWATCH_VAPID_PRIVATE_KEY (PEM), the file, or data_dir/vapid.pem made on first use."""
    if settings.vapid_private_key:
        pem = settings.vapid_private_key.encode()
    elif settings.vapid_private_key_file is not None:
        pem = settings.vapid_private_key_file.read_bytes()
    else:
        path = Path(settings.data_dir) / "vapid.pem"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = ec.generate_private_key(ec.SECP256R1())
            data = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        pem = path.read_bytes()
    loaded = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
        raise ValueError("the VAPID key must be a P-256 (prime256v1) private key")
    return loaded


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Push:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._key = load_vapid_key(settings)
        self._vapid: Any = None

    @property
    def public_key(self) -> str:
        """The application server key a browser subscribes with (base64url, uncompressed)."""
        raw = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(raw)

    def send(self, sub: Subscription, message: Message) -> None:
        # Imported at the first push, not with the API: pywebpush brings aiohttp and
        # requests, seconds of start-up on a busy host for a process that may never push.
        from py_vapid import Vapid02
        from pywebpush import WebPushException, webpush

        if self._vapid is None:
            pem = self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            self._vapid = Vapid02.from_pem(pem)
        info = {"endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}}
        try:
            webpush(
                info,
                data=message.push_payload().decode(),
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self.settings.vapid_subject},
                timeout=self.settings.notify_send_timeout_s,
                ttl=PUSH_TTL_S,
            )
        except WebPushException as e:
            status = getattr(e.response, "status_code", None)
            # 404/410: the browser unsubscribed or the subscription expired (RFC 8030).
            gone = status in (404, 410)
            raise SendError(f"push service answered {status}", retry=not gone) from e
        except Exception as e:
            # requests' connection errors, bad keys in a stored subscription...
            raise SendError(f"push: {type(e).__name__}") from e


def webhook_key(server_key: bytes, policy_id: int) -> bytes:
    """The webhook's signing key: derived, never stored; shown to the supervisor once."""
    return hmac.new(server_key, WEBHOOK_LABEL + str(policy_id).encode(), hashlib.sha256).digest()


def webhook_signature(key: bytes, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>": the receiver refuses old timestamps, so a
    captured request cannot be replayed later."""
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Webhook:
    def __init__(self, settings: Settings, server_key: bytes) -> None:
        self.settings = settings
        self._server_key = server_key

    def send(self, url: str, policy_id: int, body: dict[str, Any], now: float) -> None:
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        ts = str(int(now))
        sig = webhook_signature(webhook_key(self._server_key, policy_id), ts, data)
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sig,
            TIMESTAMP_HEADER: ts,
        }
        try:
            r = httpx.post(
                url, content=data, headers=headers, timeout=self.settings.notify_send_timeout_s
            )
        except httpx.HTTPError as e:
            raise SendError(f"webhook: {type(e).__name__}") from e
        if r.status_code >= 300:
            # A 4xx other than 408/429 will not get better by asking again.
            retry = r.status_code >= 500 or r.status_code in (408, 429)
            raise SendError(f"webhook answered {r.status_code}", retry=retry)
