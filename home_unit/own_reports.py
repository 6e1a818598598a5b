"""The home unit's own reports, signed HOME_DATA frames (own_frames.py) queued for the relay:
presence changes, the heartbeat (status and mains power), power and tamper changes from the
unit's sensors, a full queue's overflow, and the LINK pair for each connection."""

from __future__ import annotations

import asyncio
import collections
import math

import structlog

from firmware import frame as fr
from home_unit import own_frames, presence, store
from home_unit.clock import Clock
from home_unit.mqtt_link import StatusPair
from home_unit.sensors import FileSensors, Reading
from home_unit.settings import HomeUnitSettings

log = structlog.get_logger("home_unit")


class OwnReports:
    def __init__(
        self,
        settings: HomeUnitSettings,
        key: bytes,
        boot: int,
        queue: store.Store,
        clock: Clock,
        sensors: FileSensors,
        counters: collections.Counter[str],
        relay_due: asyncio.Event,
    ) -> None:
        self.s = settings
        self.unit = settings.unit
        self.store = queue
        self.clock = clock
        self.sensors = sensors
        self.counters = counters  # all the unit's counters: the heartbeat reports them
        self.wake = relay_due  # set when a frame was queued for the relay
        self.own = own_frames.OwnFrames(self.unit, key, boot)
        self.sensed: Reading | None = None  # the last reading, for the heartbeat
        # The last known value of each input, for telling a change: an input that could not
        # be read (a switch file caught while it is being rewritten) is not a change, and the
        # change it hid is still one when the input reads again.
        self.known: Reading | None = None
        self.next_heartbeat = 0.0
        self.next_sensor_poll = 0.0

    def poll(self, now: float) -> None:
        """The due reports: sensor changes, the heartbeat, an overflow not yet reported."""
        mono = self.clock.monotonic()
        if mono >= self.next_sensor_poll:
            self.next_sensor_poll = mono + self.s.sensor_poll_s
            self._poll_sensors()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + self.s.heartbeat_s
            self._heartbeat(now)
        self._report_overflow()

    def sensors_changed(self) -> None:
        """Read the sensors at the next poll, whenever the last read was: something that
        knows an input changed (a udev power-supply event; the simulator switching a unit's
        mains) says so rather than waiting for the polling interval."""
        self.next_sensor_poll = -math.inf

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

    def report_presence(self, tag: int, change: presence.Change) -> None:
        now = self.clock.now()
        rec = own_frames.presence(self.unit, tag, change.state, change.rssi, now, change.time)
        log.info("presence", tag=tag, state="home" if change.state else "away", at=change.time)
        self._own([rec])

    def status_pair(self) -> StatusPair:
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
        old = self.known
        self.sensed = r
        self.known = r if old is None else r.over(old)
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
