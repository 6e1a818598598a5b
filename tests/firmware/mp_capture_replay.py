# Under MicroPython: for each "name seed" line on stdin, replay that capture through the
# reader and the application (tests/firmware/capture_replay.py) and print one JSON line.
import json
import sys

from tests.firmware import capture_replay as cr

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    name, seed = line.split()
    data = cr.read(name)
    fixes, counts = cr.reader_fixes(data, int(seed))
    app, rejected = cr.app_fixes(data, int(seed))
    print(json.dumps({"reader": fixes, "counts": counts, "app": app, "rejected": rejected}))
