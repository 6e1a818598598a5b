"""Power cut and kill -9: the daemon as its own process (`python -m home_unit run`), killed
mid-relay and restarted — nothing lost, nothing doubled, freed only on the backend's ACK —
and the SQLite queue killed mid-write."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from backend.broker import Mosquitto
from firmware import frame as fr
from home_unit import store
from tests.home_unit.harness import ProcessUnit
from tests.home_unit.scripted_tag import ScriptedTag
from tests.home_unit.test_relay_integration import UNIT, UNIT_KEY, World, config, until

pytestmark = pytest.mark.broker


def queued(db: Path) -> int:
    s = store.Store(db)
    try:
        return s.count(store.RELAY)
    finally:
        s.close()


def test_home_unit_killed_mid_relay_and_restarted(broker: Mosquitto, tmp_path: Path) -> None:
    tag = ScriptedTag(1001, UNIT, UNIT_KEY)
    frames = tag.make_frames(300)
    w = World(broker, tmp_path, tag)
    b = w.backend
    b.ack = False  # the backend stores but has not acknowledged yet when the power goes
    w.backend.publish_config(UNIT, config(1, tag))
    settings = w.settings(relay_window=4, clock="sim", heartbeat_s=3600)
    proc = ProcessUnit(settings, tmp_path).start()
    try:
        assert w.peer.wait_unit(UNIT, 20)
        deadline = time.monotonic() + 20
        while not tag.acks:  # beacon until the unit has its configuration and answers
            assert time.monotonic() < deadline, "no acknowledgement from the unit"
            w.beacon(tag)
            time.sleep(0.1)
        assert b.wait(lambda: len(b.tag_frames(tag.tag)) >= 10), "relay under way"
        proc.kill()
        assert b.wait(lambda: any(s[2] == fr.LINK_OFFLINE for s in b.status)), "last will"
        # Nothing was acknowledged, so nothing may have been freed: the queue holds it all.
        assert queued(w.db) == 300
        # The tag walks out: after the restart the unit relays from its own queue alone.
        tag.in_range = False
        b.ack = True
        proc = ProcessUnit(settings, tmp_path).start()
        assert w.peer.wait_unit(UNIT, 20)
        assert b.wait(lambda: len(b.tag_frames(tag.tag)) == 300, timeout=30), "all relayed"
        until(lambda: queued(w.db) == 0, timeout=30, what="queue freed by ACKs")
        stored = b.tag_frames(tag.tag)
        assert sorted(stored.values()) == sorted(frames)  # byte for byte, each exactly once
        relayed = [a for a in b.arrivals if a[0] == "relay"]
        assert len({a[1:] for a in relayed}) == 300
        # The restarted unit came online under a new boot, after its last will.
        assert b.wait(lambda: any(s[2] == fr.LINK_ONLINE and s[0] == 2 for s in b.status))
        # Back home, the tag receives the ACKs that were kept for it, and frees everything.
        tag.in_range = True
        deadline = time.monotonic() + 20
        while tag.pending_count():
            assert time.monotonic() < deadline, "tag never freed its frames"
            w.beacon(tag)
            time.sleep(0.1)
        assert len(tag.freed) == 300 and tag.downlinks_refused == []
        assert b.rejected == []
    finally:
        proc.terminate()
        w.close()


WRITER = textwrap.dedent(
    """
    import sys
    from home_unit import store
    s = store.Store(sys.argv[1])
    batch = 0
    while True:
        frames = [(1001, 1, batch * 200 + i, bytes(300)) for i in range(200)]
        s.enqueue(store.RELAY, frames, 0.0, 10**9)
        print(batch, flush=True)
        batch += 1
    """
)


def test_power_cut_mid_write_leaves_whole_transactions(tmp_path: Path) -> None:
    """kill -9 a process that is writing batches: every batch it said was committed is there,
    and no batch is there in part."""
    db = tmp_path / "cut.db"
    root = Path(__file__).resolve().parents[2]
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, cwd=root
        )
        assert proc.stdout is not None
        committed = -1
        start = time.monotonic()
        for line in proc.stdout:
            committed = int(line)
            if time.monotonic() - start > 0.3 and committed >= 2:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        s = store.Store(db)
        seqs = [q.seq for q in s.pending(0, 10**7)]
        s.close()
        assert seqs == sorted(seqs)  # arrival order kept
        batches = {q // 200 for q in seqs}
        for batch in batches:
            assert sum(1 for q in seqs if q // 200 == batch) == 200, f"batch {batch} in part"
        assert set(range(committed + 1)) <= batches
        db.unlink()
        for extra in ("-wal", "-shm"):
            Path(str(db) + extra).unlink(missing_ok=True)
