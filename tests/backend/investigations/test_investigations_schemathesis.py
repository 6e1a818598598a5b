"""schemathesis against the investigations, exports and reports operations: whatever an
authenticated officer (and an administrator) sends, no 5xx — places, windows, files and
formats generated from the OpenAPI schema, over the staged correlation data."""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.backend.api.conftest import bearer, login
from tests.backend.investigations.scenario import Truth

MINE = r"^/api/(investigations|exports|reports)/"
EXAMPLES = 15


def _run(op: Any, headers: dict[str, str]) -> None:
    @given(case=op.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def run(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error])

    run()


def test_no_server_errors(app: FastAPI, truth: Truth) -> None:
    with TestClient(app) as client:
        users = [
            bearer(login(client, u)) for u in ("officer.turnaround", "administrator.turnaround")
        ]
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app).include(path_regex=MINE)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 7
    for headers in users:
        for op in operations:
            _run(op, headers)
