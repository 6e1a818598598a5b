"""Rules wired into ingest on real SQLite and PostgreSQL: frames in, alerts out — live, late,
reordered, duplicated, by the clock — the alert workflow, and signed fast-sampling commands."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, select

from backend.clock import ManualClock
from backend.ingest import Message
from backend.registry import Registry
from backend.rules import store
from backend.rules.evaluator import Changes
from backend.rules.model import Episode
from backend.rules.zones import Zones
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    alert_actions,
    alert_episodes,
    alerts,
    device_commands,
    users,
)
from backend.zone_push import ZONE_COMMAND_KEY
from firmware import frame as fr
from firmware import topics
from tests.backend.pipeline import Pipeline, T, fix

TAG_ID, UNIT_ID = 1001, 2001


class World(Pipeline):
    """A tag and its home unit assigned to the subject, an exclusion zone and an officer."""

    def __init__(self, engine: Engine, registry: Registry, clock: ManualClock) -> None:
        self.unit = registry.register(UNIT_ID, HOME_UNIT)
        self.tag = registry.register(TAG_ID, TAG, home_unit=UNIT_ID)
        keys = {TAG_ID: self.tag.key, UNIT_ID: self.unit.key}
        super().__init__(engine, registry, clock, keys, TAG_ID)
        with engine.begin() as conn:
            for dev, role in ((TAG_ID, TAG), (UNIT_ID, HOME_UNIT)):
                self.assign(conn, dev, role, T - 600)
            self.circle(conn, "precinct", "exclusion", 1000, 100)
            store.bump_config(conn, self.subject, T)
            self.user = conn.execute(
                insert(users).values(username="o1", display_name="O", unit_id=self.unit_id,
                                     role="officer", password_hash="x", failed_logins=0,
                                     created_at=T).returning(users.c.id)
            ).scalar_one()  # fmt: skip

    def alerts(self) -> list[tuple[str, str, int, int | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(alerts).order_by(alerts.c.id))
            return [(r.type, r.state, r.start, r.end) for r in rows]


@pytest.fixture
def world(engine: Engine, registry: Registry, clock: ManualClock) -> World:
    return World(engine, registry, clock)


def walk_frames(w: World) -> list[Message]:
    """Into the exclusion zone and out again: 6 frames of 5 fixes, 15 s apart."""
    xs = [700 + 20 * i for i in range(12)] + [1000] * 8 + [1000 + 40 * i for i in range(1, 11)]
    msgs = []
    for k in range(6):
        ts = T + 75 * (k + 1) - 15
        msgs.append(w.tag_frame(ts, [fix(15 * (4 - i), xs[5 * k + i]) for i in range(5)]))
    return msgs


def test_live_frames_raise_one_alert_with_evidence_and_commands(world: World) -> None:
    for m in walk_frames(world):
        f = fr.parse(m.payload)
        world.deliver([m], f.ts + 2)
    assert [(t, s) for t, s, _, _ in world.alerts()] == [("exclusion_entry", "open")]
    with world.engine.connect() as conn:
        ep = conn.execute(select(alert_episodes)).one()
        assert ep.rule_version == Zones.version and len(ep.evidence) >= 2 and ep.end is not None
        cmds = list(conn.execute(select(device_commands).order_by(device_commands.c.seq)))
    assert [c.seq for c in cmds] == list(range(1, len(cmds) + 1)) and cmds
    # 7.5 minutes near the zone, a fast period of 15: asked once (renewal is due only after
    # half the period), however many times the unsettled tail was folded. Beside it, the
    # subject's zone went to the tag once (cmd_zone, device_commands key 0).
    assert [c.key for c in cmds].count(fr.CFG_FAST_UNTIL) == 1
    assert [c.key for c in cmds if c.key != fr.CFG_FAST_UNTIL] == [ZONE_COMMAND_KEY]
    sent = [fr.decode(p, world.tag.key) for t, p in world.published]  # signed with its key
    commands = [f for f in sent if f.mtype == fr.COMMAND]
    fast = [f for f in commands if f.records[0].name == "cmd_config"]
    assert len(fast) == 1 and fast[0].records[0].key == fr.CFG_FAST_UNTIL
    zone = [f for f in commands if f.records[0].name == "cmd_zone"]
    assert len(zone) == 1 and [r.radius_m for r in zone[0].records if r.radius_m] != []


def test_reordered_duplicated_late_delivery_gives_the_same_alerts(world: World) -> None:
    msgs = walk_frames(world)
    order = msgs[3:] + msgs[:3] + msgs[1:2]
    random.Random(5).shuffle(order)
    for i, m in enumerate(order):
        world.deliver([m], T + 2000 + i)  # all behind backend now: a backlog
    got = world.alerts()
    assert [(t, s) for t, s, _, _ in got] == [("exclusion_entry", "open")]
    with world.engine.connect() as conn:
        assert conn.execute(select(alerts.c.late)).scalar() is True


def test_workflow_acknowledge_resolve_and_reopen_on_recurrence(world: World) -> None:
    for m in walk_frames(world):
        world.deliver([m], fr.parse(m.payload).ts + 2)
    with world.engine.begin() as conn:
        alert_id = conn.execute(select(alerts.c.id)).scalar_one()
        with pytest.raises(store.WorkflowError):
            store.resolve(conn, alert_id, world.user, "not_an_outcome", "x", T + 900)
        store.acknowledge(conn, alert_id, world.user, "looking", T + 900)
        with pytest.raises(store.WorkflowError):
            store.acknowledge(conn, alert_id, world.user, "again", T + 901)
        store.resolve(conn, alert_id, world.user, "breach_confirmed", "spoke to subject", T + 1000)
    # Back into the zone 20 minutes later: the same alert reopens.
    later = T + 1200
    recs = [fix(15 * (5 - i), x) for i, x in enumerate([1200, 1000, 1000, 1000, 1000, 1000])]
    world.deliver([world.tag_frame(later, recs)], later + 2)
    with world.engine.connect() as conn:
        row = conn.execute(select(alerts)).one()
        acts = [a.action for a in conn.execute(select(alert_actions).order_by(alert_actions.c.id))]
    assert row.state == "open" and row.reopened == 1 and row.episodes == 2
    acts = [a for a in acts if a != "updated"]  # the open episode's end moving on
    assert acts == ["raised", "acknowledged", "resolved", "reopened"]


def test_comms_loss_by_the_clock_then_cleared_by_a_late_backlog(world: World) -> None:
    world.deliver([world.tag_frame(T, [fix(0, 0)])], T + 1)
    world.sink.tick(T + 7300)  # default threshold 2 h, nothing heard
    assert world.alerts() == [("comms_loss", "open", T, None)]
    backlog = [world.tag_frame(T + 1800 * k, [fix(0, 0)]) for k in range(1, 5)]
    world.deliver(backlog, T + 7400)
    assert [(t, s) for t, s, _, _ in world.alerts()] == [("comms_loss", "cleared")]


def test_home_unit_last_will_is_dated_when_received(world: World) -> None:
    f = fr.Frame(fr.HOME_DATA, UNIT_ID, 3, 7, T - 5000, [fr.Record(fr.LINK, dt=0, state=0)],
                 fr.FLAG_TIME_VALID)  # fmt: skip
    world.deliver([Message(topics.home_status(UNIT_ID), fr.encode(f, world.unit.key))], T)
    world.sink.tick(T + 1000)
    assert world.alerts() == [("home_unit_offline", "open", T, None)]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_recurrence_the_rules_store_while_an_officer_resolves_reopens_the_alert(
    world: World,
) -> None:
    """The rules' transaction has found the subject's alert open and is about to attach the
    condition's recurrence to it when an officer resolves it. PostgreSQL's read committed
    let the resolution commit between the rules' read and their write: the recurrence was
    stored on a resolved alert that never reopened, so nobody was told it happened again.
    (SQLite's writers cannot interleave: each transaction is BEGIN IMMEDIATE.) Now the
    alert's workflow takes the subject's lock, which the rules hold while they evaluate it:
    the resolution waits, and resolves the alert with the recurrence on it."""
    for m in walk_frames(world):
        world.deliver([m], fr.parse(m.payload).ts + 2)
    with world.engine.connect() as conn:
        first = conn.execute(select(alerts)).one()
    assert first.state == "open"
    recurrence = Episode(
        world.subject, "zone", first.type, first.group_key.split(":", 2)[2],
        first.start + 600, 1, first.start + 600,
    )  # fmt: skip
    resolved = threading.Event()
    waiting_pids: list[int] = []
    order: list[str] = []  # which was committed first

    def resolve() -> None:
        with world.engine.begin() as conn:
            waiting_pids.append(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
            store.resolve(conn, first.id, world.user, "breach_confirmed", "spoke", T + 1000)
        resolved.set()

    officer = threading.Thread(target=resolve)

    def officer_in_between(conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        # The rules have read the alert; the officer resolves now, before they write.
        if statement.startswith("INSERT INTO alert_episodes") and not officer.is_alive():
            officer.start()
            while not resolved.is_set() and not _waits_on_a_lock(world.engine, waiting_pids):
                resolved.wait(0.05)
            order.append("resolution" if resolved.is_set() else "recurrence")

    with world.engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", officer_in_between)
        with conn.begin():
            repo = store.SqlRepository(conn, T + 1000)
            repo.lock(world.subject)
            repo.apply_episodes(Changes(raised=[recurrence]))
    officer.join(60)
    with world.engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == first.id)).one()
        acts = [a.action for a in conn.execute(select(alert_actions).order_by(alert_actions.c.id))]
    assert order, "the rules never reached their write"
    if order[0] == "resolution":  # then the recurrence must reopen what was resolved
        assert (row.state, row.reopened, acts[-1]) == ("open", 1, "reopened"), acts
    else:  # the officer resolved the alert the recurrence was already on
        assert (row.state, row.episodes, acts[-1]) == ("resolved", 2, "resolved"), acts
    assert order == ["recurrence"]  # the officer's resolution waited for the rules


def _waits_on_a_lock(engine: Engine, pids: list[int]) -> bool:
    """Whether the officer's connection is waiting for a lock another transaction holds."""
    if not pids:
        return False
    with engine.connect() as conn:
        kind = conn.exec_driver_sql(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %(p)s", {"p": pids[0]}
        ).scalar()
    return kind == "Lock"
