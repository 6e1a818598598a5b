"""Only a tag's paired home unit speaks for its presence (backend/registry.py, Pairings, as
ingest and the rules apply it), on real SQLite and PostgreSQL: two police units' home units,
the pairing history against each record's own event time, a relayed backlog across a
re-pairing, and the same verdict when the rules re-read stored frames."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, insert, select

from backend.clock import ManualClock
from backend.ingest import Message
from backend.investigations.evidence import Tenure, load_stays
from backend.registry import HOME_RECORD, NOT_PAIRED
from backend.rules import store
from backend.rules.model import SECURITY
from backend.rules.observe import frame_observations
from backend.services import units
from backend.storage.database import make_engine, upgrade
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    alert_episodes,
    alerts,
    devices,
    frames,
    pairings,
    presence,
    security_events,
)
from firmware import frame as fr
from firmware import topics
from tests.backend.conftest import T0
from tests.backend.frames import acked
from tests.backend.investigations.scenario import Stage

TAG_A, UNIT_A = 1001, 2001  # police unit A's subject
TAG_B, UNIT_B = 1002, 2002  # police unit B's subject
DAY = 86_400


def says_home(unit: int, tag: int, dt: int = 0) -> fr.Record:
    return fr.Record(fr.PRESENCE, dt=dt, home_unit=unit, tag=tag, state=fr.HOME, rssi=-55)


def presence_rows(engine: Engine) -> list[tuple[int, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(presence.c.home_unit, presence.c.tag, presence.c.ts))
        return sorted((r.home_unit, r.tag, r.ts) for r in rows)


def refusals(engine: Engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(security_events.c.reason, security_events.c.device))
        return sorted((r.reason, r.device) for r in rows)


World = tuple[Stage, dict[int, int]]  # the stage, and each tag's subject


@pytest.fixture
def world(engine: Engine, clock: ManualClock) -> World:
    """Two police units, each with a subject wearing a tag paired with a home unit, through
    ingest and the monitoring rules."""
    st = Stage(engine, clock, rules=True)
    with engine.begin() as conn:
        police = [units.create(conn, n, "police", T0) for n in ("IOM A", "IOM B")]
    subject_of = {}
    for n, (tag, unit) in enumerate(((TAG_A, UNIT_A), (TAG_B, UNIT_B))):
        sid = subject_of[tag] = st.subject(f"S-{n}", police[n])
        st.device(unit, HOME_UNIT)
        st.device(tag, TAG, home_unit=unit)
        st.assign(sid, tag, TAG, T0 - DAY)
        st.assign(sid, unit, HOME_UNIT, T0 - DAY)
    return st, subject_of


def test_another_units_home_unit_cannot_give_a_subject_a_home_stay(
    world: World, engine: Engine
) -> None:
    """The probe's false alibi: unit B's home unit reports A's tag at home (naming A's unit,
    or itself), and A's tag's own frame carries a presence record. Each record is refused,
    counted and a security event; the frames are stored and acknowledged (sending them again
    would change nothing); A's whereabouts gain no home stay; B's genuine report stands."""
    stage, subjects = world
    t = T0 + 600
    forged = [
        stage.unit_records(UNIT_B, t, [says_home(UNIT_A, TAG_A)]),
        stage.unit_records(UNIT_B, t, [says_home(UNIT_B, TAG_A)]),
        stage.tag_records(TAG_A, t, [says_home(UNIT_A, TAG_A)]),
    ]
    genuine = stage.unit_records(UNIT_B, t, [says_home(UNIT_B, TAG_B)])
    stage.deliver([*forged, genuine], at_time=t + 5)

    assert presence_rows(engine) == [(UNIT_B, TAG_B, t)]
    with engine.connect() as conn:
        assert len(conn.execute(select(frames.c.id)).all()) == 4
        stays = load_stays(
            conn, [Tenure(subjects[tag], tag, T0 - DAY, None) for tag in subjects], t - 60, t + 60
        )
    assert [(s.subject, s.tag, s.home_unit) for s in stays] == [(subjects[TAG_B], TAG_B, UNIT_B)]
    acks = {
        (topic, boot_seq) for topic, p in stage.published for boot_seq in _acked(stage, topic, p)
    }
    assert acks == {
        (topics.home_down(UNIT_B), (1, 1)),
        (topics.home_down(UNIT_B), (1, 2)),
        (topics.home_down(UNIT_B), (1, 3)),
        (topics.tag_down(TAG_A), (1, 1)),
    }

    assert refusals(engine) == [(HOME_RECORD, TAG_A), (NOT_PAIRED, UNIT_B), (NOT_PAIRED, UNIT_B)]
    c = stage.ingest.counts
    assert (c["records_refused"], c["rejected"], c["frames_stored"]) == (3, 0, 4)
    assert stage.ingest.rejections[(NOT_PAIRED, UNIT_B)] == 2
    # A security alert on the subject whose device spoke out of turn, as for a bad MAC.
    with engine.connect() as conn:
        raised = conn.execute(
            select(alerts.c.subject_id, alert_episodes.c.details)
            .join(alert_episodes, alert_episodes.c.alert_id == alerts.c.id)
            .where(alerts.c.type == "security_event")
        ).all()
    assert sorted((sid, d["reason"], d["count"]) for sid, d in raised) == [
        (subjects[TAG_A], HOME_RECORD, 1),
        (subjects[TAG_B], NOT_PAIRED, 2),
    ]


def _acked(stage: Stage, topic: str, payload: bytes) -> set[tuple[int, int]]:
    parsed = topics.parse(topic)
    assert parsed is not None
    return acked(payload, stage.keys[parsed[1]])


def test_each_record_is_judged_by_the_pairing_in_force_at_its_own_time(
    engine: Engine, clock: ManualClock
) -> None:
    """Tag A moves from unit A to unit B at P, and is unpaired at Q. Unit A's backlog, relayed
    after P, still speaks for the time before P and not after; unit B speaks for [P, Q) only.
    A record without calendar time is judged by the pairing in force now."""
    stage = Stage(engine, clock)
    registry = stage.registry
    for unit in (UNIT_A, UNIT_B):
        stage.device(unit, HOME_UNIT)
    stage.device(TAG_A, TAG, home_unit=UNIT_A)
    p_time, q_time = T0 + 7200, T0 + 10_800
    clock.set(p_time)
    registry.pair(TAG_A, UNIT_B)
    registry.pair(TAG_A, UNIT_B)  # again: no change, no new period
    clock.set(q_time)
    registry.pair(TAG_A, None)
    with engine.connect() as conn:
        history = conn.execute(
            select(pairings.c.home_unit, pairings.c.starts_at, pairings.c.ends_at)
            .where(pairings.c.tag == TAG_A)
            .order_by(pairings.c.id)
        ).all()
        current = conn.execute(select(devices.c.home_unit).where(devices.c.id == TAG_A))
        assert current.scalar_one() is None
    assert [tuple(r) for r in history] == [(UNIT_A, None, p_time), (UNIT_B, p_time, q_time)]

    def report(unit: int, t: int) -> Message:
        """A frame the unit sealed 5 s after hearing the tag at t, arriving after Q."""
        return stage.unit_records(unit, t + 5, [says_home(unit, TAG_A, dt=5)])

    untimed = fr.Frame(fr.HOME_DATA, UNIT_B, 1, 99, 5000, [says_home(UNIT_B, TAG_A, 10)], 0)
    stage.deliver(
        [
            report(UNIT_A, T0 - DAY),  # long before: the first pairing covers it
            report(UNIT_A, p_time - 1),
            report(UNIT_A, p_time),  # refused: unit B's from P
            report(UNIT_B, p_time - 1),  # refused: still unit A's
            report(UNIT_B, q_time - 1),
            report(UNIT_B, q_time),  # refused: unpaired
            Message(topics.home_up(UNIT_B), fr.encode(untimed, stage.keys[UNIT_B])),  # refused
        ],
        at_time=q_time + 120,
    )
    assert presence_rows(engine) == [
        (UNIT_A, TAG_A, T0 - DAY),
        (UNIT_A, TAG_A, p_time - 1),
        (UNIT_B, TAG_A, q_time - 1),
    ]
    assert refusals(engine) == [(NOT_PAIRED, UNIT_A)] + [(NOT_PAIRED, UNIT_B)] * 3
    assert stage.ingest.counts["records_refused"] == 4


def test_the_rules_rereading_stored_frames_refuse_the_same_records(
    world: World, engine: Engine, clock: ManualClock
) -> None:
    """Re-evaluation reads frames back from storage (rules/store.py): a refused record is not
    an observation there either, while the rest of its frame is."""
    stage, subjects = world
    t = T0 + 600
    power = fr.Record(fr.HOME_POWER, dt=0, mains=1, battery=90)
    stage.deliver(
        [
            stage.unit_records(UNIT_B, t, [says_home(UNIT_B, TAG_A), power]),
            stage.unit_records(UNIT_B, t + 60, [says_home(UNIT_B, TAG_B)]),
        ],
        at_time=t + 65,
    )
    with engine.connect() as conn:
        config = store.load_config(conn, subjects[TAG_B])
        seen = store.SqlRepository(conn, clock.now()).observations(config, T0)
        raw = [fr.parse(r.raw) for r in conn.execute(select(frames.c.raw).order_by(frames.c.id))]
    assert [(o.name, o.values.get("tag")) for o in seen if o.name != SECURITY] == [
        ("home_power", None),
        ("presence", TAG_B),
    ]
    # Without the refusal, the stored frame itself would give the forged presence.
    assert "presence" in [o.name for o in frame_observations(raw[0], HOME_UNIT, t + 65)]


def test_migration_keeps_existing_pairings_as_first_pairings(db_url: str) -> None:
    """0005: a pairing made before the history existed is the tag's first, in force from
    the start (when it was made was not recorded)."""
    engine = make_engine(db_url)
    upgrade(engine, "0004_totp_pending")
    with engine.begin() as conn:
        for dev, kind, unit in (
            (UNIT_A, HOME_UNIT, None),
            (TAG_A, TAG, UNIT_A),
            (TAG_B, TAG, None),
        ):
            conn.execute(
                insert(devices).values(
                    id=dev, kind=kind, key_enc=b"k", home_unit=unit, registered_at=T0
                )
            )
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            select(pairings.c.tag, pairings.c.home_unit, pairings.c.starts_at, pairings.c.ends_at)
        ).all()
    assert [tuple(r) for r in rows] == [(TAG_A, UNIT_A, None, None)]
    engine.dispose()
