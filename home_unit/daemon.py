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
import collections
import contextlib

import structlog

from firmware import topics
from home_unit import handshake, presence, pushed_config, store
from home_unit.clock import Clock, SimClock
from home_unit.contacts import Contact, Contacts
from home_unit.mqtt_link import Incoming, LinkEvents, MqttLink, StatusPair, endpoints
from home_unit.own_reports import OwnReports
from home_unit.radio import BeaconHeard, Radio
from home_unit.relay import Relay
from home_unit.sensors import FileSensors
from home_unit.settings import HomeUnitSettings

log = structlog.get_logger("home_unit")


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
        self.counters: collections.Counter[str] = collections.Counter()
        self.store = store.Store(settings.state_db)
        self.boot = self.store.next_boot()
        self.acker = handshake.Acknowledger(self.unit, self.key)
        self.config: pushed_config.UnitConfig | None = None
        self.beacon_keys: dict[int, bytes] = {}
        self.trackers: dict[int, presence.PresenceTracker] = {}
        self.last_counter: dict[int, int] = {
            t: st.counter for t, st in self.store.tag_states().items()
        }
        self.link: MqttLink | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subscribed_tags: set[int] = set()
        self.wake = asyncio.Event()  # set when something was queued for the relay
        # The simulator sets the clock and ticks the unit (lock-step): no polling on real time.
        self._ticked = False
        self.relay = Relay(self.unit, self.key, settings, self.store, self.clock, self.counters)
        self.contacts = Contacts(settings, radio, self.store, self.clock, self.counters, self.wake)
        self.reports = OwnReports(
            settings,
            self.key,
            self.boot,
            self.store,
            self.clock,
            sensors
            or FileSensors(settings.power_supply_dir, settings.moved_file, settings.case_file),
            self.counters,
            self.wake,
        )
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
            self.reports.report_presence(b.tag, change)
        if not kept or self.config is None:
            return None
        offload = v.wants_offload and self.store.count(store.RELAY) < self.s.max_relay_frames
        ack = self.acker.ack(b, self.clock.now(), self.config.thresholds.lease_s, offload)
        return Contact(b.tag, heard.address, ack, offload, v.wants_offload)

    def on_beacon(self, heard: BeaconHeard) -> None:
        contact = self.accept_beacon(heard)
        if contact is not None:
            self.contacts.start(contact)
        if self._ticked:
            self.wake.set()  # the beacon moved the simulated clock: do what is due by now

    def sensors_changed(self) -> None:
        """An input may have changed: read the sensors now (on the daemon's loop)."""
        self.reports.sensors_changed()
        self.wake.set()

    # -- the due work ---------------------------------------------------------------------
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
                self.reports.report_presence(tag, change)
        self.reports.poll(now)
        self.relay.resend_stale(self.link)
        self.pump()

    # -- relay ----------------------------------------------------------------------------
    def pump(self) -> None:
        self.relay.pump(self.link)

    def on_puback(self, mid: int, accepted: bool) -> None:
        self.relay.on_puback(mid, accepted, self.link)

    # -- messages from the backend --------------------------------------------------------
    def on_message(self, msg: Incoming) -> None:
        parsed = topics.parse(msg.topic)
        try:
            if parsed == ("hu", self.unit, "config"):
                self.on_config(msg.payload)
            elif parsed == ("hu", self.unit, "down"):
                self.relay.own_ack(msg.payload)
            elif parsed is not None and parsed[0] == "tag" and parsed[2] == "down":
                self.relay.tag_down(parsed[1], msg.payload)
            else:
                self.counters["message_unexpected"] += 1
                log.warning("unexpected_message", topic=msg.topic)
        finally:
            # PUBACK only now that whatever the message carried is committed: a crash before
            # this line makes the broker deliver it again.
            if self.link is not None:
                self.link.ack(msg)

    # -- connection -----------------------------------------------------------------------
    def on_connected(self, pair: StatusPair | None, session_present: bool) -> None:
        assert self.link is not None
        log.info("mqtt_connected", session_present=session_present, broker=self.link.broker)
        self.counters["mqtt_connects"] += 1
        if pair is not None:
            self.link.publish(topics.home_status(self.unit), pair.online, retain=True)
        self.link.arm(self.reports.status_pair())  # the will for the next connection
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
        await self.contacts.settle()
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
        self.link.arm(self.reports.status_pair())
        self.link.start()
        if hasattr(self.radio, "on_tick") and isinstance(self.clock, SimClock):
            self.radio.on_tick = self._on_tick
            self._ticked = True
        # Under a simulator's clock time moves only with its ticks and beacons, which do the
        # due work themselves: polling every poll_s of real time as well found nothing new
        # and cost each unit five polls a wall second (a thousand units, 5,000).
        poll_s = None if self._ticked else self.s.poll_s
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: self.wake.set())
        try:
            # Inside: a radio that cannot start still closes the link (its will) and the store.
            await self.radio.start(self.on_beacon)
            log.info(
                "home_unit_started", unit=self.unit, boot=self.boot, radio=type(self.radio).__name__
            )
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), poll_s)
                self.wake.clear()
                self.poll()
        finally:
            stopping.cancel()
            self.contacts.stop()
            await self.radio.stop()
            self.contacts.cancel()
            farewell = self.reports.status_pair().will if self.link.connected else None
            await self.link.close(farewell)
            self.store.close()
            log.info("home_unit_stopped", unit=self.unit)
