"""The ingest pipeline against real SQLite and real PostgreSQL (no broker: the publisher is a
list, so every ACK the pipeline publishes can be checked)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from backend.bounds import FRAME_AGE_S, FRAME_AHEAD_S
from backend.clock import ManualClock
from backend.ingest import (
    DeviceDirectory,
    Ingest,
    Message,
    Rejection,
    RuleSink,
    StoredFrame,
    ack_ranges,
)
from backend.registry import Device, Registry
from backend.settings import Settings
from backend.storage import frame_writes
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    device_events,
    devices,
    frames,
    positions,
    presence,
    security_events,
)
from firmware import fixframe, topics
from firmware import frame as fr
from tests.backend.conftest import T0
from tests.backend.frames import acked, home_frame, tag_frame

TAG_ID = 1001
OTHER_TAG = 1002
UNIT_ID = 2001


class Recorder(RuleSink):
    def __init__(self) -> None:
        self.committed: list[StoredFrame] = []
        self.rejected: list[Rejection] = []

    def frames_committed(self, stored: Sequence[StoredFrame], now: float) -> None:
        self.committed += stored

    def frames_rejected(self, rejections: Sequence[Rejection], now: float) -> None:
        self.rejected += rejections


class Harness:
    def __init__(self, engine: Engine, registry: Registry, clock: ManualClock) -> None:
        self.engine = engine
        self.published: list[tuple[str, bytes]] = []
        self.rules = Recorder()
        self.unit = registry.register(UNIT_ID, HOME_UNIT)
        self.tag = registry.register(TAG_ID, TAG, home_unit=UNIT_ID)
        self.other = registry.register(OTHER_TAG, TAG)
        self.ingest = Ingest(
            engine,
            DeviceDirectory(registry),
            self._publish,
            Settings(late_after_s=300, replay_after_s=3600),
            clock,
            self.rules,
        )

    def _publish(self, topic: str, payload: bytes) -> bool:
        self.published.append((topic, payload))
        return True

    def send(self, *msgs: tuple[str, bytes]) -> None:
        self.ingest.process([Message(t, p) for t, p in msgs])

    def acks(self, device: Device) -> set[tuple[int, int]]:
        topic = topics.tag_down(device.id) if device.kind == TAG else topics.home_down(device.id)
        out: set[tuple[int, int]] = set()
        for t, p in self.published:
            if t == topic:
                out |= acked(p, device.key)
        return out

    def count(self, table: object) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


@pytest.fixture
def h(engine: Engine, registry: Registry, clock: ManualClock) -> Harness:
    return Harness(engine, registry, clock)


def up(
    h: Harness, seq: int, ts: int = T0 + 3500, fixes: int = 1, **kw: object
) -> tuple[str, bytes]:
    return topics.tag_up(TAG_ID), tag_frame(TAG_ID, h.tag.key, seq, ts, fixes, **kw)  # type: ignore[arg-type]


def test_stores_positions_and_acks_after_commit(h: Harness) -> None:
    h.send(up(h, 1, fixes=10), up(h, 2, fixes=1))
    assert h.count(frames) == 2
    assert h.count(positions) == 11
    assert h.acks(h.tag) == {(1, 1), (1, 2)}
    # One ACK frame for both (a range), signed with the tag's key, sent to the tag's topic.
    assert len(h.published) == 1
    with h.engine.connect() as conn:
        ts = [r.ts for r in conn.execute(select(positions.c.ts).order_by(positions.c.id))]
        raw = conn.execute(select(frames.c.raw).where(frames.c.seq == 1)).scalar_one()
    assert sorted(ts) == ts and ts[-1] == T0 + 3500 and ts[0] == T0 + 3500 - 9 * 60
    assert fr.decode(raw, h.tag.key).seq == 1  # the raw frame is kept, verifiable as evidence
    assert [s.frame.seq for s in h.rules.committed] == [1, 2]


def test_duplicates_are_stored_once_and_acked_again(h: Harness) -> None:
    h.send(up(h, 1), up(h, 1))  # twice in one batch
    h.send(up(h, 1), up(h, 2))  # and again later (the first ACK was lost)
    h.ingest.guard.forget(TAG_ID)  # as another worker would see it: the database decides
    h.send(up(h, 2), up(h, 1))
    assert h.count(frames) == 2
    assert h.count(positions) == 2
    assert h.acks(h.tag) == {(1, 1), (1, 2)}
    assert h.ingest.counts["duplicates"] == 4
    assert h.count(security_events) == 0  # a prompt retransmission is not an attack
    assert len(h.rules.committed) == 2


def test_old_duplicate_is_a_replay_event_but_changes_nothing(
    h: Harness, clock: ManualClock
) -> None:
    h.send(up(h, 5))
    clock.advance(7200)  # beyond replay_after_s
    h.ingest.guard.forget(TAG_ID)
    h.send(up(h, 5))
    assert h.count(frames) == 1 and h.count(positions) == 1
    with h.engine.connect() as conn:
        ev = conn.execute(select(security_events)).one()
    assert ev.reason == "replay" and ev.device == TAG_ID
    assert h.ingest.rejections[("replay", TAG_ID)] == 1


def test_old_duplicate_is_a_replay_even_when_this_worker_remembers_it(
    h: Harness, clock: ManualClock
) -> None:
    # The worker's in-memory guard knows the frame (a worker running for days): the database
    # still decides whether it came long after it was stored.
    h.send(up(h, 5))
    clock.advance(7200)
    h.send(up(h, 5))
    assert h.count(frames) == 1
    assert h.ingest.rejections[("replay", TAG_ID)] == 1
    assert h.acks(h.tag) == {(1, 5)}  # still acknowledged: harmless, it names a stored frame


def test_retained_status_copy_is_known_state_never_a_replay(h: Harness, clock: ManualClock) -> None:
    status = topics.home_status(UNIT_ID)
    online = home_frame(UNIT_ID, h.unit.key, 1, T0, [fr.Record(fr.LINK, dt=0, state=1)])
    # The broker's retained copy of a status never seen: the unit's state, stored and acked;
    # but no sign of contact now (the unit may have gone days ago).
    h.ingest.process([Message(status, online, retained=True)])
    assert h.count(frames) == 1 and h.acks(h.unit) == {(1, 1)}
    with h.engine.connect() as conn:
        unit = conn.execute(select(devices).where(devices.c.id == UNIT_ID)).one()
    assert unit.last_seen_at is None and unit.last_event_at == T0
    published = len(h.published)
    clock.advance(7200)  # beyond replay_after_s
    for forget in (False, True):  # whether or not this worker's guard remembers it
        if forget:
            h.ingest.guard.forget(UNIT_ID)
        h.ingest.process([Message(status, online, retained=True)])
    assert h.count(frames) == 1 and h.count(security_events) == 0
    assert h.ingest.counts["retained_known"] == 2 and h.ingest.counts["duplicates"] == 2
    assert len(h.published) == published  # known state: not acknowledged again
    # Live, the same old frame is a replay; and retained elsewhere than on a status topic is
    # nothing the protocol does, so it gets no exemption either.
    h.ingest.process([Message(status, online)])
    h.send(up(h, 7))
    with h.engine.connect() as conn:  # a frame received live is contact
        seen = conn.execute(select(devices.c.last_seen_at).where(devices.c.id == TAG_ID))
        assert seen.scalar_one() == clock.now()
    clock.advance(7200)
    h.ingest.process([Message(topics.tag_up(TAG_ID), up(h, 7)[1], retained=True)])
    assert h.ingest.rejections[("replay", UNIT_ID)] == 1
    assert h.ingest.rejections[("replay", TAG_ID)] == 1
    assert h.count(frames) == 2


def test_bad_frames_rejected_with_reason_and_nothing_stored_is_touched(h: Harness) -> None:
    h.send(up(h, 1))
    before = (h.count(frames), h.count(positions))
    good = tag_frame(TAG_ID, h.tag.key, 2, T0 + 3500)
    forged = bytearray(good)
    forged[25] ^= 1  # a moved position, signed by nobody
    unknown = tag_frame(4242, h.tag.key, 1, T0 + 3500)
    wrong_key = tag_frame(TAG_ID, h.other.key, 3, T0 + 3500)
    foreign = tag_frame(OTHER_TAG, h.other.key, 1, T0 + 3500)  # valid, on TAG_ID's topic
    h.send(
        (topics.tag_up(TAG_ID), b"\x01\x02garbage"),
        (topics.tag_up(TAG_ID), bytes(forged)),
        (topics.tag_up(4242), unknown),
        (topics.tag_up(TAG_ID), wrong_key),
        (topics.tag_up(TAG_ID), foreign),
        (topics.home_up(UNIT_ID), good),  # a tag frame posing as the unit's own
    )
    assert (h.count(frames), h.count(positions)) == before
    with h.engine.connect() as conn:
        reasons = sorted(r.reason for r in conn.execute(select(security_events.c.reason)))
    assert reasons == ["mac", "mac", "short", "topic", "topic", "unknown_device"]
    assert h.ingest.rejections[("mac", TAG_ID)] == 2
    assert h.ingest.rejections[("unknown_device", 4242)] == 1
    assert h.acks(h.tag) == {(1, 1)}  # nothing rejected was acknowledged
    assert len(h.rules.rejected) == 6
    # The pipeline goes on: a good frame after the bad ones is stored.
    h.send(up(h, 2))
    assert h.count(frames) == 2


def test_frames_are_parsed_and_verified_by_the_codec(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One meaning of a good frame: ingest parses every payload with the codec's receiving
    side (firmware/fixframe.py) and checks every MAC with the codec's verify, never with a
    check of its own, so a fix to either reaches ingest."""
    parsed: list[bytes] = []
    verified: list[tuple[int, bytes]] = []
    real_parse, real_verify = fixframe.parse, fr.verify

    def parse(data: bytes) -> fixframe.Parsed:
        parsed.append(data)
        return real_parse(data)

    def verify(f: fr.Frame, key: bytes) -> fr.Frame:
        verified.append((f.seq, key))
        return real_verify(f, key)

    monkeypatch.setattr(fixframe, "parse", parse)
    monkeypatch.setattr(fr, "verify", verify)
    battery = fr.Record(fr.BATTERY, dt=0, level=50, flags=0, mv=3900, hours_left=20)
    msgs = (
        up(h, 1, fixes=3),  # the codec's fast path
        up(h, 2, extra=[battery]),  # its general parse
        (topics.tag_up(TAG_ID), tag_frame(TAG_ID, h.other.key, 3, T0 + 3500)),  # wrong key
    )
    h.send(*msgs)
    assert parsed == [p for _t, p in msgs]
    assert verified == [(1, h.tag.key), (2, h.tag.key), (3, h.tag.key)]
    assert h.acks(h.tag) == {(1, 1), (1, 2)}
    assert h.ingest.rejections[("mac", TAG_ID)] == 1


def test_relayed_frame_verified_with_the_tags_key_and_acked_to_the_tag(h: Harness) -> None:
    relay = topics.home_relay(UNIT_ID)
    h.send((relay, tag_frame(TAG_ID, h.tag.key, 7, T0 + 3500)))
    # The home unit cannot sign for the tag.
    h.send((relay, tag_frame(TAG_ID, h.unit.key, 8, T0 + 3500)))
    with h.engine.connect() as conn:
        row = conn.execute(select(frames)).one()
    assert (row.seq, row.via_unit) == (7, UNIT_ID)
    assert h.acks(h.tag) == {(1, 7)}
    assert h.ingest.rejections[("mac", TAG_ID)] == 1


def test_home_unit_frames_store_presence_and_events(h: Harness) -> None:
    recs = [
        fr.Record(fr.PRESENCE, dt=30, home_unit=UNIT_ID, tag=TAG_ID, state=fr.HOME, rssi=-61),
        fr.Record(fr.HOME_POWER, dt=10, mains=0, battery=88),
    ]
    h.send((topics.home_up(UNIT_ID), home_frame(UNIT_ID, h.unit.key, 1, T0 + 3500, recs)))
    with h.engine.connect() as conn:
        p = conn.execute(select(presence)).one()
        e = conn.execute(select(device_events)).one()
    assert (p.tag, p.home_unit, p.state, p.rssi, p.ts) == (TAG_ID, UNIT_ID, 1, -61, T0 + 3470)
    assert (e.device, e.kind, e.ts, e.data["mains"]) == (UNIT_ID, "home_power", T0 + 3490, 0)
    assert h.acks(h.unit) == {(1, 1)}


def test_late_and_out_of_order_frames_flagged_and_kept_in_event_time(h: Harness) -> None:
    h.send(up(h, 10, ts=T0 + 3500))
    h.send(up(h, 8, ts=T0 + 3400), up(h, 11, ts=T0 + 3550))  # 8 arrives after 10
    h.send(up(h, 3, ts=T0 + 100))  # a backlog from an hour ago
    with h.engine.connect() as conn:
        late = {r.seq: r.late for r in conn.execute(select(frames.c.seq, frames.c.late))}
        trail = [
            r.ts
            for r in conn.execute(
                select(positions.c.ts).where(positions.c.device == TAG_ID).order_by(positions.c.ts)
            )
        ]
        last = conn.execute(select(devices.c.last_event_at).where(devices.c.id == TAG_ID))
    assert late == {10: False, 8: True, 11: False, 3: True}
    assert trail == [T0 + 100, T0 + 3400, T0 + 3500, T0 + 3550]
    assert last.scalar_one() == T0 + 3550
    assert {s.frame.seq: s.late for s in h.rules.committed} == late


def test_frame_without_calendar_time_is_kept_but_not_placed(h: Harness) -> None:
    h.send(up(h, 1, ts=500, flags=0))
    assert h.count(frames) == 1 and h.count(positions) == 0
    with h.engine.connect() as conn:
        e = conn.execute(select(device_events)).one()
    assert (e.kind, e.ts, e.data["since_boot"], e.late) == ("fix", None, 500, False)
    assert h.acks(h.tag) == {(1, 1)}


def test_failed_commit_stores_and_acks_nothing_and_retry_succeeds(
    engine: Engine, registry: Registry, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(engine, registry, clock)

    class Broken(Exception):
        pass

    def fail(*a: object, **k: object) -> None:
        raise Broken

    with monkeypatch.context() as m:
        m.setattr(frame_writes, "update_devices", fail)  # the last write of the transaction
        with pytest.raises(Broken):
            h.send(up(h, 1), up(h, 2))
    assert h.count(frames) == 0 and h.published == []
    h.send(up(h, 1), up(h, 2))  # the broker redelivers: not mistaken for duplicates
    assert h.count(frames) == 2 and h.acks(h.tag) == {(1, 1), (1, 2)}


def test_ack_ranges() -> None:
    assert ack_ranges([(1, 5), (1, 3), (1, 4), (2, 1), (1, 9)]) == [(1, 3, 5), (1, 9, 9), (2, 1, 1)]
    assert ack_ranges([]) == []


def test_frames_dated_outside_the_plausible_window_are_counted_rejections(
    h: Harness, clock: ManualClock
) -> None:
    """A correctly signed frame dated 1970, 2106 (ts=0xFFFFFFFF), an hour and more ahead of
    backend now or further behind it than a device can hold data is not stored: a security
    event with reason `time` and the raw frame, counted, and acknowledged (retrying cannot
    mend the device's clock). The rest of the batch is stored as usual."""
    now = int(clock.now())
    misdated = [0, 0xFFFFFFFF, now + FRAME_AHEAD_S + 1, now - FRAME_AGE_S - 1]
    good = [now + FRAME_AHEAD_S, now - FRAME_AGE_S + 60, now]
    msgs = [up(h, seq, ts) for seq, ts in enumerate(misdated + good, start=1)]
    other = (topics.tag_up(OTHER_TAG), tag_frame(OTHER_TAG, h.other.key, 1, now))
    h.send(*msgs[:2], other, *msgs[2:])
    assert h.count(frames) == 4 and h.count(positions) == 4
    with h.engine.connect() as conn:
        stored = {r.ts for r in conn.execute(select(frames.c.ts))}
        events = conn.execute(select(security_events).order_by(security_events.c.id)).all()
    assert stored == set(good)
    assert [(e.reason, e.device) for e in events] == [("time", TAG_ID)] * 4
    assert [fr.decode(e.raw, h.tag.key).ts for e in events] == misdated
    assert "ahead" in events[0].detail or "behind" in events[0].detail
    assert h.ingest.rejections[("time", TAG_ID)] == 4
    assert h.acks(h.tag) == {(1, s) for s in range(1, 8)}
    assert [r.reason for r in h.rules.rejected] == ["time"] * 4
    assert {s.frame.ts for s in h.rules.committed} == {*good}
    # A home unit's status is exempt from the age bound: its retained online frame and its
    # last will are signed when it connects, which may have been months ago.
    will = home_frame(UNIT_ID, h.unit.key, 1, now - FRAME_AGE_S - 86400, [
        fr.Record(fr.LINK, dt=0, state=fr.LINK_OFFLINE)])  # fmt: skip
    h.send((topics.home_status(UNIT_ID), will))
    assert h.count(frames) == 5 and h.ingest.rejections[("time", UNIT_ID)] == 0


def lose_the_next_commit_answer(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The engine's next commit goes through on the server and then the connection dies
    before its answer arrives; the list returned holds True once that has happened."""
    import sqlite3

    import psycopg

    commit = engine.dialect.do_commit
    lost: list[bool] = []

    def commit_then_lose_the_answer(dbapi_conn: Any) -> None:
        commit(dbapi_conn)  # committed on the server
        if lost:
            return
        lost.append(True)
        getattr(dbapi_conn, "dbapi_connection", dbapi_conn).close()  # the socket is gone
        error = psycopg.OperationalError if engine.dialect.name == "postgresql" else None
        raise (error or sqlite3.OperationalError)("server closed the connection unexpectedly")

    monkeypatch.setattr(engine.dialect, "do_commit", commit_then_lose_the_answer)
    return lost


def test_a_batch_retried_after_its_commit_answer_was_lost_stores_nothing_twice(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database commits the batch, then the connection dies before the answer reaches the
    # worker (a primary killed in that instant; docs/scaling.md, "Database failover"). The
    # worker sees an error and runs the same batch again, as IngestWorker.run_once does.
    from sqlalchemy.exc import DBAPIError

    lost = lose_the_next_commit_answer(h.engine, monkeypatch)
    tamper = fr.Record(fr.TAMPER, dt=0, sensor=1, state=1)  # the strap opened
    batch = [up(h, 1, fixes=10), up(h, 2, fixes=3, extra=[tamper]), up(h, 3)]
    with pytest.raises(DBAPIError):
        h.send(*batch)
    assert lost and h.published == [] and h.rules.committed == []  # nothing told, yet stored
    assert h.count(frames) == 3
    h.send(*batch)  # the retry
    assert h.count(frames) == 3
    assert h.count(positions) == 14
    assert h.count(device_events) == 1  # the tamper once
    assert h.acks(h.tag) == {(1, 1), (1, 2), (1, 3)}
    # The rules never saw the first attempt's frames (it failed before handing them over):
    # they get them now, once each, though the retry found them stored.
    assert sorted(s.frame.seq for s in h.rules.committed) == [1, 2, 3]
    h.send(*batch)  # an ordinary retransmission later: a duplicate, for storage and rules
    assert sorted(s.frame.seq for s in h.rules.committed) == [1, 2, 3]
