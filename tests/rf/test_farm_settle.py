"""The simulator's home units in lock-step with the relay (sim/home_units.py, settle): a
beacon flagged pending sent in a slice is contacted, offloaded, relayed through a real
Mosquitto and acknowledged by the backend before the runner moves simulated time on, so a
frame relayed from home (a tamper) is stored at the simulated moment it was offloaded rather
than whenever real time lets the relay catch up with the runner's slices."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.broker import Mosquitto
from firmware import beacon as bc
from firmware import homelink
from sim.fleet_radio import TagRadio
from sim.home_units import HomeUnitFarm, UnitSpec, wait_progress
from tests.home_unit.backend_standin import BackendStandIn
from tests.home_unit.scripted_tag import T0, ScriptedTag
from tests.home_unit.test_relay_integration import config

pytestmark = pytest.mark.broker

UNIT = 52001
UNIT_KEY = bytes(range(32))


class ScriptedService:
    """A scripted tag as the firmware's GATT service (firmware.homelink.HomeLink's methods)."""

    def __init__(self, tag: ScriptedTag) -> None:
        self.tag = tag
        self.chunks: list[bytes] = []

    def connect(self) -> None:
        # The offload cursor restarts at each connection: every frame not yet ACKed.
        self.chunks = []
        for frame in self.tag.offload():
            for i in range(0, len(frame), homelink.CHUNK):
                last = i + homelink.CHUNK >= len(frame)
                flags = homelink.FINAL if last else 0
                self.chunks.append(bytes((flags,)) + frame[i : i + homelink.CHUNK])

    def write_ack(self, data: bytes) -> None:
        self.tag.on_ack(data)

    def read_offload(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def write_downlink(self, chunk: bytes) -> None:
        self.tag.on_downlink(chunk[1:])


@pytest.fixture
def farm(broker: Mosquitto, tmp_path: Path) -> Iterator[tuple[HomeUnitFarm, ScriptedTag]]:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    backend = BackendStandIn(broker, {tag.tag: tag.key, UNIT: UNIT_KEY}).start()
    backend.publish_config(UNIT, {**config(1, tag), "unit": UNIT})
    f = HomeUnitFarm(tmp_path, [f"{broker.host}:{broker.port}"])
    radio = TagRadio(tag.tag, threading.RLock())
    radio.service = ScriptedService(tag)
    f.add(UnitSpec(UNIT, UNIT_KEY, tag.tag, tag.key, ("19:00", "07:00"), "Europe/London"), radio)
    f.start(T0)
    f.backend = backend  # type: ignore[attr-defined]
    yield f, tag
    f.stop()
    backend.close()


def test_a_pending_beacon_is_relayed_and_acknowledged_within_its_slice(
    farm: tuple[HomeUnitFarm, ScriptedTag],
) -> None:
    f, tag = farm
    backend: BackendStandIn = f.backend  # type: ignore[attr-defined]
    tag.make_frames(1)
    f.beacon(UNIT, tag.address, tag.advertisement(), -60, T0 + 1)
    f.settle(T0 + 5)
    # Nothing waited for in real time after settle: the frame is at the backend already.
    with backend.lock:
        relayed = [(d, s) for ch, d, _b, s in backend.arrivals if ch == "relay"]
    assert relayed == [(tag.tag, 1)]
    unit = f.units[UNIT]
    assert unit.counters["relay_freed"] == unit.counters["relay_queued"] == 1
    assert f.settles == 1 and f.settle_timeouts == 0
    assert tag.acks and tag.acks[0].flags & bc.ACK_OFFLOAD_READY


def test_a_beacon_with_nothing_pending_needs_no_settling(
    farm: tuple[HomeUnitFarm, ScriptedTag],
) -> None:
    f, tag = farm
    f.beacon(UNIT, tag.address, tag.advertisement(), -60, T0 + 1)
    f.settle(T0 + 5)
    assert f.settles == 0


def test_switching_mains_returns_once_the_unit_has_read_it(
    farm: tuple[HomeUnitFarm, ScriptedTag],
) -> None:
    """The unit polls its power supply in real time while simulated time runs faster: the
    runner moves on only once the unit has seen the change, so an outage's start and end
    are stamped in the slices they happened in, however busy the machine."""
    f, _tag = farm
    unit = f.units[UNIT]
    for on in (False, True, False):
        f.set_mains(UNIT, on)
        known = unit.reports.known
        assert known is not None and known.mains is on
    assert f.mains_timeouts == 0


def test_a_ticked_unit_does_no_work_on_real_time(
    farm: tuple[HomeUnitFarm, ScriptedTag],
) -> None:
    """Under the simulator's clock time moves only with ticks and beacons: a unit left
    alone for a wall second polls nothing (it polled every 0.2 s of real time, 5,000 polls a
    wall second for a thousand units), and a tick still does the due work."""
    f, _tag = farm
    unit = f.units[UNIT]
    polls: list[float] = []
    real_poll = unit.poll

    def poll() -> None:
        polls.append(unit.clock.now())
        real_poll()

    unit.poll = poll  # type: ignore[method-assign]
    time.sleep(1.0)  # nothing happens in it: no tick, no beacon
    assert polls == []
    f.tick(T0 + 60)
    assert polls == [T0 + 60]


def test_start_up_fails_on_a_stall_not_on_the_farm_size() -> None:
    """A thousand units take longer to start than the timeout a handful need; start-up
    fails only when no more unit gets going for that long."""
    left = list(range(20))

    def missing() -> list[int]:
        if left and time.monotonic() >= due[0]:
            left.pop()
            due[0] = time.monotonic() + 0.03
        return list(left)

    due = [time.monotonic()]
    started = time.monotonic()
    wait_progress(missing, 0.25, "start")
    assert left == [] and time.monotonic() - started > 0.25  # longer than the timeout in all
    with pytest.raises(TimeoutError, match=r"home units \[7\] \(1 in all\) did not start"):
        wait_progress(lambda: [7], 0.1, "start")
