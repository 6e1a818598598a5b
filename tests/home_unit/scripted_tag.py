"""A scripted tag for home-unit tests: the tag side of the beacon/ack/offload/downlink
exchange, written from docs/protocol.md with the real codec (the firmware's RF mode is built
separately). It verifies every acknowledgement and ACK it is given, as the firmware must,
and frees frames only on a verified backend ACK."""

from __future__ import annotations

import hashlib
import threading

from firmware import beacon as bc
from firmware import frame as fr
from home_unit.sim_radio_peer import TagSide

T0 = 1_790_000_000


def device_key(device: int) -> bytes:
    return hashlib.sha256(b"tagwatch test key %d" % device).digest()


class ScriptedTag:
    """`inbox`: downlink frames the tag takes in one contact, as the firmware keeps at most
    8 for its next poll (firmware/homelink.py); more are refused as "inbox_full". None: no
    limit."""

    def __init__(
        self, tag: int, unit: int, unit_key: bytes, boot: int = 1, inbox: int | None = None
    ) -> None:
        self.tag = tag
        self.unit = unit
        self.key = device_key(tag)
        self.bkey = bc.beacon_key(self.key)
        self.pkey = bc.pairing_key(unit_key, tag)
        self.address = f"tag-{tag}"
        self.boot = boot
        self.seq = 0
        self.counter = 0
        self.lock = threading.Lock()
        self.pending: dict[tuple[int, int], bytes] = {}  # (boot, seq) -> frame, until ACKed
        self.freed: list[tuple[int, int]] = []
        self.sent_counters: list[int] = []
        self.last_echo = -1
        self.acks: list[bc.HomeAck] = []
        self.acks_refused: list[str] = []
        self.downlinks_refused: list[str] = []
        self.commands: list[fr.Frame] = []
        self.downlinks: list[fr.Frame] = []  # every verified downlink, in arrival order
        self.inbox = inbox
        self.taken = 0  # downlinks taken in the current contact
        self.in_range = True

    def make_frames(self, n: int, ts: int = T0) -> list[bytes]:
        out = []
        with self.lock:
            for _ in range(n):
                self.seq += 1
                rec = fr.Record(
                    fr.FIX,
                    (0, 507192000 + self.seq, -18808000, 42, 2, fr.SOURCE_RF_HOME, 0, 0, 0, 9),
                )
                f = fr.Frame(
                    fr.TAG_DATA,
                    self.tag,
                    self.boot,
                    self.seq,
                    ts + self.seq,
                    [rec],
                    fr.FLAG_TIME_VALID,
                )
                data = fr.encode(f, self.key)
                self.pending[(self.boot, self.seq)] = data
                out.append(data)
        return out

    def beacon_payload(self) -> bytes:
        with self.lock:
            self.counter += 1
            self.sent_counters.append(self.counter)
            pending = len(self.pending)
            status = bc.ST_PENDING if pending else 0
            b = bc.Beacon(self.tag, self.counter, status, 80, min(pending, 0xFFFF))
            return bc.encode_beacon(b, self.bkey)

    def advertisement(self) -> bytes:
        return bc.advertisement(self.beacon_payload())

    # -- the tag's side of the radio --------------------------------------------------------
    def on_ack(self, data: bytes) -> str | None:
        with self.lock:
            self.taken = 0  # the ack write opens a contact
            try:
                a = bc.decode_home_ack(data, self.pkey)
            except fr.DecodeError as e:
                self.acks_refused.append(e.reason)
                return None  # a tag ignores a bad ack; the radio write itself succeeded
            recent = self.sent_counters[-8:]
            if a.tag != self.tag or a.home_unit != self.unit:
                self.acks_refused.append("foreign")
            elif a.echo not in recent or a.echo <= self.last_echo:
                self.acks_refused.append("replay")
            else:
                self.last_echo = a.echo
                self.acks.append(a)
        return None

    def offload(self) -> list[bytes]:
        with self.lock:
            return [self.pending[k] for k in sorted(self.pending)]

    def on_downlink(self, data: bytes) -> str | None:
        with self.lock:
            if self.inbox is not None and self.taken >= self.inbox:
                self.downlinks_refused.append("inbox_full")
                return None
            self.taken += 1
            try:
                f = fr.decode(data, self.key)
            except fr.DecodeError as e:
                self.downlinks_refused.append(e.reason)
                return None
            self.downlinks.append(f)
            if f.mtype == fr.ACK:
                for r in f.records:
                    if r.type == fr.ACK_RANGE:
                        for seq in range(r.first, r.last + 1):
                            if self.pending.pop((r.boot, seq), None) is not None:
                                self.freed.append((r.boot, seq))
            else:
                self.commands.append(f)
        return None

    def pending_count(self) -> int:
        with self.lock:
            return len(self.pending)


class ScriptedTags(TagSide):
    """TagSide for SimRadioPeer: routes requests to scripted tags by address."""

    def __init__(self, *tags: ScriptedTag) -> None:
        self.tags = {t.address: t for t in tags}

    def _tag(self, address: str) -> ScriptedTag | None:
        t = self.tags.get(address)
        return t if t is not None and t.in_range else None

    def on_ack(self, unit: int, address: str, data: bytes) -> str | None:
        t = self._tag(address)
        return "out_of_range" if t is None else t.on_ack(data)

    def on_offload(self, unit: int, address: str) -> list[bytes] | str:
        t = self._tag(address)
        return "out_of_range" if t is None else t.offload()

    def on_downlink(self, unit: int, address: str, data: bytes) -> str | None:
        t = self._tag(address)
        return "out_of_range" if t is None else t.on_downlink(data)
