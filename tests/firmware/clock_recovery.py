# The clock-safety property's harness, on both runtimes: a tag on the fake board whose
# receiver sends a given byte stream, second by second while it is powered (whatever the
# stream says: garbage, placeholder dates, a wrong day, then a correct receiver). Returns the
# second at which the tag first accepted a fix with the true time (-1: never).
from firmware import config
from firmware.app import App
from tests.firmware import fakeboard as fb
from tests.firmware.flash import Flash


class StreamBoard(fb.FakeBoard):
    def __init__(self, files, second_bytes):
        fb.FakeBoard.__init__(self, files)
        self.second_bytes = second_bytes  # second -> what the receiver sends in it

    def advance(self, to_clock):
        if self.gnss:
            for s in range(self.last_epoch + 1, to_clock // 1000 + 1):
                self.uart += self.second_bytes(s)
                self.last_epoch = s
        self.clock = to_clock


def first_true_fix(second_bytes, seconds, true_t0, from_s):
    """Polls every second for `seconds`; the first second >= from_s at which the filter
    accepted a fix whose time is the true time (within 2 s)."""
    flash = Flash(blocks=64, block_size=4096)
    board = StreamBoard(flash.files(), second_bytes)
    board.moving = True
    app = App(board, config.merge(dict(fb.CFG)))
    accepted = 0
    found = -1
    for s in range(seconds):
        board.advance(s * 1000)
        app.poll(board.ticks_ms())
        f = app.filter
        if f.accepted > accepted:
            accepted = f.accepted
            last = f.last
            if found < 0 and s >= from_s and last is not None and abs(last[0] - true_t0 - s) <= 2:
                found = s
    flash.close()
    return found
