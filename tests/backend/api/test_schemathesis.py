"""schemathesis over every operation of the API — subjects, alerts, admin, audit,
investigations, reports, exports and the web UI's routes — as its command line runs it, with
the strictest checks that hold (tests/backend/api/fuzz.py): no 5xx, every answer's status,
content type, headers and body as documented, invalid data refused, schema-valid data
refused only by a rule the schema cannot state.

Each group of operations runs authenticated as a role that may use it, twice: with
generated path ids (mostly someone else's or nobody's) and with the world's own objects, so
that the routes' deeper code (a PATCH of a real order, a preview on a real subject) meets
the coverage phase's nulls and boundaries too. The auditor, who sees no subject data, tries
every operation again; without a token every operation but login answers 401."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis import GenerationMode
from sqlalchemy import Engine

from backend.clock import ManualClock
from tests.backend.api import fuzz
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import UNIT_A, World

POSITIVE = GenerationMode.POSITIVE
# Operations that would end the test's own session or lock its account, and the two live
# streams, which never end by themselves; each is tested on purpose elsewhere (test_auth.py,
# test_alerts_stream_access.py).
ACCOUNT = r"^/api/auth/(logout|password|token|totp/enroll|totp/disable)$"
STREAMS = r"/stream$"
# Who runs which operations: one that may use them.
GROUPS = [
    ("administrator", r"^/api/(units|users)"),
    ("auditor", r"^/api/audit"),
    ("supervisor", r"shares"),
    ("officer", r"^/api/(?!units|users|audit)(?!.*shares)"),
]


def _clean(report: fuzz.Report) -> None:
    assert not report.errors, report.errors[:5]
    assert not report.failures, "\n\n".join(
        f"{op} [{check}]\n{text}" for (op, check), text in list(report.failures.items())[:8]
    )


def test_every_operation_keeps_its_schema_and_never_answers_5xx(
    client: TestClient, app: FastAPI, world: World, api_engine: Engine, api_clock: ManualClock
) -> None:
    own = fuzz.own_objects(client, world, api_engine, api_clock)
    report = fuzz.Report()
    for role, paths in GROUPS:
        headers = bearer(login(client, world.user(UNIT_A, role)))
        skip = f"{ACCOUNT}|{STREAMS}|^/api/users/\\{{user_id\\}}$"
        # Generated ids: the schema's examples and random data (past the guards, mostly 404).
        report.add(fuzz.run(app, headers, paths, skip, phases=("examples", "fuzzing")))
        # The world's own objects: every field's nulls and boundaries reach the routes' code.
        report.add(fuzz.run(app, headers, paths, skip, own, phases=("coverage", "fuzzing")))
    _clean(report)
    # The run reached real answers, not only refusals.
    seen = report.statuses
    assert seen.get(200, 0) > 100 and seen.get(201, 0) > 10 and seen.get(422, 0) > 500, seen


def test_no_subject_data_for_the_auditor_and_no_5xx(
    client: TestClient, app: FastAPI, world: World
) -> None:
    headers = bearer(login(client, world.user(UNIT_A, "auditor")))
    report = fuzz.run(
        app, headers, r"^/api/(?!audit)", f"{ACCOUNT}|{STREAMS}", examples=2, phases=("fuzzing",)
    )
    _clean(report)
    assert report.statuses.get(403, 0) + report.statuses.get(404, 0) > 40, report.statuses


def test_every_operation_but_login_needs_a_token(client: TestClient, app: FastAPI) -> None:
    report = fuzz.run(
        app, {}, r"^/api/", r"^/api/auth/token$", examples=2, phases=("fuzzing",), modes=(POSITIVE,)
    )
    _clean(report)
    assert set(report.statuses) == {401}, report.statuses


@pytest.mark.parametrize("path", ["/api/alerts/stream", "/api/web/live/stream"])
def test_the_streams_refuse_without_a_token(client: TestClient, path: str) -> None:
    assert client.get(path, headers={"Accept": "text/event-stream"}).status_code == 401
