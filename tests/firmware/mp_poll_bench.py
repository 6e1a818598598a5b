# Cost of the tag application's poll() under MicroPython: an hour of a moving wearer on the
# fake board (GNSS duty cycle, batches, uplink, ACKs), beside a bare step loop that only does
# the tick arithmetic and watchdog feed every poll must do. Prints one JSON line.
# Usage: micropython tests/firmware/mp_poll_bench.py MINUTES (for tests/bench/firmware.py;
# kept here because a script in tests/bench would shadow the firmware package)
import gc
import json
import sys
import time

from firmware import config, ticks
from firmware.app import App
from tests.firmware import fakeboard as fb
from tests.firmware.flash import Flash


def main(minutes):
    flash = Flash(blocks=64, block_size=4096)
    board = fb.FakeBoard(flash.files())
    board.moving = True
    app = App(board, config.merge(dict(fb.CFG)))
    spent = 0
    polls = 0
    t0 = time.ticks_us()
    wake = app.poll(board.ticks_ms())
    spent += time.ticks_diff(time.ticks_us(), t0)
    polls += 1
    end = minutes * 60000
    while board.clock < end:
        board.advance(min(board.clock + max(1, ticks.diff(wake, board.ticks_ms())), end))
        t0 = time.ticks_us()
        wake = app.poll(board.ticks_ms())
        spent += time.ticks_diff(time.ticks_us(), t0)
        polls += 1
    mono = ticks.Monotonic(0)
    t0 = time.ticks_us()
    for i in range(polls):
        mono.update(i * 1000)
        board.watchdog_feed()
        mono.to_ticks(mono.ms + 1000)
    raw = time.ticks_diff(time.ticks_us(), t0)
    gc.collect()
    print(json.dumps({"polls": polls, "poll_us": spent, "raw_us": raw, "fixes": app.fixes}))
    flash.close()


main(int(sys.argv[1]))
