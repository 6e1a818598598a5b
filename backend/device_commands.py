"""The backend's commands to its devices, numbered and signed in one place (docs/protocol.md,
COMMAND): the rules' fast sampling (backend/rules/sink.py), a subject's zones (backend/
zone_push.py) and the commands an operator queues (command_queue: a tag's broker list,
backend/services/broker_push.py) all take the device's next command sequence here and are
recorded in device_commands with it, so a tag sees one increasing sequence whoever sent what.

Operator commands are queued by processes without a broker connection (the API, the shell)
and sent by an ingest worker (`send_queued`, from its rules timer): the sequence is taken when
the command goes out, never at queueing, so a command the rules send meanwhile cannot overtake
a queued one and get it refused as a replay. A queued command is claimed and numbered in one
transaction (a second worker finds it claimed); the frame is published after the commit, on
every broker, as the rules' commands are.

Some commands matter only if the device ran them: a victim's warning (docs/protocol.md,
"Victim device") has a `Resend` policy (its timing: the settings' victim_warning_*), and
numbering one starts its delivery
(command_deliveries). At every rules tick `resend_due` looks at the deliveries due: one that
any of its sends was answered as run (a command_result ok, or duplicate: ran already) is
acknowledged; otherwise it goes again under a new number (a device refuses an old number as a
replay, docs/firmware.md, "Commands and acknowledgements"), up to the policy's sends; `every_s`
after the last, it is unreached and the caller tells the on-call officer (backend/rules/
delivery.py), whose alert the delivery then names. The timer that sends the queued commands
sends these: one loop, one place.

An answer that comes after that verdict (`answered_late`, called by the rules' hand-over of
each batch that stored one) marks the delivery answered_late, once, and the caller notes it
on that alert: the officer sees the victim's device has shown the warning after all."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, func, insert, select, update

from backend.settings import Settings
from backend.storage.database import IMMEDIATE
from backend.storage.schema import (
    command_deliveries,
    command_queue,
    device_commands,
    device_events,
    frames,
)
from firmware import frame as fr
from firmware.brokers import endpoint

log = structlog.get_logger("tagwatch.commands")

BROKERS = "brokers"  # command_queue.kind of a broker list (cmd_broker)
# device_commands.key of a cmd_broker frame: its record type (cmd_config keys are 1-8, a
# cmd_zone frame is 0).
BROKER_COMMAND_KEY = fr.CMD_BROKER
# device_commands.key of a cmd_notify frame: its record type times 256 plus its message
# (the proximity rule's are 1 and 2), so a warning and an alert are told apart.
NOTIFY_COMMAND_KEYS = range(fr.CMD_NOTIFY << 8, (fr.CMD_NOTIFY + 1) << 8)


def notify_key(message: int) -> int:
    """device_commands.key of a cmd_notify frame with this message."""
    key = NOTIFY_COMMAND_KEYS.start + message
    if key not in NOTIFY_COMMAND_KEYS:
        raise ValueError(f"notify message {message} out of the recorded range 0-255")
    return key


def notify_message(key: int) -> int:
    """The message of a cmd_notify frame recorded under device_commands.key `key`."""
    return key - NOTIFY_COMMAND_KEYS.start


@dataclass(frozen=True)
class Resend:
    """How a command its device must acknowledge goes again: while none of its sends has
    been acknowledged, every `every_s` from the first send, `sends` sends in all; `every_s`
    after the last it is unreached. Each is done at the first rules tick from its time (the
    timer, every 30 s by default), and the device always has at least `every_s / 2` to answer
    a send; so with ticks at most `every_s / 2` apart the verdict comes between `bound_s` and
    `bound_s` + one tick after the first send."""

    every_s: float
    sends: int

    @property
    def bound_s(self) -> float:
        return self.every_s * self.sends

    @classmethod
    def warnings(cls, settings: Settings) -> Resend:
        """A victim's warning's. By default the device answers at once with an urgent frame,
        seconds over a phone's network, so a minute is a generous wait; after three sends
        (three minutes) the officer is told the victim may not know, soon enough to phone
        them."""
        return cls(settings.victim_warning_resend_s, settings.victim_warning_sends)


# Results that say the device ran the command (5: it had run it already, a second copy).
RAN = (fr.RESULT_OK, fr.RESULT_DUPLICATE)
# A device's answer is looked for among its command results stored from this long before
# the command was first sent (by the backend's clock: the device's own may be far off; this
# allows for the clocks of the worker that sent it and the one that stored the answer).
ANSWER_SLACK_S = 300


def resend_policy(code: int, warnings: Resend) -> Resend | None:
    """The policy of a command recorded under device_commands.key `code` (None: sent once),
    given the warnings' (Resend.warnings)."""
    return warnings if code in NOTIFY_COMMAND_KEYS else None


@dataclass(frozen=True)
class Unreached:
    """A command none of whose sends its device acknowledged within its policy's bound."""

    device: int
    key: int  # device_commands.key
    value: int  # device_commands.value (a warning: the proximity episode's start)
    seqs: tuple[int, ...]  # the command sequences it went under
    sent_at: tuple[float, ...]  # and when
    at: float  # backend time it was given up


@dataclass(frozen=True)
class LateAnswer:
    """A send of a delivery already given up, answered as run by its device afterwards."""

    device: int
    key: int  # device_commands.key
    seq: int  # the send's command sequence
    sent_at: float  # and when it went
    alert_id: int | None  # the alert the officer was told by (command_deliveries.alert_id)


QUEUE_BATCH = 200  # queued (or due again) commands one timer tick sends; the rest at the next


def digest(text: str) -> int:
    """A digest of a command's content (device_commands.value: signed 64-bit, so 62 bits)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 2


def next_seq(conn: Connection, device: int) -> int:
    last = conn.execute(
        select(func.max(device_commands.c.seq)).where(device_commands.c.device == device)
    ).scalar()
    return int(last or 0) + 1


def numbered(
    conn: Connection,
    device: int,
    recs: Sequence[fr.Record],
    key: bytes,
    *,
    code: int,
    value: int,
    reason: str,
    now: float,
    resend: Resend | None = None,
) -> tuple[int, bytes]:
    """(sequence, signed COMMAND frame) for the records, recorded in device_commands (with
    `code` and `value` saying what it was) in the caller's transaction; the first send of a
    command with a Resend policy (`resend`: resend_policy's) starts its delivery."""
    seq = next_seq(conn, device)
    conn.execute(
        insert(device_commands).values(
            device=device, seq=seq, key=code, value=value, reason=reason[:64], at=now
        )
    )
    d = command_deliveries.c
    if (
        resend is not None
        and not conn.execute(
            select(d.id).where(d.device == device, d.key == code, d.value == value)
        ).first()
    ):
        # Its first send: resend_due sends it again, or gives it up, from here.
        conn.execute(
            insert(command_deliveries).values(
                device=device, key=code, value=value, sends=1, first_at=now,
                next_at=now + resend.every_s, outcome=None, settled_at=None,
            )
        )  # fmt: skip
    frame = fr.Frame(fr.COMMAND, device, 0, seq, int(now), list(recs), fr.FLAG_TIME_VALID)
    return seq, fr.encode(frame, key)


def broker_records(brokers: Sequence[tuple[str, int]]) -> list[fr.Record]:
    """The cmd_broker records of one list, in order (docs/protocol.md, "Brokers and login")."""
    return [fr.Record(fr.CMD_BROKER, port=port, extra=host.encode()) for host, port in brokers]


def _queued_frame(kind: str, body: Any) -> tuple[list[fr.Record], int, int]:
    """(records, device_commands key, value) of a queued command."""
    if kind != BROKERS:
        raise ValueError(f"unknown queued command kind {kind!r}")
    return broker_records([endpoint(b) for b in body]), BROKER_COMMAND_KEY, digest(";".join(body))


def send_queued(
    engine: Engine, key_for: Callable[[int], bytes | None], now: float, limit: int = QUEUE_BATCH
) -> tuple[list[tuple[int, bytes]], int]:
    """Number and sign the oldest queued commands, each claimed in a transaction of its own:
    ([(device, frame)] to publish, how many were dropped: the device has no key any more
    (retired since) or the entry cannot be built, either marked sent without a sequence so it
    is not tried again). A command whose transaction fails stays queued for the next call."""
    q = command_queue.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(command_queue).where(q.sent_at.is_(None)).order_by(q.id).limit(limit)
        ).all()
    out: list[tuple[int, bytes]] = []
    dropped = 0
    for row in rows:
        device = int(row.device)
        key = key_for(device)
        try:
            built = _queued_frame(row.kind, row.body)
        except ValueError:
            log.error("queued command cannot be built; dropped", id=row.id, kind=row.kind)
            built = None
        try:
            with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
                claim = update(command_queue).where(q.id == row.id, q.sent_at.is_(None))
                if conn.execute(claim.values(sent_at=now)).rowcount != 1:
                    continue  # another worker sent it
                if key is None or built is None:
                    dropped += 1
                    continue
                recs, code, value = built
                seq, data = numbered(
                    conn, device, recs, key, code=code, value=value, reason=row.kind, now=now
                )
                conn.execute(update(command_queue).where(q.id == row.id).values(seq=seq))
        except Exception:
            log.exception("queued command not sent; retried later", id=row.id, device=device)
            continue
        out.append((device, data))
    return out, dropped


def answers(
    conn: Connection, sent: Iterable[tuple[int, int]], since: float
) -> dict[tuple[int, int], int]:
    """(device, command sequence) -> the device's command_result for it, among the results
    stored from ANSWER_SLACK_S before `since` (when the first of them was sent). A result that
    says it ran wins over any other, ok over duplicate (the same command reached the device
    twice, or a refusal of a replayed copy came after it)."""
    want = set(sent)
    if not want:
        return {}
    e = device_events.c
    rows = conn.execute(
        select(e.device, e.data)
        .join(frames, frames.c.id == e.frame_id)
        .where(
            e.device.in_({d for d, _ in want}),
            e.kind == "command_result",
            frames.c.received_at >= since - ANSWER_SLACK_S,
        )
    )
    rank = {fr.RESULT_OK: 0, fr.RESULT_DUPLICATE: 1}
    out: dict[tuple[int, int], int] = {}
    for device, data in rows:
        k, result = (int(device), int(data["cmd_seq"])), int(data["result"])
        if k in want and (k not in out or rank.get(result, 2) < rank.get(out[k], 2)):
            out[k] = result
    return out


def resend_due(
    engine: Engine,
    key_for: Callable[[int], bytes | None],
    records_for: Callable[[int], list[fr.Record]],
    now: float,
    on_unreached: Callable[[Connection, Unreached], int | None],
    warnings: Resend,
    limit: int = QUEUE_BATCH,
) -> list[tuple[int, bytes]]:
    """Settle or send again the deliveries due by `now` (oldest first, at most `limit`), each
    claimed in a transaction of its own (a second worker finds it claimed): acknowledged if
    any of its sends was answered as run; else sent again under a new number (its records
    from `records_for(key)`) while its policy allows; else unreached, handed to
    `on_unreached` in the same transaction, which returns the alert it raised (recorded with
    the delivery; a device with no key any more cannot be sent to either). The policy is the
    one in force now (`warnings`, Resend.warnings). Returns [(device, frame)] to publish. A
    delivery whose transaction fails stays due for the next call."""
    d, c = command_deliveries.c, device_commands.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(command_deliveries).where(d.next_at <= now).order_by(d.next_at).limit(limit)
        ).all()
    out: list[tuple[int, bytes]] = []
    for row in rows:
        policy = resend_policy(row.key, warnings)
        assert policy is not None  # deliveries are made only for commands with a policy
        try:
            with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
                # On the schedule of the first send (a tick's delay does not add up over the
                # sends), but never less than half a wait for the device to answer.
                due = max(row.next_at + policy.every_s, now + policy.every_s / 2)
                mine = update(command_deliveries).where(d.id == row.id, d.next_at == row.next_at)
                if conn.execute(mine.values(next_at=due)).rowcount != 1:
                    continue  # another worker settled or sent it
                sends = conn.execute(
                    select(c.seq, c.at)
                    .where(c.device == row.device, c.key == row.key, c.value == row.value)
                    .order_by(c.seq)
                ).all()
                found = answers(conn, [(row.device, s.seq) for s in sends], row.first_at)
                settle = update(command_deliveries).where(d.id == row.id)
                if any(r in RAN for r in found.values()):
                    done = settle.values(outcome="acknowledged", settled_at=now, next_at=None)
                    conn.execute(done)
                    continue
                key = key_for(row.device)
                if row.sends < policy.sends and key is not None:
                    _, data = numbered(
                        conn, row.device, records_for(row.key), key, code=row.key,
                        value=row.value, reason="sent again: not acknowledged", now=now,
                        resend=policy,
                    )  # fmt: skip
                    conn.execute(settle.values(sends=row.sends + 1))
                    out.append((row.device, data))
                    continue
                alert = on_unreached(
                    conn,
                    Unreached(
                        row.device, row.key, row.value, tuple(s.seq for s in sends),
                        tuple(s.at for s in sends), now,
                    ),
                )  # fmt: skip
                conn.execute(
                    settle.values(outcome="unreached", settled_at=now, next_at=None, alert_id=alert)
                )
        except Exception:
            log.exception("command delivery not settled; tried again later", id=row.id)
    return out


def answered_late(
    engine: Engine,
    ran: Iterable[tuple[int, int]],
    on_late: Callable[[Connection, LateAnswer], None],
) -> int:
    """Of the (device, command sequence) pairs a batch just stored answers to, saying the
    command ran: those answering a send of a delivery already given up mark it answered_late
    and go to `on_late`, in the same transaction; how many. Once per delivery: a second answer
    (another send's, a duplicate) finds it marked. Nearly every answer is to a command with
    no delivery, or one settled as acknowledged: one read finds that, and nothing is written.
    A delivery still in flight is read too, then locked — waiting for a verdict being taken
    as the answer was stored — and marked only if that verdict gave it up; one still in flight
    after the wait will see the answer at its verdict. So no answer falls between the two."""
    want = set(ran)
    if not want:
        return 0
    c, d = device_commands.c, command_deliveries.c
    same = (d.device == c.device) & (d.key == c.key) & (d.value == c.value)
    with engine.connect() as conn:
        rows = conn.execute(
            select(d.id, c.device, c.key, c.seq, c.at)
            .join(command_deliveries, same)
            .where(
                c.device.in_({dev for dev, _ in want}),
                c.seq.in_({seq for _, seq in want}),
                d.outcome.is_(None) | (d.outcome == "unreached"),
            )
            .order_by(c.device, c.seq)
        ).all()
    rows = [r for r in rows if (r.device, r.seq) in want]
    if not rows:
        return 0
    done = 0
    for r in rows:
        # One transaction a delivery: none holds an alert it noted while it waits for
        # another delivery's verdict, which may be adding to that same alert.
        with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            # A verdict being taken holds the row; only a locking read waits for it. The
            # conditional update alone judges the version it can see — in flight — and
            # PostgreSQL then neither waits nor matches: the answer was lost between them.
            conn.execute(select(d.id).where(d.id == r.id).with_for_update()).first()
            mark = (
                update(command_deliveries)
                .where(d.id == r.id, d.outcome == "unreached")
                .values(outcome="answered_late")
                .returning(d.alert_id)
            )
            marked = conn.execute(mark).first()
            if marked is None:
                continue  # in flight (the rules tick acknowledges it), or marked already
            done += 1
            on_late(conn, LateAnswer(r.device, r.key, r.seq, r.at, marked.alert_id))
    return done
