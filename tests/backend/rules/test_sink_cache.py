"""The sink's per-worker cache (backend/rules/cache.py) on real SQLite and PostgreSQL: two
workers sharing a subject write exactly what one worker would; a configuration change
mid-stream is seen by the next frame; the clock evaluates only subjects whose deadline has
come, and its alert changes invalidate other workers' caches; one subject's failure does
not hold back the rest of its batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select

from backend.clock import ManualClock
from backend.ingest import DeviceDirectory, Ingest, Message
from backend.registry import KeyVault, Registry
from backend.rules import store
from backend.rules.base import Context, Rule
from backend.rules.engine import Engine as RuleEngine
from backend.rules.engine import State
from backend.rules.model import Obs
from backend.rules.sink import MonitoringSink
from backend.rules.tamper import Tamper
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    alert_episodes,
    alerts,
    assignments,
    rule_snapshots,
    rule_state,
    subjects,
    units,
    zones,
)
from firmware import frame as fr
from firmware import topics
from tests.backend.rules.scenario import offset

T = 1_790_000_000
TAG_ID, UNIT_ID = 1101, 2101


def fix(dt: int, dx: float) -> fr.Record:
    lat, lon = offset(dx, 0)
    return fr.Record(fr.FIX, (dt, round(lat * 1e7), round(lon * 1e7), 50, 2, 0, 9, 100, 0, 9))


def add_zone(engine: Engine, subject: int, dx: float, at: float) -> None:
    lat, lon = offset(dx, 0)
    with engine.begin() as conn:
        conn.execute(insert(zones).values(
            subject_id=subject, name="precinct", kind="exclusion", shape="circle",
            geometry={"type": "Point", "coordinates": [lon, lat]}, radius_m=100, width_m=0,
            buffer_m=0, victim=False, schedule=[], dwell_s=None, created_at=at))  # fmt: skip
        store.bump_config(conn, subject, at)


class Site:
    """A database with subjects (each a tag, the first also a home unit and an exclusion
    zone), and any number of ingest workers with their own MonitoringSink on it."""

    def __init__(self, engine: Engine, clock: ManualClock, tags: int = 1) -> None:
        self.engine, self.clock = engine, clock
        registry = Registry(engine, KeyVault(bytes(range(32))), clock)
        self.directory = DeviceDirectory(registry)
        self.keys = {UNIT_ID: registry.register(UNIT_ID, HOME_UNIT).key}
        self.subjects: list[int] = []
        self.seq: dict[int, int] = {}
        with engine.begin() as conn:
            uid = conn.execute(insert(units).values(name="IOM", kind="police", created_at=T)
                               .returning(units.c.id)).scalar_one()  # fmt: skip
        for i in range(tags):
            tag = TAG_ID + i
            self.keys[tag] = registry.register(tag, TAG, home_unit=UNIT_ID).key
            with engine.begin() as conn:
                sid = conn.execute(
                    insert(subjects).values(reference=f"S{i}", name="A", unit_id=uid,
                                            risk_notes="", created_at=T).returning(subjects.c.id)
                ).scalar_one()  # fmt: skip
                devices = ((tag, TAG), (UNIT_ID, HOME_UNIT)) if i == 0 else ((tag, TAG),)
                for dev, role in devices:
                    row = {"subject_id": sid, "device": dev, "role": role, "starts_at": T - 600}
                    conn.execute(insert(assignments).values(**row, created_at=T))
                store.bump_config(conn, sid, T)
            self.subjects.append(sid)

    def worker(self, rules: RuleEngine | None = None) -> tuple[Ingest, MonitoringSink]:
        sink = MonitoringSink(self.engine, self.clock, lambda t, p: True, self.keys.get, rules)
        ingest = Ingest(self.engine, self.directory, lambda t, p: True, clock=self.clock,
                        rules=sink)  # fmt: skip
        return ingest, sink

    def frame(self, ts: int, records: list[fr.Record], tag: int = TAG_ID) -> Message:
        self.seq[tag] = self.seq.get(tag, 0) + 1
        f = fr.Frame(fr.TAG_DATA, tag, 1, self.seq[tag], ts, records, fr.FLAG_TIME_VALID)
        return Message(topics.tag_up(tag), fr.encode(f, self.keys[tag]))

    def walk(self) -> list[tuple[int, list[fr.Record]]]:
        """Into the exclusion zone at 1000 m and out again: 8 frames of 5 fixes, 15 s apart."""
        xs = [600 + 20 * i for i in range(20)] + [1000] * 8 + [1000 + 40 * i for i in range(12)]
        return [
            (T + 75 * (k + 1) - 15, [fix(15 * (4 - i), xs[5 * k + i]) for i in range(5)])
            for k in range(8)
        ]

    def snapshot(self) -> dict[str, Any]:
        """What the rules left in the database, minus ids and backend times."""
        with self.engine.connect() as conn:
            states = [
                r.state for r in conn.execute(select(rule_state).order_by(rule_state.c.subject_id))
            ]
            eps = [
                (e.key, e.end, e.confirmed_t, e.closed_t, e.evidence, e.cleared_at is None)
                for e in conn.execute(select(alert_episodes).order_by(alert_episodes.c.key))
            ]
            als = [(a.type, a.state, a.start, a.end, a.episodes)
                   for a in conn.execute(select(alerts).order_by(alerts.c.id))]  # fmt: skip
        return {"states": states, "episodes": eps, "alerts": als}


def test_two_workers_on_one_subject_write_what_one_worker_would(
    engine: Engine, clock: ManualClock, tmp_path: Path
) -> None:
    site = Site(engine, clock)
    add_zone(engine, site.subjects[0], 1000, T)
    (a, sink_a), (b, sink_b) = site.worker(), site.worker()
    pattern = [a, b, a, a, b, b, a, b]  # both hand-overs and runs on one worker
    for (ts, recs), ingest in zip(site.walk(), pattern, strict=True):
        clock.set(ts + 2)
        ingest.process([site.frame(ts, recs)])

    ref_engine = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    upgrade(ref_engine)
    ref_clock = ManualClock(T)
    ref = Site(ref_engine, ref_clock)
    add_zone(ref_engine, ref.subjects[0], 1000, T)
    only, sink_ref = ref.worker()
    for ts, recs in ref.walk():
        ref_clock.set(ts + 2)
        only.process([ref.frame(ts, recs)])

    got, want = site.snapshot(), ref.snapshot()
    assert [t for t, *_ in want["alerts"]] == ["exclusion_entry"]
    # The same state (revision included: one write per evaluation), episodes and alerts: a
    # worker whose cache missed the other's writes would have folded on a stale state.
    assert got == want
    assert State.from_json(got["states"][0]).rev == 8
    # Every hand-over was noticed (the other worker's revision) and reloaded from storage;
    # a worker's consecutive frames used its cache.
    assert sink_a.cache.reloads == 3 and sink_b.cache.reloads == 3
    assert sink_a.cache.hits == 1 and sink_b.cache.hits == 1
    assert sink_ref.cache.reloads == 1 and sink_ref.cache.hits == 7
    ref_engine.dispose()


def test_a_configuration_change_mid_stream_is_seen_by_the_next_frame(
    engine: Engine, clock: ManualClock
) -> None:
    site = Site(engine, clock)
    ingest, sink = site.worker()
    walk = site.walk()
    for ts, recs in walk[:3]:
        clock.set(ts + 2)
        ingest.process([site.frame(ts, recs)])
    assert sink.cache.hits == 2 and site.snapshot()["alerts"] == []
    # An officer adds the exclusion zone while the subject walks towards it (the API bumps
    # the configuration version; here the same store call).
    add_zone(engine, site.subjects[0], 1000, clock.now())
    for ts, recs in walk[3:]:
        clock.set(ts + 2)
        ingest.process([site.frame(ts, recs)])
    assert [(t, s) for t, s, *_ in site.snapshot()["alerts"]] == [("exclusion_entry", "open")]
    cfg = sink.cache.get(site.subjects[0]).config
    assert cfg is not None and cfg.version == 2 and len(cfg.zones) == 1


def test_the_clock_evaluates_only_due_subjects_and_invalidates_other_workers(
    engine: Engine, clock: ManualClock
) -> None:
    site = Site(engine, clock, tags=3)
    (a, sink_a), (_, sink_b) = site.worker(), site.worker()
    clock.set(T + 2)
    a.process([site.frame(T, [fix(0, 0)], tag) for tag in (TAG_ID, TAG_ID + 1, TAG_ID + 2)])
    assert sink_a.counts["evaluations"] == 3  # one batch, one transaction, three subjects

    sink_a.tick(T + 600)  # nothing is due: comms loss needs 2 h of silence
    assert sink_a.counts["tick_due"] == 0 and sink_a.counts["tick_subjects"] == 3
    sink_b.tick(T + 600)  # a fresh worker knows no deadlines yet: evaluates all, once
    assert sink_b.counts["tick_due"] == 3
    sink_b.tick(T + 1200)
    assert sink_b.counts["tick_due"] == 3 and site.snapshot()["alerts"] == []

    sink_b.tick(T + 7300)  # past every deadline: worker B raises three comms losses
    assert sink_b.counts["tick_due"] == 6
    assert [t for t, *_ in site.snapshot()["alerts"]] == ["comms_loss"] * 3
    sink_b.tick(T + 7400)  # open, nothing pending: quiet again
    assert sink_b.counts["tick_due"] == 6

    # Worker A's cached entries predate B's alerts: the revision B moved says so.
    reloads = sink_a.cache.reloads
    sink_a.tick(T + 7400)
    assert sink_a.cache.reloads == reloads + 3
    assert sink_a.counts["tick_due"] == 3  # evaluated once, finding B's alerts stored
    clock.set(T + 7500)
    a.process([site.frame(T + 7490, [fix(0, 0)])])  # the tag is back: A ends the loss
    got = site.snapshot()["alerts"]
    assert len(got) == 3 and sorted(e for *_, e, _ in got if e is not None) == [T + 7490]
    with engine.connect() as conn:
        assert conn.execute(select(alert_episodes.c.id)).all().__len__() == 3


class Exploding(Rule):
    """Fails for one subject: a stand-in for a rule bug that only some data triggers."""

    name = "exploding"
    version = 1
    Params = dict

    def __init__(self, subject: int) -> None:
        super().__init__({})
        self.subject = subject

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        if ctx.config.subject == self.subject:
            raise RuntimeError("rule bug")


def test_one_subjects_failure_does_not_hold_back_its_batch(
    engine: Engine, clock: ManualClock
) -> None:
    site = Site(engine, clock, tags=3)
    bad = site.subjects[1]
    ingest, sink = site.worker(RuleEngine([Tamper(), Exploding(bad)]))
    clock.set(T + 2)
    cut = fr.Record(fr.TAMPER, dt=0, sensor=1, state=1)
    ingest.process([site.frame(T, [cut], tag) for tag in (TAG_ID, TAG_ID + 1, TAG_ID + 2)])
    assert sink.counts["batch_retried"] == 1 and sink.counts["evaluation_failed"] == 1
    with engine.connect() as conn:
        evaluated = set(conn.execute(select(rule_state.c.subject_id)).scalars())
        raised = set(conn.execute(select(alerts.c.subject_id)).scalars())
    good = set(site.subjects) - {bad}
    assert evaluated == good and raised == good
    assert sink.cache.peek(bad) is None  # nothing of the failed attempt is kept


def test_a_frame_without_calendar_time_does_not_start_the_rules_in_1970(
    engine: Engine, clock: ManualClock
) -> None:
    # A tag that boots before it has GNSS time sends frames dated in seconds since boot
    # (no TIME_VALID). They give no observations; they must not be where the subject's first
    # evaluation starts either — from ts 40 it would fold (and snapshot) every hour since 1970.
    site = Site(engine, clock)
    ingest, sink = site.worker()
    clock.set(T + 2)
    site.seq[TAG_ID] = 1
    boot = fr.Frame(fr.TAG_DATA, TAG_ID, 1, 1, 40, [fr.Record(fr.TAMPER, dt=0, sensor=1,
                    state=0)], 0)  # fmt: skip
    ingest.process([Message(topics.tag_up(TAG_ID), fr.encode(boot, site.keys[TAG_ID]))])
    ingest.process([site.frame(T, [fix(0, 600)])])
    assert sink.counts["evaluation_failed"] == 0
    with engine.connect() as conn:
        covers = conn.execute(select(rule_state.c.covers)).scalar_one()
        first = conn.execute(select(func.min(rule_snapshots.c.at))).scalar()
    assert T - 3600 <= covers <= T + 1
    # Snapshots (hourly) only from the subject's first assignment (T - 600) on.
    assert first is None or first >= T - 600
