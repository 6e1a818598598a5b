"""Victim devices on real SQLite and PostgreSQL: linked to an order within bounds, their
frames (from the reference client) ingested like a tag's, a proximity alert raised through
the alert pipeline, the warning downlink signed for the victim device, run by the client and
acknowledged back."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, func, insert, select, text

from backend import broker_credentials as bc
from backend import metrics
from backend.broker import BrokerConfig, Mosquitto
from backend.clock import ManualClock
from backend.device_commands import (
    NOTIFY_COMMAND_KEYS,
    Unreached,
    next_seq,
    notify_key,
    notify_message,
    numbered,
    resend_due,
)
from backend.ingest import Message
from backend.ingest_worker import IngestWorker
from backend.notify.outbox import PLAN
from backend.registry import Registry
from backend.rules import proximity as px
from backend.rules.delivery import ANSWERED, UNREACHED
from backend.rules.sink import MonitoringSink, attach
from backend.rules.store import bump_config, resolve
from backend.services.errors import Conflict, Invalid
from backend.services.victims import link, of_subject, unlink, warnings
from backend.settings import Settings
from backend.storage.retention import DAY, purge
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    VICTIM,
    alert_actions,
    alert_episodes,
    alerts,
    assignments,
    audit_log,
    command_deliveries,
    device_commands,
    frames,
    notification_outbox,
    orders,
    positions,
    users,
)
from firmware import frame as fr
from firmware import topics
from home_unit.victim_device import ALERT, WARNING, VictimDevice
from tests.backend.pipeline import Pipeline, T, fix
from tests.backend.rules.scenario import offset
from tests.backend.test_broker_credentials import BACKEND_PASSWORD, SERVER_KEY, Peer
from tests.backend.test_ingest_worker_broker import wait_for

TAG_ID, UNIT_ID, VICTIM_ID = 1001, 2001, 7001


class World(Pipeline):
    """A tag assigned to the subject under a domestic-abuse order, and a registered victim
    device (the reference client) ready to be linked to it."""

    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        clock: ManualClock,
        settings: Settings | None = None,
    ) -> None:
        self.unit = registry.register(UNIT_ID, HOME_UNIT)
        self.tag = registry.register(TAG_ID, TAG, home_unit=UNIT_ID)
        vd = registry.register(VICTIM_ID, VICTIM)
        self.victim = VictimDevice(VICTIM_ID, vd.key, boot=1)
        keys = {TAG_ID: self.tag.key, VICTIM_ID: vd.key, UNIT_ID: self.unit.key}
        super().__init__(engine, registry, clock, keys, TAG_ID, settings)
        with engine.begin() as conn:
            self.order = conn.execute(
                insert(orders).values(subject_id=self.subject, kind="domestic_abuse",
                                      reference="DAPO-1", starts_at=T - 3600, ends_at=None,
                                      comms_loss_s=None, curfew_grace_s=None, conditions="",
                                      created_at=T).returning(orders.c.id)
            ).scalar_one()  # fmt: skip
            self.assign(conn, TAG_ID, TAG, T - 3600)

    def walk(self, ts: int, xs: list[tuple[int, float]]) -> Message:
        """A tag frame at `ts` of fixes (time, metres east of the victim)."""
        return self.tag_frame(ts, [fix(ts - t, x) for t, x in xs])

    def victim_frame(self, ts: int, times: list[int]) -> Message:
        lat, lon = offset(0, 0)
        data = self.victim.fixes(ts, [(t, lat, lon, 5.0) for t in times])
        return Message(self.victim.up, data)

    def minutes(self) -> Iterator[tuple[int, list[Message]]]:
        """The tag walks in from 900 m to 60 m of the victim (at 2 m/s), and stays 5 minutes;
        each device uploads every minute, fixes every 15 s: each minute's upload time and
        frames."""
        path = [900 - 30 * i for i in range(28)] + [60] * 20
        for k in range(len(path) // 4):
            ts = T + 60 * (k + 1)
            fixes = [(ts - 60 + 15 * (i + 1), path[4 * k + i]) for i in range(4)]
            yield ts, [self.walk(ts, fixes), self.victim_frame(ts, [t + 4 for t, _ in fixes])]

    def approach(self, take: Callable[[bytes], bool] = lambda _: True) -> int:
        """The minutes delivered in turn, the rules' clock ticking after each upload, and the
        victim device answering what came down for it that `take` lets through. Returns the
        backend time at the end."""
        at = T
        for ts, msgs in self.minutes():
            self.deliver(msgs, ts + 2)
            self.sink.tick(ts + 3)
            at = ts + 4
            self.answer(at, take)
        return at

    def answer(self, at: int, take: Callable[[bytes], bool] = lambda _: True) -> None:
        """The victim device takes what came down for it (ACKs, warnings) that `take` lets
        through, and its answers are delivered at `at`."""
        for topic, payload in list(self.published):
            if topic == self.victim.down:
                self.published.remove((topic, payload))
                reply = self.victim.downlink(payload, at) if take(payload) else None
                if reply is not None:
                    self.deliver([Message(self.victim.up, reply)], at)

    def ticks_after(self, end: int, take: Callable[[bytes], bool] = lambda _: True) -> None:
        """The rules tick every 30 s from `end` for twice the warnings' bound, the victim
        device answering after each what `take` lets through: every warning is settled."""
        for k in range(1, 2 * int(self.sink.warnings.bound_s / 30)):
            self.sink.tick(end + 30 * k)
            self.answer(end + 30 * k + 1, take)

    def alert_types(self) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(r.type for r in conn.execute(select(alerts)))


@pytest.fixture
def world(engine: Engine, registry: Registry, clock: ManualClock) -> World:
    return World(engine, registry, clock)


def test_a_link_is_checked_and_assigns_the_device(world: World) -> None:
    with world.engine.begin() as conn:
        for bad in ({"warn_m": 200, "alert_m": 200}, {"alert_m": 10}, {"silent_s": 5}):
            with pytest.raises(Invalid):
                link(conn, world.order, VICTIM_ID, T, T, **bad)  # type: ignore[arg-type]
        with pytest.raises(Invalid, match="not a registered victim device"):
            link(conn, world.order, TAG_ID, T, T)
        made = link(conn, world.order, VICTIM_ID, T - 600, T, warn_m=400, alert_m=150)
        with pytest.raises(Conflict, match="already linked"):
            link(conn, world.order, VICTIM_ID, T, T)
        roles = conn.execute(
            select(assignments.c.role).where(assignments.c.device == VICTIM_ID)
        ).scalars()
        assert list(roles) == [VICTIM]
        assert of_subject(conn, world.subject) == [made]
        ended = unlink(conn, made.id, T + 60, T + 60)
        assert ended.ends_at == T + 60
        ends = conn.execute(
            select(assignments.c.ends_at).where(assignments.c.device == VICTIM_ID)
        ).scalar()
        assert ends == T + 60


def test_an_approach_alerts_and_the_victim_device_acknowledges_its_warnings(
    world: World,
) -> None:
    with world.engine.begin() as conn:
        link(conn, world.order, VICTIM_ID, T - 600, T)
    world.approach()
    assert world.alert_types() == [px.ALERT, px.WARNING]
    assert [w.message for w in world.victim.warnings] == [WARNING, ALERT]
    assert set(world.victim.pending) <= {world.victim.seq}  # all but the last reply ACKed
    with world.engine.connect() as conn:
        sent = warnings(conn, VICTIM_ID)
        # The victim's fixes are stored (for evidence), under its own device id only.
        stored = conn.execute(select(positions.c.device).distinct()).scalars().all()
    assert [(w.message, w.acknowledged) for w in sent] == [(WARNING, True), (ALERT, True)]
    assert sorted(stored) == [TAG_ID, VICTIM_ID]


def test_near_his_home_while_his_home_unit_hears_him_the_victim_is_warned(world: World) -> None:
    # He is at home (RF mode: no GNSS fix, his home unit reports him home); she stays 120 m
    # from his home for five minutes. Through ingest, the sink and the real database.
    with world.engine.begin() as conn:
        world.assign(conn, UNIT_ID, HOME_UNIT, T - 3600)
        world.circle(conn, "home", "home", 120, 60)
        bump_config(conn, world.subject, T)
        link(conn, world.order, VICTIM_ID, T - 600, T)
    home = fr.Record(fr.PRESENCE, dt=0, home_unit=UNIT_ID, tag=TAG_ID, state=1, rssi=-60)
    frame = fr.Frame(fr.HOME_DATA, UNIT_ID, 1, 1, T, [home], fr.FLAG_TIME_VALID)
    world.deliver([Message(topics.home_up(UNIT_ID), fr.encode(frame, world.unit.key))], T + 1)
    for k in range(1, 6):
        ts = T + 60 * k
        world.deliver([world.victim_frame(ts, [ts - 45, ts - 30, ts - 15, ts])], ts + 2)
        world.sink.tick(ts + 3)
        world.answer(ts + 4)
    assert world.alert_types() == [px.ALERT, px.WARNING]
    assert [w.message for w in world.victim.warnings] == [WARNING, ALERT]


def test_near_the_victim_the_tag_uploads_each_fix_once_asked_and_batches_again_after(
    world: World,
) -> None:
    # Through the sink on a real database: a fix at a time (a smaller value than the
    # firmware's, recorded after it) is sent once though every upload folds the tail afresh,
    # and the firmware's batch size goes again once the tag's fast sampling has run out.
    with world.engine.begin() as conn:
        link(conn, world.order, VICTIM_ID, T - 600, T)
    at = world.approach()
    for k in range(1, 21):  # then 20 minutes 900 m apart, one upload a minute
        ts = at + 60 * k
        fixes = [(ts - 60 + 15 * (i + 1), 900.0) for i in range(4)]
        world.deliver([world.walk(ts, fixes), world.victim_frame(ts, [t + 4 for t, _ in fixes])],
                      ts + 2)  # fmt: skip
        world.sink.tick(ts + 3)
    c = device_commands.c
    with world.engine.connect() as conn:
        keys = (fr.CFG_BATCH_S, fr.CFG_BATCH_FIXES)
        batches = conn.execute(
            select(c.key, c.value).where(c.device == TAG_ID, c.key.in_(keys)).order_by(c.seq)
        ).all()
        p = px.ProximityParams()
        assert [tuple(r) for r in batches] == [
            (fr.CFG_BATCH_S, p.tag_batch_s),
            (fr.CFG_BATCH_FIXES, px.FIRMWARE_BATCH_FIXES),
            (fr.CFG_BATCH_FIXES, p.near_batch_fixes),
            (fr.CFG_BATCH_FIXES, px.FIRMWARE_BATCH_FIXES),
        ]


def test_a_forged_or_replayed_warning_is_refused_by_the_client(world: World) -> None:
    cmd = fr.Record(fr.CMD_NOTIFY, pattern=3, repeats=5, message=ALERT)
    forged = fr.encode(fr.Frame(fr.COMMAND, VICTIM_ID, 0, 1, T, [cmd], 1), b"\x01" * 32)
    assert world.victim.downlink(forged, T) is None and world.victim.refused == 1
    real = fr.encode(fr.Frame(fr.COMMAND, VICTIM_ID, 0, 1, T, [cmd], 1), world.victim.key)
    first = world.victim.downlink(real, T)
    again = world.victim.downlink(real, T + 1)
    assert first is not None and again is not None
    results = [fr.decode(x, world.victim.key).records[0].result for x in (first, again)]
    assert results == [fr.RESULT_OK, fr.RESULT_REPLAY]
    assert len(world.victim.warnings) == 1


def test_a_silent_victim_device_is_counted_past_its_links_threshold(world: World) -> None:
    with world.engine.begin() as conn:
        link(conn, world.order, VICTIM_ID, T, T, silent_s=600)
    db = metrics.DatabaseCollector(world.engine, world.clock)

    def silent() -> float | None:
        reg = CollectorRegistry()
        reg.register(db)
        return reg.get_sample_value("tagwatch_devices_silent", {"kind": VICTIM})

    world.clock.set(T + 500)
    assert silent() == 0
    world.clock.set(T + 700)
    assert silent() == 1


def is_warning(payload: bytes) -> bool:
    """A warning (cmd_notify) to the victim's device; its other commands (asked to sample
    fast within the warning distance) are not what these tests deliver or drop."""
    f = fr.parse(payload)
    return f.mtype == fr.COMMAND and f.records[0].type == fr.CMD_NOTIFY


def holding() -> tuple[list[bytes], Callable[[bytes], bool]]:
    """A `take` for World.answer that lets no command through (the victim's app asleep: its
    broker keeps them), and the list of those it held, in the order they came."""
    held: list[bytes] = []

    def hold(payload: bytes) -> bool:
        if fr.parse(payload).mtype == fr.COMMAND:
            held.append(payload)
            return False
        return True

    return held, hold


def deliveries(world: World) -> list[tuple[int, int, str | None]]:
    """(message, sends, outcome) of each warning's delivery, in the order first sent."""
    with world.engine.connect() as conn:
        rows = conn.execute(select(command_deliveries).order_by(command_deliveries.c.first_at))
        return [(notify_message(r.key), r.sends, r.outcome) for r in rows]


def test_a_warning_the_device_missed_goes_again_and_its_acknowledgement_ends_the_sends(
    world: World,
) -> None:
    with world.engine.begin() as conn:
        link(conn, world.order, VICTIM_ID, T - 600, T)
    missed: list[bytes] = []

    def first_lost(payload: bytes) -> bool:
        if is_warning(payload) and not missed:
            missed.append(payload)
            return False
        return True

    end = world.approach(first_lost)
    world.ticks_after(end)
    # The first warning went twice (the second acknowledged), the alert once; nothing after.
    assert deliveries(world) == [(WARNING, 2, "acknowledged"), (ALERT, 1, "acknowledged")]
    assert [w.message for w in world.victim.warnings] == [WARNING, ALERT]
    with world.engine.connect() as conn:
        sent = [(w.message, w.acknowledged) for w in warnings(conn, VICTIM_ID)]
    assert sorted(sent) == [(WARNING, False), (WARNING, True), (ALERT, True)]
    assert fr.parse(missed[0]).seq not in {w.cmd_seq for w in world.victim.warnings}
    assert px.ALERT in world.alert_types() and UNREACHED not in world.alert_types()
    assert world.sink.counts["commands_resent"] == 1


def test_a_device_that_never_acknowledges_puts_the_on_call_officer_on_notice(
    world: World,
) -> None:
    with world.engine.begin() as conn:
        link(conn, world.order, VICTIM_ID, T - 600, T)
    end = world.approach(lambda payload: not is_warning(payload))
    world.ticks_after(end, lambda payload: not is_warning(payload))
    sends = world.sink.warnings.sends
    assert deliveries(world) == [(WARNING, sends, "unreached"), (ALERT, sends, "unreached")]
    with world.engine.connect() as conn:
        sent = warnings(conn, VICTIM_ID)
        unreached = conn.execute(select(alerts).where(alerts.c.type == UNREACHED)).one()
        eps = conn.execute(
            select(alert_episodes).where(alert_episodes.c.alert_id == unreached.id)
        ).all()
        raised = conn.execute(
            select(alert_actions.c.action).where(alert_actions.c.alert_id == unreached.id)
        ).scalars()
        paged = conn.execute(
            select(notification_outbox.c.kind).where(notification_outbox.c.alert_id == unreached.id)
        ).scalars()
        assert list(raised) == ["raised"] and list(paged) == [PLAN]
    assert [w.acknowledged for w in sent] == [False] * 2 * sends
    # Both warnings a device missed within the hour are one alert for the officer, high, on
    # the subject, each told within the bound of its first send (plus one rules tick).
    assert unreached.subject_id == world.subject and unreached.severity == "high"
    assert unreached.state == "open" and len(eps) == 2
    first = {m: min(w.sent_at for w in sent if w.message == m) for m in (WARNING, ALERT)}
    for ep in eps:
        told = ep.raised_at - first[ep.details["message"]]
        assert world.sink.warnings.bound_s <= told <= world.sink.warnings.bound_s + 30
        assert ep.details["sends"] == sends and "lat" not in str(ep.evidence)
    # Later data about the subject, live and late (a re-evaluation from a snapshot before the
    # alert), neither clears it nor sends the victim anything more.
    late = world.walk(T + 400, [(T + 390, 60.0)])
    world.deliver([late, world.victim_frame(end + 600, [end + 590])], end + 600)
    world.sink.tick(end + 630)
    with world.engine.connect() as conn:
        state = conn.execute(select(alerts.c.state).where(alerts.c.id == unreached.id)).scalar()
        assert state == "open" and len(warnings(conn, VICTIM_ID)) == len(sent)
    assert world.victim.warnings == []


def test_a_replayed_or_duplicated_acknowledgement_is_harmless(world: World) -> None:
    with world.engine.begin() as conn:
        link(conn, world.order, VICTIM_ID, T - 600, T)
    commands: list[bytes] = []

    def keep(payload: bytes) -> bool:
        if is_warning(payload):
            commands.append(payload)
        return True

    end = world.approach(keep)
    assert len(commands) == 2
    # The same acknowledgement frame stored twice (a retransmission), and a second answer to
    # the same command (the warning replayed at the device: answered as a replay).
    replies = []
    for payload in commands:
        again = world.victim.downlink(payload, end + 1)
        assert again is not None
        replies.append(Message(world.victim.up, again))
    world.deliver(replies + replies, end + 2)
    world.ticks_after(end)
    assert deliveries(world) == [(WARNING, 1, "acknowledged"), (ALERT, 1, "acknowledged")]
    with world.engine.connect() as conn:
        sent = [(w.message, w.acknowledged) for w in warnings(conn, VICTIM_ID)]
    assert sent == [(WARNING, True), (ALERT, True)]
    assert UNREACHED not in world.alert_types()
    assert [w.message for w in world.victim.warnings] == [WARNING, ALERT]


class Wire:
    """The world's tag and victim device talking to the real ingest worker (rules attached,
    its timer ticking every 0.1 s of wall time on the world's manual clock) through a real
    Mosquitto running the generated passwd and ACL, on the world's database."""

    def __init__(self, world: World, registry: Registry, db_url: str, tmp_path: Path) -> None:
        self.world = world
        auth = bc.write(tmp_path / "auth", registry.all(), "backend", BACKEND_PASSWORD)
        self.broker = Mosquitto(BrokerConfig(auth=auth))
        self.broker.start()
        settings = Settings(
            database_url=db_url,
            server_key=SERVER_KEY.hex(),
            mqtt_port=self.broker.backend_port,
            mqtt_password=BACKEND_PASSWORD,
            ingest_batch_ms=5,
        )
        self.worker = IngestWorker(settings, "victim-warnings", clock=world.clock)
        self.timer = attach(self.worker, tick_s=0.1)
        self.thread = threading.Thread(target=self.worker.run, name="ingest")
        self.thread.start()
        self.tag = Peer(self.broker, f"tag-{TAG_ID}", bc.device_password(world.tag.key))
        self.victim = Peer(self.broker, f"vd-{VICTIM_ID}", bc.device_password(world.victim.key))
        assert self.victim.subscribe(world.victim.down) == [1]

    def close(self) -> None:
        self.worker.stopping.set()
        self.thread.join(15)
        self.timer.stop()
        for p in (self.tag, self.victim):
            p.close()
        self.broker.close()
        assert not self.thread.is_alive()

    def stored(self, payload: bytes) -> bool:
        f = fr.parse(payload)
        with self.world.engine.connect() as conn:
            c = frames.c
            q = select(c.id).where(c.device == f.device, c.boot == f.boot, c.seq == f.seq)
            return conn.execute(q).first() is not None

    def send(self, m: Message) -> None:
        """Publish as a device does until stored (it retransmits what is not acknowledged;
        until the worker's subscription is in place it misses frames)."""
        peer = self.victim if m.topic == self.world.victim.up else self.tag
        assert wait_for(
            lambda: self.stored(m.payload), step=lambda: peer.publish(m.topic, m.payload)
        )

    def settle(self, at: int, take: Callable[[bytes], bool]) -> None:
        """Move the clock to `at`, let a whole tick run there, and have the victim device
        take everything that came down for it until then (a fresh fix's ACK, published after
        the tick, comes last on its topic), answering commands that `take` lets through."""
        w = self.world
        w.clock.set(at)
        sink = self.worker.ingest.rules
        assert isinstance(sink, MonitoringSink)
        ticks = sink.counts["ticks"]
        assert wait_for(lambda: sink.counts["ticks"] >= ticks + 2)
        marker = w.victim_frame(at, [at - 1])
        self.send(marker)
        mark = fr.parse(marker.payload).seq
        while mark in w.victim.pending:
            _, payload = self.victim.received.get(timeout=30)
            reply = w.victim.downlink(payload, at) if take(payload) else None
            if reply is not None:
                self.send(Message(w.victim.up, reply))


@pytest.fixture
def wire(world: World, registry: Registry, db_url: str, tmp_path: Path) -> Iterator[Wire]:
    w = Wire(world, registry, db_url, tmp_path)
    yield w
    w.close()


def test_over_the_broker_a_missed_warning_comes_again_and_a_mute_device_is_reported(
    world: World, wire: Wire
) -> None:
    """The reference client behind a real broker and worker: it misses the first warning
    (gets it again and answers it: no further sends), then goes mute (the alert's sends run
    out and the officer is told)."""
    with world.engine.begin() as conn:
        link(conn, world.order, VICTIM_ID, T - 600, T)
    seen: list[int] = []

    def take(payload: bytes) -> bool:
        if not is_warning(payload):
            return True
        f = fr.parse(payload)
        seen.append(f.records[0].message)
        # The first warning lost; every alert-distance warning ignored.
        return f.records[0].message == WARNING and seen.count(WARNING) > 1

    at = T
    for ts, msgs in world.minutes():
        world.clock.set(ts + 2)
        for m in msgs:
            wire.send(m)
        at = ts + 4
        wire.settle(at, take)
    for k in range(1, 2 * int(world.sink.warnings.bound_s / 30)):
        wire.settle(at + 30 * k, take)
    sends = world.sink.warnings.sends
    assert deliveries(world) == [(WARNING, 2, "acknowledged"), (ALERT, sends, "unreached")]
    assert seen == [WARNING, WARNING] + [ALERT] * sends
    assert [w.message for w in world.victim.warnings] == [WARNING]
    assert UNREACHED in world.alert_types()


def test_only_an_answer_that_the_warning_ran_acknowledges_it(world: World) -> None:
    """A refusal (2, replay) leaves the warning unacknowledged and it goes again; "ran
    already" (5, what a tag answers to a second copy) acknowledges it like ok."""
    with world.engine.begin() as conn:
        link(conn, world.order, VICTIM_ID, T - 600, T)
    answers = iter([fr.RESULT_REPLAY, fr.RESULT_DUPLICATE])
    boot = 100

    def answer(payload: bytes) -> bool:
        nonlocal boot
        f = fr.parse(payload)
        if is_warning(payload) and f.records[0].message == WARNING:
            boot += 1  # a frame of its own, outside the reference client's sequence
            result = fr.Record(fr.COMMAND_RESULT, dt=0, cmd_seq=f.seq, result=next(answers))
            frame = fr.Frame(fr.TAG_DATA, VICTIM_ID, boot, 1, f.ts, [result], fr.FLAG_TIME_VALID)
            world.deliver([Message(world.victim.up, fr.encode(frame, world.victim.key))], f.ts)
            return False
        return True

    end = world.approach(answer)
    world.ticks_after(end, answer)
    assert deliveries(world) == [(WARNING, 2, "acknowledged"), (ALERT, 1, "acknowledged")]
    with world.engine.connect() as conn:
        sent = [(w.message, w.acknowledged) for w in warnings(conn, VICTIM_ID)]
    assert sorted(sent) == [(WARNING, False), (WARNING, True), (ALERT, True)]


def test_an_answer_after_the_officer_was_told_is_noted_on_the_alert_once(world: World) -> None:
    """The victim's phone took no commands during the approach (its app asleep); after the
    officer was told it runs what the broker queued for it meanwhile: its answers go in
    through ingest, and the alert says the victim has seen the warning, once per warning,
    whatever comes after (answers to the other sends, the same frames again). The alert
    stays open: the officer decides."""
    with world.engine.begin() as conn:
        link(conn, world.order, VICTIM_ID, T - 600, T)
    held, hold = holding()

    end = world.approach(hold)
    world.ticks_after(end, hold)
    sends = world.sink.warnings.sends
    assert deliveries(world) == [(WARNING, sends, "unreached"), (ALERT, sends, "unreached")]
    back = end + 1200
    replies = [world.victim.downlink(p, back) for p in held]
    answers = [Message(world.victim.up, r) for r in replies if r is not None]
    results = [fr.decode(m.payload, world.victim.key).records[0].result for m in answers]
    assert len(answers) == len(held) > 2 * sends and set(results) == {fr.RESULT_OK}
    # One at a time, then all of them again.
    for i, answer in enumerate(answers):
        world.deliver([answer], back + 10 * i)
    world.deliver(answers, back + 600)
    world.sink.tick(back + 630)
    assert deliveries(world) == [(WARNING, sends, "answered_late"), (ALERT, sends, "answered_late")]
    with world.engine.connect() as conn:
        alert = conn.execute(select(alerts).where(alerts.c.type == UNREACHED)).one()
        history = conn.execute(
            select(alert_actions)
            .where(alert_actions.c.alert_id == alert.id)
            .order_by(alert_actions.c.id)
        ).all()
        paged = conn.execute(
            select(notification_outbox.c.kind).where(notification_outbox.c.alert_id == alert.id)
        ).scalars()
        assert list(paged) == [PLAN]  # told once, when raised
    # Noted when the first answer to any of a warning's sends came, naming that send, in the
    # subject's local time (the default zone: BST in September).
    first: dict[int, tuple[int, int]] = {}  # message: (its answer's index, the send)
    for i, payload in enumerate(held):
        if is_warning(payload):
            f = fr.parse(payload)
            first.setdefault(f.records[0].message, (i, f.seq))
    assert [h.action for h in history] == ["raised", ANSWERED, ANSWERED]
    assert world.sink.counts["commands_answered_late"] == 2
    for h, (message, what) in zip(
        history[1:], ((WARNING, "warning"), (ALERT, "alert")), strict=True
    ):
        i, seq = first[message]
        when = datetime.fromtimestamp(back + 10 * i, ZoneInfo("Europe/London"))
        assert h.at == back + 10 * i
        assert f"the {what}-distance warning at {when:%H:%M:%S} BST (command {seq}," in h.note
    assert alert.state == "open" and alert.updated_at == history[-1].at
    assert all(h.user_id is None for h in history) and "lat" not in str([h.note for h in history])


def test_an_answer_stored_while_the_verdict_is_taken_is_noted_after_it(world: World) -> None:
    """The warning's verdict (given up: the officer is told) is being taken in one
    transaction while another worker stores the device's answer and looks for deliveries
    it settles: that worker read the delivery still in flight, so its mark waits for the
    verdict and then notes the answer on the alert — the answer is never lost between the
    two. On PostgreSQL the verdict is held open until the marking worker waits on it; on
    SQLite the answer's storage itself waits for the verdict's write lock."""
    with world.engine.begin() as conn:
        link(conn, world.order, VICTIM_ID, T - 600, T)
    held, hold = holding()

    sends = world.sink.warnings.sends

    def verdict_due() -> float | None:
        d = command_deliveries.c
        with world.engine.connect() as conn:
            return conn.execute(
                select(func.min(d.next_at)).where(d.sends == sends, d.outcome.is_(None))
            ).scalar_one()

    # The approach as World.approach delivers it, then the rules' ticks every 30 s, up to the
    # first tick that would give a warning up: that verdict is taken below.
    minutes = list(world.minutes())
    end = minutes[-1][0] + 4
    ticks = [ts + 3 for ts, _ in minutes] + [end + 30 * k for k in range(1, 20)]
    for t in ticks:
        for ts, msgs in minutes:
            if ts + 3 == t:
                world.deliver(msgs, ts + 2)
        verdict_at = verdict_due()
        if verdict_at is not None and verdict_at <= t:
            break
        world.sink.tick(t)
        world.answer(t + 1, hold)
    assert verdict_at is not None
    postgres = world.engine.dialect.name == "postgresql"
    raced: list[int] = []
    marking = threading.Thread()

    def waiting_on_a_lock() -> bool:
        with world.engine.connect() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    )
                ).scalar_one()
            )

    def verdict(conn: Connection, u: Unreached) -> int | None:
        nonlocal marking
        if not raced:  # the first warning given up: its answer arrives now
            raced.append(notify_message(u.key))
            mine = [p for p in held if is_warning(p) and fr.parse(p).records[0].message == raced[0]]
            replies = [world.victim.downlink(p, int(verdict_at)) for p in mine]
            answers = [Message(world.victim.up, r) for r in replies if r is not None]
            marking = threading.Thread(target=world.deliver, args=(answers, verdict_at))
            marking.start()
            ready = threading.Event()
            while postgres and marking.is_alive() and not waiting_on_a_lock():
                assert not ready.wait(0.05)
        return world.sink._unreached(conn, u)

    resend_due(
        world.engine, world.sink.key_for, lambda _: [], verdict_at, verdict, world.sink.warnings
    )
    marking.join(60)
    assert not marking.is_alive()
    outcome = {m: o for m, _, o in deliveries(world)}
    assert outcome[raced[0]] == "answered_late"
    # The other warning's verdict was not due: still in flight, unanswered.
    assert [o for m, o in outcome.items() if m != raced[0]] == [None]
    with world.engine.connect() as conn:
        history = conn.execute(
            select(alert_actions.c.action).join(alerts).where(alerts.c.type == UNREACHED)
        ).scalars()
        assert sorted(history) == sorted(["raised", ANSWERED])


def test_the_warnings_resend_timing_is_a_bounded_setting(
    engine: Engine, registry: Registry, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every 60 s, 2 sends: the officer is told two minutes after the first send, not three."""
    settings = Settings(victim_warning_resend_s=60, victim_warning_sends=2)
    world = World(engine, registry, clock, settings)
    with world.engine.begin() as conn:
        link(conn, world.order, VICTIM_ID, T - 600, T)
    end = world.approach(lambda payload: not is_warning(payload))
    for k in range(1, 9):
        world.sink.tick(end + 15 * k)
        world.answer(end + 15 * k + 1, lambda payload: not is_warning(payload))
    assert deliveries(world) == [(WARNING, 2, "unreached"), (ALERT, 2, "unreached")]
    with world.engine.connect() as conn:
        sent = warnings(conn, VICTIM_ID)
        e = alert_episodes.c
        told = conn.execute(select(e.raised_at).where(e.type == UNREACHED)).scalars().all()
    starts = sorted({min(w.sent_at for w in sent if w.message == m) for m in (WARNING, ALERT)})
    # Each told 120 s after its first send, within a tick of the approach (once a minute) or
    # of the ticks after it (the default would be 180 s at least).
    assert len(told) == 2
    for first, at in zip(starts, sorted(told), strict=True):
        assert 120 <= at - first <= 120 + 60 + 1, at - first
    # Outside the bounds the settings do not load: the process does not start.
    for name, value, bound in (
        ("VICTIM_WARNING_RESEND_S", "30", "greater than or equal to 60"),
        ("VICTIM_WARNING_SENDS", "9", "less than or equal to 5"),
    ):
        monkeypatch.setenv(f"TAGWATCH_{name}", value)
        with pytest.raises(ValidationError, match=f"(?s){name.lower()}.*{bound}"):
            Settings()
        monkeypatch.delenv(f"TAGWATCH_{name}")


def test_retention_keeps_what_commands_still_need_and_purges_the_rest(world: World) -> None:
    """Commands and their deliveries as the pipeline wrote them for a device that never
    answered, two days later, kept one day: a delivery still in flight keeps its sends, so
    does one whose alert an officer is working, until it is resolved; the newest command of
    each kind per device stays whatever its age (the device's sequence goes on from it)."""
    with world.engine.begin() as conn:
        link(conn, world.order, VICTIM_ID, T - 600, T)
    end = world.approach(lambda payload: not is_warning(payload))
    world.ticks_after(end, lambda payload: not is_warning(payload))
    # A warning sent twice, its delivery still in flight (no tick has judged it since).
    in_flight = (notify_key(WARNING), T + 5000)
    with world.engine.begin() as conn:
        for at in (end + 900, end + 960):
            numbered(conn, VICTIM_ID, [], world.victim.key, code=in_flight[0],
                     value=in_flight[1], reason="test", now=at,
                     resend=world.sink.warnings)  # fmt: skip
    c = device_commands.c

    def state() -> tuple[dict[int, int], dict[tuple[int, int], int], list[tuple[int, int, int]]]:
        """Each device's next sequence, the newest sequence of each (device, key), and every
        row's (device, key, value)."""
        with world.engine.connect() as conn:
            rows = conn.execute(select(c.device, c.key, c.value, c.seq).order_by(c.seq)).all()
            nxt = {d: next_seq(conn, d) for d in (TAG_ID, VICTIM_ID)}
        newest = {(r.device, r.key): r.seq for r in rows}
        return nxt, newest, [(r.device, r.key, r.value) for r in rows]

    before = state()
    assert len(before[2]) > len(before[1])  # something to purge
    settings = Settings(retention_commands_days=1, retention_batch_rows=2)
    world.clock.set(end + 2 * DAY)
    deleted = purge(world.engine, settings, world.clock, actor="test")
    now = state()
    assert now[:2] == before[:2] and deleted["device_commands"] == len(before[2]) - len(now[2]) > 0
    # The alert is open: both given-up warnings keep their delivery and every send.
    sends = world.sink.warnings.sends
    notify = [(k, v) for d, k, v in now[2] if d == VICTIM_ID and k in NOTIFY_COMMAND_KEYS]
    assert deleted["command_deliveries"] == 0 and len(notify) == 2 * sends + 2
    assert notify.count(in_flight) == 2

    with world.engine.begin() as conn:
        unreached = conn.execute(select(alerts.c.id).where(alerts.c.type == UNREACHED)).scalar()
        assert unreached is not None
        officer = conn.execute(
            insert(users).values(username="o1", display_name="O", unit_id=world.unit_id,
                                 role="officer", password_hash="x", failed_logins=0, created_at=T)
            .returning(users.c.id)
        ).scalar_one()  # fmt: skip
        resolve(conn, unreached, officer, "technical_fault", "phone off", end + 2 * DAY)
    deleted = purge(world.engine, settings, world.clock, actor="test")
    after = state()
    assert after[:2] == before[:2] and deleted["command_deliveries"] == 2
    notify = [(k, v) for d, k, v in after[2] if d == VICTIM_ID and k in NOTIFY_COMMAND_KEYS]
    # Left: the in-flight warning's two sends, and the newest alert-distance warning.
    last_alert = [(k, v) for d, k, v in before[2] if k == notify_key(ALERT)][-1]
    assert sorted(notify) == sorted([in_flight, in_flight, last_alert])
    assert deliveries(world) == [(WARNING, 1, None)]
    with world.engine.connect() as conn:
        audited = conn.execute(
            select(audit_log.c.detail).where(audit_log.c.action == "retention.purge")
        ).scalars().all()  # fmt: skip
    classes = [
        a["data_class"] for a in audited if a["data_class"].startswith(("command", "device_c"))
    ]
    assert classes == ["command_deliveries", "device_commands", "command_queue"] * 2
