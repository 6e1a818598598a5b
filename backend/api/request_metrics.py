"""Per-request metrics and the access log (pure ASGI, inside SecurityMiddleware so the
request id is known): a count by method, route template and status class, the time to the
start of the answer (a live stream's answer starts at once, so its length is not counted
as latency), and one log line per request carrying the request id. Every line logged while
the request runs carries it too (structlog contextvars).

Labels are the route's template (`/api/subjects/{subject_id}`), never the path: ids in
paths would make a series per subject. A path no route matched is "unmatched"."""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.metrics import HTTP_METHODS, HTTP_REQUEST_SECONDS, HTTP_REQUESTS, bounded

log = structlog.get_logger("tagwatch.api")
UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = bounded(scope.get("method", ""), HTTP_METHODS)
        status = 500  # unless an answer starts: the exception handlers answer 500 outside
        first_byte: float | None = None

        async def timed_send(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = int(message["status"])
                first_byte = time.perf_counter() - started
            await send(message)

        request_id = scope.get("state", {}).get("request_id", "")
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, timed_send)
            finally:
                route = route_template(scope)
                elapsed = first_byte if first_byte is not None else time.perf_counter() - started
                HTTP_REQUESTS.labels(method, route, f"{status // 100}xx").inc()
                HTTP_REQUEST_SECONDS.labels(method, route).observe(elapsed)
                log.info(
                    "request",
                    method=method,
                    route=route,
                    status=status,
                    ms=round(elapsed * 1000, 1),
                )
