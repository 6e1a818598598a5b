# Replays receiver captures (tests/corpus/nmea/real) through the NMEA reader and the tag
# application, in chunks whose sizes come from a seed: the same on both runtimes, so the
# MicroPython run (tests/firmware/mp_capture_replay.py) can be compared with CPython's.
from firmware import config, nmea
from firmware import frame as fr
from firmware.app import App
from tests.firmware import fakeboard as fb
from tests.firmware.flash import Flash

CAPTURES = "tests/corpus/nmea/real/"


def read(name):
    with open(CAPTURES + name, "rb") as f:
        return f.read()


def sizes(seed):
    """Chunk sizes 1..160 from a linear congruential generator (no random module needed)."""
    x = seed
    while True:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        yield 1 + (x >> 16) % 160


def fix_tuple(f):
    return [f.tod_ms, f.days, f.lat_e7, f.lon_e7, f.quality, f.sats, f.hdop_d, f.fix_type]


def reader_fixes(data, seed):
    """Every epoch the reader emits, fed in chunks, with its counters."""
    r = nmea.Reader()
    out = []
    i = 0
    for n in sizes(seed):
        if i >= len(data):
            break
        r.feed(data[i : i + n])
        i += n
        f = r.take()
        while f is not None:
            out.append(fix_tuple(f) + [f.speed_cms, f.course_cd, 1 if f.valid else 0])
            f = r.take()
    return out, [r.good, r.bad(), r.nofix, r.ignored]


def seconds(data):
    """(capture second, bytes) pieces: each starts at the first sentence of a new UTC time."""
    out = []
    start = 0
    last = None
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        line = data[pos:end]
        f = line.split(b",")
        if len(f) > 2 and line[:1] == b"$" and f[0][3:] in (b"RMC", b"GGA", b"GNS") and f[1]:
            t = f[1][:6]
            if t != last and len(t) == 6:
                if last is not None:
                    out.append((last, data[start:pos]))
                    start = pos
                last = t
        pos = end
    out.append((last, data[start:]))
    res = []
    t0 = None
    for t, chunk in out:
        if t is None:
            s = 0
        else:
            s = int(t[0:2]) * 3600 + int(t[2:4]) * 60 + int(t[4:6])
            t0 = s if t0 is None else t0
            s -= t0
        res.append((max(s, 0), chunk))
    return res


class CaptureBoard(fb.FakeBoard):
    """The fake board with the capture as its receiver: each capture second arrives at that
    second of the tag's ticks, cut at a seed-chosen byte so lines straddle two reads."""

    def __init__(self, files, data, seed):
        fb.FakeBoard.__init__(self, files)
        self.pieces = seconds(data)
        self.next_piece = 0
        self.carry = b""
        self.cuts = sizes(seed)

    def advance(self, to_clock):
        self.clock = to_clock

    def gnss_read(self):
        out = self.carry
        while (
            self.next_piece < len(self.pieces)
            and self.pieces[self.next_piece][0] * 1000 <= self.clock
        ):
            out += self.pieces[self.next_piece][1]
            self.next_piece += 1
        keep = next(self.cuts) % 40 if self.next_piece < len(self.pieces) else 0
        if keep and keep < len(out):
            self.carry = out[len(out) - keep :]
            return out[: len(out) - keep]
        self.carry = b""
        return out


def app_fixes(data, seed):
    """The FIX records the application makes from the capture (every epoch the filter accepts
    is recorded: fixes wanted every second), with the filter's rejections by reason."""
    flash = Flash(blocks=64, block_size=4096)
    board = CaptureBoard(flash.files(), data, seed)
    cfg = dict(fb.CFG)
    cfg.update({"built_unix": 0, "fix_moving_s": 1, "fix_rest_s": 1, "fix_fast_s": 1})
    app = App(board, config.merge(cfg))
    last = len(board.pieces) + 3
    fb.run(app, board, last * 1000)
    out = []
    for f, r in fb.records(board, "fix"):
        out.append([f.time_of(r), r.lat_e7, r.lon_e7, r.acc_dm, r.sats, r.speed_cms, r.course_cd])
    for rtype, t, v in app.batch:
        if rtype == fr.FIX:
            out.append([app.clock_unix(t), v[0], v[1], v[2], v[5], v[6], v[7]])
    rejected = [[k, app.filter.rejected[k]] for k in sorted(app.filter.rejected)]
    flash.close()
    return out, rejected
