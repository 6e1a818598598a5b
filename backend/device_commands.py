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
every broker, as the rules' commands are."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, func, insert, select, update

from backend.storage.database import IMMEDIATE
from backend.storage.schema import command_queue, device_commands
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


QUEUE_BATCH = 200  # queued commands one timer tick sends; the rest go at the next


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
) -> tuple[int, bytes]:
    """(sequence, signed COMMAND frame) for the records, recorded in device_commands (with
    `code` and `value` saying what it was) in the caller's transaction."""
    seq = next_seq(conn, device)
    conn.execute(
        insert(device_commands).values(
            device=device, seq=seq, key=code, value=value, reason=reason[:64], at=now
        )
    )
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
