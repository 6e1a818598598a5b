"""The ingest pipeline, in the order it runs (docs/protocol.md; ARCHITECTURE.md, data flow):

    decode -> look up device -> verify MAC -> check event time -> de-duplicate
           -> check records' authority
           -> persist (one transaction) -> publish the signed end-to-end ACK
           -> hand over to rule evaluation

`Ingest.process(batch)` runs it over a batch of MQTT messages. The MQTT side (connection,
batching, broker PUBACKs) is backend/ingest_worker.py; this module knows nothing of paho.

Guarantees:
- Nothing is stored twice: (device, boot, seq) is a unique key and frames are inserted with
  insert-or-ignore; only a frame that was actually inserted has its records stored. The
  in-process SequenceGuard is a fast path that skips the database for retransmissions this
  worker saw recently; with several workers the database is the authority.
- Nothing is acknowledged before it is durable: ACK frames are built after the transaction
  commits. A duplicate is acknowledged again (its first ACK may have been lost). Whether the
  broker then accepted each ACK is the worker's to find out (backend/ingest_worker.py).
- A home unit's status is retained at the broker, which hands its copy to every new
  subscription (Mosquitto 2.0 even to `$share` ones). A message on a status topic that the
  broker delivered from its retained store (`Message.retained`) is the unit's known state:
  stored if new (a backend starting with an empty database learns each unit's online or
  offline state from it), else a duplicate that is neither acknowledged again nor ever a
  replay. The broker sets that flag, not the publisher: live deliveries, a replay among
  them, arrive without it (the worker does not ask for retain-as-published).
- Bad input (undecodable, unknown device, bad MAC, wrong topic, replay) is rejected with a
  reason, counted per (reason, device), and written as a security event; it never touches
  what is stored and never stops the worker.
- Only a tag's paired home unit speaks for its presence (backend/registry.py, Pairings): a
  record its authentic frame may not carry (a unit's presence report for a tag not paired
  with it at the record's time, a home unit's record in a tag's frame) is refused on its
  own. The frame is stored (raw, as evidence of what the device said) and acknowledged, since
  sending it again would change nothing; the record becomes no row and no observation, and
  is counted and written as a security event.
- A correctly signed frame whose calendar time is implausible (more than bounds.FRAME_AHEAD_S
  ahead of backend now, or more than bounds.FRAME_AGE_S behind it: a broken clock, a
  receiver's placeholder date) is not stored: a `time` rejection with the raw frame as
  evidence, acknowledged all the same, since resending cannot mend the device's clock and
  would only hold its buffer. A home unit's status is exempt from the age bound (its
  retained frames and last will are signed when it connects).
- Event time, not arrival time: a frame older than the device's newest stored event, or
  further behind backend "now" than `late_after_s`, is flagged late; rows are written in
  event-time order and indexed by event time, so nothing depends on arrival order.
"""

from __future__ import annotations

import fcntl
import hmac
import os
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import structlog
from sqlalchemy import (
    BigInteger,
    BindParameter,
    Connection,
    Double,
    Engine,
    Insert,
    Table,
    bindparam,
    case,
    func,
    insert,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite

from backend.bounds import FRAME_AGE_S, FRAME_AHEAD_S
from backend.clock import Clock, SystemClock
from backend.registry import Device, Pairings, Refusal, Registry, presence_tags
from backend.settings import Settings
from backend.storage.database import IMMEDIATE
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    VICTIM,
    cell_of,
    device_events,
    devices,
    frames,
    positions,
    presence,
    security_events,
)
from firmware import frame as fr
from firmware import replay, topics

log = structlog.get_logger("tagwatch.ingest")

# Rejection reasons beyond the decoder's own (DecodeError.reason, docs/protocol.md).
UNKNOWN_DEVICE = "unknown_device"
TOPIC = "topic"  # the frame does not belong on the topic it came in on
REPLAY = "replay"
MISDATED = "time"  # signed, but dated where no device's data can be (bounds.py)
MAX_RAW_EVIDENCE = 8192  # bytes of a rejected payload kept in its security event
MAX_RANGES_PER_ACK = (fr.MAX_BODY // 12) - 1  # an ack_range record is 12 bytes


@dataclass
class Message:
    """One MQTT message as received. `token` is opaque to the pipeline (the worker uses it
    to send the broker PUBACK once the batch is done)."""

    topic: str
    payload: bytes
    token: Any = None
    # Delivered from the broker's retained store because the worker subscribed (MQTT retain
    # flag on receipt), not published just now.
    retained: bool = False


@dataclass
class StoredFrame:
    """A frame that this batch stored for the first time: what rule evaluation receives."""

    frame_id: int
    device: int
    kind: str  # TAG or HOME_UNIT (the sender)
    via_unit: int | None  # home unit that relayed a tag frame
    frame: fr.Frame
    late: bool
    received_at: float
    # Indexes of the frame's records that were refused (registry.Pairings): not observed.
    refused: frozenset[int] = frozenset()


class RuleSink:
    """Hand-over to rule evaluation (the rules issue subclasses this; every hook defaults to
    doing nothing, so a subclass overrides only what it uses). Called after the
    batch is committed and acknowledged, with the frames stored for the first time, in
    event-time order per device. Must not raise for bad data; a raise is logged and the
    frames stay stored (rules can re-evaluate from storage)."""

    def frames_committed(self, stored: Sequence[StoredFrame], now: float) -> None:
        """New frames are durable."""

    def frames_rejected(self, rejections: Sequence[Rejection], now: float) -> None:
        """Frames, or records of stored frames, were refused (security events are already
        written)."""


class NoRules(RuleSink):
    """The default until rules exist: evaluation is a no-op."""


@dataclass
class Rejection:
    reason: str
    device: int | None
    topic: str
    detail: str
    payload: bytes = b""


@dataclass
class Ack:
    topic: str
    payload: bytes


@dataclass
class BatchResult:
    stored: list[StoredFrame] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    refused_records: list[Rejection] = field(default_factory=list)  # of frames stored
    acks: list[Ack] = field(default_factory=list)
    acks_failed: int = 0  # could not be handed to the MQTT client
    retained_known: int = 0  # duplicates that were the broker's retained copy of a status
    committed_at: float = 0.0  # backend time just after the commit (frame age, metrics.py)


# Publishes one ACK frame (QoS 1); returns False if it could not be queued.
Publisher = Callable[[str, bytes], bool]


class WriterQueue:
    """On an SQLite file, workers take turns at the one write lock through an OS file lock
    (flock) held around each write transaction. SQLite's own lock stays the authority; this
    only changes how a waiting worker wakes: at once when the lock is released, instead of
    SQLite's busy handler sleeping in growing steps (1, 2, 5, 10 ... 100 ms) and polling,
    which left a second worker idle for much of the time the first was not writing.
    A no-op for other databases (PostgreSQL takes concurrent writers)."""

    _fds: dict[str, int] = {}  # one open lock file per database per process

    def __init__(self, engine: Engine) -> None:
        self.fd: int | None = None
        path = engine.url.database
        if engine.dialect.name == "sqlite" and path and path != ":memory:":
            lock = os.path.abspath(path) + "-writer.lock"
            if lock not in self._fds:
                self._fds[lock] = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            self.fd = self._fds[lock]

    def __enter__(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)


class DeviceDirectory:
    """Device keys by id, decrypted once and cached. Unknown ids are cached briefly too, so
    a flood of frames from an unregistered id does not become a flood of queries."""

    def __init__(self, registry: Registry, ttl_s: float = 60.0, miss_ttl_s: float = 5.0) -> None:
        self.registry = registry
        self.ttl_s = ttl_s
        self.miss_ttl_s = miss_ttl_s
        self._cache: dict[int, tuple[float, Device | None]] = {}

    def get(self, device_id: int) -> Device | None:
        now = time.monotonic()
        hit = self._cache.get(device_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        dev = self.registry.get(device_id)
        if dev is not None and dev.retired:
            dev = None
        self._cache[device_id] = (now + (self.ttl_s if dev else self.miss_ttl_s), dev)
        return dev


@dataclass
class _Verified:
    msg: Message
    frame: fr.Frame
    device: Device
    via_unit: int | None
    # The frame's FIX records as value tuples (wire order), with their record indexes.
    fixes: list[tuple[int, ...]]
    fix_idx: Sequence[int]
    channel: str = ""  # the topic's channel: up, relay or status
    # The broker's retained copy of a home unit's status (see the module docstring).
    retained: bool = False
    late: bool = False
    frame_id: int | None = None
    # Position rows lacking (late, frame_id, idx), built by Ingest._prepare.
    heads: list[tuple[int, ...]] = field(default_factory=list)
    # Records that are not positions, with their index (sorted out by Ingest._prepare).
    others: list[tuple[int, fr.Record]] = field(default_factory=list)
    # Records the sender may not make (Ingest._check_records), taken out of `others`.
    refused: list[Refusal] = field(default_factory=list)


class Ingest:
    def __init__(
        self,
        engine: Engine,
        directory: DeviceDirectory,
        publish: Publisher,
        settings: Settings | None = None,
        clock: Clock | None = None,
        rules: RuleSink | None = None,
    ) -> None:
        self.engine = engine
        self.directory = directory
        self.publish = publish
        self.settings = settings or Settings()
        self.clock = clock or SystemClock()
        self.rules = rules or NoRules()
        self.guard = replay.SequenceGuard()
        self._writer = WriterQueue(engine)
        self.counts: Counter[str] = Counter()
        self.rejections: Counter[tuple[str, int | None]] = Counter()

    # ---- the pipeline ----------------------------------------------------------------------

    def process(self, batch: Sequence[Message]) -> BatchResult:
        now = self.clock.now()
        result = BatchResult()
        verified: list[_Verified] = []
        for msg in batch:
            v = self._decode_lookup_verify(msg, result.rejected)
            if v is not None:
                verified.append(v)
        verified, misdated = self._check_time(verified, now, result.rejected)

        fresh, known = self._deduplicate_fast(verified)
        # Everything that needs no database is done before the write transaction: on SQLite
        # the transaction holds the one write lock every worker queues for.
        ordered = self._prepare(fresh)
        self._check_records(fresh)
        try:
            with (
                self._writer,
                self.engine.connect() as conn,
                conn.execution_options(**IMMEDIATE).begin(),
            ):
                inserted, duplicates = self._persist(
                    conn, fresh, ordered, known, now, result.rejected, result.refused_records
                )
        except Exception:
            # Nothing was committed: forget what the guard learnt from this batch, so the
            # redelivered frames are not mistaken for duplicates of frames never stored.
            for v in fresh:
                self.guard.forget(v.frame.device)
            raise
        result.committed_at = self.clock.now()
        known += duplicates
        result.duplicates = len(known)
        result.retained_known = sum(1 for v in known if v.retained)

        # Only now, with the transaction committed, may devices be told to free frames. A
        # retained status already stored was answered when it first came (the unit does not
        # wait for it again); acknowledging every unit's status whenever a worker subscribes
        # would only be a burst of downlinks nobody needs.
        answered = inserted + [v for v in known + misdated if not v.retained]
        result.acks = self._acks(answered, now)
        for ack in result.acks:
            if not self.publish(ack.topic, ack.payload):
                result.acks_failed += 1

        result.stored = [
            StoredFrame(
                v.frame_id or 0,
                v.frame.device,
                v.device.kind,
                v.via_unit,
                v.frame,
                v.late,
                now,
                frozenset(r.idx for r in v.refused),
            )
            for v in inserted
        ]
        self._count(result)
        self._hand_over(result, now)
        return result

    # 1-3: decode, look up the sender, verify its MAC (and that it belongs on this topic)
    def _decode_lookup_verify(self, msg: Message, rejected: list[Rejection]) -> _Verified | None:
        where = topics.parse(msg.topic)
        fast = parse_fixes(msg.payload)
        if fast is not None:
            f, fixes, fix_idx = fast
        else:
            try:
                f, fixes, fix_idx = _parse_records(msg.payload)
            except fr.DecodeError as e:
                rejected.append(self._reject(msg, e.reason, fr.peek_device(msg.payload), e.detail))
                return None
        if where is None:
            rejected.append(self._reject(msg, TOPIC, f.device, "not a tagwatch topic"))
            return None
        kind, ident, channel = where
        via_unit = ident if (kind, channel) == ("hu", "relay") else None
        expect = TAG if kind == "tag" or via_unit is not None else HOME_UNIT
        device = self.directory.get(f.device)
        if device is None:
            rejected.append(self._reject(msg, UNKNOWN_DEVICE, f.device, "not registered"))
            return None
        # Verify with the sender's own key (for a relayed tag frame: the TAG's key; the home
        # unit that relayed it cannot sign for the tag).
        want = hmac.digest(device.key, f.signed, "sha256")[: f.mac_len]
        if not hmac.compare_digest(want, f.mac):
            rejected.append(self._reject(msg, "mac", f.device, f"MAC does not verify ({kind})"))
            return None
        wrong = self._misplaced(f, device, expect, kind, ident, channel, via_unit)
        if wrong:
            rejected.append(self._reject(msg, TOPIC, f.device, wrong))
            return None
        retained = msg.retained and channel == "status"
        return _Verified(msg, f, device, via_unit, fixes, fix_idx, channel, retained)

    # 3b: event time within what a device can have sent
    def _check_time(
        self, verified: list[_Verified], now: float, rejected: list[Rejection]
    ) -> tuple[list[_Verified], list[_Verified]]:
        """(plausibly dated, misdated). Frames without TIME_VALID carry seconds since boot:
        never placed on the calendar, so never misdated."""
        ok: list[_Verified] = []
        bad: list[_Verified] = []
        for v in verified:
            f = v.frame
            why = ""
            if f.flags & fr.FLAG_TIME_VALID:
                if f.ts > now + FRAME_AHEAD_S:
                    why = f"dated {f.ts - now:.0f} s ahead of backend time"
                elif f.ts < now - FRAME_AGE_S and v.channel != "status":
                    why = f"dated {(now - f.ts) / 86400:.0f} days behind backend time"
            if why:
                rejected.append(self._reject(v.msg, MISDATED, f.device, why))
                bad.append(v)
            else:
                ok.append(v)
        return ok, bad

    @staticmethod
    def _misplaced(
        f: fr.Frame,
        device: Device,
        expect: str,
        kind: str,
        ident: int,
        channel: str,
        via_unit: int | None,
    ) -> str:
        """Why a correctly signed frame does not belong on its topic ('' if it does)."""
        want_type = fr.TAG_DATA if expect == TAG else fr.HOME_DATA
        # A victim device speaks as a tag on its own tag channels, never relayed.
        speaks_as = TAG if device.kind == VICTIM and via_unit is None else device.kind
        if speaks_as != expect or f.mtype != want_type:
            return f"a {device.kind} frame of type {f.mtype} on {kind}/{channel}"
        if via_unit is None and f.device != ident:
            return f"device {f.device}'s frame on device {ident}'s topic"
        if channel not in ("up", "relay", "status"):
            return f"channel {channel} is not an uplink"
        return ""

    # 4a: de-duplicate, fast path (this worker's recent history; the database decides)
    def _deduplicate_fast(
        self, verified: list[_Verified]
    ) -> tuple[list[_Verified], list[_Verified]]:
        fresh: list[_Verified] = []
        known: list[_Verified] = []
        for v in verified:
            f = v.frame
            status = self.guard.accept(f.device, f.boot, f.seq)
            (known if status == replay.DUPLICATE else fresh).append(v)
        return fresh, known

    # 5a: turn records into rows, outside the write transaction
    @staticmethod
    def _prepare(fresh: list[_Verified]) -> list[_Verified]:
        """Position rows (the bulk of every frame) are built here from the fixes' value
        tuples; returns the frames in event-time order per device, whatever order they
        arrived in (their rows are written in that order, then sorted by event time)."""
        for v in fresh:
            f = v.frame
            timed = f.flags & fr.FLAG_TIME_VALID
            if not timed or type(f) is not FixFrame:
                # Fixes without calendar time (seconds since boot) are kept as device events
                # until a clock_set from the same boot can place them.
                v.others = [
                    (i, r) for i, r in enumerate(f.records) if not timed or r.type != fr.FIX
                ]
            if not timed:
                v.fixes, v.fix_idx = [], ()
                continue
            dev, ts = f.device, f.ts
            v.heads = [
                (
                    dev,
                    ts - dt,
                    lat,
                    lon,
                    cell_of(lat, lon),
                    acc,
                    kind,
                    src,
                    sats,
                    speed,
                    course,
                    hdop,
                )
                for dt, lat, lon, acc, kind, src, sats, speed, course, hdop in v.fixes
            ]
        return sorted(fresh, key=lambda v: (v.frame.device, v.frame.boot, v.frame.ts, v.frame.seq))

    # 5a, continued: the records' authority (only the paired home unit speaks for a tag)
    def _check_records(self, fresh: list[_Verified]) -> None:
        """Take the records each sender may not make out of its frame's rows. The pairings
        are read before the write transaction (on SQLite it holds the one write lock), and
        only when some frame carries presence (a unit reports arrivals and departures)."""
        tags = presence_tags(rec for v in fresh for _, rec in v.others)
        if tags:
            with self.engine.connect() as conn:
                pairings = Pairings.load(conn, tags)
        else:
            pairings = Pairings()
        for v in fresh:
            if not v.others:
                continue
            v.refused = pairings.refusals(v.frame, v.device.kind, v.others)
            if v.refused:
                drop = {r.idx for r in v.refused}
                v.others = [(i, rec) for i, rec in v.others if i not in drop]

    # 4b + 5b: de-duplicate in the database and persist, in one transaction
    def _persist(
        self,
        conn: Connection,
        fresh: list[_Verified],
        ordered: list[_Verified],
        known: list[_Verified],
        now: float,
        rejected: list[Rejection],
        refused: list[Rejection],
    ) -> tuple[list[_Verified], list[_Verified]]:
        """Insert what is fresh; returns (inserted, found already stored). `known` are the
        duplicates the guard recognised: not inserted, but checked for replay with the
        rest (a worker that has run for days remembers old frames too). The refused records
        of frames inserted now (not of duplicates: they were counted the first time) are
        added to `refused`."""
        inserted: list[_Verified] = []
        duplicates: list[_Verified] = []
        if fresh:
            self._flag_late(conn, fresh, now)  # in arrival order
            ids = self._insert_frames(conn, ordered, now)
            for v in ordered:
                f = v.frame
                v.frame_id = ids.get((f.device, f.boot, f.seq))
                (inserted if v.frame_id is not None else duplicates).append(v)
            self._insert_records(conn, inserted)
            self._update_devices(conn, inserted, now)
        # The broker's retained copy of a stored status is known state, not a replay, however
        # old: it comes again each time a worker subscribes.
        redelivered = [v for v in known + duplicates if not v.retained]
        if redelivered:
            rejected += self._replays(conn, redelivered, now)
        for v in inserted:
            for r in v.refused:
                log.warning(
                    "record refused",
                    reason=r.reason,
                    device=v.frame.device,
                    topic=v.msg.topic,
                    detail=r.detail,
                )
                refused.append(
                    Rejection(r.reason, v.frame.device, v.msg.topic, r.detail, v.msg.payload)
                )
        if rejected or refused:
            conn.execute(
                insert(security_events),
                [
                    {
                        "at": now,
                        "reason": r.reason,
                        "device": r.device,
                        "topic": r.topic[:255],
                        "detail": r.detail,
                        "raw": r.payload[:MAX_RAW_EVIDENCE],
                    }
                    for r in rejected + refused
                ],
            )
        return inserted, duplicates

    def _flag_late(self, conn: Connection, fresh: list[_Verified], now: float) -> None:
        """Late: behind the device's newest stored event time when it arrived, or a backlog
        further behind backend now than late_after_s. Frames without TIME_VALID carry
        seconds since boot and cannot be compared with calendar time: never late."""
        ids = sorted({v.frame.device for v in fresh})
        newest: dict[int, int] = {
            row.id: row.last_event_at
            for row in conn.execute(
                select(devices.c.id, devices.c.last_event_at).where(devices.c.id.in_(ids))
            )
            if row.last_event_at is not None
        }
        for v in fresh:  # arrival order
            f = v.frame
            if not f.flags & fr.FLAG_TIME_VALID:
                continue
            high = newest.get(f.device)
            v.late = (high is not None and f.ts < high) or now - f.ts > self.settings.late_after_s
            if high is None or f.ts > high:
                newest[f.device] = f.ts

    def _insert_frames(
        self, conn: Connection, ordered: list[_Verified], now: float
    ) -> dict[tuple[int, int, int], int]:
        """Insert-or-ignore on (device, boot, seq), many rows per statement; RETURNING
        yields only the rows actually inserted: the rest were already stored."""
        rows = [
            (
                f.device,
                f.boot,
                f.seq,
                f.mtype,
                f.flags,
                f.ts,
                now,
                v.via_unit,
                v.late,
                v.msg.payload,
            )
            for v in ordered
            for f in (v.frame,)
        ]
        returned = _insert_rows(conn, frames, _FRAME_COLUMNS, rows, _FRAMES_CONFLICT)
        return {(dev, boot, seq): fid for fid, dev, boot, seq in returned}

    def _insert_records(self, conn: Connection, inserted: list[_Verified]) -> None:
        # Positions: the hot path, rows built in _prepare; frames come in (device, boot, ts)
        # order, so the sort into event-time order per device is nearly linear.
        pos = [
            (*head, v.late, v.frame_id, idx)
            for v in inserted
            for head, idx in zip(v.heads, v.fix_idx, strict=True)
        ]
        pos.sort(key=_DEVICE_TIME)
        _insert_rows(conn, positions, _POSITION_COLUMNS, pos)
        events: list[dict[str, Any]] = []
        pres: list[dict[str, Any]] = []
        for v in inserted:
            f = v.frame
            timed = bool(f.flags & fr.FLAG_TIME_VALID)
            for idx, rec in v.others:
                dated = rec.type in _DATED
                t = f.ts - rec.values[0] if timed and dated else None
                if rec.type == fr.PRESENCE:
                    pres.append(
                        {
                            "home_unit": rec.home_unit,
                            "tag": rec.tag,
                            "ts": t,
                            "state": rec.state,
                            "rssi": rec.rssi,
                            "late": v.late,
                            "frame_id": v.frame_id,
                        }
                    )
                else:
                    # Everything else, and fixes without calendar time (their seconds since
                    # boot are kept until a clock_set from the same boot can place them).
                    data = rec.to_dict()
                    if not timed and dated:
                        data["since_boot"] = f.ts - rec.values[0]
                    events.append(
                        {
                            "device": f.device,
                            "ts": t,
                            "kind": rec.name or f"type_{rec.type}",
                            "data": data,
                            "late": v.late,
                            "frame_id": v.frame_id,
                            "idx": idx,
                        }
                    )
        for table, rows in ((device_events, events), (presence, pres)):
            if rows:
                rows.sort(key=lambda r: (r.get("device", r.get("tag")), r["ts"] or 0))
                conn.execute(insert(table), rows)

    def _update_devices(self, conn: Connection, inserted: list[_Verified], now: float) -> None:
        """Each device's newest event time, and when the backend last heard from it: not by
        a retained status the broker kept (a unit offline for days is not in contact
        because a fresh backend received its will just now)."""
        newest: dict[int, int | None] = {}
        heard: set[int] = set()
        for v in inserted:
            f = v.frame
            ts = f.ts if f.flags & fr.FLAG_TIME_VALID else None
            old = newest.get(f.device)
            newest[f.device] = ts if old is None else max(old, ts or old)
            if not v.retained:
                heard.add(f.device)
        if not newest:
            return
        high: BindParameter[int | None] = bindparam("high", type_=BigInteger)
        seen: BindParameter[float | None] = bindparam("seen", type_=Double)
        stmt = (
            devices.update()
            .where(devices.c.id == bindparam("dev"))
            .values(
                last_seen_at=func.coalesce(seen, devices.c.last_seen_at),
                last_event_at=case(
                    (high.is_(None), devices.c.last_event_at),
                    (devices.c.last_event_at.is_(None), high),
                    (devices.c.last_event_at < high, high),
                    else_=devices.c.last_event_at,
                ),
            )
        )
        conn.execute(
            stmt,
            [
                {"dev": d, "high": h, "seen": now if d in heard else None}
                for d, h in sorted(newest.items())
            ],
        )

    def _replays(
        self, conn: Connection, duplicates: list[_Verified], now: float
    ) -> list[Rejection]:
        """A duplicate soon after the original is a retransmission (its ack was lost); long
        after, it is a replay: still harmless (it is acknowledged and not stored again) but
        worth a security event."""
        keys = [(v.frame.device, v.frame.boot, v.frame.seq) for v in duplicates]
        first_seen = {
            (r.device, r.boot, r.seq): r.received_at
            for r in conn.execute(
                select(frames.c.device, frames.c.boot, frames.c.seq, frames.c.received_at).where(
                    tuple_(frames.c.device, frames.c.boot, frames.c.seq).in_(keys)
                )
            )
        }
        out = []
        for v, key in zip(duplicates, keys, strict=True):
            seen = first_seen.get(key)
            if seen is not None and now - seen > self.settings.replay_after_s:
                out.append(
                    self._reject(
                        v.msg,
                        REPLAY,
                        v.frame.device,
                        f"boot {key[1]} seq {key[2]} first stored {now - seen:.0f} s ago",
                    )
                )
        return out

    # 6: the end-to-end acknowledgement, signed with the addressed device's key
    def _acks(self, done: Iterable[_Verified], now: float) -> list[Ack]:
        by_device: dict[int, tuple[Device, set[tuple[int, int]]]] = {}
        for v in done:
            entry = by_device.setdefault(v.frame.device, (v.device, set()))
            entry[1].add((v.frame.boot, v.frame.seq))
        acks = []
        for dev_id in sorted(by_device):
            device, seen = by_device[dev_id]
            home = device.kind == HOME_UNIT
            topic = topics.home_down(dev_id) if home else topics.tag_down(dev_id)
            ranges = ack_ranges(seen)
            for i in range(0, len(ranges), MAX_RANGES_PER_ACK):
                recs = [
                    fr.Record(fr.ACK_RANGE, boot=b, first=lo, last=hi)
                    for b, lo, hi in ranges[i : i + MAX_RANGES_PER_ACK]
                ]
                ack = fr.Frame(fr.ACK, dev_id, 0, 0, int(now), recs, fr.FLAG_TIME_VALID)
                acks.append(Ack(topic, fr.encode(ack, device.key)))
        return acks

    # 7: hand over to rule evaluation
    def _hand_over(self, result: BatchResult, now: float) -> None:
        try:
            if result.stored:
                self.rules.frames_committed(result.stored, now)
            if result.rejected or result.refused_records:
                self.rules.frames_rejected(result.rejected + result.refused_records, now)
        except Exception:
            log.exception("rule evaluation failed; the frames are stored")
            self.counts["rules_failed"] += 1

    # ---- bookkeeping -------------------------------------------------------------------

    def _reject(self, msg: Message, reason: str, device: int | None, detail: str) -> Rejection:
        log.warning("frame rejected", reason=reason, device=device, topic=msg.topic, detail=detail)
        return Rejection(reason, device, msg.topic, detail, bytes(msg.payload))

    def _count(self, result: BatchResult) -> None:
        self.counts["frames_stored"] += len(result.stored)
        self.counts["duplicates"] += result.duplicates
        self.counts["retained_known"] += result.retained_known
        # Handed to the MQTT client; the worker counts what the broker then accepted
        # (acks_published) or refused (acks_refused, also in acks_failed).
        self.counts["acks_queued"] += len(result.acks) - result.acks_failed
        self.counts["acks_failed"] += result.acks_failed
        self.counts["frames_late"] += sum(1 for s in result.stored if s.late)
        for r in result.rejected:
            self.counts["rejected"] += 1
            self.rejections[(r.reason, r.device)] += 1
        for r in result.refused_records:
            self.counts["records_refused"] += 1
            self.rejections[(r.reason, r.device)] += 1


# Record types that describe something that happened (their first field is dt).
_DATED = frozenset(t for t, spec in fr.SPECS.items() if spec[2][:1] == ("dt",))


_DEVICE_TIME = itemgetter(0, 1)


# The fast path for the frame a tag sends most: nothing but fixes (GPS mode). Its values come
# straight from struct.iter_unpack over the body, with no Record object per fix; anything
# else about the frame (another record type, a fix with extra bytes from a newer version, a
# bad length, a value out of range) sends it to the codec, which parses or rejects it with its
# reason. So the fast path accepts only what firmware/frame.py's parse accepts, and yields
# the same values (tests/backend/test_ingest_decode.py checks both on valid and mutated
# frames); the validation rules stay the codec's.
_HEADER = struct.Struct(fr.HEADER_FMT)
_FIX_RECORD = struct.Struct(">2x" + fr.SPECS[fr.FIX][1][1:])  # record header, then the fix
_FIX_TYPES = bytes([fr.FIX]) * (fr.MAX_BODY // _FIX_RECORD.size + 1)
_FIX_LENGTHS = bytes([_FIX_RECORD.size - 2]) * len(_FIX_TYPES)
_DATA_TYPES = (fr.TAG_DATA, fr.HOME_DATA)
_ParsedFrame = tuple[fr.Frame, list[tuple[int, ...]], Sequence[int]]


class FixFrame(fr.Frame):
    """A frame decoded by the fast path. Its Record objects are made only if something asks
    for `records` (rule evaluation does, for devices assigned to a subject), by the codec
    itself from the same bytes."""

    _records: list[fr.Record] | None

    @property
    def records(self) -> list[fr.Record]:
        if self._records is None:
            self._records = fr.parse(self.signed + self.mac).records
        return self._records

    @records.setter
    def records(self, value: list[fr.Record]) -> None:
        self._records = value


def parse_fixes(data: bytes) -> _ParsedFrame | None:
    """(frame, fix value tuples, their record indexes) of a well-formed data frame whose
    records are all fixes; None for anything else (the codec then decides). MAC unchecked,
    as with fr.parse."""
    if type(data) is not bytes or len(data) < fr.HEADER_LEN + fr.MAC_MIN:
        return None
    version, mtype, flags, mac_len, device, boot, seq, ts, body_len = _HEADER.unpack_from(data)
    end = fr.HEADER_LEN + body_len
    count, rest = divmod(body_len, _FIX_RECORD.size)
    if (
        version != fr.VERSION
        or mtype not in _DATA_TYPES
        or not fr.MAC_MIN <= mac_len <= fr.MAC_MAX
        or body_len > fr.MAX_BODY
        or end + mac_len != len(data)
        or rest
        or not count
    ):
        return None
    body = data[fr.HEADER_LEN : end]
    stride = _FIX_RECORD.size
    if body[0::stride] != _FIX_TYPES[:count] or body[1::stride] != _FIX_LENGTHS[:count]:
        return None
    fixes = list(_FIX_RECORD.iter_unpack(body))
    if not all(map(fr._fix_in_range, fixes)):
        return None  # the codec rejects it ("value")
    f = FixFrame(mtype, device, boot, seq, ts, (), flags, mac_len, version)
    f._records = None
    f.signed = data[:end]
    f.mac = data[end:]
    return f, fixes, range(count)


def _parse_records(data: bytes) -> _ParsedFrame:
    """The codec's parse (raises DecodeError), fixes picked out as on the fast path."""
    f = fr.parse(data)
    fixes: list[tuple[int, ...]] = []
    idx: list[int] = []
    for i, rec in enumerate(f.records):
        if rec.type == fr.FIX:
            fixes.append(rec.values)
            idx.append(i)
    return f, fixes, idx


def ack_ranges(seen: Iterable[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(boot, first, last) runs of consecutive sequence numbers."""
    out: list[tuple[int, int, int]] = []
    for boot, seq in sorted(seen):
        if out and out[-1][0] == boot and out[-1][2] + 1 == seq:
            out[-1] = (boot, out[-1][1], seq)
        else:
            out.append((boot, seq, seq))
    return out


def insert_ignore(conn: Connection, table: Table, key: Sequence[str]) -> Insert:
    """INSERT that skips rows whose unique key exists (SQLite and PostgreSQL spell it alike)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(key))
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(key))
    raise RuntimeError(f"unsupported database {conn.dialect.name}")


# The hot inserts go to the driver directly (SQLAlchemy Core costs ~8 us of parameter
# processing per row, more than SQLite's own insert). The statements are built from the
# schema's Table objects, so there is still one schema; these checks fail at import if the
# schema or the FIX record layout ever drift apart from the row tuples built here.
_FIX_TAIL = fr.SPECS[fr.FIX][2][3:]  # acc_dm ... hdop_d, in wire order
_POSITION_COLUMNS = (
    "device",
    "ts",
    "lat_e7",
    "lon_e7",
    "cell",
    *_FIX_TAIL,
    "late",
    "frame_id",
    "idx",
)
_FRAME_COLUMNS = (
    "device",
    "boot",
    "seq",
    "mtype",
    "flags",
    "ts",
    "received_at",
    "via_unit",
    "late",
    "raw",
)
# The row tuples take the fix's fields in wire order: dt, lat, lon first, the rest (the
# tail) into position columns of the same names, which the loop below checks exist.
if fr.SPECS[fr.FIX][2][:3] != ("dt", "lat_e7", "lon_e7"):
    raise RuntimeError("ingest's FIX unpacking does not match the codec's FIX record")
for _table, _cols in ((positions, _POSITION_COLUMNS), (frames, _FRAME_COLUMNS)):
    if sorted(_cols) != sorted(c.name for c in _table.columns if c.name != "id"):
        raise RuntimeError(f"ingest's {_table.name} row layout does not match the schema")
_FRAMES_CONFLICT = "ON CONFLICT (device, boot, seq) DO NOTHING RETURNING id, device, boot, seq"
# SQLite: many rows per INSERT ... VALUES (...), (...), ~40 % less time per row than
# executemany (measured, docs/scaling.md). PostgreSQL: one INSERT ... SELECT FROM unnest() of
# one binary (%b) array per column, so the statement text stays short: psycopg re-parses a
# long query text on every execution (1.5 ms per 10-fix frame with multi-row VALUES).
_MAX_PARAMETERS = 999  # SQLite's historical per-statement limit


def _insert_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    suffix: str = "",
) -> list[Any]:
    """INSERT rows (tuples in `columns` order) in bulk; returns what the RETURNING clause
    in `suffix` yields."""
    if not rows:
        return []
    head = f"INSERT INTO {table.name} ({', '.join(columns)}) "
    tail = " " + suffix if suffix else ""
    out: list[Any] = []
    if conn.dialect.name == "postgresql":
        arrays = ", ".join(
            f"%b::{table.c[name].type.compile(dialect=conn.dialect)}[]" for name in columns
        )
        sql = f"{head}SELECT * FROM unnest({arrays}){tail}"
        result = conn.exec_driver_sql(sql, tuple(list(col) for col in zip(*rows, strict=True)))
        return list(result.all()) if suffix else out
    if conn.dialect.paramstyle != "qmark":
        raise RuntimeError(f"unsupported database {conn.dialect.name}")
    one = "(" + ", ".join(["?"] * len(columns)) + ")"
    per = _MAX_PARAMETERS // len(columns)
    for i in range(0, len(rows), per):
        chunk = rows[i : i + per]
        sql = f"{head}VALUES {', '.join([one] * len(chunk))}{tail}"
        result = conn.exec_driver_sql(sql, tuple([x for row in chunk for x in row]))
        if suffix:
            out += result.all()
    return out
