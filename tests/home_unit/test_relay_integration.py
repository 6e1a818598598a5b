"""The home unit against a real Mosquitto (fixture `broker`), with the simulator radio, a
scripted tag on the simulator's end of the radio socket, and a subscriber standing in for
the backend that verifies frames with the codec and sends ACK frames."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.broker import Mosquitto
from firmware import frame as fr
from firmware import topics
from home_unit import store
from home_unit.sim_radio_peer import SimRadioPeer
from tests.home_unit.backend_standin import BackendStandIn
from tests.home_unit.harness import ThreadUnit, settings_dict
from tests.home_unit.scripted_tag import T0, ScriptedTag, ScriptedTags, device_key

pytestmark = pytest.mark.broker

UNIT = 5001
UNIT_KEY = device_key(UNIT)
AWAY_S = 60


def config(version: int, *tags: ScriptedTag, away: float = AWAY_S) -> dict[str, Any]:
    return {
        "unit": UNIT,
        "version": version,
        "issued": T0,
        "tags": [{"tag": t.tag, "beacon_key": t.bkey.hex()} for t in tags],
        "curfews": [
            {"tag": t.tag, "days": ["mon", "tue", "wed", "thu", "fri"], "start": "19:00",
             "end": "07:00"} for t in tags
        ],
        "thresholds": {"enter_dbm": -75, "exit_dbm": -85, "away_timeout_s": away,
                       "lease_s": 120, "smoothing": 1.0},
    }  # fmt: skip


def until(pred: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or pred}")


class World:
    def __init__(self, broker: Mosquitto, tmp: Path, *tags: ScriptedTag) -> None:
        self.broker = broker
        self.tags = tags
        self.peer = SimRadioPeer(ScriptedTags(*tags)).start()
        keys = {UNIT: UNIT_KEY, **{t.tag: t.key for t in tags}}
        self.backend = BackendStandIn(broker, keys).start()
        self.db = tmp / "state.db"
        self.time = float(T0)

    def settings(self, **over: Any) -> dict[str, Any]:
        return settings_dict(UNIT, UNIT_KEY, self.db, self.broker, self.peer, **over)

    def beacon(self, tag: ScriptedTag, rssi: int = -60, step: float = 10.0) -> None:
        self.time += step
        self.peer.send_beacon(UNIT, tag.address, tag.advertisement(), rssi, self.time)

    def close(self) -> None:
        self.backend.close()
        self.peer.close()


@pytest.fixture
def tag() -> ScriptedTag:
    return ScriptedTag(1001, UNIT, UNIT_KEY)


@pytest.fixture
def world(broker: Mosquitto, tmp_path: Path, tag: ScriptedTag) -> Iterator[World]:
    w = World(broker, tmp_path, tag)
    w.backend.publish_config(UNIT, config(1, tag))
    yield w
    w.close()


def start_unit(world: World, **over: Any) -> ThreadUnit:
    u = ThreadUnit(world.settings(clock="sim", **over)).start()
    assert world.peer.wait_unit(UNIT)
    until(lambda: u.unit.config is not None and u.unit.link is not None
          and u.unit.link.connected and bool(u.unit.subscribed_tags), what="config")  # fmt: skip
    return u


def beacon_until(world: World, tag: ScriptedTag, pred: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 15
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        world.beacon(tag)
        time.sleep(0.05)


def test_arrive_relay_ack_free_then_leave(world: World, tag: ScriptedTag) -> None:
    frames = tag.make_frames(5)
    u = start_unit(world)
    try:
        world.beacon(tag, rssi=-95)  # heard, but too far to be home: no ack, no offload
        world.beacon(tag)
        arrived = world.time
        b = world.backend
        assert b.wait(lambda: len(b.tag_frames(tag.tag)) == 5), "tag frames relayed"
        assert sorted(b.tag_frames(tag.tag).values()) == sorted(frames)  # byte for byte
        assert b.wait(lambda: (tag.tag, fr.HOME, int(arrived)) in b.presence)
        # The backend's ACKs free the unit's queue, then reach the tag at its next contact.
        until(lambda: u.unit.store.count(store.RELAY) == 0, what="relay queue freed")
        beacon_until(world, tag, lambda: tag.pending_count() == 0, "tag frees its frames")
        assert sorted(tag.freed) == [(1, s) for s in range(1, 6)]
        # The tag offered its frames again at the contacts before the ACK reached it; the
        # unit answered those offers from what it knew, so each frame crossed the broker once.
        relayed = [a for a in b.arrivals if a[0] == "relay"]
        assert sorted(relayed) == [("relay", tag.tag, 1, s) for s in range(1, 6)]
        assert tag.acks and tag.acks_refused == [] and tag.downlinks_refused == []
        assert all(a.lease == 120 and a.home_unit == UNIT for a in tag.acks)
        last = world.time
        # Leaving shows only as silence: not away before the timeout, away at it, dated at
        # the last beacon that kept the tag home.
        world.peer.tick(UNIT, last + AWAY_S - 1)
        time.sleep(0.1)
        assert (tag.tag, fr.AWAY, int(last)) not in b.presence
        world.peer.tick(UNIT, last + AWAY_S)
        assert b.wait(lambda: (tag.tag, fr.AWAY, int(last)) in b.presence), "away reported"
        assert [p[1] for p in b.presence] == [fr.HOME, fr.AWAY]
        until(lambda: u.unit.store.count(store.OWN) == 0, what="own frames acknowledged")
        assert b.wait(lambda: any(s[2] == fr.LINK_ONLINE for s in b.status))
        assert b.rejected == []
    finally:
        u.stop()


def test_broker_restart_while_relaying(world: World, tag: ScriptedTag) -> None:
    frames = tag.make_frames(400)
    u = start_unit(world, relay_window=8)
    try:
        b = world.backend
        world.beacon(tag)
        assert b.wait(lambda: len(b.tag_frames(tag.tag)) >= 20), "relay under way"
        world.broker.restart()
        assert b.wait(lambda: len(b.tag_frames(tag.tag)) == 400, timeout=30), "all relayed"
        assert sorted(b.tag_frames(tag.tag).values()) == sorted(frames)
        until(lambda: u.unit.store.count(store.RELAY) == 0, timeout=30, what="queue freed")
        beacon_until(world, tag, lambda: tag.pending_count() == 0, "tag frees everything")
        assert u.unit.counters["mqtt_connects"] >= 2
        assert b.rejected == []
    finally:
        u.stop()


def test_replayed_beacon_from_a_recording_is_refused_and_survives_restart(
    world: World, tag: ScriptedTag
) -> None:
    u = start_unit(world)
    recorded = tag.advertisement()
    world.time += 10
    world.peer.send_beacon(UNIT, tag.address, recorded, -60, world.time)
    until(lambda: len(tag.acks) == 1, what="first ack")
    acks_before = sum(1 for r in world.peer.requests if r["op"] == "ack")
    world.peer.send_beacon(UNIT, tag.address, recorded, -60, world.time + 5)
    until(lambda: u.unit.counters["beacon_replay"] == 1, what="replay counted")
    u.stop()
    # A restarted unit still knows the counter.
    u = start_unit(world)
    try:
        world.peer.send_beacon(UNIT, tag.address, recorded, -60, world.time + 20)
        until(lambda: u.unit.counters["beacon_replay"] == 1, what="replay counted after restart")
        assert sum(1 for r in world.peer.requests if r["op"] == "ack") == acks_before
        # A recorded acknowledgement played back to the tag is refused by the tag.
        recorded_ack = next(bytes.fromhex(r["data"]) for r in world.peer.requests
                            if r["op"] == "ack")  # fmt: skip
        world.beacon(tag)
        until(lambda: len(tag.acks) == 2, what="fresh ack")
        tag.on_ack(recorded_ack)
        assert tag.acks_refused == ["replay"] and len(tag.acks) == 2
    finally:
        u.stop()


def test_pushed_config_refused_with_reason_old_kept_new_applied(
    world: World, tag: ScriptedTag
) -> None:
    u = start_unit(world)
    try:
        newcomer = ScriptedTag(1002, UNIT, UNIT_KEY)
        world.peer.tags.tags[newcomer.address] = newcomer  # type: ignore[attr-defined]
        b = world.backend
        b.publish_config(UNIT, config(1, tag, newcomer))  # same version: refused
        b.publish_raw(topics.home_config(UNIT), b'{"doc": "{}", "mac": "00"}', retain=True)
        bad = config(5, tag, newcomer)
        bad["thresholds"]["exit_dbm"] = -10  # above enter: no hysteresis
        b.publish_config(UNIT, bad)
        refusals = lambda: sum(  # noqa: E731
            v for k, v in u.unit.counters.items() if k.startswith("config_refused")
        )
        until(lambda: refusals() == 3, what="three refusals")
        assert u.unit.counters["config_refused_version"] == 1
        assert u.unit.counters["config_refused_mac"] == 1
        assert u.unit.counters["config_refused_schema"] == 1
        assert u.unit.config is not None and u.unit.config.version == 1
        world.beacon(newcomer)
        until(lambda: u.unit.counters["beacon_unpaired"] == 1, what="unpaired counted")
        b.publish_config(UNIT, config(6, tag, newcomer))
        until(lambda: u.unit.config is not None and u.unit.config.version == 6, what="v6")
        until(lambda: 1002 in u.unit.subscribed_tags, what="subscribed to the new tag")
        world.beacon(newcomer)
        until(lambda: len(newcomer.acks) == 1, what="new tag acknowledged")
    finally:
        u.stop()
    # The accepted configuration is kept across restarts, and the broker's retained copy
    # (version 6) is not refused as a replay when it is delivered again.
    u = start_unit(world)
    try:
        assert u.unit.config is not None and u.unit.config.version == 6
        time.sleep(0.2)
        assert not any(k.startswith("config_refused") for k in u.unit.counters)
    finally:
        u.stop()


def _fill_holes(below: int) -> list[int]:
    """Open /dev/null until the descriptor handed out is above `below`: every free number
    under it is then taken (the kernel hands out the lowest free one)."""
    taken = []
    while True:
        fd = os.open(os.devnull, os.O_RDONLY)
        taken.append(fd)
        if fd > below:
            return taken


def test_a_unit_connects_from_a_process_holding_many_descriptors(world: World) -> None:
    """The simulator runs a thousand units in one process, each with its sockets and store:
    a unit's broker connection gets a descriptor above FD_SETSIZE (1024), which paho's own
    network thread (select()) took for a lost connection, so it never connected. Whatever
    number the descriptor has, the unit connects, takes its configuration and relays."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2048
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"the process may open only {hard} descriptors")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    held = [os.pipe() for _ in range(600)]  # what a thousand other units' sockets would hold
    fillers: list[int] = []
    gc.disable()  # a collected object closing its descriptor would open a hole below 1024
    try:
        assert max(max(p) for p in held) >= 1024
        # The kernel hands out the lowest free number, so a descriptor closed after the pipes
        # were made (an earlier test's object, a thread winding down) would give the unit's
        # socket a low number and the test would prove nothing: fill every hole first, and
        # if one still opened while the unit started, start it again.
        for _attempt in range(3):
            fillers += _fill_holes(below=max(max(p) for p in held))
            world.backend.status.clear()
            u = start_unit(world)
            try:
                relayed = world.backend.wait(lambda: bool(world.backend.status))
                assert relayed, "online frame relayed"
                link = u.unit.link
                assert link is not None
                sock = link.client.socket()
                assert sock is not None
                number = sock.fileno()
            finally:
                u.stop()
            if number >= 1024:
                break
        assert number >= 1024, f"the unit's socket got descriptor {number} three times"
    finally:
        gc.enable()
        for r, w in held:
            os.close(r)
            os.close(w)
        for fd in fillers:
            os.close(fd)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
