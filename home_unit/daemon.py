"""The home unit daemon: radio in, MQTT out, SQLite in between (docs/home-unit.md).

Everything runs on one asyncio loop; paho's network thread and the radio only hand events to
it. The pipeline for a beacon, top to bottom:
    verify (paired tag, MAC, counter) -> presence -> persist counter and presence
    -> acknowledge (only beacons that keep the tag home) -> receive the offload
    -> queue what the backend has not acknowledged (SQLite) -> deliver the tag's waiting
    commands and the ACKs for what it still holds
and for the relay:
    queue -> publish QoS 1 in order, a window at a time -> PUBACK (one hop, nothing freed)
    -> the backend's ACK on the tag's (or the unit's) down topic -> free.
A frame leaves the queue only when an ACK names it."""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from firmware import frame as fr
from firmware import topics
from home_unit import handshake, own_frames, presence, pushed_config, store
from home_unit.clock import Clock, SimClock
from home_unit.mqtt_link import Incoming, LinkEvents, MqttLink, StatusPair, endpoints
from home_unit.radio import MAX_OFFLOAD_FRAMES, BeaconHeard, Radio, RadioError, TagLink
from home_unit.sensors import FileSensors, Reading
from home_unit.settings import HomeUnitSettings

log = structlog.get_logger("home_unit")


@dataclass(frozen=True)
class Contact:
    tag: int
    address: str
    ack: bytes
    offload: bool  # the ack asks for the offload
    holds: bool  # the beacon said the tag holds frames not yet acknowledged


class Held:
    """The (boot, seq) of the frames a tag offered in one contact, for range look-ups."""

    def __init__(self, keys: Iterable[tuple[int, int]]) -> None:
        by_boot: dict[int, list[int]] = {}
        for boot, seq in keys:
            by_boot.setdefault(boot, []).append(seq)
        self.by_boot = {b: sorted(seqs) for b, seqs in by_boot.items()}

    def named_by(self, ranges: Iterable[tuple[int, int, int]]) -> bool:
        """Whether any offered frame lies in one of the (boot, first, last) ranges."""
        for boot, first, last in ranges:
            seqs = self.by_boot.get(boot)
            if seqs:
                i = bisect.bisect_left(seqs, first)
                if i < len(seqs) and seqs[i] <= last:
                    return True
        return False


# A remembered ACK written to the tag this many times while the tag still offers the frames
# it names is no longer trusted: the tag is refusing it (the unit cannot verify an ACK itself;
# docs/home-unit.md, "Trust"), so the frames are relayed again and the ACK forgotten.
MAX_ACK_WRITES = 2


class Acked:
    """The (boot, first, last) ranges of a tag's remembered ACKs, merged per boot, for
    looking up offered frames."""

    def __init__(self, ranges: Iterable[tuple[int, int, int]]) -> None:
        spans: dict[int, list[tuple[int, int]]] = {}
        for boot, first, last in sorted(ranges):
            merged = spans.setdefault(boot, [])
            if merged and first <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], last))
            else:
                merged.append((first, last))
        self.firsts = {b: [f for f, _ in m] for b, m in spans.items()}
        self.spans = spans

    def __contains__(self, key: tuple[int, int]) -> bool:
        boot, seq = key
        firsts = self.firsts.get(boot)
        if not firsts:
            return False
        i = bisect.bisect_right(firsts, seq) - 1
        return i >= 0 and seq <= self.spans[boot][i][1]


class HomeUnit:
    def __init__(
        self,
        settings: HomeUnitSettings,
        radio: Radio,
        clock: Clock | None = None,
        sensors: FileSensors | None = None,
    ) -> None:
        self.s = settings
        self.unit = settings.unit
        self.key = settings.key()
        self.radio = radio
        self.clock = clock or Clock()
        self.sensors = sensors or FileSensors(
            settings.power_supply_dir, settings.moved_file, settings.case_file
        )
        self.counters: collections.Counter[str] = collections.Counter()
        self.store = store.Store(settings.state_db)
        self.boot = self.store.next_boot()
        self.own = own_frames.OwnFrames(self.unit, self.key, self.boot)
        self.acker = handshake.Acknowledger(self.unit, self.key)
        self.config: pushed_config.UnitConfig | None = None
        self.beacon_keys: dict[int, bytes] = {}
        self.trackers: dict[int, presence.PresenceTracker] = {}
        self.last_counter: dict[int, int] = {
            t: st.counter for t, st in self.store.tag_states().items()
        }
        self.link: MqttLink | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # Relay state for this process: which queue rows are in paho's hands.
        self.cursor = 0  # highest queue id published since start
        self.inflight: dict[int, int] = {}  # mid -> queue id, awaiting PUBACK
        # queue id -> monotonic time of its PUBACK, oldest first (so the resend scan stops
        # at the first that is not yet due instead of walking the whole backlog)
        self.pubacked: collections.OrderedDict[int, float] = collections.OrderedDict()
        self.subscribed_tags: set[int] = set()
        self.busy: set[int] = set()  # tags with a contact in progress
        # A beacon asking for an offload heard while a contact with its tag was open: the
        # contact to make as soon as that one ends (the newest such beacon per tag).
        self.deferred: dict[int, Contact] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.sensed: Reading | None = None
        self.next_heartbeat = 0.0
        self.next_sensor_poll = 0.0
        self.wake = asyncio.Event()
        self.stopping = False
        self._load_stored_config()

    # -- configuration --------------------------------------------------------------------
    def _load_stored_config(self) -> None:
        stored = self.store.config()
        if stored is None:
            log.info("no_config_yet", unit=self.unit)
            return
        try:
            cfg = pushed_config.open_payload(stored[1], self.unit, self.key)
        except pushed_config.ConfigRefused as e:
            self.counters["config_stored_invalid"] += 1
            log.error("stored_config_invalid", reason=e.reason, detail=e.detail)
            return
        self._apply_config(cfg)

    def _apply_config(self, cfg: pushed_config.UnitConfig) -> None:
        self.config = cfg
        self.beacon_keys = cfg.beacon_keys()
        th = cfg.thresholds.presence()
        states = self.store.tag_states()
        trackers: dict[int, presence.PresenceTracker] = {}
        for tag in self.beacon_keys:
            old = self.trackers.get(tag)
            if old is not None:
                old.thresholds = th
                trackers[tag] = old
                continue
            st = states.get(tag)
            if st is not None and st.state == presence.HOME and st.last_kept is not None:
                # Home when the unit went down: still home unless the away timeout has run
                # out since its last beacon, which poll() will then report.
                trackers[tag] = presence.PresenceTracker(th, presence.HOME, st.last_kept, st.rssi)
            else:
                state = st.state if st is not None else presence.UNKNOWN
                trackers[tag] = presence.PresenceTracker(th, state)
        self.trackers = trackers
        log.info("config_applied", version=cfg.version, tags=sorted(self.beacon_keys))
        if cfg.brokers and self.link is not None:
            self.link.set_brokers(endpoints(cfg.brokers))
        self._sync_subscriptions()

    def on_config(self, payload: bytes) -> None:
        current = self.config.version if self.config else 0
        try:
            cfg = pushed_config.open_payload(payload, self.unit, self.key)
            if cfg.version == current and self.store.config() == (current, payload):
                return  # the retained message again, at reconnect
            if cfg.version <= current:
                raise pushed_config.ConfigRefused(
                    "version", f"version {cfg.version} is not above {current}"
                )
        except pushed_config.ConfigRefused as e:
            self.counters[f"config_refused_{e.reason}"] += 1
            log.warning("config_refused", reason=e.reason, detail=e.detail, kept=current)
            return
        self.store.save_config(cfg.version, payload)
        self._apply_config(cfg)

    def _sync_subscriptions(self) -> None:
        if self.link is None or not self.link.connected:
            return
        want = set(self.beacon_keys)
        self.link.subscribe([topics.tag_down(t) for t in sorted(want - self.subscribed_tags)])
        self.link.unsubscribe([topics.tag_down(t) for t in sorted(self.subscribed_tags - want)])
        self.subscribed_tags = want

    # -- beacons --------------------------------------------------------------------------
    def _accept_counter(self, tag: int, counter: int) -> bool:
        if counter <= self.last_counter.get(tag, -1):
            return False
        self.last_counter[tag] = counter
        return True

    def accept_beacon(self, heard: BeaconHeard) -> Contact | None:
        """Verify one beacon and update presence; the contact to make, if the tag is to be
        acknowledged. Synchronous: the benchmark measures exactly this."""
        try:
            v = handshake.verify_beacon(heard.payload, self.beacon_keys, self._accept_counter)
        except handshake.BeaconRefused as e:
            self.counters[e.reason] += 1
            if e.reason != handshake.UNPAIRED:  # unpaired tags next door are normal
                log.warning("beacon_refused", reason=e.reason, tag=e.tag, detail=e.detail)
            return None
        self.counters["beacons_accepted"] += 1
        b = v.beacon
        tracker = self.trackers[b.tag]
        change, kept = tracker.observe(heard.rssi, heard.time)
        # Counter and presence in one commit, before anything goes out: a restart can neither
        # accept this beacon again nor forget that the tag was home.
        self.store.save_beacon(b.tag, b.counter, tracker.state, tracker.last_kept, tracker.rssi)
        if change is not None:
            self._report_presence(b.tag, change)
        if not kept or self.config is None:
            return None
        offload = v.wants_offload and self.store.count(store.RELAY) < self.s.max_relay_frames
        ack = self.acker.ack(b, self.clock.now(), self.config.thresholds.lease_s, offload)
        return Contact(b.tag, heard.address, ack, offload, v.wants_offload)

    def on_beacon(self, heard: BeaconHeard) -> None:
        contact = self.accept_beacon(heard)
        if contact is None:
            return
        if contact.tag in self.busy:
            self.counters["contact_busy"] += 1
            if contact.offload:
                # The tag has sealed something since the beacon being answered (a tamper
                # right after a routine beacon): the open contact was not asked to offload,
                # so contact it again as soon as this one ends instead of waiting a whole
                # beacon interval for the next pending flag.
                self.deferred[contact.tag] = contact
            return
        self._start_contact(contact)

    def _start_contact(self, contact: Contact) -> None:
        self.busy.add(contact.tag)
        task = asyncio.get_running_loop().create_task(self._contact(contact))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _start_deferred(self, tag: int) -> None:
        c = self.deferred.pop(tag, None)
        if c is None or self.stopping:
            return
        # The ack signed when its beacon was heard: it carries the unit's time at the moment
        # the tag sent that beacon, as every ack does (the tag applies it with the delay since).
        self.counters["contact_deferred"] += 1
        self._start_contact(c)

    async def _contact(self, c: Contact) -> None:
        try:
            async with self.radio.contact(c.address) as link:
                await link.send_ack(c.ack)
                self.counters["acks_sent"] += 1
                if c.offload:
                    frames = await link.receive_offload()
                    held = self.take_offload(c.tag, frames)
                    # A cut-off offload is not all the tag holds, nor is an empty one from a
                    # tag whose beacon said it holds frames (it serves none when it refused
                    # the ack: docs/home-unit.md, "GATT contract").
                    complete = 0 < len(frames) < MAX_OFFLOAD_FRAMES
                else:
                    # Nothing pending: the tag holds no frame an ACK could free. Pending but
                    # not read (the relay queue is full): the unit cannot tell what it holds.
                    held, complete = Held(()), not c.holds
                await self._deliver(c.tag, link, held, complete)
        except RadioError as e:
            self.counters[f"radio_{e.reason}"] += 1
            log.info("contact_failed", tag=c.tag, reason=e.reason, detail=e.detail)
        finally:
            self.busy.discard(c.tag)
            self._start_deferred(c.tag)

    async def _deliver(self, tag: int, link: TagLink, held: Held, complete: bool) -> None:
        """Write the tag's downlinks: its waiting commands first (oldest first, each deleted
        once written), then the remembered ACKs naming frames it offered in this contact, at
        most max_downlinks_per_contact in all (the tag keeps no more until its next poll).

        An ACK naming none of the frames the tag offered is not written: the tag has freed
        them, either on this ACK at an earlier contact (`downlink_ack_confirmed`) or on the
        same ACK over its own cellular link (`downlink_ack_unneeded`: most ACKs for a tag's
        days away). When the unit knows the offer was everything the tag holds, such an ACK
        is forgotten. When it does not (the offload was not read: the queue is full), the
        ACKs not yet written are written, since they may be what the tag needs to free room.
        An ACK already written MAX_ACK_WRITES times whose frames the tag still offers is
        forgotten (`downlink_ack_refused`); take_offload has relayed those frames."""
        budget = self.s.max_downlinks_per_contact
        send: list[store.KnownAck] = []
        confirmed: list[int] = []
        unneeded: list[int] = []
        refused: list[store.KnownAck] = []
        for a in self.store.known_acks(tag):
            if held.named_by(a.ranges):
                (refused if a.writes >= MAX_ACK_WRITES else send).append(a)
            elif not complete and not a.writes:
                send.append(a)
            elif complete:
                (confirmed if a.writes else unneeded).append(a.id)
        if confirmed or unneeded or refused:
            self.store.forget_acks(confirmed + unneeded + [a.id for a in refused])
            self.counters["downlink_ack_confirmed"] += len(confirmed)
            self.counters["downlink_ack_unneeded"] += len(unneeded)
            self.counters["downlink_ack_refused"] += len(refused)
        for ident, data in self.store.downlinks(tag)[:budget]:
            await link.deliver_downlink(data)
            self.store.drop_downlink(ident)
            self.counters["downlinks_delivered"] += 1
            budget -= 1
        for a in send[: max(budget, 0)]:
            await link.deliver_downlink(a.data)
            self.store.ack_written(a.id)
            self.counters["downlinks_delivered"] += 1
            self.counters["downlink_acks_delivered"] += 1

    def take_offload(self, tag: int, frames: list[bytes]) -> Held:
        """Queue what a tag handed over; returns the frames it offered. The unit cannot check
        a tag's MAC (it has no tag key) but refuses what is not structurally a TAG_DATA frame
        of that very tag. A frame a remembered ACK names is not queued: the backend has it,
        and the tag gets the ACK in this contact instead (`relay_already_acked`), unless that
        ACK has been written to the tag MAX_ACK_WRITES times already."""
        acked = Acked(
            r for a in self.store.known_acks(tag) if a.writes < MAX_ACK_WRITES for r in a.ranges
        )
        good: list[tuple[int, int, int, bytes]] = []
        offered: list[tuple[int, int]] = []
        already = 0
        for data in frames:
            try:
                f = fr.parse(data)
            except fr.DecodeError as e:
                self.counters[f"offload_malformed_{e.reason}"] += 1
                log.warning("offload_refused", tag=tag, reason=e.reason, detail=e.detail)
                continue
            if f.mtype != fr.TAG_DATA or f.device != tag:
                self.counters["offload_foreign"] += 1
                log.warning("offload_refused", tag=tag, reason="foreign", device=f.device)
                continue
            offered.append((f.boot, f.seq))
            if (f.boot, f.seq) in acked:
                already += 1
                continue
            good.append((f.device, f.boot, f.seq, data))
        stored, dup, refused = self.store.enqueue(
            store.RELAY, good, self.clock.now(), self.s.max_relay_frames
        )
        self.counters["relay_queued"] += stored
        self.counters["relay_duplicate"] += dup
        self.counters["relay_already_acked"] += already
        if refused:
            self.counters["relay_overflow"] += refused
            log.warning("relay_queue_full", tag=tag, refused=refused)
        self.wake.set()
        return Held(offered)

    # -- own frames -----------------------------------------------------------------------
    def _own(self, records: list[fr.Record], urgent: bool = False) -> None:
        now = self.clock.now()
        signed = self.own.sign(records, now, urgent)
        _, _, refused = self.store.enqueue(
            store.OWN,
            [(self.unit, signed.boot, signed.seq, signed.data)],
            now,
            self.s.max_own_frames,
        )
        if refused:
            self.counters["own_overflow"] += refused
            log.warning("own_queue_full", records=[r.name for r in records])
        self.wake.set()

    def _report_presence(self, tag: int, change: presence.Change) -> None:
        now = self.clock.now()
        rec = own_frames.presence(self.unit, tag, change.state, change.rssi, now, change.time)
        log.info("presence", tag=tag, state="home" if change.state else "away", at=change.time)
        self._own([rec])

    def _status_pair(self) -> StatusPair:
        now = self.clock.now()
        online = self.own.sign([fr.Record(fr.LINK, dt=0, state=fr.LINK_ONLINE)], now)
        will = self.own.sign([fr.Record(fr.LINK, dt=0, state=fr.LINK_OFFLINE)], now)
        return StatusPair(online.data, will.data)

    def _heartbeat(self, now: float) -> None:
        relay = self.store.count(store.RELAY)
        bad = sum(
            n
            for k, n in self.counters.items()
            if k.startswith(
                (
                    "beacon_mac",
                    "beacon_replay",
                    "beacon_malformed",
                    "offload_",
                    "config_refused",
                    "downlink_malformed",
                )
            )
        )
        recs = [
            fr.Record(
                fr.STATUS,
                dt=0,
                fw_version=own_frames.FW_VERSION,
                buf_used=own_frames.saturate16(relay + self.store.count(store.OWN)),
                buf_free=own_frames.saturate16(self.s.max_relay_frames - relay),
                bad_inputs=own_frames.saturate16(bad),
            )
        ]
        if self.sensed is not None and self.sensed.mains is not None:
            recs.append(
                fr.Record(
                    fr.HOME_POWER,
                    dt=0,
                    mains=int(self.sensed.mains),
                    battery=self.sensed.battery if self.sensed.battery is not None else 0,
                )
            )
        self._own(recs)
        log.info("heartbeat", queue=relay, counters=dict(self.counters))

    def _poll_sensors(self) -> None:
        r = self.sensors.read()
        old = self.sensed
        self.sensed = r
        if old is None:
            return  # the first reading is the baseline; the heartbeat reports it
        recs: list[fr.Record] = []
        urgent = False
        if r.mains is not None and old.mains is not None and r.mains != old.mains:
            battery = r.battery if r.battery is not None else 0
            recs.append(fr.Record(fr.HOME_POWER, dt=0, mains=int(r.mains), battery=battery))
            log.warning("mains", on=r.mains, battery=r.battery)
        for kind, new, was in (
            (fr.HOME_MOVED, r.moved, old.moved),
            (fr.HOME_CASE, r.case_open, old.case_open),
        ):
            if new is not None and was is not None and new != was:
                recs.append(fr.Record(fr.HOME_TAMPER, dt=0, kind=kind, state=int(new)))
                urgent = urgent or bool(new)
                log.warning("tamper", kind=kind, state=new)
        if recs:
            self._own(recs, urgent)

    def _report_overflow(self) -> None:
        lost = self.store.overflow_unreported()
        if lost <= 0 or self.store.count(store.OWN) >= self.s.max_own_frames:
            return
        now = self.clock.now()
        rec = fr.Record(fr.OVERFLOW, dt=0, lost=min(lost, 0xFFFFFFFF))
        signed = self.own.sign([rec], now, urgent=True)
        self.store.enqueue_overflow_report(
            self.unit, signed.boot, signed.seq, signed.data, now, lost
        )
        log.warning("overflow_reported", lost=lost)

    def poll(self) -> None:
        """The due work: presence timeouts, sensors, heartbeat, overflow report, relay."""
        if isinstance(self.clock, SimClock) and not self.clock.started:
            self.pump()  # the simulator has not said what time it is yet
            return
        now = self.clock.now()
        for tag, tracker in self.trackers.items():
            change = tracker.expire(now)
            if change is not None:
                self.store.save_presence(tag, tracker.state, tracker.last_kept, tracker.rssi)
                self._report_presence(tag, change)
        mono = time.monotonic()
        if mono >= self.next_sensor_poll:
            self.next_sensor_poll = mono + self.s.sensor_poll_s
            self._poll_sensors()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + self.s.heartbeat_s
            self._heartbeat(now)
        self._report_overflow()
        self._resend_stale()
        self.pump()

    # -- relay ----------------------------------------------------------------------------
    def pump(self) -> None:
        link = self.link
        if link is None or not link.connected:
            return
        while len(self.inflight) < self.s.relay_window:
            rows = self.store.pending(self.cursor, self.s.relay_window - len(self.inflight))
            if not rows:
                break
            for q in rows:
                if not self._publish(q):
                    return
                self.cursor = q.id

    def _resend_stale(self) -> None:
        """PUBACKed long ago and still no ACK: the backend may have lost it. Send it again;
        ingest is idempotent on (device, boot, seq)."""
        if self.link is None or not self.link.connected:
            return
        due = time.monotonic() - self.s.resend_after_s
        stale: list[int] = []
        for qid, t in self.pubacked.items():
            if t > due or len(stale) >= self.s.relay_window:
                break
            stale.append(qid)
        for qid in stale:
            del self.pubacked[qid]
        for q in self.store.get(stale):
            self.counters["relay_resent"] += 1
            self._publish(q)

    def _publish(self, q: store.Queued) -> bool:
        assert self.link is not None
        topic = topics.home_relay(self.unit) if q.kind == store.RELAY else topics.home_up(self.unit)
        mid = self.link.publish(topic, q.data)
        if mid is None:
            self.counters["publish_refused"] += 1
            return False
        self.inflight[mid] = q.id
        return True

    def on_puback(self, mid: int, accepted: bool) -> None:
        qid = self.inflight.pop(mid, None)
        if qid is None:
            return  # a status frame, or a message from before a restart
        if not accepted:
            # The broker refused it (e.g. not authorised); tried again after the resend delay.
            self.counters["relay_puback_refused"] += 1
        self.pubacked[qid] = time.monotonic()
        self.pump()

    # -- messages from the backend --------------------------------------------------------
    def on_message(self, msg: Incoming) -> None:
        parsed = topics.parse(msg.topic)
        try:
            if parsed == ("hu", self.unit, "config"):
                self.on_config(msg.payload)
            elif parsed == ("hu", self.unit, "down"):
                self._own_ack(msg.payload)
            elif parsed is not None and parsed[0] == "tag" and parsed[2] == "down":
                self._tag_down(parsed[1], msg.payload)
            else:
                self.counters["message_unexpected"] += 1
                log.warning("unexpected_message", topic=msg.topic)
        finally:
            # PUBACK only now that whatever the message carried is committed: a crash before
            # this line makes the broker deliver it again.
            if self.link is not None:
                self.link.ack(msg)

    def _own_ack(self, payload: bytes) -> None:
        try:
            f = fr.decode(payload, self.key)
            if f.mtype != fr.ACK or f.device != self.unit:
                raise fr.DecodeError("message_type", f"type {f.mtype} for {f.device}")
        except fr.DecodeError as e:
            self.counters[f"own_ack_refused_{e.reason}"] += 1
            log.warning("own_ack_refused", reason=e.reason, detail=e.detail)
            return
        self._free(store.OWN, self.unit, f)

    def _tag_down(self, tag: int, payload: bytes) -> None:
        """An ACK or COMMAND for a paired tag. The unit holds no tag key, so it cannot verify
        it; it relies on the broker ACL (only the backend may publish on tag down topics) to
        free relayed frames an ACK names, and passes the frame on for the tag to verify
        before the tag frees anything itself (docs/home-unit.md, "Trust")."""
        try:
            f = fr.parse(payload)
            if f.device != tag or f.mtype not in (fr.ACK, fr.COMMAND):
                raise fr.DecodeError("message_type", f"type {f.mtype} for {f.device}")
        except fr.DecodeError as e:
            self.counters["downlink_malformed"] += 1
            log.warning("downlink_refused", tag=tag, reason=e.reason, detail=e.detail)
            return
        now = self.clock.now()
        if f.mtype == fr.COMMAND:
            dropped = self.store.add_downlink(tag, payload, now, self.s.max_downlinks_per_tag)
            if dropped:
                # A real loss on this path: the command reaches the tag only over its own
                # cellular link now.
                self.counters["downlink_dropped"] += dropped
                log.warning("downlink_dropped", tag=tag, dropped=dropped)
            return
        # An ACK: remembered, not queued for delivery. Most name frames the tag uploaded
        # itself over cellular and gets the ACK for there; the unit hands it over only when
        # the tag offers a frame it names (docs/home-unit.md, "Downlinks").
        ranges = [(r.boot, r.first, r.last) for r in f.records if r.type == fr.ACK_RANGE]
        expired = self.store.remember_ack(tag, payload, ranges, now, self.s.max_acks_per_tag)
        self.counters["downlink_ack_expired"] += expired
        self._free(store.RELAY, tag, f)

    def _free(self, kind: int, device: int, f: fr.Frame) -> None:
        ranges = [(r.boot, r.first, r.last) for r in f.records if r.type == fr.ACK_RANGE]
        freed = self.store.free(kind, device, ranges)
        for qid in freed:
            self.pubacked.pop(qid, None)
        self.counters["relay_freed" if kind == store.RELAY else "own_freed"] += len(freed)

    # -- connection -----------------------------------------------------------------------
    def on_connected(self, pair: StatusPair | None, session_present: bool) -> None:
        assert self.link is not None
        log.info("mqtt_connected", session_present=session_present, broker=self.link.broker)
        self.counters["mqtt_connects"] += 1
        if pair is not None:
            self.link.publish(topics.home_status(self.unit), pair.online, retain=True)
        self.link.arm(self._status_pair())  # the will for the next connection
        self.subscribed_tags = set()  # subscribe again: a lost session lost them too
        self.link.subscribe([topics.home_config(self.unit), topics.home_down(self.unit)])
        self._sync_subscriptions()
        self.wake.set()

    def on_disconnected(self, reason: str) -> None:
        log.warning("mqtt_disconnected", reason=reason)

    # -- run ------------------------------------------------------------------------------
    async def _on_tick(self, t: float) -> None:
        # Lock-step: the work due by t includes the contacts already started (a beacon the
        # simulator delivered before this tick), so they finish before the unit answers.
        while self.tasks:
            await asyncio.wait(set(self.tasks))
        self.poll()

    async def run(self, stop: asyncio.Event) -> None:
        self.loop = asyncio.get_running_loop()
        username, password = self.s.login()
        pushed = self.config.brokers if self.config is not None else []
        self.link = MqttLink(
            self.unit,
            endpoints(pushed) or self.s.broker_list(),
            self.loop,
            LinkEvents(self.on_connected, self.on_disconnected, self.on_puback, self.on_message),
            username=username,
            password=password,
            keepalive=self.s.keepalive_s,
            reconnect=(self.s.reconnect_min_s, self.s.reconnect_max_s),
            session_expiry=self.s.session_expiry_s,
            inflight=self.s.relay_window,
        )
        self.link.arm(self._status_pair())
        self.link.start()
        if hasattr(self.radio, "on_tick") and isinstance(self.clock, SimClock):
            self.radio.on_tick = self._on_tick
        await self.radio.start(self.on_beacon)
        log.info(
            "home_unit_started", unit=self.unit, boot=self.boot, radio=type(self.radio).__name__
        )
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.s.poll_s)
                self.wake.clear()
                self.poll()
        finally:
            self.stopping = True
            await self.radio.stop()
            for task in list(self.tasks):
                task.cancel()
            farewell = self._status_pair().will if self.link.connected else None
            self.link.stop(farewell)
            self.store.close()
            log.info("home_unit_stopped", unit=self.unit)
