"""An operator moves a tag to another broker: `tagwatch backend brokers set` queues the list,
the real ingest worker (on two real Mosquittos) sends it at its rules tick, and the tag's
firmware, under the real `micropython` binary (sim/hil.py), takes it in its next session on the
first broker, opens the session after that on the second, and its answer and frames are
stored and acknowledged there; the list's delivery then says it was taken."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from backend.broker import Mosquitto
from backend.ingest_worker import IngestWorker
from backend.registry import KeyVault, Registry
from backend.rules.sink import attach
from backend.services import broker_push
from backend.settings import Settings
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import TAG, command_queue, frames
from sim.hil import HilConfig, HilTag
from tagwatch_cli import app as cli

pytestmark = [pytest.mark.micropython, pytest.mark.broker]

MIN = 60_000
DEVICE = 31338
KEY = hashlib.sha256(b"tagwatch broker command test key").digest()
SERVER_KEY = bytes(range(32))


def wait_for(what: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def second_broker() -> Iterator[Mosquitto]:
    with Mosquitto() as b:
        yield b


def test_a_queued_broker_list_moves_the_tag_to_the_new_broker(
    broker: Mosquitto, second_broker: Mosquitto, tmp_path: Path
) -> None:
    first, second = (f"{b.host}:{b.port}" for b in (broker, second_broker))
    url = f"sqlite:///{tmp_path / 'tagwatch.db'}"
    engine = make_engine(url)
    upgrade(engine)
    Registry(engine, KeyVault(SERVER_KEY)).register(DEVICE, TAG, KEY)
    settings = Settings(
        database_url=url,
        server_key=SERVER_KEY.hex(),
        mqtt_brokers=[first, second],
        ingest_batch_ms=5,
    )
    worker = IngestWorker(settings, "broker-command-test")
    timer = attach(worker, tick_s=0.1)
    thread = threading.Thread(target=worker.run, name="ingest")
    thread.start()
    cfg = HilConfig(
        device=DEVICE, key=KEY, workdir=tmp_path / "tag", brokers=[first], heap="192k",
        settings={"batch_fixes": 2},
    )  # fmt: skip
    env = {"TAGWATCH_DATABASE_URL": url, "TAGWATCH_SERVER_KEY": SERVER_KEY.hex()}
    runner = CliRunner()

    def stored() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(frames)).scalar_one())

    def state() -> str:
        with engine.connect() as conn:
            (d,) = broker_push.deliveries(conn, [DEVICE])
        return d.state

    try:
        assert wait_for(lambda: all(worker.brokers_connected()))
        with HilTag(cfg) as tag:
            tag.start()
            tag.run_until(6 * MIN, moving=True)
            assert stored() > 0 and {b for b, _ in tag.modem.sessions} == {first}

            result = runner.invoke(
                cli, ["backend", "brokers", "set", second, first, "--tag", str(DEVICE)], env=env
            )
            assert result.exit_code == 0, result.output
            assert state() in ("queued", "sent")
            # The worker's tick numbers it and publishes it on both brokers; the first keeps
            # it in the tag's session until the tag's next session there.
            assert wait_for(lambda: worker.ingest.counts["commands_published"] >= 2)
            with engine.connect() as conn:
                assert conn.execute(select(command_queue.c.seq)).scalar_one() == 1
            assert state() == "sent"

            sessions_before = len(tag.modem.sessions)
            before = stored()
            tag.run_until(20 * MIN, moving=True)
            after = [b for b, _ in tag.modem.sessions[sessions_before:]]
            # The session that took the list stays on the first broker; every later one is
            # on the new list's first broker.
            assert after[0] == first and len(after) >= 2 and set(after[1:]) == {second}, after
            assert wait_for(lambda: state() == "taken"), state()
            assert stored() > before
            assert tag.report()["pending"] == 0  # acknowledged through the second broker
            tag.stop()
    finally:
        worker.stopping.set()
        thread.join(15)
        timer.stop()
        engine.dispose()
    assert not thread.is_alive()
