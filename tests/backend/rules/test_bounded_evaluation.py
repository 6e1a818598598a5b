"""No subject's evaluation works through an unbounded span (backend/rules/evaluator.py), on
real SQLite and PostgreSQL through ingest and the sink.

The probe that found it: an order dated 1970 made the next frame from that subject's tag
evaluate every day since, inside one write transaction; ingest stalled for every unit and
364 `not_charged` alerts were raised for days before any tag was fitted. Latency is measured
in events, not wall time: another unit's alert must be stored by the very ingest batch that
carries its frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine, insert, select

from backend.clock import ManualClock
from backend.ingest import DeviceDirectory, Ingest, Message
from backend.registry import KeyVault, Registry
from backend.rules import store
from backend.rules.engine import State
from backend.rules.evaluator import LOOKBACK_S, MAX_RUN_S
from backend.rules.schedule import local_date
from backend.rules.sink import CATCHUP_CHUNKS, MonitoringSink
from backend.storage.schema import (
    TAG,
    alert_episodes,
    alerts,
    assignments,
    charging_schedules,
    orders,
    rule_state,
    subjects,
    units,
)
from firmware import frame as fr
from firmware import topics
from tests.backend.frames import fix

T = 1_790_000_000
DAY = 86_400
TZ = "Europe/London"


@dataclass
class Site:
    """Subjects in two units, each with one tag, an order and a charging schedule; one
    ingest worker with its MonitoringSink."""

    engine: Engine
    clock: ManualClock
    keys: dict[int, bytes] = field(default_factory=dict)
    seq: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.registry = Registry(self.engine, KeyVault(bytes(range(32))), self.clock)
        self.sink = MonitoringSink(self.engine, self.clock, lambda t, p: True, self.keys.get)
        self.ingest = Ingest(
            self.engine,
            DeviceDirectory(self.registry),
            lambda t, p: True,
            clock=self.clock,
            rules=self.sink,
        )

    def subject(self, unit: str, tag: int, fitted: int, order_start: int) -> int:
        self.keys[tag] = self.registry.register(tag, TAG).key
        with self.engine.begin() as conn:
            uid = conn.execute(
                insert(units).values(name=unit, kind="police", created_at=T).returning(units.c.id)
            ).scalar_one()
            sid = conn.execute(
                insert(subjects)
                .values(reference=unit, name=unit, unit_id=uid, risk_notes="", created_at=T)
                .returning(subjects.c.id)
            ).scalar_one()
            conn.execute(
                insert(assignments).values(
                    subject_id=sid, device=tag, role=TAG, starts_at=fitted, created_at=T
                )
            )
            conn.execute(
                insert(orders).values(
                    subject_id=sid,
                    kind="bail",
                    reference="T",
                    starts_at=order_start,
                    conditions="",
                    created_at=T,
                )
            )
            conn.execute(insert(charging_schedules).values(
                subject_id=sid, min_minutes=60, created_at=T))  # fmt: skip
            store.bump_config(conn, sid, T, TZ)
        return int(sid)

    def frame(self, tag: int, ts: int, records: list[fr.Record]) -> Message:
        self.seq[tag] = self.seq.get(tag, 0) + 1
        f = fr.Frame(fr.TAG_DATA, tag, 1, self.seq[tag], ts, records, fr.FLAG_TIME_VALID)
        return Message(topics.tag_up(tag), fr.encode(f, self.keys[tag]))

    def state(self, subject: int) -> State:
        with self.engine.connect() as conn:
            row = conn.execute(select(rule_state).where(rule_state.c.subject_id == subject)).one()
        st = State.from_json(row.state)
        st.covers = row.covers
        return st

    def episodes(self, subject: int, type_: str | None = None) -> list[tuple[str, int]]:
        e = alert_episodes.c
        q = select(e.type, e.start).where(e.subject_id == subject, e.cleared_at.is_(None))
        if type_ is not None:
            q = q.where(e.type == type_)
        with self.engine.connect() as conn:
            return sorted((r.type, r.start) for r in conn.execute(q))

    def alert_types(self, subject: int) -> list[str]:
        with self.engine.connect() as conn:
            q = select(alerts.c.type).where(alerts.c.subject_id == subject)
            return sorted(r.type for r in conn.execute(q))


def battery(dt: int, level: int = 80, charging: bool = False) -> fr.Record:
    return fr.Record(fr.BATTERY, (dt, level, 0x01 if charging else 0, 3900, 40))


def tamper(dt: int, opened: bool) -> fr.Record:
    return fr.Record(fr.TAMPER, (dt, 1, 1 if opened else 0))


def test_a_backdated_order_does_not_hold_back_another_units_alerts(
    engine: Engine,
) -> None:
    """Subject A's order and tag fitting are entered five years back (within the API's ten
    years), so its first frame starts a run over everything the rules look back at (90
    days). Subject B, in another unit, streams tamper events meanwhile: each of B's alerts
    is stored by the ingest batch that carries it, while A's run goes a day per
    evaluation (ingest's, or the clock's in its own transactions) until it is caught up."""
    clock = ManualClock(T)
    site = Site(engine, clock)
    a = site.subject("IOM", 1201, T - 5 * 365 * DAY, T - 5 * 365 * DAY)
    b = site.subject("MOSOVO", 1202, T - 600, T - 600)

    # A's tag and B's tag in one batch: B's strap is opened.
    site.ingest.process([
        site.frame(1201, T - 30, [fix(0), battery(0)]),
        site.frame(1202, T - 20, [fix(0), tamper(0, True)]),
    ])  # fmt: skip
    assert site.episodes(b) == [("strap_tamper", T - 20)]
    first = site.state(a)
    # A's evaluation began 90 days back (the look-back), not five years, and folded one day.
    origin = T - LOOKBACK_S
    assert first.covers == origin + MAX_RUN_S and first.behind
    assert len(site.episodes(a, "not_charged")) <= 1

    # B keeps streaming while A catches up: each batch's tamper change is stored by that
    # batch, and the clock's tick between batches works A's run on, a budget at a time.
    ticks = 0
    for k in range(1, 40):
        clock.set(T + 60 * k)
        opened = k % 2 == 0
        site.ingest.process([site.frame(1202, T + 60 * k - 5, [fix(0), tamper(0, opened)])])
        want = [("strap_tamper", T - 20)] + [
            ("strap_tamper", T + 60 * j - 5) for j in range(2, k + 1, 2)
        ]
        assert site.episodes(b) == want, k
        if site.state(a).behind:
            site.sink.tick()
            ticks += 1
    caught_up = site.state(a)
    assert not caught_up.behind and T - caught_up.covers <= MAX_RUN_S
    # About 90 chunks of a day, worked through a budget per tick.
    assert ticks <= LOOKBACK_S // MAX_RUN_S // CATCHUP_CHUNKS + 2
    assert site.sink.counts["evaluation_failed"] == 0

    # A's alerts are those of the 90 days looked at, each local day judged once: no day
    # before the look-back, none twice (chunks settle only what they close).
    days = [local_date(start, TZ) for _, start in site.episodes(a, "not_charged")]
    assert days == sorted(set(days))
    assert days[0] >= local_date(origin, TZ) and days[-1] < local_date(T, TZ)
    assert len(days) >= LOOKBACK_S // DAY - 2
    assert all(start >= origin for _, start in site.episodes(a))


def test_no_alert_for_times_before_the_tag_was_fitted(engine: Engine) -> None:
    """An order dated a year back, a tag fitted two days ago that never charges: the
    charging schedule judges the one full local day since the fitting, and nothing else is
    dated before it. (Before: 364 `not_charged` alerts, one for each day of the order before
    the tag existed.)"""
    clock = ManualClock(T)
    site = Site(engine, clock)
    fitted = T - 2 * DAY
    s = site.subject("IOM", 1301, fitted, T - 365 * DAY)
    for ts in range(fitted + 3600, T, 3600):
        clock.set(ts + 5)
        site.ingest.process([site.frame(1301, ts, [fix(0), battery(0, 50)])])
    clock.set(T + 60)
    site.sink.tick()
    episodes = site.episodes(s)
    assert all(start >= fitted for _, start in episodes), episodes
    judged = [local_date(start, TZ) for t, start in episodes if t == "not_charged"]
    assert judged == [local_date(fitted, TZ) + timedelta(days=1)]
    assert site.alert_types(s) == ["not_charged"]
