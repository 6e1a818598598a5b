"""Two `tagwatch backend ingest` processes on a shared subscription of a real Mosquitto:
no frame is lost or stored twice when a worker is killed mid-stream or the broker restarts.
What guarantees it is the device side keeping and retransmitting every unacknowledged
frame, and ingest being idempotent on (device, boot, seq) in the database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backend.broker import Mosquitto
from backend.registry import KeyVault, Registry
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import TAG, frames, positions
from tests.backend.fleet import Fleet

SERVER_KEY = bytes(range(32))
TAGWATCH = str(Path(sys.executable).parent / "tagwatch")
DEVICES = 20
PER_DEVICE = 60  # 1,200 frames of 2 fixes each


class Workers:
    def __init__(self, db_url: str, broker: Mosquitto, logdir: Path) -> None:
        self.env = {
            **os.environ,
            "TAGWATCH_DATABASE_URL": db_url,
            "TAGWATCH_SERVER_KEY": SERVER_KEY.hex(),
            "TAGWATCH_MQTT_PORT": str(broker.port),
            "TAGWATCH_INGEST_BATCH_MS": "10",
            "TAGWATCH_INGEST_BATCH_SIZE": "100",
        }
        self.logdir = logdir
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, index: int) -> None:
        log = (self.logdir / f"worker{index}.log").open("ab")
        self.procs[index] = subprocess.Popen(
            [TAGWATCH, "backend", "ingest", "--workers", "1", "--index", str(index),
             "--client-id", f"test-ingest-{index}"],
            env=self.env, stdout=log, stderr=log,
        )  # fmt: skip

    def kill(self, index: int) -> None:
        p = self.procs.pop(index)
        p.kill()
        p.wait()

    def stop(self) -> None:
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.logdir.glob("worker*.log")))


@pytest.fixture
def setup(
    tmp_path: Path, broker: Mosquitto, db_url: str
) -> Iterator[tuple[str, Workers, Fleet, Mosquitto]]:
    """Two workers on a fresh database of each engine, warmed up."""
    engine = make_engine(db_url)
    upgrade(engine)
    registry = Registry(engine, KeyVault(SERVER_KEY))
    keys = {1000 + i: registry.register(1000 + i, TAG).key for i in range(DEVICES)}
    engine.dispose()
    workers = Workers(db_url, broker, tmp_path)
    workers.start(0)
    workers.start(1)
    fleet = Fleet(broker.host, broker.port, keys, fixes=2, retransmit_s=1.5)
    fleet.start()
    # Warm-up: one frame per device, acknowledged end to end, proves both paths are live.
    fleet.publish(fleet.frames(1))
    assert fleet.wait_all_acked(30), workers.logs()
    yield db_url, workers, fleet, broker
    fleet.stop()
    workers.stop()


def _check_exactly_once(db_url: str, fleet: Fleet, workers: Workers) -> None:
    assert fleet.wait_all_acked(60), f"unacked: {len(fleet.pending)}\n{workers.logs()}"
    total = DEVICES * (PER_DEVICE + 1)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        n_frames = conn.execute(select(func.count()).select_from(frames)).scalar_one()
        distinct = conn.execute(
            select(func.count()).select_from(
                select(frames.c.device, frames.c.seq).distinct().subquery()
            )
        ).scalar_one()
        n_pos = conn.execute(select(func.count()).select_from(positions)).scalar_one()
    engine.dispose()
    assert len(fleet.acked) == total
    assert n_frames == distinct == total  # nothing lost, nothing twice
    assert n_pos == 2 * total
    assert fleet.bad_acks == 0


def test_worker_killed_mid_stream(setup: tuple[str, Workers, Fleet, Mosquitto]) -> None:
    db_url, workers, fleet, _ = setup
    batch = fleet.frames(PER_DEVICE, first_seq=2)
    half = len(batch) // 2
    fleet.publish(batch[:half], rate=2000)
    with fleet.lock:
        in_flight = len(fleet.pending)
    workers.kill(0)  # SIGKILL: no chance to finish its batch or send PUBACKs
    fleet.publish(batch[half:], rate=2000)
    time.sleep(1.0)
    workers.start(0)  # as its supervisor would; it resumes its broker session
    _check_exactly_once(db_url, fleet, workers)
    assert in_flight > 0  # it really was killed mid-stream, with frames unacknowledged


def test_broker_restart_mid_stream(setup: tuple[str, Workers, Fleet, Mosquitto]) -> None:
    db_url, workers, fleet, broker = setup
    batch = fleet.frames(PER_DEVICE, first_seq=2)
    half = len(batch) // 2
    fleet.publish(batch[:half], rate=2000)
    with fleet.lock:
        assert fleet.pending  # frames still in flight when the broker goes down
    broker.restart()  # persistence keeps the workers' sessions and queued frames
    fleet.publish(batch[half:], rate=2000)
    _check_exactly_once(db_url, fleet, workers)
