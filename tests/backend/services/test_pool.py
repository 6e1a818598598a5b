"""The tag pool on real SQLite and PostgreSQL: states and their history, fitting and removal
through assignments, and battery health from the tag's own battery reports as ingest
stored them."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from backend.ingest import UNKNOWN_DEVICE
from backend.services import pool
from backend.services.errors import Conflict, Refused
from backend.storage.schema import devices
from firmware import frame as fr
from tests.backend.frames import tag_frame
from tests.backend.services.conftest import HOME, TAGS, Unit

HOUR = 3600


def _battery(level: int, charging: bool = False) -> fr.Record:
    return fr.Record(fr.BATTERY, (0, level, pool.FLAG_CHARGING if charging else 0, 3900, 20))


def _wear(unit: Unit, tag: int, start: int, levels: list[int], seq0: int) -> int:
    """Fit the tag at `start`, then one battery report an hour for each level (the tag's
    own signed frames, through ingest); returns the assignment."""
    aid = unit.assign(tag, start)
    with unit.engine.begin() as conn:
        pool.assignment_started(conn, tag, aid, unit.officer, unit.clock.now())
    key = unit.devices[tag].key
    unit.send(tag, [
        tag_frame(tag, key, seq0 + i, start + (i + 1) * HOUR, fixes=0, extra=[_battery(lv)])
        for i, lv in enumerate(levels)
    ])  # fmt: skip
    return aid


def test_states_history_and_the_moves_allowed(unit: Unit) -> None:
    now = unit.clock.now()
    tag = TAGS[0]
    with unit.engine.begin() as conn:
        assert pool.add(conn, tag, unit.unit_id, unit.officer, now, "delivered") == "in_stock"
        for bad, why in ((HOME, "not a registered tag"), (9999, "not a registered tag"),
                         (tag, "already in a pool")):  # fmt: skip
            with pytest.raises(Refused, match=why):
                pool.add(conn, bad, unit.unit_id, unit.officer, now, "")
        pool.move(conn, tag, pool.CHARGING, unit.officer, now, "")
        with pytest.raises(Conflict, match="not fitted"):
            pool.move(conn, tag, pool.FITTED, unit.officer, now, "")
        pool.move(conn, tag, pool.FAULTY, unit.officer, now, "strap clip broken")
    aid = unit.assign(tag, int(now) - HOUR)
    with unit.engine.begin() as conn, pytest.raises(Conflict, match="is faulty"):
        pool.assignment_started(conn, tag, aid, unit.officer, now)
    with unit.engine.begin() as conn:
        pool.move(conn, tag, pool.RETIRED, unit.officer, now, "")
        with pytest.raises(Conflict, match="can move to nothing"):
            pool.move(conn, tag, pool.IN_STOCK, unit.officer, now, "")
        history = pool.history(conn, tag)
        retired_at = conn.execute(select(devices.c.retired_at).where(devices.c.id == tag))
    assert [h["state"] for h in history] == ["in_stock", "charging", "faulty", "retired"]
    assert history[2]["note"] == "strap clip broken" and history[0]["user_id"] == unit.officer
    assert retired_at.scalar() == now
    # Retired in the pool is retired in the registry: ingest refuses it like an unknown id.
    unit.send(tag, [tag_frame(tag, unit.devices[tag].key, 1, int(now))])
    assert unit.ingest.rejections[(UNKNOWN_DEVICE, tag)] == 1


def test_fitting_removal_battery_health_and_counts(unit: Unit) -> None:
    """Two wearings of one tag: the second drains 2 points an hour against 1 the first time,
    so it is due for service; charging reports do not count as drain."""
    now = int(unit.clock.now())
    worn, spare, stock = TAGS
    with unit.engine.begin() as conn:
        for t in TAGS:
            pool.add(conn, t, unit.unit_id, unit.officer, now, "")
        pool.move(conn, stock, pool.CHARGING, unit.officer, now, "")
    first = _wear(unit, worn, now - 30 * HOUR, [90, 89, 88, 87], 1)
    with unit.engine.begin() as conn:
        pool.remove(conn, first, now - 25 * HOUR, unit.officer, now)
        pool.move(conn, worn, pool.CLEANING, unit.officer, now, "")
        pool.move(conn, worn, pool.IN_STOCK, unit.officer, now, "")
    second = _wear(unit, worn, now - 20 * HOUR, [90, 88, 86, 84], 10)
    key = unit.devices[worn].key
    unit.send(worn, [tag_frame(worn, key, 20, now - 15 * HOUR, fixes=0,
                               extra=[_battery(99, charging=True)])])  # fmt: skip
    with unit.engine.connect() as conn:
        entries = {e.device: e for e in pool.unit_pool(conn, unit.unit_id, now)}
        states = [h["state"] for h in pool.history(conn, worn)]
        links = [h["assignment_id"] for h in pool.history(conn, worn)]
    assert states == ["in_stock", "fitted", "removed", "cleaning", "in_stock", "fitted"]
    assert links == [None, first, first, None, None, second]
    e = entries[worn]
    assert e.state == pool.FITTED and e.assignment_id == second
    assert [(h.assignment_id, h.reports, h.min_level, h.drain_pct_per_h) for h in e.health] == [
        (first, 4, 87, 1.0),
        (second, 5, 84, 2.0),
    ]
    assert e.due_for_service and not entries[spare].due_for_service
    summary = pool.counts(list(entries.values()))
    assert summary["by_state"]["fitted"] == 1 and summary["by_state"]["charging"] == 1
    assert summary["summary"] == "2 free, 1 due for service"


def test_drain_ignores_charging_gaps_and_rises() -> None:
    r = [(0, 80, 0), (3600, 79, 0), (7200, 90, 1), (10800, 89, 0), (40000, 10, 0)]
    assert pool.drain(r) == 1.0
    assert pool.drain([(0, 50, 0)]) is None
