# Reads frame specs (JSON, one per line) on stdin, and prints for each the hex of the frame the
# firmware codec encodes, then whether decoding it gives the spec back. Run under MicroPython by
# tests/firmware/test_runtimes_identical.py; the same specs are encoded by CPython there.
import json
import sys

from firmware import frame as fr
from firmware.framedict import frame_from_dict

for line in sys.stdin:
    if not line.strip():
        continue
    spec = json.loads(line)
    key = bytes.fromhex(spec["key"])
    f = frame_from_dict(spec["frame"])
    data = fr.encode(f, key)
    back = fr.decode(data, key).to_dict() == spec["frame"]
    print(json.dumps({"hex": data.hex(), "round_trip": back}))
