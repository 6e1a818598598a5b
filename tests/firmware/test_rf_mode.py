# RF home mode through the application step machine, on the fake board with a BLE radio and
# a home unit at the other end: arrive -> RF mode -> offload -> freed on the backend's ACK
# delivered back through the unit; leave -> GPS mode at the lease with a fix; forged,
# replayed and foreign acks; unpaired tag; clock from the unit; the edge of range.
from firmware import beacon as bc
from firmware import config
from firmware import frame as fr
from firmware.app import App
from tests.firmware import fakeboard as fb
from tests.firmware.fakehome import UNIT, FakeHome, FakeRadio, pairing
from tests.firmware.flash import Flash

MICROPYTHON = True
# The tests keep every frame and ack the tag exchanged, to check them: the heap here is the
# tests' bookkeeping plus the loaded code, not the device budget (tests/hil/test_tag_day.py is).
# 256k passed with ~30 KiB to spare and once ran out on a CI run; 320k left room until a
# test ran a night at home (6 hours of polls: 196 KiB free after the module either way, so a
# peak, not a leak; tests/hil's day runs under the device's heap); 384k.
MICROPYTHON_HEAP = "384k"
MIN = 60000


def make(flash=None, paired=True, **over):
    flash = flash or Flash(blocks=64, block_size=4096)
    board = fb.FakeBoard(flash.files())
    board.radio = FakeRadio()
    board.bursts = {"modem_tx": 100000, "ble_adv": 900, "ble_contact": 6000}
    cfg = dict(fb.CFG)
    if paired:
        cfg["home_unit"] = UNIT
        cfg["pairing_key"] = pairing(fb.DEVICE)
    cfg.update(over)
    return App(board, config.merge(cfg)), board, flash


def all_frames(board, home):
    out = {}
    for p in board.modem.sent:
        f = fr.decode(p, fb.KEY)
        out[(f.boot, f.seq)] = f
    if home is not None:
        for k in home.relayed:
            out[k] = fr.decode(home.relayed[k], fb.KEY)
    return [out[k] for k in sorted(out)]


def records(board, home, name):
    return [(f, r) for f in all_frames(board, home) for r in f.records if r.name == name]


def arrive(app, board, until, **home_over):
    home = FakeHome(fb.DEVICE, fb.KEY, board, **home_over)
    board.radio.home = home
    fb.run(app, board, until)
    return home


def test_arrive_home_rf_mode_offload_freed_on_backend_ack():
    app, board, flash = make()
    board.moving = True
    board.modem.coverage = False  # frames pile up in the flash log on the way home
    fb.run(app, board, 30 * MIN)
    waiting = app.store.pending()
    assert waiting >= 2 and app.mode.code == fr.MODE_GPS
    board.moving = False
    home = arrive(app, board, 40 * MIN)
    assert app.mode.code == fr.MODE_RF
    assert not board.gnss and not board.modem.on  # GNSS and modem off
    assert app.store.pending() == 0  # relayed, and freed only by the backend's ACKs
    seqs = sorted(home.relayed)
    assert seqs == [(app.boot, s) for s in range(len(seqs))]  # every frame, once each
    modes = [(r.mode, r.reason, r.home_unit) for _f, r in records(board, home, "mode")]
    assert modes == [(fr.MODE_GPS, fr.MODE_REASON_BOOT, 0), (fr.MODE_RF, 1, UNIT)]
    # Entered after k = 3 acks: three beacons at the GPS-mode interval (15 s).
    f, r = records(board, home, "mode")[1]
    assert f.time_of(r) - (fb.T0 + 30 * 60) <= 3 * 15 + 1
    # In RF mode beacons are relaxed to 30 s.
    before = len(board.radio.adverts)
    fb.run(app, board, 50 * MIN)
    assert len(board.radio.adverts) - before == 20
    assert app.bad_inputs() == 0
    flash.close()


def test_leave_home_gps_mode_at_lease_expiry_with_a_fix():
    app, board, flash = make()
    home = arrive(app, board, 5 * MIN)
    assert app.mode.code == fr.MODE_RF
    last_ack_at = 5 * MIN  # approximately: the last beacon before leaving
    board.radio.home = None  # walked out of range: silence
    fixes_before = app.fixes
    fb.run(app, board, 25 * MIN)  # the batch with the fix is sealed and sent by now
    assert app.mode.code == fr.MODE_GPS
    f, r = records(board, home, "mode")[-1]
    assert r.mode == fr.MODE_GPS and r.reason == fr.MODE_REASON_LEASE_EXPIRED
    left_at = f.time_of(r) - fb.T0
    assert 0 < left_at * 1000 - last_ack_at <= 120_000  # within the lease (120 s)
    assert app.fixes > fixes_before  # a fix at once (hot start)
    after = [ff.time_of(x) - fb.T0 - left_at for ff, x in records(board, None, "fix")]
    assert after and 0 <= min(after) <= 10  # sent by the modem, taken within 10 s
    flash.close()


def test_forged_replayed_and_foreign_acks_never_enter_rf_mode():
    app, board, flash = make()
    fb.run(app, board, 2 * MIN)
    recording = FakeHome(fb.DEVICE, fb.KEY, board)
    board.radio.home = recording
    fb.run(app, board, 2 * MIN + 35_000)  # genuine acks (relaxed beacons at rest), recorded
    board.radio.home = None
    fb.run(app, board, 20 * MIN)  # lease and window pass
    assert app.mode.code == fr.MODE_GPS or app.rf.prox.lease_until >= 0
    mode_before = app.mode.code
    radio = board.radio
    neighbour = FakeHome(fb.DEVICE, fb.KEY, board, unit=5002, unit_key=bytes(range(32)))
    for _ in range(6):
        for ack in recording.acks:
            radio.contact(ack)  # replayed recording
        radio.contact(b"\xa1" + bytes(27))  # forged
        counter = app.rf.prox.recent[-1]
        neighbour.last_counter = counter - 1
        neighbour.heard(radio.adverts[-1], radio)  # a neighbour's unit answers our beacon
        fb.run(app, board, board.clock + 15_000)
    assert app.mode.code == mode_before == fr.MODE_GPS
    refused = app.rf.prox.refused
    assert refused["replay"] >= 6 and refused["mac"] >= 12
    assert app.bad_inputs() >= 18
    # Without a good ack the offload stays closed.
    assert radio.contact(b"\xa1" + bytes(27)) == []
    flash.close()


def test_unpaired_tag_never_enters_rf_mode():
    # Unpaired, the tag has no RF control at all: it does not beacon (nothing to spend power
    # on, nothing for a unit to answer) and a unit's acks reach nothing.
    app, board, flash = make(paired=False)
    arrive(app, board, 10 * MIN)
    assert app.mode.code == fr.MODE_GPS
    assert app.rf is None and board.radio.adverts == []
    assert app.fixes > 0  # it is an ordinary GPS-mode tag
    flash.close()


def test_clock_from_the_home_unit_without_gnss():
    app, board, flash = make()
    board.sky = False  # indoors from boot: no GNSS time at all
    arrive(app, board, 5 * MIN)
    assert app.clock_unix(app.mono.ms) == fb.T0 + 5 * 60
    sets = [r for _f, r in records(board, board.radio.home, "clock_set")]
    assert sets and sets[0].source == fr.CLOCK_HOME_UNIT
    assert app.mode.code == fr.MODE_RF
    flash.close()


def late_ack(board, home, unix):
    """The unit answers the tag's last beacon now (a contact between two polls)."""
    b = bc.decode_beacon(bc.manufacturer_payload(board.radio.adverts[-1]), home.bkey)
    a = bc.HomeAck(UNIT, fb.DEVICE, unix, home.lease, b.counter, 0)
    board.radio.contact(bc.encode_home_ack(a, home.pkey), read=False)


def test_ack_time_applied_with_the_delay_since_it_arrived():
    app, board, flash = make()
    board.sky = False  # no GNSS time: the ack is the only clock
    fb.run(app, board, 50 * 1000)  # at rest, nobody answers: beacons at 0 and 30 s
    home = FakeHome(fb.DEVICE, fb.KEY, board)
    late_ack(board, home, fb.T0 + board.clock // 1000)
    board.advance(board.clock + 40 * 1000)  # the next poll comes 40 s later
    app.poll(board.ticks_ms())
    assert app.rf.refused_total() == 0 and app.clock_src == fr.CLOCK_HOME_UNIT
    assert abs(app.clock_unix(app.mono.ms) - (fb.T0 + board.clock // 1000)) <= 1
    flash.close()


def test_back_in_gps_mode_gnss_time_rebases_a_clock_the_home_unit_left_behind():
    app, board, flash = make()
    board.sky = False
    home = arrive(app, board, 5 * MIN)
    assert app.mode.code == fr.MODE_RF
    # The unit's time reached the tag 45 s late: the clock runs behind GNSS time.
    now = app.mono.ms
    app.set_clock(fb.T0 + now // 1000 - 45, now, fr.CLOCK_HOME_UNIT)
    board.radio.home = None  # leaves home, out under the sky
    board.sky = True
    board.moving = True
    fixes = app.fixes
    fb.run(app, board, 20 * MIN)
    assert app.mode.code == fr.MODE_GPS
    assert app.fixes - fixes >= 8  # a fix a minute again, not every one rejected as future
    assert abs(app.clock_unix(app.mono.ms) - (fb.T0 + board.clock // 1000)) <= 1
    assert app.filter.rebased == 1
    sets = [r for _f, r in records(board, home, "clock_set")]
    assert (sets[-1].source, sets[-1].delta_s) == (fr.CLOCK_GNSS, 45)
    flash.close()


def test_a_home_unit_seconds_off_does_not_move_a_clock_gnss_showed_right():
    # The unit has no network time: its clock is 5 s ahead. The tag walks home fixing under
    # the sky: its clock stays GNSS's (no clock_set from the unit, which would then be re-based
    # by GNSS and set again at every ack near home), until hours at home without a fix.
    app, board, flash = make()
    board.moving = True
    fb.run(app, board, 10 * MIN)
    assert app.clock_src == fr.CLOCK_GNSS and app.fixes > 0
    home = arrive(app, board, 40 * MIN, clock_s=5)
    assert app.mode.code == fr.MODE_RF
    assert app.clock_unix(app.mono.ms) == fb.T0 + board.clock // 1000
    assert [r for _f, r in records(board, home, "clock_set") if r.source != fr.CLOCK_GNSS] == []
    for hour in range(1, 7):  # the night in: no fix for 6 hours
        fb.run(app, board, 40 * MIN + hour * 60 * MIN)
        del home.acks[:], board.radio.adverts[:]  # the recordings: the unix port's heap
    assert app.clock_src == fr.CLOCK_HOME_UNIT
    assert app.clock_unix(app.mono.ms) == fb.T0 + board.clock // 1000 + 5
    flash.close()


def test_tamper_at_home_goes_out_with_the_same_polls_beacon():
    app, board, flash = make()
    home = arrive(app, board, 5 * MIN)
    assert app.mode.code == fr.MODE_RF and app.store.pending() == 0
    cut_at = 5 * MIN + 7000  # between two RF-mode beacons (30 s apart)

    def cut(b):
        b.strap = True

    # Run to the poll at the end of the debounce (200 ms), the one that records the tamper.
    fb.run(app, board, cut_at + 200, events=[(cut_at, cut)])
    tampers = [(f, r) for f, r in records(board, home, "tamper") if r.sensor == fr.SENSOR_STRAP]
    assert len(tampers) == 1  # relayed at that poll's beacon, not the next one (30 s on)
    f, r = tampers[0]
    assert f.flags & fr.FLAG_URGENT and f.time_of(r) - (fb.T0 + cut_at // 1000) <= 1
    flash.close()


def test_tamper_unheard_at_home_goes_out_by_cellular_within_seconds():
    # The strap cut as the wearer walks out of range: no ack answers the urgent beacon, so
    # the tag leaves RF mode at once and sends the tamper by cellular, not after the lease.
    app, board, flash = make()
    home = arrive(app, board, 5 * MIN)
    assert app.mode.code == fr.MODE_RF
    cut_at = 5 * MIN + 7000

    def cut(b):
        b.strap = True
        b.radio.home = None

    fb.run(app, board, 6 * MIN, events=[(cut_at, cut)])
    f, r = records(board, home, "mode")[-1]
    assert (r.mode, r.reason) == (fr.MODE_GPS, fr.MODE_REASON_URGENT_UNHEARD)
    assert 0 < f.time_of(r) - (fb.T0 + cut_at // 1000) <= 11
    sent = [(ff, x) for ff, x in records(board, None, "tamper") if x.sensor == fr.SENSOR_STRAP]
    assert len(sent) == 1 and sent[0][0].flags & fr.FLAG_URGENT  # by the modem
    assert 0 <= sent[0][0].time_of(sent[0][1]) - (fb.T0 + cut_at // 1000) <= 1
    assert (sent[0][0].boot, sent[0][0].seq) not in home.relayed
    flash.close()


def test_tamper_heard_at_home_keeps_rf_mode():
    app, board, flash = make()
    home = arrive(app, board, 5 * MIN)
    cut_at = 5 * MIN + 7000

    def cut(b):
        b.strap = True

    fb.run(app, board, 7 * MIN, events=[(cut_at, cut)])
    assert app.mode.code == fr.MODE_RF
    assert [r.reason for _f, r in records(board, home, "mode")][-1] == fr.MODE_REASON_HOME_ACK
    flash.close()


def test_edge_of_range_does_not_flap():
    app, board, flash = make()
    board.radio.hear_every = 3  # at the edge: two beacons in three are lost
    home = arrive(app, board, 120 * MIN)
    switches = len(records(board, home, "mode")) - 1
    assert app.mode.code == fr.MODE_RF and switches == 1
    flash.close()


def test_out_of_range_briefly_keeps_rf_mode_longer_leaves_once():
    app, board, flash = make()
    home = FakeHome(fb.DEVICE, fb.KEY, board)

    def away(b):
        b.radio.home = None

    def back(b):
        b.radio.home = home

    # Out of range for 50 s at 10 min (under lease - 2 beacon intervals, 60 s: cannot expire),
    # then for 10 min at 30 min.
    events = [(0, back), (10 * MIN, away), (10 * MIN + 50_000, back), (30 * MIN, away),
              (40 * MIN, back)]  # fmt: skip
    fb.run(app, board, 50 * MIN, events)
    switches = [(r.mode, r.reason) for _f, r in records(board, home, "mode")]
    assert switches == [
        (fr.MODE_GPS, fr.MODE_REASON_BOOT),
        (fr.MODE_RF, fr.MODE_REASON_HOME_ACK),
        (fr.MODE_GPS, fr.MODE_REASON_LEASE_EXPIRED),
        (fr.MODE_RF, fr.MODE_REASON_HOME_ACK),
    ]
    flash.close()


def test_rf_home_fix_records_when_home_position_is_provisioned():
    app, board, flash = make(
        home_lat_e7=507200000, home_lon_e7=-18800000, home_acc_dm=300, fix_rest_s=900
    )
    home = arrive(app, board, 45 * MIN)
    rf = [r for _f, r in records(board, home, "fix") if r.source == fr.SOURCE_RF_HOME]
    assert len(rf) == 3  # at entry, then at the fix-at-rest interval (15 min here)
    assert rf[0].lat_e7 == 507200000 and rf[0].acc_dm == 300
    flash.close()


def test_ble_energy_is_in_the_ledger():
    app, board, flash = make()
    arrive(app, board, 60 * MIN)
    n = len(board.radio.adverts)
    assert app.ledger.uas["ble"] == n * 900 + app.rf.link.contacts * 6000
    assert app.ledger.total_uas(app.mono.ms) >= app.ledger.uas["ble"]
    flash.close()


def test_command_through_the_home_unit_runs_once_even_if_the_modem_brings_it_again():
    app, board, flash = make()
    home = arrive(app, board, 3 * MIN)
    assert app.mode.code == fr.MODE_RF
    cmd = fr.encode(
        fr.Frame(fr.COMMAND, fb.DEVICE, 0, 9, fb.T0, [fr.Record(fr.CMD_NOTIFY, (1, 2, 7))]), fb.KEY
    )
    home.downlinks.append(cmd)  # the backend's command, relayed by the unit
    fb.run(app, board, 6 * MIN)
    assert board.vibrations == [(1, 2)]
    app.handle_downlink(cmd, app.mono.ms)  # the same frame from the modem session later
    fb.run(app, board, 20 * MIN)
    assert board.vibrations == [(1, 2)] and app.downlink.duplicates == 1
    assert app.downlink.refused_total() == 0
    results = [(r.cmd_seq, r.result) for _f, r in records(board, home, "command_result")]
    assert results == [(9, fr.RESULT_OK), (9, fr.RESULT_DUPLICATE)]  # answered, not run
    flash.close()


def test_the_inbox_takes_the_eight_frames_a_home_unit_writes_in_one_contact():
    # docs/home-unit.md, "GATT contract": the unit writes at most 8 downlink frames per contact
    # and the tag must keep them all for its next poll; a 9th is dropped and counted.
    app, board, flash = make()
    arrive(app, board, 3 * MIN)
    cmds = [
        fr.encode(
            fr.Frame(fr.COMMAND, fb.DEVICE, 0, s, fb.T0, [fr.Record(fr.CMD_NOTIFY, (1, s, s))]),
            fb.KEY,
        )
        for s in range(20, 29)
    ]
    board.radio.contact(downlinks=cmds[:8], read=False)
    fb.run(app, board, 4 * MIN)
    assert board.vibrations == [(1, s) for s in range(20, 28)] and app.rf.link.dropped == 0
    board.radio.contact(downlinks=cmds[:8] + cmds[8:], read=False)  # 8 again, and a 9th
    fb.run(app, board, 5 * MIN)
    assert len(board.vibrations) == 8 and app.rf.link.dropped == 1  # none twice; 9th dropped
    assert app.downlink.duplicates == 8
    flash.close()


def test_minutes_moving_at_home_in_rf_mode_are_no_motion_without_a_fix():
    # In RF mode the receiver is off by design: moving about the house is no motion *without
    # a fix*. Counted, a morning at home went over the 10 minutes before the door, so the
    # tag told the wearer to go outside as it left and escalated a shielding alert 10
    # minutes later if it got no fix by then (a cold start, indoors at work: gate-week).
    app, board, flash = make()
    board.sky = False
    arrive(app, board, 5 * MIN)
    assert app.mode.code == fr.MODE_RF
    board.moving = True
    fb.run(app, board, 25 * MIN)  # 20 minutes about the house
    board.radio.home = None  # out of the door, into a building: no fix
    fb.run(app, board, 33 * MIN)  # GPS mode from the lease's end, 7-8 minutes moving
    assert app.mode.code == fr.MODE_GPS
    assert board.vibrations == []
    fb.run(app, board, 38 * MIN)  # 10 moving minutes in GPS mode without a fix
    assert board.vibrations == [(2, 3)]
    flash.close()


def test_at_rest_and_unanswered_it_beacons_relaxed_until_it_moves_or_a_unit_answers():
    # A tag at rest that no home unit answers cannot arrive home without moving: it beacons at
    # the RF-mode interval (30 s) until the accelerometer says it moved, then at the GPS-mode
    # interval (15 s) again from its last beacon; a unit's answer also brings the fast interval
    # back, and entry then follows the rf_enter rules as for a tag that walked in.
    app, board, flash = make()  # at rest from boot, nobody answers

    def move(b):
        b.moving = True

    def still(b):
        b.moving = False

    fb.run(app, board, 10 * MIN)
    assert app.rf.beacons == 21  # at 0, 30, ..., 600 s (41 at 15 s)
    fb.run(app, board, 10 * MIN + 14_999, events=[(10 * MIN + 5000, move)])
    assert app.rf.beacons == 21
    fb.run(app, board, 10 * MIN + 15_000)  # 15 s after the last one, not 30
    assert app.rf.beacons == 22
    fb.run(app, board, 12 * MIN, events=[(11 * MIN, still)])
    assert app.rf.beacons == 22 + 7  # every 15 s while moving, and for rest_after_s after
    fb.run(app, board, 30 * MIN)
    before = app.rf.beacons
    fb.run(app, board, 40 * MIN)
    assert app.rf.beacons - before == 20  # at rest again, unanswered: relaxed
    assert app.mode.code == fr.MODE_GPS
    home = FakeHome(fb.DEVICE, fb.KEY, board)

    def plugged(b):
        b.radio.home = home

    fb.run(app, board, 50 * MIN, events=[(40 * MIN + 1000, plugged)])
    assert app.mode.code == fr.MODE_RF
    f, r = records(board, home, "mode")[-1]
    assert (r.mode, r.reason) == (fr.MODE_RF, fr.MODE_REASON_HOME_ACK)
    # The next relaxed beacon (<= 30 s) is answered, then two more at 15 s: k = 3 acks.
    assert f.time_of(r) - (fb.T0 + 40 * 60) <= 30 + 2 * 15 + 1
    flash.close()
