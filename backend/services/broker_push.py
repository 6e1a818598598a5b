"""A tag's broker list set by an administrator (cmd_broker; docs/protocol.md, "Brokers and
login"), for one tag or every tag of a unit's pool: the list is checked as the tag checks it
(firmware.brokers: at most 4, host:port with a port 1-65535, at most 64 characters; here also
plain ASCII and no broker twice), queued for each tag (command_queue; an ingest worker
numbers, signs and publishes it at its next rules tick, backend/device_commands.py), and its
delivery read back: queued, sent (numbered and published on every broker), dropped (the tag
has no key any more), or the tag's answer (its command_result, stored with its frames).

The API (backend/api/routes/brokers.py) and the shell (`tagwatch backend brokers`) call these
and audit what they queued."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from backend.device_commands import BROKERS, answers
from backend.services import pool, units
from backend.services.errors import Invalid, NotFound
from backend.storage.schema import TAG, command_queue, devices
from firmware import frame as fr
from firmware.brokers import MAX_BROKERS, endpoint

# What a tag's command_result says of a cmd_broker frame (docs/protocol.md, record 0x0B).
RESULTS = {
    fr.RESULT_OK: "taken",
    fr.RESULT_BAD_MAC: "refused: bad MAC",
    fr.RESULT_REPLAY: "refused: replay",
    fr.RESULT_UNKNOWN: "refused: unknown command",
    fr.RESULT_BAD_ARGS: "refused: bad arguments",
    fr.RESULT_DUPLICATE: "duplicate",
}


def checked(entries: Sequence[str]) -> list[str]:
    """The list as the tag will hold it ("host:port", in order), or Invalid with a sentence
    naming what is wrong."""
    if not entries:
        raise Invalid("Give at least one broker as host:port.")
    if len(entries) > MAX_BROKERS:
        raise Invalid(f"A tag holds at most {MAX_BROKERS} brokers; {len(entries)} were given.")
    out: list[str] = []
    seen: set[str] = set()
    for e in entries:
        if not (e.isascii() and e.isprintable()) or " " in e:
            raise Invalid(f"Broker {e!r} must be host:port in plain ASCII, without spaces.")
        try:
            host, port = endpoint(e)
        except ValueError:
            raise Invalid(
                f"Broker {e!r} must be host:port with a port from 1 to 65535, "
                "at most 64 characters."
            ) from None
        name = f"{host}:{port}"
        if name.lower() in seen:
            raise Invalid(f"Broker {name} is listed twice.")
        seen.add(name.lower())
        out.append(name)
    return out


def target_tags(conn: Connection, tag: int | None, unit_id: int | None) -> list[int]:
    """The tags a command goes to: one registered tag, or every tag in a unit's pool."""
    if (tag is None) == (unit_id is None):
        raise Invalid("Name either one tag or one unit.")
    if tag is not None:
        row = conn.execute(select(devices).where(devices.c.id == tag)).first()
        if row is None or row.kind != TAG:
            raise NotFound(f"No tag {tag} is registered.")
        if row.retired_at is not None:
            raise Invalid(f"Tag {tag} is retired.")
        return [tag]
    assert unit_id is not None
    if not units.exists(conn, unit_id):
        raise NotFound(f"Unit {unit_id} does not exist.")
    found = pool.unit_tags(conn, unit_id)
    live = set(
        conn.execute(
            select(devices.c.id).where(devices.c.id.in_(found), devices.c.retired_at.is_(None))
        ).scalars()
    )
    tags = [t for t in found if t in live]
    if not tags:
        raise Invalid(f"Unit {unit_id} has no tags in its pool.")
    return tags


def queue(
    conn: Connection, brokers: Sequence[str], tags: Sequence[int], actor: str, now: float
) -> list[int]:
    """Queue the (checked) list for each tag; the queue entries' ids, in tag order."""
    ids = []
    for t in tags:
        ids.append(
            int(
                conn.execute(
                    insert(command_queue)
                    .values(
                        device=t, kind=BROKERS, body=list(brokers), actor=actor[:128],
                        queued_at=now,
                    )
                    .returning(command_queue.c.id)
                ).scalar_one()
            )
        )  # fmt: skip
    return ids


@dataclass
class Delivery:
    """Where one queued broker list is (the newest for its tag, or a given one)."""

    id: int
    tag: int
    brokers: list[str]
    actor: str
    queued_at: float
    seq: int | None  # the command sequence it was sent under
    sent_at: float | None
    result: int | None  # the tag's command_result, once stored
    state: str  # queued, sent, dropped, or RESULTS[result]


def deliveries(conn: Connection, tags: Sequence[int]) -> list[Delivery]:
    """The newest broker list queued for each of these tags (tags never sent one are left
    out), with what became of it."""
    q = command_queue.c
    newest = (
        select(q.device, q.id)
        .where(q.kind == BROKERS, q.device.in_(tags))
        .order_by(q.device, q.id.desc())
    )
    latest: dict[int, int] = {}
    for device, row_id in conn.execute(newest):
        latest.setdefault(int(device), int(row_id))
    rows = conn.execute(
        select(command_queue).where(q.id.in_(latest.values())).order_by(q.device)
    ).all()
    sent = [r for r in rows if r.seq is not None]
    since = min((float(r.sent_at) for r in sent), default=0.0)
    found = answers(conn, [(int(r.device), int(r.seq)) for r in sent], since)
    out = []
    for r in rows:
        result = found.get((int(r.device), r.seq)) if r.seq is not None else None
        if result is not None:
            state = RESULTS.get(result, f"result {result}")
        elif r.sent_at is None:
            state = "queued"
        else:
            state = "sent" if r.seq is not None else "dropped"
        out.append(
            Delivery(
                int(r.id), int(r.device), list(r.body), r.actor, float(r.queued_at), r.seq,
                r.sent_at, result, state,
            )
        )  # fmt: skip
    return out
