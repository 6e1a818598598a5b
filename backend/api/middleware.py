"""ASGI middleware applied to every request: a request id, security headers, and a body
size limit enforced before the body is read (pure ASGI, so streams are not buffered)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# An API answers JSON and CSV: nothing in it may be framed, sniffed, cached or scripted.
# (The web UI, when served, sets its own Content-Security-Policy for its pages.)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"permissions-policy", b"geolocation=(), camera=(), microphone=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
# The interactive docs page loads its script from the application itself only.
DOCS_CSP = b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"


class BodyTooLarge(Exception):
    pass


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        length = _content_length(scope)
        if length is not None and length > self.max_body:
            await _too_large(send, request_id)
            return

        received = 0
        started = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused, started
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body and not refused:
                    # Answer now: the framework may catch the exception below and turn it
                    # into a 400 of its own, which send_with_headers then drops.
                    refused = True
                    if not started:
                        started = True
                        await _too_large(send, request_id)
                    raise BodyTooLarge
            return message

        path = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
                own_csp = None
                headers = []
                for k, v in message.get("headers", []):
                    if k.lower() == b"content-security-policy":
                        own_csp = v
                    if k.lower() not in {h for h, _ in SECURITY_HEADERS}:
                        headers.append((k, v))
                for k, v in SECURITY_HEADERS:
                    if k == b"content-security-policy" and path.startswith("/api/docs"):
                        v = DOCS_CSP
                    elif k == b"content-security-policy" and own_csp and _is_page(path):
                        # The web UI's pages (backend/api/routes/web.py) set their own
                        # policy: scripts, styles and tiles; never for an /api answer.
                        v = own_csp
                    headers.append((k, v))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLarge:
            if not started:
                await _too_large(send, request_id)
            elif not refused:
                raise


def _is_page(path: str) -> bool:
    return path != "/api" and not path.startswith("/api/")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, request_id: str) -> None:
    body = json.dumps({"detail": "request body too large", "request_id": request_id}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        *SECURITY_HEADERS,
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
