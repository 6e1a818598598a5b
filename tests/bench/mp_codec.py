# Codec throughput under MicroPython; the same workload as tests/bench/codec.py under CPython.
# Prints one JSON line. Usage: micropython tests/bench/mp_codec.py N
import hashlib
import json
import sys
import time

from firmware import frame as fr


def ten_fix_frame(seq):
    recs = []
    for i in range(10):
        recs.append(
            fr.Record(
                fr.FIX, (600 - 60 * i, 507192000 + i, -18808000 - i, 42, 2, 0, 9, 140, 27000, 9)
            )
        )
    return fr.Frame(fr.TAG_DATA, 1001, 1, seq, 1790000000, recs, fr.FLAG_TIME_VALID)


def main(n):
    key = bytes(range(32))
    # A device-sized working set: 50 frames, encoded over and over.
    frames = [ten_fix_frame(i) for i in range(50)]
    t = time.ticks_us()
    for i in range(n):
        fr.encode(frames[i % 50], key)
    enc = time.ticks_diff(time.ticks_us(), t)
    wire = [fr.encode(f, key) for f in frames]
    t = time.ticks_us()
    for i in range(n):
        fr.decode(wire[i % 50], key)
    dec = time.ticks_diff(time.ticks_us(), t)
    t = time.ticks_us()
    for i in range(n):
        hashlib.sha256(wire[i % 50]).digest()
    raw = time.ticks_diff(time.ticks_us(), t)
    print(
        json.dumps(
            {"n": n, "bytes": len(wire[0]), "encode_us": enc, "decode_us": dec, "sha256_us": raw}
        )
    )


main(int(sys.argv[1]))
