"""Investigations fixtures: the API app and multi-agency world of tests/backend/api, plus
the staged correlation scenario stored through ingest."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from backend.clock import ManualClock
from tests.backend.api.conftest import api_clock, api_engine, app, client, world
from tests.backend.api.world import UNIT_A, UNIT_B, World
from tests.backend.investigations.scenario import (
    ComplianceTruth,
    Stage,
    Truth,
    stage_compliance,
    stage_correlation,
)

__all__ = ["api_clock", "api_engine", "app", "client", "world"]


@pytest.fixture
def stage(app: FastAPI, api_engine: Engine, api_clock: ManualClock) -> Stage:
    return Stage(api_engine, api_clock)


@pytest.fixture
def truth(stage: Stage, world: World) -> Truth:
    return stage_correlation(stage, world.units[UNIT_A], world.units[UNIT_B], world.subjects["A-2"])


@pytest.fixture
def compliance(
    app: FastAPI, api_engine: Engine, api_clock: ManualClock, world: World
) -> ComplianceTruth:
    """The compliance scenario, through ingest and the monitoring rules."""
    return stage_compliance(Stage(api_engine, api_clock, rules=True), world.units[UNIT_A])
