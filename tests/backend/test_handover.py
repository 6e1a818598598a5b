"""The durable hand-over from ingest to the rules, on real SQLite and PostgreSQL: a worker that
dies between committing a batch and handing it to the rules loses no alert, and no alert is
raised twice however the batch's evaluation and a sweep meet (backend/rules/sink.py)."""

from __future__ import annotations

import multiprocessing
import os
import select as io_select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from backend.broker import Mosquitto
from backend.clock import ManualClock
from backend.ingest import Batch, Ingest, Message
from backend.ingest_worker import run_worker
from backend.registry import KeyVault, Registry
from backend.rules.sink import HANDOVER_GRACE_S, MonitoringSink
from backend.settings import Settings
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import alert_actions, alerts, frames, rules_pending, security_events
from firmware import frame as fr
from firmware import topics
from tests.backend.fleet import Fleet
from tests.backend.test_alerts_pipeline import TAG_ID, T, World, fix
from tests.backend.test_ingest import lose_the_next_commit_answer


class Killed(BaseException):
    """The worker process dies (SIGKILL): nothing after this point runs, nothing is caught."""


def at_the_hand_over(ingest: Ingest, instead: Callable[[Batch], None]) -> None:
    """Run `instead` in place of the pipeline's hand-over step: after the batch's commit and
    its ACKs, before the rules have seen it."""
    ingest.steps = tuple(instead if s == ingest.hand_over else s for s in ingest.steps)


def die(_b: Batch) -> None:
    raise Killed


STRAP_CUT = [fix(0, 0), fr.Record(fr.TAMPER, dt=0, sensor=1, state=1)]


def raised(engine: Engine) -> list[tuple[str, str]]:
    """(type, action) of every alert action: an alert raised twice shows as two `raised`."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(alerts.c.type, alert_actions.c.action)
            .join(alerts, alerts.c.id == alert_actions.c.alert_id)
            .order_by(alert_actions.c.id)
        )
        return [(r.type, r.action) for r in rows if r.action != "updated"]


def pending(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(rules_pending)).scalar_one())


@pytest.fixture
def world(engine: Engine, registry: Registry, clock: ManualClock) -> World:
    w = World(engine, registry, clock)
    # The subject has been monitored for a while: its rule state exists.
    w.deliver([w.tag_frame(T + 60, [fix(0, 0)])], T + 62)
    assert raised(engine) == [] and pending(engine) == 0
    return w


def new_worker(w: World) -> MonitoringSink:
    """A worker started afresh on the same database: its own sink, nothing cached."""
    w.attach(w.engine, w.ingest.directory.registry)
    return w.sink


def test_a_worker_killed_between_commit_and_hand_over_loses_no_alert(world: World) -> None:
    at_the_hand_over(world.ingest, die)
    with pytest.raises(Killed):
        world.deliver([world.tag_frame(T + 120, STRAP_CUT)], T + 122)
    with world.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(frames)).scalar_one() == 2
    assert raised(world.engine) == []  # stored, acknowledged, never evaluated
    # The next tick of any worker (here one started since) evaluates the batch.
    sink = new_worker(world)
    sink.tick(T + 122 + HANDOVER_GRACE_S)
    assert raised(world.engine) == [("strap_tamper", "raised")]
    # Once: later ticks, and the same frame again (a retransmission), change nothing.
    sink.tick(T + 200)
    world.deliver([world.tag_frame(T + 180, [fix(0, 0)])], T + 182)
    sink.tick(T + 300)
    assert raised(world.engine) == [("strap_tamper", "raised")]
    assert pending(world.engine) == 0


def test_a_restarted_worker_evaluates_at_once_what_its_predecessor_left(world: World) -> None:
    at_the_hand_over(world.ingest, die)
    with pytest.raises(Killed):
        world.deliver([world.tag_frame(T + 120, STRAP_CUT)], T + 122)
    sink = new_worker(world)
    sink.tick(T + 123)  # within the grace: a live worker's hand-over may still come
    assert raised(world.engine) == [] and pending(world.engine) == 1
    sink.resume(T + 123)  # IngestWorker.run, before it takes any frame: no grace
    assert raised(world.engine) == [("strap_tamper", "raised")]
    assert pending(world.engine) == 0 and sink.counts["handovers_swept"] == 1


def test_a_hand_over_after_a_sweep_took_its_batch_evaluates_nothing_again(
    world: World,
) -> None:
    # A slow worker: another worker's sweep evaluates its batch between its commit and its
    # hand-over. The hand-over finds the batch's row gone and leaves the batch alone.
    first = world.ingest
    other = new_worker(world)

    def late_hand_over(b: Batch) -> None:
        other.resume(b.now)
        first.hand_over(b)

    at_the_hand_over(first, late_hand_over)
    world.ingest = first
    world.deliver([world.tag_frame(T + 120, STRAP_CUT)], T + 122)
    assert raised(world.engine) == [("strap_tamper", "raised")]
    assert other.counts["handovers_swept"] == 1
    assert isinstance(first.rules, MonitoringSink)
    assert first.rules.counts["handovers_taken"] == 1
    assert first.rules.counts["evaluations"] == 1  # the fixture's frame only
    assert pending(world.engine) == 0


def test_evaluating_a_batch_again_raises_nothing_twice(world: World) -> None:
    # What a sweep relies on if it ever meets a batch already evaluated: the rules find the
    # same episode (its key is deterministic) and leave the alert as it is.
    kept: list[Batch] = []

    def keep(b: Batch) -> None:
        kept.append(b)
        world.ingest.hand_over(b)

    at_the_hand_over(world.ingest, keep)
    world.deliver([world.tag_frame(T + 120, STRAP_CUT)], T + 122)
    assert raised(world.engine) == [("strap_tamper", "raised")]
    stored = kept[0].result.stored
    world.sink.frames_committed(stored, T + 130)
    new_worker(world).frames_committed(stored, T + 140)
    assert raised(world.engine) == [("strap_tamper", "raised")]


def test_refusals_are_handed_over_durably_too(world: World) -> None:
    # A frame that fails its MAC, sent as the tag: a security event the rules observe.
    forged = fr.encode(
        fr.Frame(fr.TAG_DATA, TAG_ID, 1, 99, T + 120, [fix(0, 0)], fr.FLAG_TIME_VALID),
        bytes(32),
    )
    at_the_hand_over(world.ingest, die)
    with pytest.raises(Killed):
        world.deliver([Message(topics.tag_up(TAG_ID), forged)], T + 122)
    with world.engine.connect() as conn:
        row = conn.execute(select(rules_pending)).one()
        ids = list(conn.execute(select(security_events.c.id)).scalars())
    assert row.frames == [] and row.refusals == ids and len(ids) == 1
    sink = new_worker(world)
    sink.resume(T + 123)
    assert pending(world.engine) == 0 and sink.counts["observations"] == 1


def test_a_retried_batch_whose_commit_answer_was_lost_is_settled_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = lose_the_next_commit_answer(world.engine, monkeypatch)
    batch = [world.tag_frame(T + 120, STRAP_CUT)]
    world.clock.set(T + 122)
    with pytest.raises(Exception, match="closed the connection"):
        world.ingest.process(batch)
    assert lost and pending(world.engine) == 1  # the failed attempt committed its row
    world.ingest.process(batch)  # the retry: same token, the row settled by its hand-over
    assert raised(world.engine) == [("strap_tamper", "raised")]
    assert pending(world.engine) == 0


def test_a_hand_over_that_fails_with_the_database_away_is_swept_later(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The primary goes away just after the batch's commit: every rules transaction fails,
    # the delete of the batch's row included. The row stays; a tick once it is back
    # evaluates the batch.
    def database_away(*_a: object, **_k: object) -> None:
        raise OperationalError("BEGIN", None, ConnectionError("no primary"))

    with monkeypatch.context() as m:
        m.setattr(MonitoringSink, "_transaction", database_away)
        world.deliver([world.tag_frame(T + 120, STRAP_CUT)], T + 122)
    assert world.ingest.counts["rules_failed"] == 1
    assert raised(world.engine) == [] and pending(world.engine) == 1
    world.sink.tick(T + 122 + HANDOVER_GRACE_S)
    assert raised(world.engine) == [("strap_tamper", "raised")]
    assert pending(world.engine) == 0


def log_line(proc: subprocess.Popen[bytes], text: str, timeout: float) -> bool:
    """Wait for a line holding `text` on the process's stderr."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = io_select.select([proc.stderr], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                return False  # it exited
            seen += chunk
            if text.encode() in seen:
                return True
    return False


def _worker_killed_at_the_hand_over(env: dict[str, str]) -> None:
    """A worker process that SIGKILLs itself where its pipeline would hand a batch to the
    rules: after the commit and the ACKs (run in a spawned child)."""
    os.environ.update(env)
    Ingest.hand_over = lambda _self, _b: os.kill(os.getpid(), signal.SIGKILL)  # type: ignore[method-assign]
    run_worker(Settings(), 0, "test-doomed")


def test_a_worker_process_killed_at_the_hand_over_and_a_new_one_raises_the_alert_once(
    db_url: str, broker: Mosquitto, registry_key: bytes = bytes(range(32))
) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    w = World(engine, Registry(engine, KeyVault(registry_key)), ManualClock(T))
    engine.dispose()
    env = {
        "TAGWATCH_DATABASE_URL": db_url,
        "TAGWATCH_SERVER_KEY": registry_key.hex(),
        "TAGWATCH_MQTT_PORT": str(broker.port),
        "TAGWATCH_INGEST_BATCH_MS": "10",
    }
    doomed = multiprocessing.get_context("spawn").Process(
        target=_worker_killed_at_the_hand_over, args=(env,)
    )
    doomed.start()
    # Sent again every second until acknowledged: the first copies may come before the
    # worker has subscribed.
    fleet = Fleet(broker.host, broker.port, {TAG_ID: w.tag.key}, retransmit_s=1.0)
    fleet.start()
    now = int(time.time())
    cut = fr.Frame(fr.TAG_DATA, TAG_ID, 1, 1, now, STRAP_CUT, fr.FLAG_TIME_VALID)
    try:
        fleet.publish([(TAG_ID, 1, fr.encode(cut, w.tag.key))])
        deadline = time.monotonic() + 60
        while doomed.is_alive() and time.monotonic() < deadline:
            fleet.retransmit_due()
            doomed.join(0.2)
        assert doomed.exitcode == -signal.SIGKILL
        engine = make_engine(db_url)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(frames)).scalar_one() == 1
        assert raised(engine) == []
        # Its successor (as the supervisor starts it) evaluates the batch before any frame.
        successor = subprocess.Popen(
            [str(Path(sys.executable).parent / "tagwatch"), "backend", "ingest",
             "--workers", "1", "--client-id", "test-successor"],
            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            # It connects to the broker once it has evaluated what its predecessor left.
            assert log_line(successor, '"connected"', 60)
        finally:
            successor.terminate()
            successor.wait(10)
        # (The subject, assigned since September and silent since, is also out of contact.)
        tamper = [a for a in raised(engine) if a[0] == "strap_tamper"]
        assert tamper == [("strap_tamper", "raised")]
        assert pending(engine) == 0
        engine.dispose()
    finally:
        fleet.stop()
        if doomed.is_alive():
            doomed.kill()
