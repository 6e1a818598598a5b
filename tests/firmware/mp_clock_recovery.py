# Under MicroPython: examples of the clock-safety property on stdin, one a line as JSON
# {"seconds": n, "t0": unix, "from": s, "hex": [hex of each second's bytes]}; prints the
# second of the first true fix for each (tests/firmware/clock_recovery.py).
import json
import sys

from tests.firmware import clock_recovery as cr

for line in sys.stdin:
    if not line.strip():
        continue
    ex = json.loads(line)
    chunks = ex["hex"]

    def second_bytes(s, chunks=chunks):
        return bytes.fromhex(chunks[s]) if s < len(chunks) else b""

    print(json.dumps(cr.first_true_fix(second_bytes, ex["seconds"], ex["t0"], ex["from"])))
    del chunks, ex
