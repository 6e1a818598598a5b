"""The unit's own reports, in-process: what its sensors' changes become."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

from firmware import frame as fr
from home_unit import store
from home_unit.clock import SimClock
from home_unit.own_reports import OwnReports
from home_unit.sensors import FileSensors
from home_unit.settings import HomeUnitSettings

UNIT = 9001
NOW = 1_800_000_000.0


def test_a_change_across_an_unreadable_read_is_reported(tmp_path: Path) -> None:
    """A switch file read while it is being rewritten (truncated, not yet written) reads as
    unknown; the change it hid is reported once the file reads again, not lost."""
    ps = tmp_path / "ps"
    (ps / "ac").mkdir(parents=True)
    (ps / "ac" / "type").write_text("Mains")
    online = ps / "ac" / "online"
    moved = tmp_path / "moved"
    settings = HomeUnitSettings(
        unit=UNIT,
        key_hex="11" * 32,
        state_db=tmp_path / "state.db",
        power_supply_dir=ps,
        moved_file=moved,
        sensor_poll_s=1e-9,  # every poll reads the sensors
        heartbeat_s=1e9,
    )
    queue = store.Store(settings.state_db)
    sensors = FileSensors(ps, moved)
    reports = OwnReports(
        settings, settings.key(), 1, queue, SimClock(NOW), sensors, collections.Counter(),
        asyncio.Event(),
    )  # fmt: skip
    try:
        for mains, switch in (("1", "0"), ("", ""), ("0", "1"), ("", ""), ("1", "0")):
            online.write_text(mains)
            moved.write_text(switch)
            reports.poll(NOW)
        records = [r for q in queue.pending(0, 100) for r in fr.parse(q.data).records]
    finally:
        queue.close()
    assert sensors.unreadable == 4  # both inputs, twice
    assert [r.mains for r in records if r.type == fr.HOME_POWER] == [1, 0, 1]  # heartbeat first
    tamper = [(r.kind, r.state) for r in records if r.type == fr.HOME_TAMPER]
    assert tamper == [(fr.HOME_MOVED, 1), (fr.HOME_MOVED, 0)]


def test_sensors_are_polled_on_the_units_clock_and_at_once_when_told_of_a_change(
    tmp_path: Path,
) -> None:
    """Under the simulator's clock the polling interval is simulated seconds (a simulated
    unit costs the same per simulated day however fast the run goes), and a change the unit
    is told of is read at the next poll, whenever the last read was."""
    ps = tmp_path / "ps"
    (ps / "ac").mkdir(parents=True)
    (ps / "ac" / "type").write_text("Mains")
    online = ps / "ac" / "online"
    online.write_text("1")
    settings = HomeUnitSettings(
        unit=UNIT,
        key_hex="11" * 32,
        state_db=tmp_path / "state.db",
        power_supply_dir=ps,
        sensor_poll_s=60,
        heartbeat_s=1e9,
    )
    queue = store.Store(settings.state_db)
    clock = SimClock(NOW)
    reports = OwnReports(
        settings, settings.key(), 1, queue, clock, FileSensors(ps), collections.Counter(),
        asyncio.Event(),
    )  # fmt: skip

    def mains_reported() -> list[tuple[int, int]]:
        frames = [fr.parse(q.data) for q in queue.pending(0, 100)]
        return [
            (f.ts - int(NOW), r.mains) for f in frames for r in f.records if r.type == fr.HOME_POWER
        ]

    try:
        reports.poll(NOW)  # the baseline reading (and the heartbeat: mains on)
        for t, mains in ((10, "0"), (59, "0"), (60, "0"), (100, "1"), (110, "1")):
            online.write_text(mains)
            clock.set(NOW + t)
            if t == 100:
                reports.sensors_changed()
            reports.poll(NOW + t)
        reported = mains_reported()
    finally:
        queue.close()
    # The unplug at 10 s is read at the first poll a simulated minute after the last read;
    # the plug-in at 100 s at once, as the unit was told of it.
    assert reported == [(0, 1), (60, 0), (100, 1)]
