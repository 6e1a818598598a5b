"""The relay to the backend (docs/home-unit.md): the queue (the tags' frames and the unit's own)
published QoS 1 in order, a window at a time; a PUBACK is one hop and frees nothing; a frame
leaves the queue only when the backend's ACK on the tag's (or the unit's) down topic names it.
What else comes down for a paired tag waits for its next contact: its commands, and the ACKs
it needs for frames it still holds."""

from __future__ import annotations

import collections
import time

import structlog

from firmware import frame as fr
from firmware import topics
from home_unit import store
from home_unit.clock import Clock
from home_unit.mqtt_link import MqttLink
from home_unit.settings import HomeUnitSettings

log = structlog.get_logger("home_unit")


class Relay:
    def __init__(
        self,
        unit: int,
        key: bytes,
        settings: HomeUnitSettings,
        queue: store.Store,
        clock: Clock,
        counters: collections.Counter[str],
    ) -> None:
        self.unit = unit
        self.key = key
        self.s = settings
        self.store = queue
        self.clock = clock
        self.counters = counters
        # Relay state for this process: which queue rows are in paho's hands.
        self.cursor = 0  # highest queue id published since start
        self.inflight: dict[int, int] = {}  # mid -> queue id, awaiting PUBACK
        # queue id -> monotonic time of its PUBACK, oldest first (so the resend scan stops
        # at the first that is not yet due instead of walking the whole backlog)
        self.pubacked: collections.OrderedDict[int, float] = collections.OrderedDict()

    def pump(self, link: MqttLink | None) -> None:
        if link is None or not link.connected:
            return
        while len(self.inflight) < self.s.relay_window:
            rows = self.store.pending(self.cursor, self.s.relay_window - len(self.inflight))
            if not rows:
                break
            for q in rows:
                if not self._publish(link, q):
                    return
                self.cursor = q.id

    def resend_stale(self, link: MqttLink | None) -> None:
        """PUBACKed long ago and still no ACK: the backend may have lost it. Send it again;
        ingest is idempotent on (device, boot, seq)."""
        if link is None or not link.connected:
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
            self._publish(link, q)

    def _publish(self, link: MqttLink, q: store.Queued) -> bool:
        topic = topics.home_relay(self.unit) if q.kind == store.RELAY else topics.home_up(self.unit)
        mid = link.publish(topic, q.data)
        if mid is None:
            self.counters["publish_refused"] += 1
            return False
        self.inflight[mid] = q.id
        return True

    def on_puback(self, mid: int, accepted: bool, link: MqttLink | None) -> None:
        qid = self.inflight.pop(mid, None)
        if qid is None:
            return  # a status frame, or a message from before a restart
        if not accepted:
            # The broker refused it (e.g. not authorised); tried again after the resend delay.
            self.counters["relay_puback_refused"] += 1
        self.pubacked[qid] = time.monotonic()
        self.pump(link)

    def own_ack(self, payload: bytes) -> None:
        try:
            f = fr.decode(payload, self.key)
            if f.mtype != fr.ACK or f.device != self.unit:
                raise fr.DecodeError("message_type", f"type {f.mtype} for {f.device}")
        except fr.DecodeError as e:
            self.counters[f"own_ack_refused_{e.reason}"] += 1
            log.warning("own_ack_refused", reason=e.reason, detail=e.detail)
            return
        self._free(store.OWN, self.unit, f)

    def tag_down(self, tag: int, payload: bytes) -> None:
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
