"""The home unit fails over along its broker list (docs/home-unit.md, "Brokers"), against two
real Mosquittos: its local settings name one broker, the pushed configuration names both;
when the first is killed, paho's reconnect goes on to the second, where the unit subscribes
again, reports itself online and its new frames are acknowledged."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backend.broker import Mosquitto
from firmware import frame as fr
from home_unit import store
from tests.home_unit.backend_standin import BackendStandIn
from tests.home_unit.harness import ThreadUnit
from tests.home_unit.scripted_tag import ScriptedTag
from tests.home_unit.test_relay_integration import UNIT, UNIT_KEY, World, config, until

pytestmark = pytest.mark.broker


def test_a_killed_broker_sends_the_unit_to_the_next_of_its_pushed_list(
    broker: Mosquitto, tmp_path: Path
) -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    world = World(broker, tmp_path, tag)
    ps = tmp_path / "ps"
    (ps / "ac").mkdir(parents=True)
    (ps / "ac" / "type").write_text("Mains")
    (ps / "ac" / "online").write_text("1")
    with Mosquitto() as second:
        standby = BackendStandIn(second, {UNIT: UNIT_KEY, tag.tag: tag.key}).start()
        doc = config(1, tag) | {"brokers": [f"{b.host}:{b.port}" for b in (broker, second)]}
        for backend in (world.backend, standby):  # the backend keeps it on every broker
            backend.publish_config(UNIT, doc)
        u = ThreadUnit(world.settings(power_supply_dir=str(ps), sensor_poll_s=0.05)).start()
        try:
            until(lambda: u.unit.link is not None and u.unit.link.brokers[1:]
                  == [(second.host, second.port)], what="pushed list taken")  # fmt: skip
            until(lambda: u.unit.store.count(store.OWN) == 0, what="acknowledged on the first")
            assert world.backend.wait(lambda: bool(world.backend.status)), "online on the first"
            killed = time.monotonic()
            broker.kill()
            assert standby.wait(lambda: any(s[2] == fr.LINK_ONLINE for s in standby.status)), (
                "online on the second"
            )
            moved_s = time.monotonic() - killed
            link = u.unit.link
            assert link is not None and link.broker == (second.host, second.port)
            assert link.failovers >= 1
            # A frame made after the failover goes up through the second broker and its ACK
            # comes back down the same way: the unit subscribed again there.
            (ps / "ac" / "online").write_text("0")
            assert standby.wait(
                lambda: any(r.type == fr.HOME_POWER and r.mains == 0 for r in standby.own_records)
            ), "mains lost reported on the second"
            until(lambda: u.unit.store.count(store.OWN) == 0, what="acknowledged on the second")
            assert standby.rejected == []
            print(f"home unit on the second broker {moved_s:.2f} s after the kill")
        finally:
            u.stop()
            standby.close()
            world.close()
