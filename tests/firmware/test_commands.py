# The command window (firmware/commands.py): a command delivered again by the other path (the
# home unit holds commands while the tag is away and writes them when it comes home, even if
# the modem brought them meanwhile) is a duplicate, answered as such and never run twice, up
# to 32 numbers back and across reboots and power cuts; older or skipped numbers stay replays.
import gc

from firmware import commands
from firmware import frame as fr
from firmware.app import App
from firmware.state import State
from tests.firmware import fakeboard as fb
from tests.firmware.flash import Flash, PowerCut

MICROPYTHON = True
MICROPYTHON_HEAP = "224k"  # the App test loads the whole application (as test_app.py)
MIN = 60000


def command(seq, *recs, key=fb.KEY):
    recs = recs or (fr.Record(fr.CMD_NOTIFY, (1, 1, seq & 0xFFFF)),)
    return fr.encode(fr.Frame(fr.COMMAND, fb.DEVICE, 0, seq, fb.T0, list(recs)), key)


def downlink(files):
    return commands.Downlink(fb.DEVICE, fb.KEY, State(files))


def kinds(dl, seqs):
    out = []
    for s in seqs:
        kind, _f, result = dl.classify(command(s))
        out.append((kind, result))
    return out


def test_held_commands_delivered_again_are_duplicates_answered_once():
    fl = Flash(blocks=32, block_size=512)
    dl = downlink(fl.files())
    assert kinds(dl, range(1, 7)) == [(commands.COMMAND, 0)] * 6  # over the modem
    # The home unit's held copies when the tag comes home: each answered once, none run.
    assert kinds(dl, range(1, 7)) == [(commands.DUPLICATE, fr.RESULT_DUPLICATE)] * 6
    assert kinds(dl, (3, 6)) == [(commands.DUPLICATE, -1)] * 2  # already answered this boot
    assert dl.duplicates == 8 and dl.refused_total() == 0
    fl.close()


def test_window_is_32_numbers_below_the_last_and_older_is_a_replay():
    fl = Flash(blocks=32, block_size=512)
    dl = downlink(fl.files())
    assert kinds(dl, range(1, 41)) == [(commands.COMMAND, 0)] * 40
    assert dl.state.int("cmd_ran") == 0xFFFFFFFF  # 8..39 all ran
    assert kinds(dl, (8, 40)) == [(commands.DUPLICATE, fr.RESULT_DUPLICATE)] * 2
    assert kinds(dl, (7, 1)) == [(commands.REFUSED, fr.RESULT_REPLAY)] * 2
    assert dl.refused == {"replay": 2}
    fl.close()


def test_a_skipped_number_is_refused_not_run_late():
    # 12 overtook 11 (lost on one path); 11 arriving now would run an older command over a
    # newer one (an older zone set or setting), so it stays a replay.
    fl = Flash(blocks=32, block_size=512)
    dl = downlink(fl.files())
    assert kinds(dl, (10, 12)) == [(commands.COMMAND, 0)] * 2
    assert kinds(dl, (11,)) == [(commands.REFUSED, fr.RESULT_REPLAY)]
    assert kinds(dl, (10, 12)) == [(commands.DUPLICATE, fr.RESULT_DUPLICATE)] * 2
    # A jump past the window forgets the old numbers without shifting a huge integer.
    assert kinds(dl, (0xFFFFFFFF,)) == [(commands.COMMAND, 0)]
    assert dl.state.int("cmd_ran") == 0
    assert kinds(dl, (12,)) == [(commands.REFUSED, fr.RESULT_REPLAY)]
    fl.close()


def test_forged_and_foreign_commands_do_not_touch_the_window():
    fl = Flash(blocks=32, block_size=512)
    dl = downlink(fl.files())
    assert kinds(dl, (5,)) == [(commands.COMMAND, 0)]
    forged = dl.classify(command(5, key=bytes(32)))
    assert forged[0] == commands.REFUSED and forged[2] == fr.RESULT_BAD_MAC
    assert dl.classify(command(9, key=bytes(32)))[0] == commands.REFUSED
    assert dl.state.int("cmd_seq") == 5 and dl.duplicates == 0
    fl.close()


def test_the_window_survives_a_reboot():
    fl = Flash(blocks=32, block_size=512)
    dl = downlink(fl.files())
    assert kinds(dl, (1, 2, 4, 5)) == [(commands.COMMAND, 0)] * 4
    dl = downlink(fl.files())  # reboot: state read back from flash
    assert kinds(dl, (1, 2, 4, 5)) == [(commands.DUPLICATE, fr.RESULT_DUPLICATE)] * 4
    assert kinds(dl, (3,)) == [(commands.REFUSED, fr.RESULT_REPLAY)]
    assert kinds(dl, (6,)) == [(commands.COMMAND, 0)]
    fl.close()


def test_power_cut_while_accepting_a_command():
    # Cut the power at each write step of accepting 7 after 1..6: after the reboot either
    # 7 was accepted with the window shifted (its duplicate is refused to run), or nothing
    # changed (7 runs then) - never a window that forgot what ran.
    fl = Flash(blocks=32, block_size=512)
    files = fl.files()
    dl = downlink(files)
    kinds(dl, range(1, 7))
    clean = fl.snapshot()
    before = fl.writes()
    kinds(dl, (7,))
    total = fl.writes() - before
    assert total >= 1
    for cut in range(total + 1):
        fl.restore(clean)
        dl = downlink(fl.files())
        fl.cut_after(cut)
        try:
            kinds(dl, (7,))
            assert cut == total, "power was not cut at step %d" % cut
        except PowerCut:
            pass
        fl.cut_after(-1)
        gc.collect()
        dl = downlink(fl.files())
        ran = dl.state.int("cmd_seq") == 7
        assert ran or cut < total, "accepted without a cut, yet not durable"
        want = commands.DUPLICATE if ran else commands.COMMAND
        assert kinds(dl, (7,))[0][0] == want, "cut %d" % cut
        assert kinds(dl, range(1, 7)) == [(commands.DUPLICATE, fr.RESULT_DUPLICATE)] * 6
    fl.close()


def test_app_answers_duplicates_and_runs_each_command_once_across_a_reboot():
    flash = Flash(blocks=64, block_size=4096)
    board = fb.FakeBoard(flash.files(), 0)
    from firmware import config

    cfg = config.merge(dict(fb.CFG))
    app = App(board, cfg)
    fb.run(app, board, MIN)
    notify = [command(s, fr.Record(fr.CMD_NOTIFY, (1, s, s))) for s in (1, 2, 3)]
    for c in notify:
        app.handle_downlink(c, app.mono.ms)  # over the modem
    assert board.vibrations == [(1, 1), (1, 2), (1, 3)]
    board2 = fb.FakeBoard(flash.files(), 0)  # reboot
    app = App(board2, config.merge(dict(fb.CFG)))
    for c in notify:
        app.handle_downlink(c, app.mono.ms)  # the home unit's held copies
    app.handle_downlink(command(4, fr.Record(fr.CMD_LOCATE, ())), app.mono.ms)
    assert board2.vibrations == [] and app.sampler.locate
    got = [(r[2][0], r[2][1]) for r in app.batch if r[0] == fr.COMMAND_RESULT]
    assert got == [(1, fr.RESULT_DUPLICATE), (2, fr.RESULT_DUPLICATE), (3, fr.RESULT_DUPLICATE)] + [
        (4, fr.RESULT_OK)
    ]
    assert app.bad_inputs() == 0  # duplicates are not refusals
    flash.close()
