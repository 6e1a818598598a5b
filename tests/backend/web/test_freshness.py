"""Freshness judged by what the tag sends in its mode (backend/web/freshness.py): the
thresholds per mode, and the mode read from what ingest stored — a tag at home spoken for by
its home unit, a moving tag's minute fixes, a resting tag's hourly ones — on both engines."""

from __future__ import annotations

from sqlalchemy import Engine

from backend.clock import ManualClock
from backend.services import units
from backend.storage.schema import HOME_UNIT, TAG
from backend.web import freshness as fw
from firmware import frame as fr
from tests.backend.conftest import T0
from tests.backend.investigations.scenario import Fix, Stage

TAG_ID, UNIT_ID = 8101, 8102
CADENCE = fw.Cadence()


def test_each_mode_has_its_own_interval_and_thresholds() -> None:
    assert (CADENCE.home_s, CADENCE.moving_s, CADENCE.resting_s) == (300, 600, 4200)
    moving = fw.judge("moving", T0 - 800, T0, 7200, CADENCE)
    assert (moving.expected_s, moving.late_after_s, moving.state) == (600, 900, "on_time")
    assert fw.judge("moving", T0 - 1000, T0, 7200, CADENCE).state == "late"
    # An hour between fixes is on time at rest, and late for a moving tag.
    assert fw.judge("resting", T0 - 3700, T0, 7200, CADENCE).state == "on_time"
    assert fw.judge("moving", T0 - 3700, T0, 7200, CADENCE).state == "late"
    assert fw.judge("home", T0 - 700, T0, 7200, CADENCE).state == "late"
    assert fw.judge("resting", T0 - 7300, T0, 7200, CADENCE).state == "silent"
    # Without a fix only the comms-loss threshold applies: never "late".
    unknown = fw.judge("unknown", T0 - 7000, T0, 7200, CADENCE)
    assert (unknown.late_after_s, unknown.state) == (7200, "on_time")
    assert fw.judge("unknown", None, T0, 7200, CADENCE).state == "silent"


def _stage(engine: Engine, comms_loss_s: int = 7200) -> tuple[Stage, int]:
    stage = Stage(engine, ManualClock(T0))
    with engine.begin() as conn:
        unit = units.create(conn, "Freshness unit", "police", T0)
    sid = stage.subject("FR-1", unit)
    stage.device(UNIT_ID, HOME_UNIT)
    stage.device(TAG_ID, TAG, home_unit=UNIT_ID)
    stage.order(sid, T0 - 86400, comms_loss_s=comms_loss_s)
    stage.assign(sid, TAG_ID, TAG, T0 - 86400)
    stage.assign(sid, UNIT_ID, HOME_UNIT, T0 - 86400)
    return stage, sid


def test_the_mode_comes_from_what_the_devices_sent(engine: Engine) -> None:
    stage, sid = _stage(engine, comms_loss_s=5400)
    # Moving: fixes a minute apart, the last 8 minutes ago.
    stage.deliver(stage.fixes(TAG_ID, [Fix(T0 - 540, 0, 0, 5), Fix(T0 - 480, 80, 0, 5)]), T0)
    with engine.connect() as conn:
        f = fw.read(conn, sid, TAG_ID, UNIT_ID, False, T0)
    assert (f.mode, f.last_contact, f.state, f.silent_after_s) == (
        "moving",
        T0 - 480,
        "on_time",
        5400,
    )
    # At rest: the next fix an hour later; 70 minutes on, still on time for that mode.
    stage.deliver(stage.fixes(TAG_ID, [Fix(T0 + 3120, 80, 0, 5)]), T0 + 3130)
    with engine.connect() as conn:
        f = fw.read(conn, sid, TAG_ID, UNIT_ID, False, T0 + 3120 + 4200)
    assert (f.mode, f.state) == ("resting", "on_time")
    # Home: the tag's RF mode record, then only the home unit's status reports speak for it.
    home = T0 + 3600
    stage.deliver(
        [stage.tag_records(TAG_ID, home, [fr.Record(fr.MODE, (0, fr.MODE_RF, 1, UNIT_ID))])], home
    )
    stage.deliver(
        [stage.unit_records(UNIT_ID, home + 3000, [fr.Record(fr.STATUS, (0, 1, 0, 100, 0))])],
        home + 3000,
    )
    with engine.connect() as conn:
        f = fw.read(conn, sid, TAG_ID, UNIT_ID, None, home + 3200)
        late = fw.read(conn, sid, TAG_ID, UNIT_ID, None, home + 3700)
    assert (f.mode, f.last_contact, f.state) == ("home", home + 3000, "on_time")
    assert late.state == "late"  # the home unit has missed its reports
