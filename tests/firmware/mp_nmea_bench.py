# NMEA reader throughput on both runtimes: the real captures (tests/corpus/nmea/real) fed in
# 64-byte reads, beside a raw baseline that only splits the same bytes into lines and checks
# each checksum (the least any reader does). Prints one JSON line. Usage, from the repository
# root: `micropython tests/firmware/mp_nmea_bench.py N`, `python -m tests.firmware.mp_nmea_bench N`
import json
import os
import sys
import time

from firmware import nmea

try:
    ticks_us = time.ticks_us  # type: ignore[attr-defined]
    ticks_diff = time.ticks_diff  # type: ignore[attr-defined]
except AttributeError:  # CPython

    def ticks_us():
        return time.perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b


DIR = "tests/corpus/nmea/real/"


def main(n):
    data = b""
    for name in sorted(os.listdir(DIR)):
        if name.endswith(".nmea"):
            with open(DIR + name, "rb") as f:
                data += f.read()
    sentences = data.count(b"$")
    t = ticks_us()
    for _ in range(n):
        r = nmea.Reader()
        for i in range(0, len(data), 64):
            r.feed(data[i : i + 64])
            while r.take() is not None:
                pass
    reader = ticks_diff(ticks_us(), t)
    t = ticks_us()
    ok = 0
    for _ in range(n):
        for line in data.split(b"\n"):
            star = line.find(b"*")
            if line[:1] == b"$" and star > 0:
                c = 0
                for b in line[1:star]:
                    c ^= b
                ok += c == int(line[star + 1 : star + 3], 16)
    raw = ticks_diff(ticks_us(), t)
    print(json.dumps({"sentences": sentences * n, "reader_us": reader, "raw_us": raw, "ok": ok}))


main(int(sys.argv[1]))
