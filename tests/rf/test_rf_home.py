"""RF home mode end to end: the tag firmware under the real `micropython` binary on the
simulator board (sim/hil.py, lock-step), the home unit daemon with the simulator radio
(clock driven by the same simulated time), a real Mosquitto, and a subscriber standing in for
the backend that verifies every frame with the device's key and answers with signed ACKs."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.broker import Mosquitto
from firmware import beacon as bc
from firmware import frame as fr
from firmware import topics
from home_unit import store
from home_unit.sim_radio_peer import SimRadioPeer
from sim.hil import HilConfig, HilTag
from tests.home_unit.backend_standin import BackendStandIn
from tests.home_unit.harness import ProcessUnit, ThreadUnit, settings_dict

pytestmark = [pytest.mark.micropython, pytest.mark.broker]

MIN = 60_000
TAG = 41001
UNIT = 51001
TAG_KEY = hashlib.sha256(b"tagwatch rf test tag").digest()
UNIT_KEY = hashlib.sha256(b"tagwatch rf test unit").digest()
LEASE_S = 120
HOME_RSSI = -60


def unit_config(version: int = 1) -> dict[str, Any]:
    return {
        "unit": UNIT,
        "version": version,
        "issued": 1_795_737_600,
        "tags": [{"tag": TAG, "beacon_key": bc.beacon_key(TAG_KEY).hex()}],
        "curfews": [],
        "thresholds": {"enter_dbm": -75, "exit_dbm": -85, "away_timeout_s": 90,
                       "lease_s": LEASE_S, "smoothing": 1.0},
    }  # fmt: skip


class World:
    def __init__(self, broker: Mosquitto, tmp: Path, **tag_settings: Any) -> None:
        self.broker = broker
        self.tmp = tmp
        self.backend = BackendStandIn(broker, {TAG: TAG_KEY, UNIT: UNIT_KEY}).start()
        self.backend.publish_config(UNIT, unit_config())
        settings = {"home_unit": UNIT, "pairing_key": bc.pairing_key(UNIT_KEY, TAG).hex()}
        settings.update(tag_settings)
        cfg = HilConfig(
            device=TAG,
            key=TAG_KEY,
            workdir=tmp,
            brokers=[f"{broker.host}:{broker.port}"],
            heap="256k",
            settings=settings,
            reply_wait_s=0.3,
        )
        self.tag = HilTag(cfg)
        self.peer = SimRadioPeer(self.tag.tag_side()).start()
        self.tag.attach_home(self.peer, UNIT)
        self.unit: ThreadUnit | None = None

    def settings(self, **over: Any) -> dict[str, Any]:
        return settings_dict(
            UNIT, UNIT_KEY, self.tmp / "unit.db", self.broker, self.peer, clock="sim", **over
        )

    def start_unit(self) -> ThreadUnit:
        u = ThreadUnit(self.settings()).start()
        assert self.peer.wait_unit(UNIT)

        def ready() -> bool:
            link = u.unit.link
            return u.unit.config is not None and link is not None and link.connected

        until(lambda: ready() and bool(u.unit.subscribed_tags), what="unit ready")
        self.unit = u
        return u

    def run_until(self, pred: Callable[[], bool], step_ms: int, limit_ms: int, what: str) -> None:
        """Advance simulated time a step at a time until pred() holds (real-time answers from
        the broker may take a few simulated steps to land)."""
        deadline = time.monotonic() + 60
        while not pred():
            assert self.tag.now_ms < limit_ms, f"{what}: not by {limit_ms / MIN:.1f} min"
            assert time.monotonic() < deadline, f"{what}: timed out in real time"
            self.tag.run_until(self.tag.now_ms + step_ms)

    def close(self) -> None:
        self.tag.kill()
        if self.unit is not None:
            self.unit.stop()
        self.backend.close()
        self.peer.close()


def until(pred: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def world(broker: Mosquitto, tmp_path: Path) -> Iterator[World]:
    w = World(broker, tmp_path, batch_fixes=2)
    yield w
    w.close()


def tag_frames(w: World) -> dict[tuple[int, int], bytes]:
    return w.backend.tag_frames(TAG)


def mode_records(w: World) -> list[tuple[int, fr.Record]]:
    out = []
    for (_b, _s), data in sorted(tag_frames(w).items()):
        f = fr.parse(data)
        out += [(f.time_of(r), r) for r in f.records if r.type == fr.MODE]
    return out


def relayed(w: World) -> set[tuple[int, int]]:
    with w.backend.lock:
        return {(b, s) for ch, d, b, s in w.backend.arrivals if ch == "relay" and d == TAG}


def away_buffering(w: World, minutes: int) -> dict[str, Any]:
    """Out and about with no cellular coverage: fixes pile up in the flash log."""
    tag = w.tag
    tag.set_coverage(False)
    tag.start()
    tag.run_until(minutes * MIN, moving=True)
    rep = tag.report()
    assert rep["mode"] == fr.MODE_GPS and rep["pending"] >= 4
    return rep


def arrive(w: World, limit_ms: int) -> None:
    w.tag.set_rssi(HOME_RSSI)
    w.run_until(lambda: w.tag.report()["mode"] == fr.MODE_RF, 15_000, limit_ms, "RF mode")


def test_arrive_home_rf_mode_relay_frees_then_leave_gps_within_lease(world: World) -> None:
    w = world
    w.start_unit()
    rep = away_buffering(w, 30)
    arrived_ms = w.tag.now_ms
    arrive(w, arrived_ms + 2 * MIN)
    tag = w.tag
    assert not tag.gnss_on and not tag.modem.on  # GNSS and modem off in RF mode
    # Everything buffered goes through the home unit; the backend's ACKs come back through
    # its downlink and only then does the tag free them.
    w.run_until(lambda: tag.report()["pending"] == 0, 30_000, arrived_ms + 20 * MIN, "freed")
    rep = tag.report()
    frames = tag_frames(w)
    assert set(frames) == {(rep["boot"], s) for s in range(rep["seq"])}
    assert len(relayed(w)) >= rep["seq"] - 1  # all but the boot-time ones went by relay
    assert w.backend.rejected == []
    assert not any(t == topics.tag_up(TAG) for _ms, t, _p in tag.modem.published)
    enter = [(t, r) for t, r in mode_records(w) if r.mode == fr.MODE_RF]
    assert len(enter) == 1 and enter[0][1].home_unit == UNIT
    assert enter[0][0] - tag.unix_at(arrived_ms) <= 3 * 15 + 2  # k = 3 acks, 15 s apart
    assert rep["rf"]["refused"] == {} and rep["rf"]["acks"] >= 3
    # The unit reported the tag home, from its own beacons.
    assert w.backend.wait(lambda: any(p[:2] == (TAG, fr.HOME) for p in w.backend.presence))

    # Leave: silence; back in GPS mode within the lease, with a fix and the modem.
    tag.set_coverage(True)
    tag.set_rssi(None)
    left_ms = tag.now_ms
    fixes = tag.report()["fixes"]
    w.run_until(lambda: tag.report()["mode"] == fr.MODE_GPS, 5_000, left_ms + 4 * MIN, "GPS")
    assert tag.now_ms - left_ms <= (LEASE_S + 30 + 5) * 1000  # lease + one RF beacon interval
    switched_ms = tag.now_ms
    tag.run_until(switched_ms + 10_000)
    assert tag.report()["fixes"] > fixes  # a fix at once (hot start)

    def left_recorded() -> bool:
        return any(r.reason == fr.MODE_REASON_LEASE_EXPIRED for _t, r in mode_records(w))

    w.run_until(left_recorded, 5_000, left_ms + 8 * MIN, "mode record uplinked")
    assert any(t == topics.tag_up(TAG) for _ms, t, _p in tag.modem.published)
    assert w.backend.wait(lambda: any(p[:2] == (TAG, fr.AWAY) for p in w.backend.presence))


def test_broker_restart_while_relaying(world: World) -> None:
    w = world
    u = w.start_unit()
    away_buffering(w, 90)
    arrive(w, 92 * MIN)
    w.run_until(lambda: len(relayed(w)) >= 3, 5_000, 95 * MIN, "relay under way")
    w.broker.restart()
    tag = w.tag
    w.run_until(lambda: tag.report()["pending"] == 0, 30_000, 130 * MIN, "all freed")
    rep = tag.report()
    assert set(tag_frames(w)) == {(rep["boot"], s) for s in range(rep["seq"])}
    assert u.unit.counters["mqtt_connects"] >= 2
    until(lambda: u.unit.store.count(store.RELAY) == 0, what="unit queue freed")
    assert w.backend.rejected == [] and rep["mode"] == fr.MODE_RF


def test_home_unit_killed_mid_relay_and_restarted(world: World) -> None:
    w = world
    proc = ProcessUnit(w.settings(), w.tmp).start()
    try:
        assert w.peer.wait_unit(UNIT, timeout=30)
        rep = away_buffering(w, 90)
        w.tag.set_rssi(HOME_RSSI)
        w.run_until(lambda: len(relayed(w)) >= 1, 15_000, 95 * MIN, "relay under way")
        proc.kill()  # power cut in the middle of the relay
        until(lambda: not w.peer.connected(UNIT), what="unit gone")
        w.tag.run_until(w.tag.now_ms + 3 * MIN)  # the tag beacons into silence
        proc.start()
        assert w.peer.wait_unit(UNIT, timeout=30)
        tag = w.tag
        w.run_until(lambda: tag.report()["pending"] == 0, 30_000, 140 * MIN, "all freed")
        rep = tag.report()
        frames = tag_frames(w)
        # Nothing lost: every frame the tag sealed reached the backend (each stored once).
        assert set(frames) == {(rep["boot"], s) for s in range(rep["seq"])}
        assert w.backend.rejected == []
    finally:
        proc.terminate()


def test_replayed_acknowledgement_from_a_recording_is_refused(world: World) -> None:
    w = world
    w.start_unit()
    w.tag.start()
    w.tag.run_until(2 * MIN)
    arrive(w, 4 * MIN)
    recording = list(w.tag.radio.acks_written)
    assert len(recording) >= 3
    w.tag.set_rssi(None)  # leave; back in GPS mode at the lease
    tag = w.tag
    w.run_until(lambda: tag.report()["mode"] == fr.MODE_GPS, 10_000, 10 * MIN, "GPS mode")
    before = tag.report()["rf"]
    # An attacker near the tag plays the recorded acks back, again and again, while its
    # home unit is out of range: the tag stays in GPS mode and counts each refusal.
    for _ in range(4):
        for ack in recording:
            tag.write_ack(ack)
        tag.run_until(tag.now_ms + 15_000)
    after = tag.report()
    assert after["mode"] == fr.MODE_GPS
    assert after["rf"]["refused"].get("replay", 0) - before["refused"].get("replay", 0) == (
        4 * len(recording)
    )
    assert after["rf"]["acks"] == before["acks"]
    # A forgery (right shape, wrong key) and an ack from a neighbour's unit are refused too.
    counter = after["rf"]["counter"]
    neighbour_key = bc.pairing_key(hashlib.sha256(b"neighbour").digest(), TAG)
    forged = bc.encode_home_ack(bc.HomeAck(UNIT, TAG, 0, 600, counter, 1), bytes(32))
    foreign = bc.encode_home_ack(bc.HomeAck(UNIT + 1, TAG, 0, 600, counter, 1), neighbour_key)
    tag.write_ack(forged)
    tag.write_ack(foreign)
    tag.run_until(tag.now_ms + 1000)
    final = tag.report()
    assert final["rf"]["refused"].get("mac", 0) == before["refused"].get("mac", 0) + 2
    assert final["mode"] == fr.MODE_GPS


def test_tag_power_cut_at_home_reboots_and_reenters_rf_mode(world: World) -> None:
    """The beacon counter is persisted in blocks: after a power cut the rebooted tag's
    beacons are above every counter the unit accepted, so the unit acknowledges them."""
    w = world
    u = w.start_unit()
    w.tag.start()
    w.tag.run_until(MIN)
    arrive(w, 3 * MIN)
    before = w.tag.report()
    w.tag.kill()  # power cut in RF mode
    w.tag.start(reset_cause=fr.RESET_POWER_ON)
    rep = w.tag.report()
    assert rep["boot"] == before["boot"] + 1 and rep["mode"] == fr.MODE_GPS
    assert rep["rf"]["counter"] > before["rf"]["counter"]
    w.run_until(lambda: w.tag.report()["mode"] == fr.MODE_RF, 15_000, 8 * MIN, "RF again")
    assert u.unit.counters["beacon_replay"] == 0
