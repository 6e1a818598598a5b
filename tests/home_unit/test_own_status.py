"""The unit's own status through a real Mosquitto: heartbeat, mains lost/restored, moved,
and the sim radio's lock-step tick and bad-input handling."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.broker import Mosquitto
from firmware import frame as fr
from home_unit import store
from tests.home_unit.harness import ThreadUnit
from tests.home_unit.scripted_tag import ScriptedTag
from tests.home_unit.test_relay_integration import UNIT, UNIT_KEY, World, config, until

pytestmark = pytest.mark.broker


@pytest.fixture
def world(broker: Mosquitto, tmp_path: Path) -> Iterator[World]:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    w = World(broker, tmp_path, tag)
    w.backend.publish_config(UNIT, config(1, tag))
    yield w
    w.close()


def test_heartbeat_power_and_tamper_are_signed_and_acknowledged(
    world: World, tmp_path: Path
) -> None:
    ps = tmp_path / "ps"
    (ps / "ac").mkdir(parents=True)
    (ps / "ac" / "type").write_text("Mains")
    (ps / "ac" / "online").write_text("1")
    (ps / "bat").mkdir()
    (ps / "bat" / "type").write_text("UPS")
    (ps / "bat" / "capacity").write_text("95")
    moved = tmp_path / "moved"
    moved.write_text("0")
    settings = world.settings(
        power_supply_dir=str(ps), moved_file=str(moved), sensor_poll_s=0.05, heartbeat_s=3600
    )
    u = ThreadUnit(settings).start()
    b = world.backend

    def records(kind: int) -> list[fr.Record]:
        with b.lock:
            return [r for r in b.own_records if r.type == kind]

    try:
        # The sensor files are rewritten in place, as a helper keeping a switch file does: the
        # unit may read one truncated (unknown), and still reports the change after it.
        assert b.wait(lambda: len(records(fr.STATUS)) == 1), "heartbeat at start"
        (ps / "ac" / "online").write_text("0")
        assert b.wait(lambda: any(r.mains == 0 for r in records(fr.HOME_POWER))), "mains lost"
        (ps / "ac" / "online").write_text("1")
        assert b.wait(lambda: [r.mains for r in records(fr.HOME_POWER)][-1:] == [1]), "restored"
        moved.write_text("1")
        assert b.wait(lambda: any(r.kind == fr.HOME_MOVED and r.state == 1
                                  for r in records(fr.HOME_TAMPER))), "moved"  # fmt: skip
        until(lambda: u.unit.store.count(store.OWN) == 0, what="own frames acknowledged")
        assert all(r.battery == 95 for r in records(fr.HOME_POWER))
        assert b.rejected == []
    finally:
        u.stop()


def test_tick_drives_time_and_bad_lines_are_counted(world: World) -> None:
    u = ThreadUnit(world.settings(clock="sim", heartbeat_s=100)).start()
    b = world.backend
    try:
        assert world.peer.wait_unit(UNIT)
        time.sleep(0.2)
        with b.lock:
            assert not [r for r in b.own_records if r.type == fr.STATUS]  # no time yet
        world.peer.tick(UNIT, 1_800_000_000.0)
        assert b.wait(lambda: any(r.type == fr.STATUS for r in b.own_records)), "heartbeat"
        world.peer.tick(UNIT, 1_800_000_050.0)
        world.peer.tick(UNIT, 1_800_000_100.0)
        assert b.wait(lambda: sum(r.type == fr.STATUS for r in b.own_records) == 2)
        with b.lock:
            stamps = [fr.parse(d).ts for k, d in b.stored.items() if k[0] == UNIT]
        # stamped with the simulator's time, not the wall clock's
        assert sorted(stamps) == [1_800_000_000, 1_800_000_100]
        # a simulator sending garbage is counted, not fatal
        conn = world.peer._conn(UNIT)
        conn.sock.sendall(b"this is not json\n" + b'{"op":"warp"}\n')
        until(lambda: u.unit.radio.bad_messages == 2, what="bad lines counted")  # type: ignore[attr-defined]
        world.peer.tick(UNIT, 1_800_000_200.0)
    finally:
        u.stop()
