"""The ingest pipeline (docs/protocol.md; ARCHITECTURE.md, data flow). `Ingest.process(batch)`
runs a batch of MQTT messages through an ordered list of steps, each a method of one job,
defined below in the order they run:

    each message: decode -> route by topic -> look up the sender -> verify its MAC
                  -> check it belongs on its topic            (the first to refuse rejects it)
    the batch:    check event time -> skip recent duplicates -> build rows
                  -> refuse unauthorised records -> persist (one transaction)
                  -> acknowledge (signed end-to-end ACKs) -> hand over to rule evaluation
                  -> count

The codec (firmware/frame.py, with firmware/fixframe.py's fast path for frames of nothing but
fixes) parses and verifies; storage (backend/storage/frame_writes.py) writes. The MQTT side
(connection, batching, broker PUBACKs) is backend/ingest_worker.py; this module knows nothing
of paho.

Guarantees:
- Nothing is stored twice: (device, boot, seq) is a unique key and frames are inserted with
  insert-or-ignore; only a frame that was actually inserted has its records stored. The
  in-process SequenceGuard is a fast path that skips the database for retransmissions this
  worker saw recently; with several workers the database is the authority.
- Nothing committed escapes the rules: with a `durable` sink (the monitoring rules), the
  batch's transaction also records its hand-over (a rules_pending row), which the sink
  deletes in the transaction that evaluates the batch; a worker that dies in between
  leaves the row to the next sweep of any worker (backend/rules/sink.py).
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
- A frame dated at or after the removal that followed its wearer's withdrawal of consent
  (Device.refuse_from, backend/services/stops.py) is a `withdrawn` rejection, acknowledged the same
  way, and its payload is not kept as evidence: the wearer's consent to being recorded has
  ended. A frame is judged by its own time, so one sent after the removal is refused whole
  with any older records it carries. The device cache (DeviceDirectory) learns of a removal
  within its ttl_s (60 s), as it learns of a retirement.
- Event time, not arrival time: a frame older than the device's newest stored event, or
  further behind backend "now" than `late_after_s`, is flagged late; rows are written in
  event-time order and indexed by event time, so nothing depends on arrival order.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Connection, Engine

from backend.bounds import FRAME_AGE_S, FRAME_AHEAD_S
from backend.clock import Clock, SystemClock
from backend.registry import Device, Pairings, Refusal, Registry, presence_tags
from backend.settings import Settings
from backend.storage import frame_writes as store
from backend.storage.database import IMMEDIATE
from backend.storage.schema import HOME_UNIT, TAG, VICTIM
from firmware import fixframe, replay, topics
from firmware import frame as fr

log = structlog.get_logger("tagwatch.ingest")

# Rejection reasons beyond the decoder's own (DecodeError.reason, docs/protocol.md).
UNKNOWN_DEVICE = "unknown_device"
TOPIC = "topic"  # the frame does not belong on the topic it came in on
REPLAY = "replay"
MISDATED = "time"  # signed, but dated where no device's data can be (bounds.py)
# Signed, but dated after its wearer withdrew consent and the device came off them
# (backend/services/stops.py): not stored, not even raw in the security event.
WITHDRAWN = "withdrawn"
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


@dataclass
class Rejection:
    reason: str
    device: int | None
    topic: str
    detail: str
    payload: bytes = b""


class RuleSink:
    """Hand-over to rule evaluation (backend/rules/sink.py subclasses this; every hook
    defaults to doing nothing, so a subclass overrides only what it uses). Called after the
    batch is committed and acknowledged, with the frames stored for the first time, in
    event-time order per device. Must not raise for bad data; a raise is logged and the
    frames stay stored (rules can re-evaluate from storage).

    A `durable` sink has each batch's hand-over recorded in the batch's own transaction (a
    rules_pending row, which `batch_committed` is told the token of and settles when it has
    evaluated the batch): a worker killed between its commit and its hand-over leaves the
    row, and the sink evaluates it later (`resume`, and its own clock)."""

    durable = False

    def batch_committed(
        self,
        stored: Sequence[StoredFrame],
        rejections: Sequence[Rejection],
        now: float,
        pending: str | None,
    ) -> None:
        """A batch is durable: the frames it stored and what it refused (security events
        already written); `pending` is the token of its rules_pending row (durable sinks)."""
        if stored:
            self.frames_committed(stored, now)
        if rejections:
            self.frames_rejected(rejections, now)

    def frames_committed(self, stored: Sequence[StoredFrame], now: float) -> None:
        """New frames are durable."""

    def frames_rejected(self, rejections: Sequence[Rejection], now: float) -> None:
        """Frames, or records of stored frames, were refused (security events are already
        written)."""

    def resume(self, now: float) -> None:
        """A worker starts: evaluate what a worker that died committed and never handed
        over."""


class NoRules(RuleSink):
    """No rule evaluation: ingest alone (tools, benchmarks, tests of the pipeline)."""


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
    # The token of the batch's rules_pending row (a durable sink), for the hand-over to settle.
    pending: str | None = None


# Publishes one ACK frame (QoS 1); returns False if it could not be queued.
Publisher = Callable[[str, bytes], bool]


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
class Received:
    """One message on its way through the pipeline; each step fills in what it learns."""

    msg: Message
    frame: fr.Frame = field(init=False)
    # The values of the frame's FIX records (wire order) and their record indexes.
    fixes: list[tuple[int, ...]] = field(init=False)
    fix_idx: Sequence[int] = field(init=False)
    kind: str = ""  # the topic's: "tag" or "hu"
    ident: int = 0  # the device id the topic names
    channel: str = ""  # the topic's channel: up, relay or status
    via_unit: int | None = None  # the home unit that relayed a tag's frame
    device: Device = field(init=False)  # the sender, whose key signed the frame
    # The broker's retained copy of a home unit's status (see the module docstring).
    retained: bool = False
    late: bool = False
    frame_id: int | None = None
    # Position rows lacking (late, frame_id, idx) (frame_writes.position_heads).
    heads: list[tuple[int, ...]] = field(default_factory=list)
    # Records that are not positions, with their index.
    others: list[tuple[int, fr.Record]] = field(default_factory=list)
    # Records the sender may not make, taken out of `others`.
    refused: list[Refusal] = field(default_factory=list)


@dataclass
class Batch:
    """One batch on its way through the pipeline: the frames still going, and where the
    others went."""

    messages: Sequence[Message]
    now: float  # backend time when the batch began
    result: BatchResult = field(default_factory=BatchResult)
    frames: list[Received] = field(default_factory=list)  # verified, still to be stored
    misdated: list[Received] = field(default_factory=list)  # verified, refused, acknowledged
    known: list[Received] = field(default_factory=list)  # duplicates: stored before
    ordered: list[Received] = field(default_factory=list)  # `frames` in event-time order
    inserted: list[Received] = field(default_factory=list)  # stored by this batch
    in_db: list[Received] = field(default_factory=list)  # of `known`, found in the database


Check = Callable[[Received], Rejection | None]
Step = Callable[[Batch], None]


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
        # (device, boot, seq) of a batch whose transaction failed: perhaps committed. With
        # a durable sink, that batch's rules_pending token, which its retry writes again.
        self._uncertain: set[store.FrameKey] = set()
        self._token: str | None = None
        self._writer = store.WriterQueue(engine)
        self.counts: Counter[str] = Counter()
        self.rejections: Counter[tuple[str, int | None]] = Counter()
        # Each message goes through these in order; the first that refuses it rejects it.
        self.checks: tuple[Check, ...] = (
            self.decode,
            self.route,
            self.look_up_sender,
            self.verify_mac,
            self.check_topic,
        )
        # The batch goes through these in order.
        self.steps: tuple[Step, ...] = (
            self.admit,  # runs self.checks on each message
            self.check_event_time,
            self.skip_recent_duplicates,
            self.build_rows,
            self.refuse_unauthorised_records,
            self.persist,
            self.acknowledge,
            self.hand_over,
            self.count,
        )

    def process(self, batch: Sequence[Message]) -> BatchResult:
        b = Batch(batch, self.clock.now())
        for step in self.steps:
            step(b)
        return b.result

    # ---- each message ------------------------------------------------------------------

    def admit(self, b: Batch) -> None:
        """Run each message through the checks; keep the frames none of them refused."""
        for msg in b.messages:
            v = Received(msg)
            for check in self.checks:
                rejection = check(v)
                if rejection is not None:
                    b.result.rejected.append(rejection)
                    break
            else:
                b.frames.append(v)

    def decode(self, v: Received) -> Rejection | None:
        """Parse the frame with the codec (MAC not yet checked: the key is the sender's)."""
        try:
            v.frame, v.fixes, v.fix_idx = fixframe.parse(v.msg.payload)
        except fr.DecodeError as e:
            return self._reject(v.msg, e.reason, fr.peek_device(v.msg.payload), e.detail)
        return None

    def route(self, v: Received) -> Rejection | None:
        """What the topic says: whose topic it is, its channel, the relaying home unit."""
        where = topics.parse(v.msg.topic)
        if where is None:
            return self._reject(v.msg, TOPIC, v.frame.device, "not a tagwatch topic")
        v.kind, v.ident, v.channel = where
        v.via_unit = v.ident if (v.kind, v.channel) == ("hu", "relay") else None
        v.retained = v.msg.retained and v.channel == "status"
        return None

    def look_up_sender(self, v: Received) -> Rejection | None:
        device = self.directory.get(v.frame.device)
        if device is None:
            return self._reject(v.msg, UNKNOWN_DEVICE, v.frame.device, "not registered")
        v.device = device
        return None

    def verify_mac(self, v: Received) -> Rejection | None:
        """With the sender's own key (for a relayed tag frame: the TAG's key; the home unit
        that relayed it cannot sign for the tag)."""
        try:
            fr.verify(v.frame, v.device.key)
        except fr.DecodeError as e:
            detail = f"MAC does not verify ({v.kind})"
            return self._reject(v.msg, e.reason, v.frame.device, detail)
        return None

    def check_topic(self, v: Received) -> Rejection | None:
        """A correctly signed frame that does not belong on its topic is refused."""
        f, kind, channel = v.frame, v.kind, v.channel
        expect = TAG if kind == "tag" or v.via_unit is not None else HOME_UNIT
        want_type = fr.TAG_DATA if expect == TAG else fr.HOME_DATA
        # A victim device speaks as a tag on its own tag channels, never relayed.
        speaks_as = TAG if v.device.kind == VICTIM and v.via_unit is None else v.device.kind
        if speaks_as != expect or f.mtype != want_type:
            wrong = f"a {v.device.kind} frame of type {f.mtype} on {kind}/{channel}"
        elif v.via_unit is None and f.device != v.ident:
            wrong = f"device {f.device}'s frame on device {v.ident}'s topic"
        elif channel not in ("up", "relay", "status"):
            wrong = f"channel {channel} is not an uplink"
        else:
            return None
        return self._reject(v.msg, TOPIC, f.device, wrong)

    # ---- the batch ---------------------------------------------------------------------

    def check_event_time(self, b: Batch) -> None:
        """Refuse frames dated where no device's data can be; they are still acknowledged
        (resending cannot mend the device's clock). Frames without TIME_VALID carry seconds
        since boot: never placed on the calendar, so never misdated."""
        ok: list[Received] = []
        for v in b.frames:
            f = v.frame
            why = ""
            if f.flags & fr.FLAG_TIME_VALID:
                if f.ts > b.now + FRAME_AHEAD_S:
                    why = f"dated {f.ts - b.now:.0f} s ahead of backend time"
                elif f.ts < b.now - FRAME_AGE_S and v.channel != "status":
                    why = f"dated {(b.now - f.ts) / 86400:.0f} days behind backend time"
            stop = v.device.refuse_from
            if why:
                b.result.rejected.append(self._reject(v.msg, MISDATED, f.device, why))
                b.misdated.append(v)
            elif stop is not None and f.flags & fr.FLAG_TIME_VALID and f.ts >= stop:
                why = f"dated {f.ts - stop} s after its wearer withdrew and it was removed"
                b.result.rejected.append(
                    self._reject(v.msg, WITHDRAWN, f.device, why, keep_raw=False)
                )
                b.misdated.append(v)
            else:
                ok.append(v)
        b.frames = ok

    def skip_recent_duplicates(self, b: Batch) -> None:
        """This worker's recent history answers most retransmissions without the database;
        the database decides the rest (persist)."""
        fresh: list[Received] = []
        for v in b.frames:
            f = v.frame
            status = self.guard.accept(f.device, f.boot, f.seq)
            (b.known if status == replay.DUPLICATE else fresh).append(v)
        b.frames = fresh

    def build_rows(self, b: Batch) -> None:
        """Position rows (the bulk of every frame) from the fixes' value tuples, and the
        other records sorted out, before the write transaction: on SQLite it holds the one
        write lock every worker queues for. The frames are then put in event-time order per
        device, whatever order they arrived in."""
        for v in b.frames:
            f = v.frame
            timed = f.flags & fr.FLAG_TIME_VALID
            if not timed or not isinstance(f, fixframe.FixFrame):
                # Fixes without calendar time (seconds since boot) are kept as device events
                # until a clock_set from the same boot can place them.
                v.others = [
                    (i, r) for i, r in enumerate(f.records) if not timed or r.type != fr.FIX
                ]
            if not timed:
                v.fixes, v.fix_idx = [], ()
                continue
            v.heads = store.position_heads(f.device, f.ts, v.fixes)
        b.ordered = sorted(
            b.frames, key=lambda v: (v.frame.device, v.frame.boot, v.frame.ts, v.frame.seq)
        )

    def refuse_unauthorised_records(self, b: Batch) -> None:
        """Take the records each sender may not make (only the paired home unit speaks for
        a tag) out of its frame's rows. The pairings are read before the write transaction,
        and only when some frame carries presence (a unit reports arrivals and departures)."""
        tags = presence_tags(rec for v in b.frames for _, rec in v.others)
        if tags:
            with self.engine.connect() as conn:
                pairings = Pairings.load(conn, tags)
        else:
            pairings = Pairings()
        for v in b.frames:
            if not v.others:
                continue
            v.refused = pairings.refusals(v.frame, v.device.kind, v.others)
            if v.refused:
                drop = {r.idx for r in v.refused}
                v.others = [(i, rec) for i, rec in v.others if i not in drop]

    def persist(self, b: Batch) -> None:
        """One transaction: what is new is stored (the database de-duplicates), duplicates
        are checked for replay, and every refusal of the batch is written as a security
        event. If it fails, nothing was committed or it was and only the answer was lost:
        the guard forgets this batch, so the redelivered frames are not mistaken for
        duplicates of frames never stored; and they are remembered, so that if the retry
        finds them stored, the rules get them (the failed attempt never handed them over).
        A durable sink's record of the hand-over (RuleSink) keeps its token across the
        attempts, so that it names one row whichever attempt committed."""
        if self.rules.durable:
            b.result.pending = self._token or uuid.uuid4().hex
        try:
            with (
                self._writer,
                self.engine.connect() as conn,
                conn.execution_options(**IMMEDIATE).begin(),
            ):
                self._store(conn, b)
        except Exception:
            for v in b.frames:
                self.guard.forget(v.frame.device)
            self._uncertain.update(_key(v) for v in b.frames)
            self._token = b.result.pending
            raise
        self._token = None
        r = b.result
        r.committed_at = self.clock.now()
        if self._uncertain:
            self._recover(b)
        r.duplicates = len(b.known)
        r.retained_known = sum(1 for v in b.known if v.retained)
        r.stored = [
            StoredFrame(
                v.frame_id or 0,
                v.frame.device,
                v.device.kind,
                v.via_unit,
                v.frame,
                v.late,
                b.now,
                frozenset(x.idx for x in v.refused),
            )
            for v in b.inserted
        ]

    def _recover(self, b: Batch) -> None:
        """Frames this batch found stored that a failed attempt may have committed are
        stored by this batch as far as acknowledgement and the rules go, with the id and late
        flag of their stored row. The worker runs a failed batch again until it goes through
        (IngestWorker.run_once), so after this success there is nothing left to wait for."""
        recovered = [v for v in b.in_db if _key(v) in self._uncertain]
        self._uncertain.clear()
        if not recovered:
            return
        with self.engine.connect() as conn:
            rows = store.stored_frames(conn, [_key(v) for v in recovered])
        for v in recovered:
            v.frame_id, v.late = rows[_key(v)]
        b.known = [v for v in b.known if v.frame_id is None]
        b.inserted += recovered
        self.counts["commits_recovered"] += len(recovered)

    def _store(self, conn: Connection, b: Batch) -> None:
        now, r = b.now, b.result
        if b.frames:
            self._flag_late(conn, b.frames, now)  # in arrival order
            ids = store.insert_frames(conn, [_frame_row(v, now) for v in b.ordered])
            for v in b.ordered:
                f = v.frame
                v.frame_id = ids.get((f.device, f.boot, f.seq))
                (b.inserted if v.frame_id is not None else b.in_db).append(v)
            b.known += b.in_db
            store.insert_positions(
                conn,
                [
                    (*head, v.late, v.frame_id, idx)
                    for v in b.inserted
                    for head, idx in zip(v.heads, v.fix_idx, strict=True)
                ],
            )
            events, pres = _record_rows(b.inserted)
            store.insert_device_events(conn, events)
            store.insert_presence(conn, pres)
            store.update_devices(conn, *_device_marks(b.inserted), now)
        # The broker's retained copy of a stored status is known state, not a replay, however
        # old: it comes again each time a worker subscribes. `known` holds both the guard's
        # duplicates (a worker that has run for days remembers old frames too) and the
        # database's.
        redelivered = [v for v in b.known if not v.retained]
        if redelivered:
            r.rejected += self._replays(conn, redelivered, now)
        # The refused records of frames stored now (not of duplicates: they were counted the
        # first time).
        for v in b.inserted:
            for x in v.refused:
                f, topic = v.frame, v.msg.topic
                log.warning(
                    "record refused", reason=x.reason, device=f.device, topic=topic, detail=x.detail
                )
                r.refused_records.append(
                    Rejection(x.reason, f.device, topic, x.detail, v.msg.payload)
                )
        refusals = store.insert_security_events(
            conn,
            now,
            [
                (x.reason, x.device, x.topic, x.detail, x.payload)
                for x in r.rejected + r.refused_records
            ],
        )
        if r.pending is not None and (b.inserted or refusals):
            new = [v.frame_id for v in b.inserted if v.frame_id is not None]
            store.insert_pending(conn, r.pending, now, new, refusals)

    def _flag_late(self, conn: Connection, fresh: list[Received], now: float) -> None:
        """Late: behind the device's newest stored event time when it arrived, or a backlog
        further behind backend now than late_after_s. Frames without TIME_VALID carry
        seconds since boot and cannot be compared with calendar time: never late."""
        newest = store.newest_event_times(conn, (v.frame.device for v in fresh))
        for v in fresh:  # arrival order
            f = v.frame
            if not f.flags & fr.FLAG_TIME_VALID:
                continue
            high = newest.get(f.device)
            v.late = (high is not None and f.ts < high) or now - f.ts > self.settings.late_after_s
            if high is None or f.ts > high:
                newest[f.device] = f.ts

    def _replays(self, conn: Connection, duplicates: list[Received], now: float) -> list[Rejection]:
        """A duplicate soon after the original is a retransmission (its ack was lost); long
        after, it is a replay: still harmless (it is acknowledged and not stored again) but
        worth a security event."""
        keys = [_key(v) for v in duplicates]
        first_seen = store.first_received(conn, keys)
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

    def acknowledge(self, b: Batch) -> None:
        """Only now, with the transaction committed, may devices be told to free frames: the
        ACK names every frame stored, found stored, or refused for its date, signed with the
        addressed device's key. A retained status already stored was answered when it first
        came (the unit does not wait for it again); acknowledging every unit's status
        whenever a worker subscribes would only be a burst of downlinks nobody needs."""
        answered = b.inserted + [v for v in b.known + b.misdated if not v.retained]
        r = b.result
        r.acks = _acks(answered, b.now)
        for ack in r.acks:
            if not self.publish(ack.topic, ack.payload):
                r.acks_failed += 1

    def hand_over(self, b: Batch) -> None:
        """To rule evaluation; a failure there leaves the frames stored (module docstring)."""
        r = b.result
        rejections = r.rejected + r.refused_records
        try:
            if r.stored or rejections:
                self.rules.batch_committed(r.stored, rejections, b.now, r.pending)
        except Exception:
            log.exception("rule evaluation failed; the frames are stored")
            self.counts["rules_failed"] += 1

    def count(self, b: Batch) -> None:
        result = b.result
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

    def _reject(
        self, msg: Message, reason: str, device: int | None, detail: str, keep_raw: bool = True
    ) -> Rejection:
        log.warning("frame rejected", reason=reason, device=device, topic=msg.topic, detail=detail)
        return Rejection(reason, device, msg.topic, detail, bytes(msg.payload) if keep_raw else b"")


# ---- rows and ACK frames (pure) ------------------------------------------------------------

# Record types that describe something that happened (their first field is dt).
_DATED = frozenset(t for t, spec in fr.SPECS.items() if spec[2][:1] == ("dt",))


def _frame_row(v: Received, now: float) -> tuple[Any, ...]:
    """A frames row, in frame_writes.FRAME_COLUMNS order."""
    f = v.frame
    return (f.device, f.boot, f.seq, f.mtype, f.flags, f.ts, now, v.via_unit, v.late, v.msg.payload)


def _record_rows(
    inserted: Iterable[Received],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(device_events rows, presence rows) of the records that are not positions."""
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
    return events, pres


def _device_marks(inserted: Iterable[Received]) -> tuple[dict[int, int | None], set[int]]:
    """Each device's newest event time in these frames, and the devices the backend heard
    from: not by a retained status the broker kept (a unit offline for days is not in
    contact because a fresh backend received its will just now)."""
    newest: dict[int, int | None] = {}
    heard: set[int] = set()
    for v in inserted:
        f = v.frame
        ts = f.ts if f.flags & fr.FLAG_TIME_VALID else None
        old = newest.get(f.device)
        newest[f.device] = ts if old is None else max(old, ts or old)
        if not v.retained:
            heard.add(f.device)
    return newest, heard


def _acks(done: Iterable[Received], now: float) -> list[Ack]:
    """The end-to-end ACK frames naming these frames, per device, signed with its key."""
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


def ack_ranges(seen: Iterable[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(boot, first, last) runs of consecutive sequence numbers."""
    out: list[tuple[int, int, int]] = []
    for boot, seq in sorted(seen):
        if out and out[-1][0] == boot and out[-1][2] + 1 == seq:
            out[-1] = (boot, out[-1][1], seq)
        else:
            out.append((boot, seq, seq))
    return out


def _key(v: Received) -> store.FrameKey:
    """A frame's identity: (device, boot, seq), unique in storage."""
    return v.frame.device, v.frame.boot, v.frame.seq
