"""Contacts with paired tags over the radio (docs/home-unit.md, "GATT contract"): write the
signed acknowledgement, take the offload when the ack asks for it (frames the backend has not
acknowledged are queued for the relay), then deliver the tag's waiting commands and the ACKs
for frames it still holds. One contact per tag at a time; a beacon asking for an offload heard
while one is open is answered as soon as it ends."""

from __future__ import annotations

import asyncio
import bisect
import collections
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from firmware import frame as fr
from home_unit import store
from home_unit.clock import Clock
from home_unit.radio import MAX_OFFLOAD_FRAMES, Radio, RadioError, TagLink
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


class Contacts:
    """The contacts in progress and the ones waiting for them, one per tag."""

    def __init__(
        self,
        settings: HomeUnitSettings,
        radio: Radio,
        queue: store.Store,
        clock: Clock,
        counters: collections.Counter[str],
        relay_due: asyncio.Event,
    ) -> None:
        self.s = settings
        self.radio = radio
        self.store = queue
        self.clock = clock
        self.counters = counters
        self.wake = relay_due  # set when an offload queued frames for the relay
        self.busy: set[int] = set()  # tags with a contact in progress
        # A beacon asking for an offload heard while a contact with its tag was open: the
        # contact to make as soon as that one ends (the newest such beacon per tag).
        self.deferred: dict[int, Contact] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False

    def start(self, contact: Contact) -> None:
        """Contact the tag now, or, while a contact with it is open, once that one ends."""
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

    async def settle(self) -> None:
        """Until every contact started so far (and any it deferred) has ended."""
        while self.tasks:
            await asyncio.wait(set(self.tasks))

    def stop(self) -> None:
        """No deferred contact starts from now on (the daemon is stopping)."""
        self.stopping = True

    def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
