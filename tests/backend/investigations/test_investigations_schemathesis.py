"""schemathesis against the investigations, exports and reports operations over the staged
correlation data, so that generated places and windows meet real fixes and hits: whatever an
authenticated officer (and an administrator) sends, no 5xx and every answer as documented,
with the strictest checks that hold (tests/backend/api/fuzz.py)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.backend.api import fuzz
from tests.backend.api.conftest import bearer, login
from tests.backend.investigations.scenario import Truth

MINE = r"^/api/(investigations|exports|reports)/"


def test_no_server_errors(app: FastAPI, truth: Truth) -> None:
    with TestClient(app) as client:
        users = [
            bearer(login(client, u)) for u in ("officer.turnaround", "administrator.turnaround")
        ]
    report = fuzz.Report()
    for headers in users:
        report.add(fuzz.run(app, headers, MINE, examples=8))
    assert not report.errors, report.errors[:5]
    assert not report.failures, list(report.failures.items())[:5]
    assert report.statuses.get(200, 0) > 20, report.statuses
