"""The correlation's hot reads go to the DBAPI cursor directly: the same staged scenario on
SQLite and a real PostgreSQL gives the same answers."""

from __future__ import annotations

from sqlalchemy import Engine

from backend.clock import ManualClock
from backend.investigations.area import Area
from backend.investigations.correlate import correlate, whereabouts
from backend.services import subjects, units
from tests.backend.conftest import T0
from tests.backend.investigations.scenario import (
    INCIDENT,
    RADIUS_M,
    W0,
    W1,
    Stage,
    stage_correlation,
)


def test_same_answers_on_both_engines(engine: Engine) -> None:
    clock = ManualClock(T0)
    with engine.begin() as conn:
        a = units.create(conn, "A", "police", T0)
        b = units.create(conn, "B", "police", T0)
        a2 = subjects.create(conn, reference="A-2", name="Subject A-2", unit_id=a,
                                   risk_notes="", now=T0)  # fmt: skip
    truth = stage_correlation(Stage(engine, clock), a, b, a2)
    area = Area.circle(INCIDENT[0], INCIDENT[1], RADIUS_M)
    with engine.connect() as conn:
        hits = correlate(conn, area, W0, W1)
        far = whereabouts(conn, truth.subjects["INV-FAR"], area, W0, W1)
    assert {h.reference: h.status for h in hits} == truth.expected_a | truth.expected_b
    assert far.status == "not_within" and far.complete
