"""The ingest worker's health listener keeps the log one JSON object a line when a request
fails, and says nothing when the client went away mid-answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from prometheus_client import CollectorRegistry

from backend.health import OpsServer, Readiness


@pytest.fixture
def ops() -> Iterator[OpsServer]:
    server = OpsServer("127.0.0.1", 0, Readiness({}), CollectorRegistry())
    yield server
    server.httpd.server_close()


def test_a_client_gone_mid_answer_prints_nothing(
    ops: OpsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with structlog.testing.capture_logs() as logs:
        for gone in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")):
            try:
                raise gone
            except ConnectionError:
                ops.httpd.handle_error(None, ("127.0.0.1", 40000))
    out = capsys.readouterr()
    assert (out.out, out.err, logs) == ("", "", [])


def test_a_failed_request_is_one_log_event(
    ops: OpsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with structlog.testing.capture_logs() as logs:
        try:
            raise ValueError("bad header")
        except ValueError:
            ops.httpd.handle_error(None, ("127.0.0.1", 40000))
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", "")
    assert logs == [{"event": "health request failed", "error": "ValueError('bad header')",
                     "log_level": "error"}]  # fmt: skip
