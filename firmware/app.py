# The tag application: a step machine on an injected clock. poll(now_ticks) does what is due
# (read GNSS, sense tamper/motion/battery, seal batches into signed frames in the flash log,
# drive the mode's positioning and transport, act on ACKs and commands) and returns the tick
# at which it next needs to run. Nothing here sleeps, blocks or reads a clock: the board does.

from firmware import battery as bat
from firmware import commands, motion, sampling
from firmware import frame as fr
from firmware.runtime import TYPE_CHECKING, collect, const, unload

if TYPE_CHECKING:  # (annotations only)
    from firmware.board import Board
    from firmware.modes import Mode
    from firmware.nmea import Fix
    from firmware.zonewatch import ZoneWatch

_ALERT = (fr.TAMPER, fr.MOTION_NO_FIX)
# A battery check due waits up to this long for a wake the tag has anyway (a beacon, the
# watchdog's, a fix) before it wakes the tag itself: 5 minutes from the last check with the
# default battery_every_s, half the flat-battery alert's 10-minute latency limit, and each
# edge of a charge at most that late (docs/firmware.md, "What a poll does").
_BATTERY_WAIT_MS = const(240000)
# A home unit's time does not move a clock a fix showed right this recently: GNSS is the
# precise source, a unit without network time may be seconds off (its every ack would set the
# clock and GNSS re-base it, refusing fixes meanwhile), and the tag's crystal (+-20 ppm)
# drifts under half a second in 6 hours. Past it (a night at home) the unit's time stands.
_GNSS_HOLD_MS = const(21600000)


class App:
    def __init__(self, board: "Board", cfg: "dict[str, object]") -> None:
        # The parts are built by a module loaded for that and dropped after: the construction
        # runs once, and its code need not stay in the heap (docs/firmware.md, "Heap").
        from firmware import appboot

        p = appboot.Parts(board, cfg)
        self.board = board
        self.cfg = cfg
        self.device = p.device
        self.key = p.key
        self.client_id = "tag-%d" % p.device
        self.files = p.files
        self.state = p.state
        self.mono = p.mono
        self.boot = p.boot  # this boot's number, saved before any frame of the boot is sealed
        self.seq = 0  # the next frame's sequence number
        self.store = p.store
        self.ledger = p.ledger
        self.nmea = p.nmea
        self.filter = p.filter
        self.sampler = p.sampler
        self.motion = p.motion
        self.battery = p.battery
        self.strap = p.strap
        self.case = p.case
        self.zones: "ZoneWatch | None" = p.zones  # loaded once the tag holds zones (zone_watch)
        self.downlink = p.downlink
        self.uplink = p.uplink
        self.gnss_on = False
        self.clock_base = -1  # Unix seconds at clock_at_ms; -1 until set
        self.clock_at_ms = 0
        self.clock_src = -1  # CLOCK_* source of the clock; GNSS is the precise one
        self.gnss_ms = -1  # when a fix last showed the clock right (mono ms; -1: never)
        self.batch: "list[tuple[int, int, tuple[int, ...]]]" = []  # (type, mono ms, values)
        self.batch_fixes = 0
        self.batch_start_ms = 0
        self.batch_urgent = False
        self.flush = False
        self.zone_owed = False  # a fix inside a zone not yet acknowledged (_zone_retry)
        self.zone_retry_ms = -1  # the last uplink retry it forced
        self.next_battery_ms = 0
        self.next_status_ms = 0
        self.refusal_reported_ms = -60000
        self.store_errors = 0
        self.polls = 0
        self.alarm = 0  # the last poll's next wake but for reading the receiver (ticks)
        self.fixes = 0
        self.mode: "Mode" = p.mode
        # Boot record, GPS mode; RF control for a paired tag on a board with a BLE radio.
        self.rf = p.start(self)
        unload("appboot")

    def setting(self, name: str) -> int:
        v = self.cfg[name]
        return v if type(v) is int else 0

    # -- clock ----------------------------------------------------------------------------
    def clock_unix(self, now_ms: int) -> int:
        if self.clock_base < 0:
            return -1
        return self.clock_base + (now_ms - self.clock_at_ms) // 1000

    def set_clock(self, unix: int, now_ms: int, source: int, at_ms: int = -1) -> None:
        """unix was the time at at_ms (monotonic; default now_ms): an ack taken a while after
        it arrived is applied with that delay, not as if fresh."""
        if at_ms < 0:
            at_ms = now_ms
        old = self.clock_unix(at_ms)
        if old >= 0 and -2 <= unix - old <= 2:
            if source == fr.CLOCK_GNSS:
                self.clock_src = source  # agrees with GNSS: as good as GNSS
            return
        held = self.gnss_ms >= 0 and at_ms - self.gnss_ms < _GNSS_HOLD_MS
        if source == fr.CLOCK_HOME_UNIT and held:
            return
        delta = 0 if old < 0 else unix - old
        delta = max(-0x80000000, min(0x7FFFFFFF, delta))
        self.clock_base = unix
        self.clock_at_ms = at_ms
        self.clock_src = source
        self.add(fr.CLOCK_SET, now_ms, (source, delta))

    # -- records and batches --------------------------------------------------------------
    def add(self, rtype: int, now_ms: int, values: "tuple[int, ...]", urgent: bool = False) -> None:
        if not self.batch:
            self.batch_start_ms = now_ms
        self.batch.append((rtype, now_ms, values))
        if rtype == fr.FIX:
            self.batch_fixes += 1
        if urgent or rtype in _ALERT:
            self.batch_urgent = True

    def _batch_due(self, now_ms: int) -> int:
        if not self.batch:
            return -1
        if (
            self.batch_urgent
            or self.flush
            or self.batch_fixes >= self.setting("batch_fixes")
            or len(self.batch) >= self.setting("batch_max_records")
        ):
            return now_ms
        if now_ms < self.sampler.near_until_ms:  # near a watched zone: upload promptly
            return self.batch_start_ms + self.setting("zone_batch_s") * 1000
        return self.batch_start_ms + self.setting("batch_s") * 1000

    def seal(self, now_ms: int) -> None:
        """Close the batch into a signed frame (sequence assigned now) and store it sealed, so
        every retransmission is byte-identical."""
        # A seal makes many small objects (records, payloads), then a few of a frame's size.
        # The allocator takes the first free run that fits, and garbage is free only after a
        # collection: collected first, the small objects fill the holes the last minutes'
        # garbage left, and the long free runs stay whole for the frame's bytes. The heap
        # binds here, by fragmentation, not by its high-water (docs/firmware.md, "Heap").
        collect()
        lost = self.store.take_lost()
        if lost:
            self.batch.append((fr.OVERFLOW, now_ms, (min(lost, 0xFFFFFFFF),)))
        unix = self.clock_unix(now_ms)
        flags = 0
        if unix >= 0:
            ts = unix
            flags |= fr.FLAG_TIME_VALID
        else:
            ts = now_ms // 1000
        if self.batch_urgent:
            flags |= fr.FLAG_URGENT
        recs = []
        for rtype, t, values in self.batch:
            dt = (now_ms - t) // 1000
            recs.append(fr.Record(rtype, (min(max(dt, 0), 0xFFFF),) + values))
        f = fr.Frame(fr.TAG_DATA, self.device, self.boot, self.seq, ts, recs, flags)
        data = fr.encode(f, self.key)
        # Garbage before the store's copy of the frame: the collection an allocation makes
        # when it finds no free run can then take the records back.
        del f, recs
        try:
            self.store.append(data)
        except OSError:
            # The flash refused the write (worn or full beyond the ring's reserve): keep the
            # records in RAM and try again later; the count shows in the status record.
            self.store_errors += 1
            if lost:
                self.batch.pop()
            while len(self.batch) > 2 * self.setting("batch_max_records"):
                self.batch.pop(0)
            return
        self.seq += 1
        if lost:
            self.store.lost_reported(lost)
        if self.batch_urgent:
            self.uplink.urgent_now()
        self.batch = []
        self.batch_fixes = 0
        self.batch_urgent = False
        self.flush = False

    # -- mode seam ------------------------------------------------------------------------
    def set_mode(self, mode: "Mode", now_ms: int, reason: int) -> None:
        self.mode.leave(self, now_ms)
        self.mode = mode
        mode.enter(self, now_ms)
        self.add(fr.MODE, now_ms, (mode.code, reason, mode.home_unit))
        if reason != fr.MODE_REASON_BOOT:
            self.flush = True  # the backend hears of a switch without waiting for a batch

    def gnss_set(self, on: bool, now_ms: int) -> None:
        if on == self.gnss_on:
            return
        self.gnss_on = on
        self.board.gnss_power(on)
        if on:
            self.nmea.reset()
            self.sampler.power_on(now_ms)
            self.ledger.set("gnss", "acquire", now_ms)
        else:
            self.sampler.power_off(now_ms)
            self.ledger.set("gnss", "off", now_ms)

    # -- inputs ---------------------------------------------------------------------------
    def _gnss(self, now_ms: int) -> None:
        data = self.board.gnss_read()
        if data:
            self.nmea.feed(data)
        fix = self.nmea.take()
        while fix is not None:
            self._fix(fix, now_ms)
            fix = self.nmea.take()

    def _fix(self, fix: "Fix", now_ms: int) -> None:
        acc, why = self.filter.check(fix, self.clock_unix(now_ms), now_ms)
        if why:
            return
        if self.filter.set_to >= 0:  # epochs agreed on a time the clock did not have
            self.set_clock(self.filter.set_to, now_ms, fr.CLOCK_GNSS)
        self.gnss_ms = now_ms
        if self.motion.fix() == motion.CLEARED:
            self.add(fr.MOTION_NO_FIX, now_ms, (fr.MOTION_CLEARED, 0))
        s = self.sampler
        if s.state == sampling.ACQUIRING or now_ms >= s.next_ms:
            if s.state == sampling.ACQUIRING:
                self.ledger.set("gnss", "track", now_ms)
            interval = s.interval_s(now_ms, self.motion.last_motion_ms, self.clock_unix(now_ms))
            s.got_fix(now_ms, interval)
            self.fixes += 1
            self.add(
                fr.FIX,
                now_ms,
                (
                    fix.lat_e7,
                    fix.lon_e7,
                    acc,
                    fix.fix_type,
                    fr.SOURCE_GNSS,
                    min(fix.sats, 255),
                    min(fix.speed_cms, 0xFFFF),
                    fix.course_cd,
                    fix.hdop_d,
                ),
            )
            self._zones(fix, acc, now_ms)

    def zone_watch(self) -> "ZoneWatch":
        """The zone watch, loaded when the tag first holds zones: at boot when zones are on
        flash, else at the first cmd_zone (sent when the subject's zones are set, normally at
        enrolment, early in a tag's service). A tag without zones never spends heap on it;
        once loaded it stays (docs/firmware.md, "Heap")."""
        if self.zones is None:
            from firmware.zonewatch import ZoneWatch

            self.zones = ZoneWatch(self.state)
        return self.zones

    def _zones(self, fix: "Fix", acc: int, now_ms: int) -> None:
        if self.zones is None:
            return  # no zones pushed to this tag
        from firmware.zonewatch import AT, FAR

        where = self.zones.check(fix.lat_e7, fix.lon_e7, acc, self.setting("zone_near_m"))
        if where == FAR:
            return
        self.sampler.near_zone(now_ms + self.setting("zone_hold_s") * 1000)
        if where == AT:
            self.flush = True  # an entry reaches the backend with this fix, not a batch later
            self.zone_owed = True

    def _zone_retry(self, now_ms: int) -> int:
        """In a coverage gap the uplink backs off (doubling up to backoff_max_s). From a fix
        inside a zone until the log is acknowledged it retries at least every zone_batch_s
        instead, so an entry leaves about a minute after coverage returns (even after the
        visit), not at the back-off's next turn. Returns the next retry (-1: none owed)."""
        if not self.zone_owed:
            return -1
        if self.store.pending() == 0:  # (the fix's frame was sealed: flush, before this)
            self.zone_owed = False
            return -1
        every = self.setting("zone_batch_s") * 1000
        if self.zone_retry_ms < 0 or now_ms - self.zone_retry_ms >= every:
            self.zone_retry_ms = now_ms
            self.uplink.urgent_now()
        return self.zone_retry_ms + every

    def _tamper(self, now_ms: int) -> int:
        due = -1
        for sensor, raw in (
            (self.strap, self.board.strap_open()),
            (self.case, self.board.case_open()),
        ):
            ev = sensor.sample(raw, now_ms)
            if ev >= 0:
                self.add(fr.TAMPER, now_ms, (sensor.kind, ev), urgent=True)
                self.state.set("latch_%d" % sensor.kind, sensor.latched)
            d = sensor.due_ms()
            if d >= 0 and (due < 0 or d < due):
                due = d
        return due

    def _motion(self, now_ms: int) -> int:
        m = self.motion
        expected = self.mode.gnss_expected()
        if self.board.motion() > 0:
            m.motion(now_ms, expected)
        stage = m.step(now_ms, expected)
        if stage == motion.NOTIFIED:
            self.add(fr.MOTION_NO_FIX, now_ms, (fr.MOTION_NOTIFIED, m.count()))
            self.board.vibrate(2, 3)  # "go outside": the wearer acknowledges on the device
        elif stage == motion.ESCALATED:
            self.add(fr.MOTION_NO_FIX, now_ms, (fr.MOTION_ESCALATED, m.count()))
        if m.last_motion_ms >= 0 and now_ms - m.last_motion_ms < 60000:
            return (now_ms // 60000 + 1) * 60000  # count every moving minute
        if m.stage == motion.NOTIFIED:
            return (m.stage_at_min + m.grace_min) * 60000
        return -1

    def _battery(self, now_ms: int) -> None:
        if now_ms < self.next_battery_ms:
            return
        self.next_battery_ms = now_ms + self.setting("battery_every_s") * 1000
        connected, charging = self.board.charger()
        events = self.battery.update(self.board.battery_mv(), connected, charging)
        if events:
            self._battery_record(now_ms, bat.EV_CRITICAL in events)

    def _battery_record(self, now_ms: int, urgent: bool) -> None:
        b = self.battery
        hours = b.hours_left(self.ledger.average_ua(now_ms))
        self.add(fr.BATTERY, now_ms, (b.level, b.flags(), min(b.mv, 0xFFFF), hours), urgent)

    def bad_inputs(self) -> int:
        rf = self.rf.refused_total() if self.rf is not None else 0
        return min(self.nmea.bad() + self.downlink.refused_total() + rf, 0xFFFF)

    def _status(self, now_ms: int) -> None:
        if now_ms < self.next_status_ms:
            return
        self.next_status_ms = now_ms + self.setting("status_every_s") * 1000
        free_kb = max(0, self.store.max_bytes - self.store.used_bytes()) // 1024
        used = min(self.store.pending(), 0xFFFF)
        self.add(
            fr.STATUS,
            now_ms,
            (self.setting("fw_version"), used, min(free_kb, 0xFFFF), self.bad_inputs()),
        )
        if self.battery.level >= 0:
            self._battery_record(now_ms, False)

    # -- downlink -------------------------------------------------------------------------
    def _downlink(self, now_ms: int) -> None:
        for _ in range(8):  # bounded per poll; the rest waits in the modem's queue
            msg = self.board.modem.receive()
            if msg is None:
                return
            self.handle_downlink(msg[1], now_ms)

    def handle_downlink(self, data: bytes, now_ms: int) -> None:
        kind, f, result = self.downlink.classify(data)
        if kind == commands.ACK:
            freed = 0
            for rec in f.records:  # type: ignore[attr-defined]
                if rec.type == fr.ACK_RANGE:
                    freed += self.store.ack(rec.boot, rec.first, rec.last)
            if freed:
                self.uplink.progress(now_ms)
                # Network time for a clock never set: a tag fitted away from home indoors
                # may see no GNSS time for hours. Signed, and fresh: it names frames the tag
                # holds (a replayed ACK frees none). GNSS still re-bases it (Clock safety).
                t = f.ts if f.flags & fr.FLAG_TIME_VALID else -1  # type: ignore[attr-defined]
                if self.clock_base < 0 and t >= self.filter.built_unix:
                    self.set_clock(t, now_ms, fr.CLOCK_BACKEND)
            return
        if kind == commands.DUPLICATE:
            # Run already (it came by both paths): answered once, never run twice.
            if result >= 0:
                self.add(fr.COMMAND_RESULT, now_ms, (f.seq, result))  # type: ignore[attr-defined]
            return
        if kind == commands.REFUSED:
            # Answer a refused command (a security event for the backend), at most once a
            # minute so a flood of forgeries cannot fill the flash.
            if result >= 0 and now_ms - self.refusal_reported_ms >= 60000:
                self.refusal_reported_ms = now_ms
                self.add(fr.COMMAND_RESULT, now_ms, (f.seq, result))  # type: ignore[attr-defined]
                self.flush = True
            return
        # The handlers are loaded for this frame and dropped after: commands are rare, and a
        # tag need not hold their code all day (docs/firmware.md, "Heap").
        from firmware import cmdrun

        cmdrun.run_frame(self, f, now_ms)  # type: ignore[arg-type]
        unload("cmdrun")
        self.flush = True

    # -- the step -------------------------------------------------------------------------
    def poll(self, now_ticks: int) -> int:
        """Do what is due at now_ticks; returns the tick at which to call poll again."""
        now = self.mono.update(now_ticks)
        self.polls += 1
        self.board.watchdog_feed()
        if self.gnss_on:
            self._gnss(now)
        due = [now + min(self.setting("max_sleep_s") * 1000, self.setting("watchdog_ms") // 2)]
        due.append(self._tamper(now))
        due.append(self._motion(now))
        self._battery(now)
        self._status(now)
        due.append(self.next_status_ms)
        self._downlink(now)
        # Seal a due batch before RF control beacons: an urgent frame (a tamper at home) then
        # goes out flagged pending in this poll's beacon, not the next one.
        b = self._batch_due(now)
        if b >= 0 and b <= now:
            self.seal(now)
        if self.rf is not None:
            due.append(self.rf.step(now))
        b = self._batch_due(now)
        if b >= 0 and b <= now:
            self.seal(now)
            b = self._batch_due(now)
        due.append(b)
        due.append(self._zone_retry(now))
        due.append(self.mode.step(self, now))
        self._downlink(now)
        if self.flush and self.batch:
            self.seal(now)
            due.append(self.mode.step(self, now))
        m = self.board.modem.step(now_ticks)
        if m >= 0:
            due.append(now + m)
        # While the receiver is on the tag polls every second anyway: the check keeps its
        # time among the timers (App.alarm), so a board sleeping to them checks as often.
        due.append(self.next_battery_ms + (0 if self.gnss_on else _BATTERY_WAIT_MS))
        wake = -1
        for d in due:
            if d >= 0 and (wake < 0 or d < wake):
                wake = d
        if wake <= now:
            wake = now + 1
        # The timers' wake (an RTC alarm). The receiver's output is read every second while
        # it is on; a board that the receiver wakes once it has a fix (a time pulse given
        # only when locked) may sleep to the alarm while it searches instead: what those
        # reads find until the fix changes nothing but the reader's counts.
        self.alarm = self.mono.to_ticks(wake)
        if self.gnss_on and now + 1000 < wake:
            wake = now + 1000
        return self.mono.to_ticks(wake)
