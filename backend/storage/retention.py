"""Retention: delete what is older than its data class's period, in small batches (each its
own short transaction, so neither ingest nor readers wait behind one long lock), and write
an audit record of every run, including runs that deleted nothing."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import Column, ColumnElement, Engine, Table, delete, exists, select

from backend.clock import Clock, SystemClock
from backend.rules.store import ACKNOWLEDGED, OPEN
from backend.security import audit
from backend.settings import Settings
from backend.storage.database import IMMEDIATE
from backend.storage.schema import (
    alerts,
    command_deliveries,
    command_queue,
    device_commands,
    device_events,
    frames,
    notification_outbox,
    notification_pages,
    positions,
    presence,
    security_events,
)

log = structlog.get_logger("tagwatch.retention")
DAY = 86_400


@dataclass(frozen=True)
class DataClass:
    name: str
    table: Table
    # Location and device data age by event time; evidence and security events by the
    # backend time they were received or raised.
    age_column: Column[int] | Column[float]
    # Rows that may go once old enough (None: all of them).
    done: ColumnElement[bool] | None = None


_outbox, _pages = notification_outbox.c, notification_pages.c
_deliveries, _commands = command_deliveries.c, device_commands.c
_newer = device_commands.alias("newer")
_queued = command_queue.c
_newer_queued = command_queue.alias("newer_queued")
DATA_CLASSES = (
    DataClass("positions", positions, positions.c.ts),
    DataClass("device_events", device_events, device_events.c.ts),
    DataClass("presence", presence, presence.c.ts),
    DataClass("frames", frames, frames.c.received_at),
    DataClass("security_events", security_events, security_events.c.at),
    # The dispatcher's finished work, by when it finished: a row still pending (deferred by
    # quiet hours, waiting for a retry or an escalation) is never old, whatever its age.
    DataClass(
        "notification_outbox", notification_outbox, _outbox.done_at, _outbox.state != "pending"
    ),
    # Pages by when they were sent, once no outbox row refers to one (after the outbox
    # class above, in the same run). What was sent to whom stays in the audit log.
    DataClass(
        "notification_pages",
        notification_pages,
        _pages.paged_at,
        ~exists().where(_outbox.page_id == _pages.id),
    ),
    # Deliveries of commands a device must acknowledge (a victim's warning), by when they
    # were settled: one still in flight (to be sent again, or judged) is never old, nor one
    # whose alert an officer is still working (open or acknowledged: it names the sends).
    DataClass(
        "command_deliveries",
        command_deliveries,
        _deliveries.settled_at,
        _deliveries.next_at.is_(None)
        & ~exists().where(
            alerts.c.id == _deliveries.alert_id, alerts.c.state.in_((OPEN, ACKNOWLEDGED))
        ),
    ),
    # The commands sent to devices, by when sent, once no delivery refers to one (after the
    # class above, in the same run). The newest of each (device, key) stays whatever its age:
    # the device's next command sequence follows the highest one recorded (a lower one is
    # refused as a replay), and what was last sent of each kind is what a repeat, or a zone
    # set, is checked against (backend/device_commands.py, backend/zone_push.py).
    DataClass(
        "device_commands",
        device_commands,
        _commands.at,
        exists().where(
            _newer.c.device == _commands.device,
            _newer.c.key == _commands.key,
            _newer.c.seq > _commands.seq,
        )
        & ~exists().where(
            _deliveries.device == _commands.device,
            _deliveries.key == _commands.key,
            _deliveries.value == _commands.value,
        ),
    ),
    # Commands an operator queued (a tag's broker list), by when sent, once a newer one has
    # gone to the same tag: one still queued has no such time and is never old, and the
    # last sent to each tag stays whatever its age (what the tag holds, and how it answered,
    # while a newer list waits or was dropped unsent; backend/services/broker_push.py).
    # Who queued what stays in the audit log.
    DataClass(
        "command_queue",
        command_queue,
        _queued.sent_at,
        exists().where(
            _newer_queued.c.device == _queued.device,
            _newer_queued.c.id > _queued.id,
            _newer_queued.c.seq.is_not(None),
        ),
    ),
)


def periods(settings: Settings) -> dict[str, int]:
    """Retention in days per data class (0 keeps forever)."""
    return {
        "positions": settings.retention_positions_days,
        "device_events": settings.retention_device_events_days,
        "presence": settings.retention_presence_days,
        "frames": settings.retention_frames_days,
        "security_events": settings.retention_security_events_days,
        "notification_outbox": settings.retention_notifications_days,
        "notification_pages": settings.retention_notifications_days,
        "command_deliveries": settings.retention_commands_days,
        "device_commands": settings.retention_commands_days,
        "command_queue": settings.retention_commands_days,
    }


def purge(
    engine: Engine,
    settings: Settings,
    clock: Clock | None = None,
    actor: str = "retention",
    only: str | None = None,
) -> dict[str, int]:
    """Run the purge; returns rows deleted per data class."""
    clock = clock or SystemClock()
    days = periods(settings)
    batch = settings.retention_batch_rows
    deleted: dict[str, int] = {}
    for dc in DATA_CLASSES:
        if only is not None and dc.name != only:
            continue
        if days[dc.name] <= 0:
            continue
        started = clock.now()
        cutoff = started - days[dc.name] * DAY
        total = 0
        pk = dc.table.c.id
        while True:
            # Oldest rows first by id (insertion order), a bounded batch per transaction.
            old = dc.age_column < cutoff if dc.done is None else (dc.age_column < cutoff) & dc.done
            victims = select(pk).where(old).order_by(pk).limit(batch).scalar_subquery()
            with engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
                n = conn.execute(delete(dc.table).where(pk.in_(victims))).rowcount
            total += n
            if n < batch:
                break
        deleted[dc.name] = total
        # Chained into the tamper-evident audit log (backend/security/audit.py).
        audit.append_now(
            engine,
            audit.Entry(
                actor=actor,
                action="retention.purge",
                detail={
                    "data_class": dc.name,
                    "retention_days": days[dc.name],
                    "cutoff": cutoff,
                    "deleted": total,
                    "batch_rows": batch,
                    "started_at": started,
                },
            ),
            clock.now(),
        )
        log.info("purged", data_class=dc.name, deleted=total, cutoff=cutoff)
    return deleted
