# The application step machine on the fake board: fixes to sealed frames to uplink to ACK,
# tamper, motion without fix, commands, coverage loss, reboot, tick wraparound.
from firmware import brokers, config, ticks
from firmware import frame as fr
from firmware.app import App
from tests.firmware import fakeboard as fb
from tests.firmware.flash import Flash

MICROPYTHON = True
# The whole application is loaded into the unix port's heap beside the tests' bookkeeping
# (not the device budget: tests/hil/test_tag_day.py is); ~25 % above the measured need.
MICROPYTHON_HEAP = "224k"
MIN = 60000


def make(start_ticks=0, flash=None, **over):
    flash = flash or Flash(blocks=64, block_size=4096)
    board = fb.FakeBoard(flash.files(), start_ticks)
    cfg = dict(fb.CFG)
    cfg.update(over)
    return App(board, config.merge(cfg)), board, flash


def seqs(board):
    return [(f.boot, f.seq) for f in fb.frames(board)]


def test_cold_start_fix_batch_uplink_ack_frees():
    app, board, flash = make()
    board.moving = True
    fb.run(app, board, 25 * MIN)
    fixes = fb.records(board, "fix")
    assert len(fixes) >= 10
    f0, r0 = fixes[0]
    assert f0.flags & fr.FLAG_TIME_VALID
    assert r0.lat_e7 == 507161700 and r0.lon_e7 == -18753500 and r0.acc_dm == 45
    # The first fix came after the cold-start time to first fix, not before.
    assert f0.time_of(r0) >= fb.T0 + board.ttff_ms // 1000
    assert app.sampler.starts[2] == 1 and app.sampler.starts[0] >= 9  # then hot starts
    # A batch of 10 fixes went up in one frame and the backend's ACK freed it.
    assert any(len([r for r in f.records if r.name == "fix"]) == 10 for f in fb.frames(board))
    assert app.store.pending() == 0
    assert len(seqs(board)) == len(set(seqs(board)))
    assert not board.modem.on  # nothing owed: modem off
    assert board.feeds == app.polls
    names = [r.name for f in fb.frames(board) for r in f.records]
    assert "boot" in names and "mode" in names and "clock_set" in names
    flash.close()


def test_one_epoch_with_a_wrong_date_neither_sets_the_clock_nor_stops_the_fixes():
    # The receiver's first fix after its cold start carries a placeholder date (1980-01-06),
    # or a date a day ahead; the tag must not take its clock from it and then refuse every
    # correct fix as being from the past.
    for wrong in (315964800, fb.T0 + 86400 + 25):
        app, board, flash = make()
        board.moving = True
        board.wrong_time = {25: wrong}  # the first epoch with a fix (cold TTFF 25 s)
        fb.run(app, board, 30 * MIN)
        fixes = fb.records(board, "fix") + [(None, r) for r in app.batch if r[0] == fr.FIX]
        assert len(fixes) >= 28, wrong  # a fix a minute
        for f in fb.frames(board):
            assert f.flags & fr.FLAG_TIME_VALID and abs(f.ts - fb.T0 - 15 * 60) < 16 * 60
        sets = [r for _f, r in fb.records(board, "clock_set")]
        assert [(r.source, r.delta_s) for r in sets] == [(fr.CLOCK_GNSS, 0)]
        flash.close()


def test_gnss_duty_cycled_and_ledger_charges_it():
    app, board, flash = make()
    board.moving = True
    fb.run(app, board, 30 * MIN)
    gnss_uas = app.ledger.uas["gnss"]
    # On for ~25 s cold, then ~3 s of hot start a minute: well under a sixth of what
    # tracking all the time would cost.
    assert 0 < gnss_uas < 12700 * 30 * 60 // 6
    flash.close()


def test_at_rest_fixes_hourly():
    app, board, flash = make()
    fb.run(app, board, 3 * 60 * MIN + MIN)
    assert app.fixes == 4  # boot, then 1 h, 2 h, 3 h
    flash.close()


def test_motion_after_an_hour_at_rest_brings_the_next_fix_forward():
    app, board, flash = make()
    start = 75 * MIN  # at rest since boot: fixes at ~0 and ~60 min, the next planned at 120

    def walk(b):
        b.moving = True

    fb.run(app, board, 80 * MIN, events=[(start, walk)])
    times = [f.time_of(r) - fb.T0 for f, r in fb.records(board, "fix")]
    times += [app.batch[i][1] // 1000 for i in range(len(app.batch)) if app.batch[i][0] == fr.FIX]
    moving = [t for t in times if t >= start // 1000]
    # Once a minute from the start of the walk, the first within seconds (hot start).
    assert moving and moving[0] - start // 1000 <= 10
    assert len(moving) >= 4
    flash.close()


def test_strap_cut_urgent_within_seconds():
    app, board, flash = make()
    cut_at = 5 * MIN + 1234

    def cut(b):
        b.strap = True

    fb.run(app, board, 6 * MIN, events=[(cut_at, cut)])
    t = fb.records(board, "tamper")
    assert len(t) == 1
    f, r = t[0]
    assert r.sensor == fr.SENSOR_STRAP and r.state == fr.OPEN and f.flags & fr.FLAG_URGENT
    # Recorded at the debounce (0.2 s), sent as soon as the modem was up (5 s registration).
    assert f.time_of(r) - (fb.T0 + cut_at // 1000) <= 1
    first_send = board.modem.sent.index(fr.encode(f, fb.KEY))
    assert first_send >= 0 and app.strap.latched
    flash.close()


def dated_ack(device, boot, seq, unix):
    """The backend's ACK as ingest signs it: dated with the backend's time (TIME_VALID)."""
    rec = fr.Record(fr.ACK_RANGE, (boot, seq, seq))
    return fr.encode(fr.Frame(fr.ACK, device, 0, 0, unix, [rec], fr.FLAG_TIME_VALID), fb.KEY)


def test_fitted_away_from_home_indoors_the_backends_ack_dates_the_tag():
    # No GNSS time for hours (indoors, away from its home unit): the signed ACK of its first
    # upload gives the tag the backend's time, as a phone takes the network's, so the rules
    # can place what it records next instead of taking it for silence.
    app, board, flash = make()
    board.sky = False

    def backend(modem, payload):
        f = fr.decode(payload, fb.KEY)
        modem.inbox.append(dated_ack(f.device, f.boot, f.seq, fb.T0 + board.clock // 1000))

    board.backend = backend
    fb.run(app, board, 2 * 60 * MIN + MIN)
    sets = [r for _f, r in fb.records(board, "clock_set")]
    assert [r.source for r in sets] == [fr.CLOCK_BACKEND]
    assert abs(app.clock_unix(app.mono.ms) - (fb.T0 + board.clock // 1000)) <= 1
    sent = fb.frames(board)
    assert len(sent) >= 3 and not sent[0].flags & fr.FLAG_TIME_VALID  # sealed before the ACK
    for f in sent[1:]:
        assert f.flags & fr.FLAG_TIME_VALID and abs(f.ts - fb.T0 - 3600) <= 3600
    flash.close()


def test_an_ack_sets_only_an_unset_clock_and_only_when_it_frees_frames():
    # A captured ACK sent again frees nothing (its frames are gone): it must not date the
    # tag. Once the clock is set, GNSS (under "Clock safety") corrects it, not another ACK.
    app, board, flash = make()
    board.sky = False
    board.backend = None  # nothing acknowledged: every frame stays pending
    fb.run(app, board, 20 * MIN)
    first = fb.frames(board)[0]
    now = app.mono.ms
    app.handle_downlink(dated_ack(fb.DEVICE, first.boot, first.seq + 100, fb.T0 - 86400), now)
    assert app.clock_unix(now) == -1 and app.store.pending() > 0
    app.handle_downlink(dated_ack(fb.DEVICE, first.boot, first.seq, fb.T0 + 1200), now)
    assert app.clock_unix(now) == fb.T0 + 1200 and app.clock_src == fr.CLOCK_BACKEND
    app.handle_downlink(dated_ack(fb.DEVICE, first.boot, first.seq + 1, fb.T0 + 999), now)
    assert app.clock_unix(now) == fb.T0 + 1200
    flash.close()


def test_motion_without_fix_notifies_then_escalates_then_clears():
    app, board, flash = make()
    board.moving = True
    board.sky = False  # foil: the receiver never gets a fix
    fb.run(app, board, 25 * MIN)
    stages = [r.stage for _f, r in fb.records(board, "motion_no_fix")]
    assert stages == [fr.MOTION_NOTIFIED, fr.MOTION_ESCALATED]
    assert board.vibrations == [(2, 3)]
    board.sky = True
    fb.run(app, board, 28 * MIN)
    stages = [r.stage for _f, r in fb.records(board, "motion_no_fix")]
    assert stages[-1] == fr.MOTION_CLEARED
    flash.close()


def command(seq, *recs, key=fb.KEY):
    return fr.encode(fr.Frame(fr.COMMAND, fb.DEVICE, 0, seq, fb.T0, list(recs)), key)


def results(board):
    return [(r.cmd_seq, r.result) for _f, r in fb.records(board, "command_result")]


def test_commands_signed_replay_protected_and_answered():
    app, board, flash = make()
    board.moving = True
    fb.run(app, board, 2 * MIN)
    m = board.modem
    m.inbox.append(command(5, fr.Record(fr.CMD_CONFIG, (fr.CFG_FIX_MOVING_S, 30))))
    m.inbox.append(command(4, fr.Record(fr.CMD_NOTIFY, (1, 2, 7))))  # older, never run: replay
    m.inbox.append(command(5, fr.Record(fr.CMD_NOTIFY, (1, 2, 7))))  # number 5 again: not run
    m.inbox.append(command(6, fr.Record(fr.CMD_NOTIFY, (1, 2, 7)), key=bytes(32)))  # forged
    m.inbox.append(command(7, fr.Record(fr.CMD_CONFIG, (99, 1)), fr.Record(fr.CMD_LOCATE, ())))
    m.inbox.append(b"\x01garbage")
    # The broker holds them until the tag's next session (its next batch).
    fb.run(app, board, 14 * MIN)
    got = results(board)
    assert (5, fr.RESULT_OK) in got and (4, fr.RESULT_REPLAY) in got
    assert (5, fr.RESULT_DUPLICATE) in got and app.downlink.duplicates == 1
    assert (7, fr.RESULT_UNKNOWN) in got and (7, fr.RESULT_OK) in got
    assert app.cfg["fix_moving_s"] == 30 and board.vibrations == []
    assert app.downlink.refused["replay"] == 1 and app.downlink.refused["bad_mac"] == 1
    assert app.downlink.refused["malformed_short"] == 1
    assert app.state.int("cmd_seq") == 7
    flash.close()


def test_clear_tamper_and_time_sync():
    app, board, flash = make()
    board.strap = True
    fb.run(app, board, MIN)
    board.strap = False
    fb.run(app, board, 2 * MIN)
    assert app.strap.latched
    board.modem.inbox.append(
        command(
            1, fr.Record(fr.CMD_CLEAR_TAMPER, (1,)), fr.Record(fr.CMD_TIME_SYNC, (fb.T0 + 500,))
        )
    )
    fb.run(app, board, 75 * MIN)  # at rest, the hourly status is the next call-in
    assert results(board) == [(1, 0), (1, 0)] and not app.strap.latched
    assert app.state.get("latch_1") is False
    clock = [r for _f, r in fb.records(board, "clock_set") if r.source == fr.CLOCK_COMMAND]
    assert len(clock) == 1
    flash.close()


def test_coverage_loss_backoff_and_recovery_nothing_lost_or_doubled():
    app, board, flash = make()
    board.moving = True
    board.modem.coverage = False
    fb.run(app, board, 60 * MIN)
    assert board.modem.sent == [] and app.uplink.failures >= 3
    attempts = board.modem.connects
    # Moving, it retries within backoff_moving_s of a failure, not at every poll.
    assert attempts <= 60 * MIN // (app.setting("backoff_moving_s") * 1000) + 1
    board.modem.coverage = True
    fb.run(app, board, 100 * MIN)
    got = seqs(board)
    assert app.store.pending() == 0
    assert sorted(set(got)) == [(app.boot, s) for s in range(app.seq)]  # every frame arrived
    assert len(got) == len(set(got))  # and none twice (acks came back at once)
    flash.close()


def test_in_a_dead_zone_at_rest_the_back_off_grows_and_moving_cuts_it_to_the_moving_cap():
    # Hours at rest without coverage: the retries double up to backoff_max_s (a tag at rest
    # in a dead zone stays there; retrying only spends). The wearer then walks off, and
    # coverage returns a minute into the walk: what the tag held for hours goes within
    # backoff_moving_s, not at the back-off's next turn 25 minutes on.
    app, board, flash = make()
    board.modem.coverage = False
    fb.run(app, board, 5 * 60 * MIN)
    fb.run(app, board, app.uplink.until_ms + 5 * MIN)  # 5 minutes past a retry
    t = list(board.modem.connect_times)
    gaps = [t[i + 1] - t[i] for i in range(len(t) - 1)]
    assert len(gaps) >= 8 and gaps == sorted(gaps) and gaps[0] < 2 * MIN
    cap = app.setting("backoff_max_s") * 1000
    assert cap <= gaps[-2] <= gaps[-1] < cap + 10000  # grown to the maximum, and held there
    held = app.seq
    assert held >= 5 and board.modem.sent == []
    move = board.clock + MIN
    assert app.uplink.until_ms - move > 20 * MIN
    coverage = move + MIN

    def walk(b):
        b.moving = True

    def covered(b):
        b.modem.coverage = True

    moving_cap = app.setting("backoff_moving_s") * 1000
    fb.run(app, board, coverage + moving_cap + 10000, [(move, walk), (coverage, covered)])
    after = board.modem.connect_times[len(t) :]
    assert after and after[0] <= move + moving_cap
    got = set(seqs(board))
    assert all((app.boot, s) in got for s in range(held))
    flash.close()


def test_brokers_tried_in_order_kept_while_they_work_back_off_only_when_all_fail():
    a, b = "a.test:1883", "b.test:8883"
    app, board, flash = make(brokers=[a, b])
    board.moving = True
    board.modem.dead = {a}
    fb.run(app, board, 25 * MIN)
    used = [s[0] for s in board.modem.sessions]
    # a refused: b at once (no back-off between them), then b again for every session.
    assert used[:2] == [a, b] and set(used[1:]) == {b} and len(used) >= 3
    assert board.modem.connects == len(used) and app.uplink.failures == 0
    assert app.store.pending() == 0
    # Every session logs in as the tag with the password derived from its key.
    login = ("tag-%d" % fb.DEVICE, brokers.password(fb.KEY))
    assert set((s[1], s[2]) for s in board.modem.sessions) == {login}
    # b dies: the next session goes to a, which is back.
    board.modem.dead = {b}
    n = len(used)
    fb.run(app, board, 50 * MIN)
    assert [s[0] for s in board.modem.sessions][n : n + 2] == [b, a]
    assert app.store.pending() == 0
    got = seqs(board)
    assert sorted(set(got)) == [(app.boot, s) for s in range(app.seq)]  # nothing lost
    # Both dead: a round over the list, then the back-off (moving: backoff_moving_s at most).
    board.modem.dead = {a, b}
    n = len(board.modem.sessions)
    fb.run(app, board, 110 * MIN)
    rounds = 60 * MIN // (app.setting("backoff_moving_s") * 1000) + 1
    assert app.uplink.failures >= 3 and len(board.modem.sessions) - n <= 2 * rounds
    board.modem.dead = set()
    fb.run(app, board, 170 * MIN)
    assert app.store.pending() == 0
    assert sorted(set(seqs(board))) == [(app.boot, s) for s in range(app.seq)]
    flash.close()


def broker_rec(endpoint, host=None):
    name, port = endpoint.rsplit(":", 1)
    return fr.Record(fr.CMD_BROKER, port=int(port), extra=name.encode() if host is None else host)


def test_a_pushed_broker_list_is_used_from_the_next_session_and_kept_across_reboots():
    a, c, d = "a.test:1883", "c.test:8883", "d.test:8883"
    flash = Flash(blocks=64, block_size=4096)
    app, board, _ = make(flash=flash, brokers=[a])
    board.moving = True
    fb.run(app, board, 2 * MIN)
    # Refused as a whole, the list unchanged: a host name that is not text; five brokers.
    board.modem.inbox.append(command(1, broker_rec(c), broker_rec(d, host=b"\xff.test")))
    board.modem.inbox.append(command(2, *[broker_rec(c)] * 5))
    board.modem.inbox.append(command(3, broker_rec(c), broker_rec(d)))  # taken
    fb.run(app, board, 14 * MIN)
    assert (
        results(board)
        == [(1, fr.RESULT_BAD_ARGS)] * 2 + [(2, fr.RESULT_BAD_ARGS)] * 5 + [(3, fr.RESULT_OK)] * 2
    )
    assert app.uplink.brokers == [c, d] and app.cfg["brokers"] == [c, d]
    n = len(board.modem.sessions)
    board.modem.dead = {c}
    fb.run(app, board, 40 * MIN)
    used = [s[0] for s in board.modem.sessions[n:]]
    assert used[:2] == [c, d] and a not in used and app.store.pending() == 0
    # After a reboot the tag still uses the pushed list, not the provisioned one.
    app2, board2, _ = make(flash=flash, brokers=[a])
    board2.moving = True
    fb.run(app2, board2, 15 * MIN)
    assert [s[0] for s in board2.modem.sessions][:1] == [c] and app2.store.pending() == 0
    flash.close()


def test_unacked_frames_resent_byte_identical_then_freed():
    app, board, flash = make()
    board.moving = True
    board.backend = None  # the backend is down: nothing is acknowledged
    fb.run(app, board, 14 * MIN)
    sent = list(board.modem.sent)
    assert len(sent) > len(set(sent))  # resent...
    assert app.store.pending() == len(set(sent))
    board.backend = fb.acking_backend
    fb.run(app, board, 40 * MIN)
    assert app.store.pending() == 0
    flash.close()


def test_reboot_keeps_unacked_frames_and_new_boot_number():
    flash = Flash(blocks=64, block_size=4096)
    app, board, _ = make(flash=flash)
    board.moving = True
    board.modem.coverage = False
    fb.run(app, board, 25 * MIN)
    pending = app.store.pending()
    assert pending >= 2
    app2, board2, _ = make(flash=flash)
    assert app2.boot == app.boot + 1 and app2.store.pending() == pending
    board2.moving = True
    fb.run(app2, board2, 15 * MIN)
    boots = set(b for b, _s in seqs(board2))
    assert boots == {app.boot, app2.boot} and app2.store.pending() == 0
    flash.close()


def test_tick_wraparound():
    app, board, flash = make(start_ticks=(1 << 30) - 90 * 1000)
    board.moving = True
    fb.run(app, board, 13 * MIN)
    assert app.fixes >= 12 and len(fb.records(board, "fix")) >= 10
    assert app.store.pending() == 0
    flash.close()


def test_battery_critical_is_urgent_and_reports_hours_left():
    app, board, flash = make()
    fb.run(app, board, 2 * MIN)
    board.mv = 3500
    fb.run(app, board, 12 * MIN)
    crit = [(f, r) for f, r in fb.records(board, "battery") if r.flags & fr.BATTERY_CRITICAL]
    assert crit and crit[0][0].flags & fr.FLAG_URGENT
    assert crit[0][1].hours_left < 0xFFFF
    flash.close()


def test_the_battery_check_rides_on_other_wakes_and_wakes_the_tag_itself_after_5_minutes():
    # A minute after the last check, the battery is checked at the tag's next wake for
    # anything else; only after 5 minutes without one does the check wake the tag itself.
    # Default watchdog: the tag wakes every 30 s anyway (half its timeout), so the check
    # keeps its minute. A long watchdog and nothing else to do at rest: the check wakes the
    # tag every 5 minutes, not every minute, and a charge starting is recorded within them.
    for watchdog_ms, spaced_s, max_polls in ((60000, (60, 90), 140), (30 * MIN, (60, 300), 30)):
        app, board, flash = make(watchdog_ms=watchdog_ms)
        fb.run(app, board, 2 * 60 * MIN)  # at rest since boot
        polls = app.polls
        plug = board.clock + 7 * MIN + 1234
        checks = []

        def mv(b=board, checks=checks):
            checks.append(b.clock)
            return b.mv

        def charger(b=board, plug=plug):
            return (True, True) if b.clock >= plug else (False, False)

        board.battery_mv = mv  # no wake of the tag's own at the plug (fb.run's events are)
        board.charger = charger
        fb.run(app, board, board.clock + 60 * MIN)
        gaps = [(checks[i + 1] - checks[i]) // 1000 for i in range(len(checks) - 1)]
        assert spaced_s[0] <= min(gaps) and max(gaps) <= spaced_s[1], gaps
        assert app.polls - polls <= max_polls
        charged = [f.time_of(r) - fb.T0 for f, r in fb.records(board, "battery") if r.flags & 1]
        assert charged and 0 <= charged[0] - plug // 1000 <= spaced_s[1]
        flash.close()


def test_zone_pushed_to_the_tag_gets_an_entry_uploaded_at_once():
    app, board, flash = make()
    board.moving = True
    lat, lon = board.pos
    per_m = 1 / 0.0111319  # 1e-7 degrees of latitude per metre
    centre = lat + round(1000 * per_m)  # a 200 m zone 1 km north
    zone = fr.Record(fr.CMD_ZONE, slot=0, lat_e7=centre, lon_e7=lon, radius_m=200)
    board.modem.inbox.append(command(1, zone))
    fb.run(app, board, 10 * MIN)
    assert results(board) == [(1, fr.RESULT_OK)]
    assert app.sampler.interval_s(app.mono.ms, app.motion.last_motion_ms, -1) == 60  # far

    def near(b):
        b.pos = (centre - round(250 * per_m), lon)  # 50 m from the edge

    def inside(b):
        b.pos = (centre, lon)

    fb.run(app, board, 14 * MIN, events=[(10 * MIN + 30000, near), (12 * MIN, inside)])
    sent_at = {}
    for f, r in fb.records(board, "fix"):
        if r.lat_e7 == centre:
            sent_at.setdefault("first", (f.time_of(r), f.ts))
    fix_t, frame_t = sent_at["first"]
    # Sampling fast near the zone: the first fix inside within 15 s (+ hot start) of entry,
    # and sealed with that fix (not 10 fixes later), so it left within seconds.
    assert fix_t - (fb.T0 + 12 * 60) <= 20 and frame_t - fix_t <= 1
    # The zone survives a reboot (persisted).
    app2 = App(fb.FakeBoard(flash.files()), config.merge(dict(fb.CFG)))
    assert app2.zones.zones == [[0, centre, lon, 200]]
    flash.close()


def test_fast_sampling_gives_up_an_attempt_without_a_fix_and_tries_again():
    # The receiver stays on between 15-s fixes (near a zone, a fix asked for now), but an
    # attempt with no fix within its budget (switched on indoors) is not kept searching for
    # hours: it is counted as a timeout and the receiver restarted, which then gets its fix.
    app, board, flash = make()
    board.moving = True
    board.ttff_ms = 10**9  # this first attempt never gets a fix
    app.sampler.locate_now(0)  # a fix wanted now: 15-s sampling until it comes
    ons = []
    power = board.gnss_power

    def gnss_power(on):
        if on:
            ons.append(board.clock)
            if len(ons) > 1:
                board.ttff_ms = 25000  # the next attempt finds the sky
        power(on)

    board.gnss_power = gnss_power
    fb.run(app, board, 10 * MIN)
    assert app.sampler.timeouts >= 1 and len(ons) >= 2
    # Given up after the cold-start budget (120 s), not kept on for the whole 10 minutes.
    assert ons[1] - ons[0] <= 150000
    assert app.fixes >= 5  # then one every 15 s
    flash.close()


def test_a_board_that_sleeps_to_the_alarm_while_the_receiver_searches_does_the_same():
    # The receiver's output is read every second while it is on; App.alarm is the wake of
    # the timers alone, which a board woken by the receiver's fix (a time pulse given only
    # once locked) may sleep to while it searches. Indoors (no fix), such a board gives up
    # the attempt at the same read, with the same records, in far fewer polls.
    offs = []
    for to_alarm in (False, True):
        app, board, flash = make()
        board.sky = False
        off = []
        power = board.gnss_power

        def gnss_power(on, board=board, power=power, off=off):
            if not on:
                off.append(board.clock)
            power(on)

        board.gnss_power = gnss_power
        wake = app.poll(board.ticks_ms())
        assert app.gnss_on and ticks.diff(wake, board.ticks_ms()) == 1000
        assert ticks.diff(app.alarm, board.ticks_ms()) > 1000
        while board.clock < 10 * MIN:
            w = app.alarm if to_alarm and app.gnss_on else wake
            board.advance(min(board.clock + max(ticks.diff(w, board.ticks_ms()), 1), 10 * MIN))
            wake = app.poll(board.ticks_ms())
        offs.append((off, app.sampler.timeouts, app.batch, seqs(board), app.polls))
        flash.close()
    (off0, timeouts0, batch0, seqs0, polls0), (off1, timeouts1, batch1, seqs1, polls1) = offs
    assert off0 == off1 and len(off0) == 1 and timeouts0 == timeouts1 == 1
    assert batch0 == batch1 and seqs0 == seqs1
    assert polls1 * 3 < polls0
