"""Property-based tests generated from the OpenAPI schema (schemathesis): every operation,
authenticated as a supervisor and as an auditor, never answers 5xx; without a token every
operation but login answers 401. Bounded: a few examples per operation, derandomized."""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import World

EXAMPLES = 4
# Operations that would end the test's own session or lock its account; each is tested on
# purpose in test_auth.py.
SKIP = {
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/password"),
    ("POST", "/api/auth/token"),
    ("POST", "/api/auth/totp/enroll"),
    ("POST", "/api/auth/totp/disable"),
    ("PATCH", "/api/users/{user_id}"),
}


def _operations(app: FastAPI) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) >= 15
    return ops


def _run(op: Any, headers: dict[str, str], check: Any) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(op.as_strategy())
        response = case.call(headers=headers)
        check(case, response)

    run()


def test_no_operation_answers_5xx_for_any_generated_input(
    client: TestClient, app: FastAPI, world: World
) -> None:
    tokens = {u: login(client, u) for u in ("supervisor.turnaround", "auditor.turnaround")}
    statuses: dict[int, int] = {}

    def check(case: Any, response: Any) -> None:
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])

    for op in _operations(app):
        if (op.method.upper(), op.path) in SKIP:
            continue
        for token in tokens.values():
            _run(op, bearer(token), check)
    # The run exercised real answers, not only validation errors.
    assert statuses.get(200, 0) > 20 and statuses.get(422, 0) > 0


def test_every_operation_but_login_needs_a_token(client: TestClient, app: FastAPI) -> None:
    def check(case: Any, response: Any) -> None:
        assert response.status_code == 401, (case.method, case.formatted_path, response.text)

    for op in _operations(app):
        if op.path == "/api/auth/token":
            continue
        _run(op, {}, check)
