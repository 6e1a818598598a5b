"""Liveness and readiness of the backend's processes, and the small HTTP listener an ingest
worker serves them on (docs/operations.md, "Health and readiness").

- `/healthz`: the process is alive and answering. Nothing else is checked, so a supervisor
  that restarts on a failed liveness probe never restarts a process for a database outage.
- `/readyz`: the process can do its job. Every process checks the database (reachable, and
  its schema at the revision this code was written for: a process of an older or newer
  release is not ready after another one migrated). An ingest worker also checks its broker
  connection and that its rule timer's clock ticks still complete (the horizon that makes
  comms-loss and curfew alerts come on time without new data is moving).

The answers are unauthenticated and carry no data: a status word and, when not ready, the
names of the failed checks. Why a check failed goes to the log, never to the answer (an
error message could name a host or a user)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine

from backend.storage.database import current_revision, head_revision

log = structlog.get_logger("tagwatch.health")

Check = Callable[[], bool]
# A rule timer whose last completed tick is older than this many tick intervals is stalled.
STALLED_TICKS = 4


def database_ready(engine: Engine) -> bool:
    """The database answers and its schema is at this code's head revision."""
    try:
        revision = current_revision(engine)
    except Exception as e:
        log.warning("database not reachable", error=type(e).__name__)
        return False
    if revision != head_revision():
        log.warning("database schema not at head", revision=revision, head=head_revision())
        return False
    return True


def ticking(last: Callable[[], float], every_s: float) -> Check:
    """The rule timer completed a tick within STALLED_TICKS intervals (wall time)."""
    return lambda: time.time() - last() <= STALLED_TICKS * every_s


class Readiness:
    """Named checks, run on demand (each /readyz request and each scrape)."""

    def __init__(self, checks: Mapping[str, Check]) -> None:
        self.checks = dict(checks)

    def run(self) -> dict[str, bool]:
        out = {}
        for name, check in self.checks.items():
            try:
                out[name] = bool(check())
            except Exception as e:
                log.warning("readiness check failed", check=name, error=type(e).__name__)
                out[name] = False
        return out


def answer(results: Mapping[str, bool]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of a readiness answer."""
    failed = sorted(name for name, ok in results.items() if not ok)
    if failed:
        return 503, {"status": "not ready", "failed": failed}
    return 200, {"status": "ready"}


ALIVE = {"status": "ok"}


class _Listener(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The standard library prints a traceback between dashed lines to stderr, which
        # breaks the one-JSON-object-a-line log. A client gone mid-answer (a scrape that
        # timed out on a busy machine) is not the server's fault.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            return
        log.error("health request failed", error=repr(error))


class OpsServer:
    """/healthz, /readyz and /metrics for a process without an HTTP API (an ingest worker),
    on a thread of its own, so a scrape never waits for a batch and a batch never waits for
    a scrape."""

    def __init__(
        self, host: str, port: int, readiness: Readiness, registry: CollectorRegistry
    ) -> None:
        self.readiness = readiness
        self.registry = registry
        self.httpd = _Listener((host, port), self._handler())
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="ops-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> OpsServer:
        self._thread.start()
        log.info("health and metrics listening", port=self.port)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._json(200, ALIVE)
                elif path == "/readyz":
                    self._json(*answer(server.readiness.run()))
                elif path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(server.registry))
                else:
                    self._json(404, {"status": "not found"})

            def _json(self, status: int, body: Mapping[str, Any]) -> None:
                self._send(status, "application/json", json.dumps(body).encode())

            def _send(self, status: int, ctype: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every few seconds is not news

        return Handler
