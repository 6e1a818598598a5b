# A zone visit in a cellular coverage gap: the fixes inside the zone are stored, and once
# coverage returns (even after the visit) they reach the backend within about a minute, not
# after the uplink's exponential back-off (30 s doubling to 30 min) has run its course.
from firmware import config
from firmware import frame as fr
from firmware.app import App
from tests.firmware import fakeboard as fb
from tests.firmware.flash import Flash

MICROPYTHON = True
MICROPYTHON_HEAP = "192k"
MIN = 60000
PER_M = 1 / 0.0111319  # 1e-7 degrees of latitude per metre


def command(seq, *recs):
    return fr.encode(fr.Frame(fr.COMMAND, fb.DEVICE, 0, seq, fb.T0, list(recs)), fb.KEY)


def test_zone_entry_in_a_coverage_gap_leaves_soon_after_coverage_returns():
    flash = Flash(blocks=64, block_size=4096)
    board = fb.FakeBoard(flash.files())
    app = App(board, config.merge(dict(fb.CFG)))
    board.moving = True
    sent_at = []  # (board clock, payload) of every frame published

    def backend(modem, payload):
        sent_at.append((board.clock, payload))
        fb.acking_backend(modem, payload)

    board.backend = backend
    lat, lon = board.pos
    centre = lat + round(1000 * PER_M)  # a 200 m zone 1 km north
    zone = fr.Record(fr.CMD_ZONE, slot=0, lat_e7=centre, lon_e7=lon, radius_m=200)
    board.modem.inbox.append(command(1, zone))
    fb.run(app, board, 10 * MIN)
    assert app.zones.zones == [[0, centre, lon, 200]]

    def gap(b):
        b.modem.coverage = False

    def inside(b):
        b.pos = (centre, lon)

    def out(b):
        b.pos = (lat, lon)

    def back(b):
        b.modem.coverage = True

    # Coverage goes at 11 min, the wearer is in the zone from 13 to 25 min, coverage returns
    # at 33 min, after the visit (the entry is owed until it is acknowledged).
    events = [(11 * MIN, gap), (13 * MIN, inside), (25 * MIN, out), (33 * MIN, back)]
    fb.run(app, board, 40 * MIN, events=events)
    first = None  # (sent at, fix time) of the first frame with a fix inside the zone
    for at, payload in sent_at:
        f = fr.decode(payload, fb.KEY)
        for r in f.records:
            if r.name == "fix" and r.lat_e7 == centre and first is None:
                first = (at, f.time_of(r))
    assert first is not None, "no fix inside the zone reached the backend"
    # Recorded during the gap, soon after the entry, and kept until it could be sent ...
    assert first[1] - (fb.T0 + 13 * 60) <= 20
    # ... then sent within a minute (and a connection) of coverage returning, where the
    # back-off alone waits for its next attempt, up to 30 minutes later.
    assert 33 * MIN <= first[0] <= 33 * MIN + 75000, (first[0] - 33 * MIN) / 1000
    assert app.store.pending() == 0  # and everything stored in the gap went with it
    flash.close()
