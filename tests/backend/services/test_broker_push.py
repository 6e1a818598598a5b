"""A tag's broker list set by an operator, on real SQLite and PostgreSQL: the list checked
with a sentence for each fault, queued for one tag or a unit's pool, numbered and signed by
the rules timer's sink in turn with the rules' own commands, sent once however many workers
look, and its delivery read back from the tag's command_result as ingest stores it."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from backend.device_commands import BROKERS
from backend.rules.model import Command
from backend.rules.sink import MonitoringSink
from backend.services import broker_push, pool
from backend.services.errors import Invalid, NotFound
from backend.settings import Settings
from backend.storage.retention import DAY, purge
from backend.storage.schema import command_queue, device_commands
from firmware import frame as fr
from firmware import topics
from tests.backend.frames import tag_frame
from tests.backend.services.conftest import HOME, TAGS, Unit

A, B = "mqtt-a.example:8883", "mqtt-b.example:8883"


@pytest.mark.parametrize(
    ("entries", "sentence"),
    [
        ([], "Give at least one broker as host:port."),
        ([A, B, "c:1", "d:2", "e:3"], "A tag holds at most 4 brokers; 5 were given."),
        (["mqtt-a.example"], "Broker 'mqtt-a.example' must be host:port with a port from 1 to"),
        (["a:0"], "Broker 'a:0' must be host:port with a port from 1 to 65535"),
        (["a:65536"], "Broker 'a:65536' must be host:port with a port from 1 to 65535"),
        ([":1883"], "Broker ':1883' must be host:port"),
        (["a:-1"], "Broker 'a:-1' must be host:port"),
        (["h" * 60 + ":1883"], "at most 64 characters"),
        (["bröker:1883"], "must be host:port in plain ASCII, without spaces"),
        (["a b:1883"], "must be host:port in plain ASCII, without spaces"),
        (["a:١٨٨٣"], "must be host:port in plain ASCII"),  # digits isdigit() takes
        ([A, B, A], "Broker mqtt-a.example:8883 is listed twice."),
        (["Q:1883", "q:01883"], "Broker q:1883 is listed twice."),
    ],
)
def test_a_bad_list_is_refused_with_a_sentence(entries: list[str], sentence: str) -> None:
    with pytest.raises(Invalid) as e:
        broker_push.checked(entries)
    assert sentence in str(e.value)


def test_a_good_list_is_kept_in_order_as_the_tag_will_hold_it() -> None:
    assert broker_push.checked([B, A, "10.0.0.1:01884"]) == [B, A, "10.0.0.1:1884"]


def _sink(unit: Unit) -> MonitoringSink:
    keys = {d: dev.key for d, dev in unit.devices.items()}

    def publish(topic: str, payload: bytes) -> bool:
        unit.published.append((topic, payload))
        return True

    return MonitoringSink(unit.engine, unit.clock, publish, keys.get)


def _answer(unit: Unit, tag: int, seq: int, cmd_seq: int, result: int) -> None:
    """The tag's own signed frame answering command `cmd_seq`, through ingest."""
    rec = fr.Record(fr.COMMAND_RESULT, (0, cmd_seq, result))
    ts = int(unit.clock.now())
    unit.send(tag, [tag_frame(tag, unit.devices[tag].key, seq, ts, fixes=0, extra=[rec])])


def test_queued_for_a_unit_sent_once_in_sequence_and_answered(unit: Unit) -> None:
    now = unit.clock.now()
    with unit.engine.begin() as conn:
        for t in TAGS:
            pool.add(conn, t, unit.unit_id, unit.officer, now, "")
        pool.move(conn, TAGS[2], pool.RETIRED, unit.officer, now, "")
        tags = broker_push.target_tags(conn, None, unit.unit_id)
        assert tags == list(TAGS[:2])  # the retired one is left out
        listed = broker_push.checked([B, A])
        broker_push.queue(conn, listed, tags, "admin", now)
        assert [d.state for d in broker_push.deliveries(conn, tags)] == ["queued"] * 2
    sink = _sink(unit)
    # The rules ask for fast sampling of the first tag in the same tick, after the queued list
    # went out: its sequence is the next one, so the tag takes both.
    assert sink.send_queued(now) == 2
    assert sink.send_queued(now) == 0  # claimed: never sent twice
    with unit.engine.begin() as conn:
        sink._commands(conn, [Command(TAGS[0], 6, int(now) + 900, "near zone")], now)
        seqs = conn.execute(
            select(device_commands.c.device, device_commands.c.seq, device_commands.c.key).order_by(
                device_commands.c.id
            )
        ).all()
    assert [tuple(r) for r in seqs] == [
        (TAGS[0], 1, fr.CMD_BROKER), (TAGS[1], 1, fr.CMD_BROKER), (TAGS[0], 2, 6)
    ]  # fmt: skip
    (payload,) = [p for t, p in unit.published if t == topics.tag_down(TAGS[1])]
    frame = fr.decode(payload, unit.devices[TAGS[1]].key)
    assert frame.mtype == fr.COMMAND and frame.seq == 1
    assert [(bytes(r.extra).decode(), r.port) for r in frame.records] == [
        ("mqtt-b.example", 8883), ("mqtt-a.example", 8883)
    ]  # fmt: skip
    assert all(r.type == fr.CMD_BROKER for r in frame.records)
    # The first tag answers: taken (and again as a duplicate through its home unit); the
    # second refuses it.
    _answer(unit, TAGS[0], 1, 1, fr.RESULT_OK)
    _answer(unit, TAGS[0], 2, 1, fr.RESULT_DUPLICATE)
    _answer(unit, TAGS[1], 1, 1, fr.RESULT_BAD_ARGS)
    with unit.engine.connect() as conn:
        got = {d.tag: (d.seq, d.state, d.brokers) for d in broker_push.deliveries(conn, TAGS)}
    assert got == {TAGS[0]: (1, "taken", [B, A]), TAGS[1]: (1, "refused: bad arguments", [B, A])}


def test_the_newest_list_is_shown_and_a_tag_without_a_key_is_dropped(unit: Unit) -> None:
    now = unit.clock.now()
    tag = TAGS[0]
    with unit.engine.begin() as conn:
        broker_push.queue(conn, [A], [tag], "admin", now)
    sink = _sink(unit)
    sink.send_queued(now)
    with unit.engine.begin() as conn:
        broker_push.queue(conn, [B], [tag], "admin", now + 60)
        (d,) = broker_push.deliveries(conn, [tag])
        assert (d.brokers, d.state, d.seq) == ([B], "queued", None)
    sink.key_for = lambda _device: None  # retired meanwhile: the directory has no key
    assert sink.send_queued(now + 120) == 0
    assert sink.counts["commands_unsendable"] == 1
    with unit.engine.connect() as conn:
        (d,) = broker_push.deliveries(conn, [tag])
        assert (d.state, d.sent_at) == ("dropped", now + 120)
        assert conn.execute(select(command_queue.c.seq).order_by(command_queue.c.id)).scalars(
        ).all() == [1, None]  # fmt: skip


def test_an_entry_that_cannot_be_built_is_dropped_and_holds_up_nothing(unit: Unit) -> None:
    now = unit.clock.now()
    with unit.engine.begin() as conn:
        conn.execute(
            insert(command_queue).values(
                device=TAGS[0], kind=BROKERS, body=["no port"], actor="admin",
                queued_at=now,
            )
        )  # fmt: skip
        broker_push.queue(conn, [A], [TAGS[1]], "admin", now)
    sink = _sink(unit)
    assert sink.send_queued(now) == 1  # the good one
    assert sink.send_queued(now) == 0  # the bad one is not tried again
    assert sink.counts["commands_unsendable"] == 1
    with unit.engine.connect() as conn:
        got = {d.tag: d.state for d in broker_push.deliveries(conn, TAGS)}
    assert got == {TAGS[0]: "dropped", TAGS[1]: "sent"}


def test_targets_are_one_registered_tag_or_a_unit_with_tags(unit: Unit) -> None:
    with unit.engine.connect() as conn:
        for tag, unit_id, kind, sentence in (
            (None, None, Invalid, "Name either one tag or one unit."),
            (TAGS[0], unit.unit_id, Invalid, "Name either one tag or one unit."),
            (HOME, None, NotFound, f"No tag {HOME} is registered."),
            (9999, None, NotFound, "No tag 9999 is registered."),
            (None, 987, NotFound, "Unit 987 does not exist."),
            (None, unit.unit_id, Invalid, f"Unit {unit.unit_id} has no tags in its pool."),
        ):
            with pytest.raises(kind) as e:
                broker_push.target_tags(conn, tag, unit_id)
            assert str(e.value) == sentence
        assert broker_push.target_tags(conn, TAGS[1], None) == [TAGS[1]]


def test_retention_purges_lists_a_newer_sent_list_replaced_and_keeps_what_tags_hold(
    unit: Unit,
) -> None:
    # Tag 0: lists A then B sent, then A+B queued and not yet sent (B is what it holds).
    # Tag 1: A sent, long ago. Kept one day, purged three days later: only tag 0's A goes.
    now = unit.clock.now()
    sink = _sink(unit)
    with unit.engine.begin() as conn:
        broker_push.queue(conn, [A], [TAGS[0], TAGS[1]], "admin", now)
    sink.send_queued(now)
    with unit.engine.begin() as conn:
        broker_push.queue(conn, [B], [TAGS[0]], "admin", now + 60)
    sink.send_queued(now + 60)
    with unit.engine.begin() as conn:
        broker_push.queue(conn, [A, B], [TAGS[0]], "admin", now + 120)
        shown = broker_push.deliveries(conn, TAGS[:2])
    unit.clock.set(now + 3 * DAY)
    settings = Settings(retention_commands_days=1)
    assert purge(unit.engine, settings, unit.clock, actor="test")["command_queue"] == 1
    q = command_queue.c

    def left() -> list[tuple[int, list[str], int | None]]:
        with unit.engine.connect() as conn:
            rows = conn.execute(select(q.device, q.body, q.seq).order_by(q.id)).all()
        return [(r.device, r.body, r.seq) for r in rows]

    assert left() == [(TAGS[1], [A], 1), (TAGS[0], [B], 2), (TAGS[0], [A, B], None)]
    with unit.engine.connect() as conn:
        assert broker_push.deliveries(conn, TAGS[:2]) == shown  # what the pages show
    # Once A+B has gone, B may go too, when old enough; the last sent to each tag stays.
    sink.send_queued(now + 3 * DAY)
    unit.clock.set(now + 30 * DAY)
    assert purge(unit.engine, settings, unit.clock, actor="test")["command_queue"] == 1
    assert left() == [(TAGS[1], [A], 1), (TAGS[0], [A, B], 3)]
