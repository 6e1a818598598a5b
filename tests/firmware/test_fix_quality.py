# Fix filter and accuracy estimate.
from firmware import fixfilter, nmea

MICROPYTHON = True

T0 = 1795737600  # 2026-11-27 00:00:00 UTC


def fix(t=T0, lat=507161700, lon=-18753500, hdop=9, q=1, valid=True, ftype=2, sats=9):
    f = nmea.Fix()
    f.days = t // 86400
    f.tod_ms = (t % 86400) * 1000
    f.lat_e7, f.lon_e7, f.hdop_d, f.quality, f.valid = lat, lon, hdop, q, valid
    f.fix_type, f.sats = ftype, sats
    return f


def test_accepts_good_fix_with_accuracy():
    ff = fixfilter.FixFilter()
    acc, why = ff.check(fix(), -1)
    assert why == "" and acc == 45  # HDOP 0.9 x 5 m
    assert fixfilter.accuracy_dm(9, 1, 9) == 90  # 2D doubles it
    assert fixfilter.accuracy_dm(9, 2, 4) == 67  # few satellites widen it


def test_rejections_by_reason():
    ff = fixfilter.FixFilter(hdop_max_d=50)
    assert ff.check(fix(q=0), -1)[1] == "no_fix"
    assert ff.check(fix(valid=False), -1)[1] == "no_fix"
    assert ff.check(fix(hdop=60), -1)[1] == "hdop"
    f = fix()
    f.days = -1
    assert ff.check(f, -1)[1] == "no_time"
    assert ff.check(fix(t=T0 + 100), T0)[1] == "future"
    assert ff.check(fix(), -1)[1] == ""
    assert ff.check(fix(), -1)[1] == "stale"  # same time again
    assert ff.check(fix(t=T0 - 5), -1)[1] == "stale"
    # 1 km in 10 s is 100 m/s: impossible for a wearer
    assert ff.check(fix(t=T0 + 10, lat=507161700 + 90000), -1)[1] == "jump"
    assert ff.rejected["no_fix"] == 2 and ff.rejected["jump"] == 1 and ff.accepted == 1


def test_walking_pace_accepted():
    ff = fixfilter.FixFilter()
    lat = 507161700
    for i in range(10):
        assert ff.check(fix(t=T0 + 60 * i, lat=lat + i * 800), -1)[1] == ""  # ~90 m/min


def test_reanchors_after_repeated_jumps():
    # If the accepted fix was itself the outlier, later fixes all look like jumps: after a
    # few in a row the filter believes the new place instead of rejecting forever.
    ff = fixfilter.FixFilter()
    ff.check(fix(), -1)
    far = 507161700 + 500000
    got = [ff.check(fix(t=T0 + 10 * i, lat=far), -1)[1] for i in range(1, 5)]
    assert got[0] == "jump" and got[1] == "jump" and got[2] == ""


def test_soft_clock_rebased_by_consistent_gnss_time_not_by_one_bogus_epoch():
    # The clock came from the home unit's ack and is 45 s behind GNSS time.
    clock = T0 - 45
    ff = fixfilter.FixFilter()
    assert ff.check(fix(t=T0), clock, True)[1] == "future"  # one epoch is not enough
    assert ff.check(fix(t=T0 + 1), clock + 1, True)[1] == "future"
    acc, why = ff.check(fix(t=T0 + 2), clock + 2, True)  # the third consistent epoch
    assert why == "" and acc == 45 and ff.rebased == 1
    # A receiver's bogus times (offsets jumping about) never re-base a soft clock ...
    ff = fixfilter.FixFilter()
    for i, off in enumerate((3600, 45, 900, 7200, 45, 3600)):
        assert ff.check(fix(t=T0 + off + i), T0 + i, True)[1] == "future"
    # ... nor do 2D fixes or a break without a fix between the epochs ...
    for i in range(5):
        assert ff.check(fix(t=T0 + 45 + i, ftype=1), T0 + i, True)[1] == "future"
    for i in range(6):
        f = fix(t=T0 + 45 + i, q=0 if i % 2 else 1)
        assert ff.check(f, T0 + i, True)[1] in ("future", "no_fix")
    # ... and a clock set from GNSS is never re-based by future fixes.
    for i in range(10):
        assert ff.check(fix(t=T0 + 45 + i), T0 + i, False)[1] == "future"
    assert ff.rebased == 0 and ff.accepted == 0
