# RF home mode (docs/firmware.md, "RF home mode"). The tag beacons in every mode; RfControl
# (called from App.poll) sends the beacons, takes what the home unit wrote during contacts
# (verified acknowledgements, downlink frames), and switches modes: k good acks within the
# window -> RfMode; no ack for the lease -> GpsMode at once, with a fix taken now.
#
# In RfMode the GNSS and the modem are off and beacons are relaxed; the home unit takes the
# sealed frames over GATT and relays them; they are freed only when the backend's ACK comes
# back as a downlink and verifies, exactly as in GPS mode. The home unit's signed clock keeps
# the tag's time right. Positions: a MODE record naming the home unit at every switch, and,
# when the tag is provisioned with its home's coordinates, a FIX with source RF-home at the
# fix-at-rest interval.
from firmware import frame as fr
from firmware import modes, ticks
from firmware import tagbeacon as bc
from firmware.homelink import HomeLink
from firmware.proximity import BeaconCounter, Proximity
from firmware.runtime import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware.app import App


class RfMode(modes.Mode):
    code = fr.MODE_RF

    def __init__(self, home_unit: int) -> None:
        self.home_unit = home_unit
        self.next_fix_ms = 0

    def enter(self, app: "App", now_ms: int) -> None:
        app.gnss_set(False, now_ms)
        app.uplink.suspend(now_ms)
        self.next_fix_ms = now_ms

    def step(self, app: "App", now_ms: int) -> int:
        c = app.cfg
        acc = c.get("home_acc_dm", 0)
        if type(acc) is not int or acc <= 0:
            return -1  # no home coordinates provisioned: the MODE record is the position
        if now_ms >= self.next_fix_ms:
            self.next_fix_ms = now_ms + app.setting("fix_rest_s") * 1000
            lat, lon = c["home_lat_e7"], c["home_lon_e7"]
            app.add(fr.FIX, now_ms, (lat, lon, acc, 0, fr.SOURCE_RF_HOME, 0, 0, 0, 0))  # type: ignore[arg-type]
        return self.next_fix_ms


# An alert-class frame in RF mode whose beacon no ack answers within this long goes out by
# cellular (GPS mode at once) rather than waiting out the lease: a case opened at the door as
# the wearer walks out of range reached the backend 140 s late, against 60 s.
URGENT_WAIT_MS = 10000


class RfControl:
    def __init__(self, app: "App", radio: "object") -> None:
        self.app = app
        self.radio = radio  # the board's BLE radio (advertise, serve)
        self.prox = Proximity(app.device, app.cfg)
        self.counter = BeaconCounter(app.state)
        self.bkey = bc.beacon_key(app.key)
        self.link = HomeLink(self.prox, app.store, app.board.ticks_ms)
        radio.serve(self.link)  # type: ignore[attr-defined]
        self.next_beacon_ms = 0
        self.last_beacon_ms = 0
        self.beacons = 0
        self.adv_uas = app.board.bursts.get("ble_adv", 0)
        self.contact_uas = app.board.bursts.get("ble_contact", 0)
        self.contacts_charged = 0
        self.urgent_by = -1  # an urgent beacon's deadline for an ack, and the lease before it
        self.urgent_lease = -1

    def in_rf(self) -> bool:
        return self.app.mode.code == fr.MODE_RF

    def refused_total(self) -> int:
        return self.prox.refused_total()

    def _beacon(self, now_ms: int) -> None:
        app = self.app
        pending = app.store.pending()
        status = 0
        if app.strap.latched:
            status |= bc.ST_STRAP_OPEN
        if app.case.latched:
            status |= bc.ST_CASE_OPEN
        flags = app.battery.flags()
        if flags & 1:
            status |= bc.ST_CHARGING
        if flags & 4:
            status |= bc.ST_BATTERY_LOW
        if pending:
            status |= bc.ST_PENDING
        if self.in_rf():
            status |= bc.ST_RF_MODE
        level = app.battery.level if app.battery.level >= 0 else 0
        n = self.counter.next()
        b = bc.Beacon(app.device, n, status, min(level, 100), min(pending, 0xFFFF))
        self.prox.sent(n)  # before it is on air: the ack can come back at once
        self.radio.advertise(bc.advertisement(bc.encode_beacon(b, self.bkey)))  # type: ignore[attr-defined]
        self.beacons += 1
        app.ledger.charge("ble", self.adv_uas)

    def _take(self, now_ms: int) -> None:
        """What the home unit wrote during contacts since the last poll."""
        app = self.app
        link = self.link
        if link.contacts > self.contacts_charged:
            app.ledger.charge("ble", self.contact_uas * (link.contacts - self.contacts_charged))
            self.contacts_charged = link.contacts
        while link.acks:
            a = link.acks.pop(0)
            rx = link.ack_ticks.pop(0) if link.ack_ticks else -1
            # The ack's time was the unit's at rx; the poll may come much later.
            age = ticks.diff(app.mono.last, rx) if rx >= 0 else 0
            at = now_ms - age if 0 < age <= now_ms else now_ms
            self.prox.acked(a, now_ms, self.in_rf())  # type: ignore[arg-type]
            app.set_clock(a.unix, now_ms, fr.CLOCK_HOME_UNIT, at)  # type: ignore[attr-defined]
            if not self.in_rf() and self.prox.should_enter(now_ms):
                self.prox.entered(a, now_ms)  # type: ignore[arg-type]
                app.set_mode(RfMode(self.prox.home_unit), now_ms, fr.MODE_REASON_HOME_ACK)
        while link.downlinks:
            app.handle_downlink(link.downlinks.pop(0), now_ms)

    def _due(self, now_ms: int) -> int:
        """The next beacon: as planned at the last one, or, in GPS mode at rest and with no
        unit answering, the relaxed interval after it. The tag cannot reach home without
        moving, so until the accelerometer or an answer says otherwise a beacon every
        beacon_gps_s would only spend; checked at every poll, so motion or an ack brings the
        planned one back at once."""
        app = self.app
        s = app.sampler
        if (
            self.in_rf()
            or not self.beacons
            # at rest is the sampler's rest interval (nor a zone or a locate asking for fixes)
            or s.interval_s(now_ms, app.motion.last_motion_ms, -1) != s.cfg["fix_rest_s"]
            or self.prox.should_enter(now_ms)  # (drops the acks older than the window)
            or self.prox.good
        ):
            return self.next_beacon_ms
        return self.last_beacon_ms + app.setting("beacon_rf_s") * 1000

    def step(self, now_ms: int) -> int:
        """Take the contact results, switch modes, beacon when due; the next deadline."""
        app = self.app
        self._take(now_ms)
        if self.urgent_by >= 0 and self.prox.lease_until != self.urgent_lease:
            self.urgent_by = -1  # an ack renewed the lease: the unit takes the frame
        reason = -1
        if self.in_rf() and self.prox.expired(now_ms):
            reason = fr.MODE_REASON_LEASE_EXPIRED
        elif self.in_rf() and 0 <= self.urgent_by <= now_ms:
            reason = fr.MODE_REASON_URGENT_UNHEARD
        if reason >= 0:
            self.prox.left(now_ms)
            self.urgent_by = -1
            app.set_mode(modes.GpsMode(), now_ms, reason)
            app.sampler.locate_now(now_ms)  # back in GPS mode: a fix now
        # An alert-class frame goes to the home unit at the next contact: beacon at once.
        urgent = self.in_rf() and app.uplink.take_urgent()
        if urgent and self.urgent_by < 0:
            self.urgent_by = now_ms + URGENT_WAIT_MS
            self.urgent_lease = self.prox.lease_until
        if now_ms >= self._due(now_ms) or urgent:
            self._beacon(now_ms)
            every = app.setting("beacon_rf_s" if self.in_rf() else "beacon_gps_s")
            self.last_beacon_ms = now_ms
            self.next_beacon_ms = now_ms + every * 1000
            self._take(now_ms)  # a contact may answer the beacon at once
        due = self._due(now_ms)
        if self.in_rf() and self.prox.lease_until < due:
            due = self.prox.lease_until
        if 0 <= self.urgent_by < due:
            due = self.urgent_by
        return due
