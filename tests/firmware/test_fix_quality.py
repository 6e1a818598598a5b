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


def agreed(ff, t=T0, n=5, **kw):
    """Feeds n consecutive epochs ending at t, a second apart (tick seconds = GNSS seconds
    - T0), with the clock unset; returns the last result."""
    for i in range(n - 1, -1, -1):
        got = ff.check(fix(t=t - i, **kw), -1, (t - i - T0) * 1000)
    return got


def test_accepts_good_fix_with_accuracy():
    ff = fixfilter.FixFilter()
    acc, why = agreed(ff)
    assert why == "" and acc == 45  # HDOP 0.9 x 5 m
    assert fixfilter.accuracy_dm(9, 1, 9) == 90  # 2D doubles it
    assert fixfilter.accuracy_dm(9, 2, 4) == 67  # few satellites widen it


def test_rejections_by_reason():
    ff = fixfilter.FixFilter(hdop_max_d=50)
    assert ff.check(fix(q=0), -1, 0)[1] == "no_fix"
    assert ff.check(fix(valid=False), -1, 0)[1] == "no_fix"
    assert ff.check(fix(hdop=60), -1, 0)[1] == "hdop"
    f = fix()
    f.days = -1
    assert ff.check(f, -1, 0)[1] == "no_time"
    assert ff.check(fix(t=T0 + 100), T0, 0)[1] == "clock"  # one epoch never moves the clock
    assert ff.check(fix(t=T0 - 100), T0, 0)[1] == "clock"
    assert ff.check(fix(), T0, 0)[1] == ""  # agrees with the clock
    assert ff.check(fix(), T0, 0)[1] == "stale"  # same time again
    assert ff.check(fix(t=T0 - 1), T0, 0)[1] == "stale"
    # 1 km in 10 s is 100 m/s: impossible for a wearer
    assert ff.check(fix(t=T0 + 10, lat=507161700 + 90000), T0 + 10, 10000)[1] == "jump"
    assert ff.rejected["no_fix"] == 2 and ff.rejected["jump"] == 1 and ff.accepted == 1
    assert ff.rejected["clock"] == 2 and ff.rejected["stale"] == 2


def test_walking_pace_accepted():
    ff = fixfilter.FixFilter()
    lat = 507161700
    for i in range(10):
        t = T0 + 60 * i
        assert ff.check(fix(t=t, lat=lat + i * 800), t, i * 60000)[1] == ""  # ~90 m/min


def test_reanchors_after_repeated_jumps():
    # If the accepted fix was itself the outlier, later fixes all look like jumps: after a
    # few in a row the filter believes the new place instead of rejecting forever.
    ff = fixfilter.FixFilter()
    ff.check(fix(), T0, 0)
    far = 507161700 + 500000
    got = [ff.check(fix(t=T0 + 10 * i, lat=far), T0 + 10 * i, i * 10000)[1] for i in range(1, 5)]
    assert got[0] == "jump" and got[1] == "jump" and got[2] == ""


def test_gnss_time_sets_the_clock_only_when_consecutive_epochs_agree():
    ff = fixfilter.FixFilter()
    got = [ff.check(fix(t=T0 + i), -1, i * 1000) for i in range(5)]
    assert [w for _a, w in got] == ["clock"] * 4 + [""] and ff.set_to == T0 + 4
    # Epochs that jump about (in GNSS time, or against the tag's ticks) never agree.
    for ticks in ((0, 1, 2, 3, 4, 5), (0, 5, 10, 15, 20, 25)):
        ff = fixfilter.FixFilter()
        for i, off in enumerate((0, 3600, 1, 7200, 2, 86400) if ticks[1] == 1 else range(6)):
            assert ff.check(fix(t=T0 + off), -1, ticks[i] * 1000)[1] == "clock"
    # Epochs without a fix between do not break a run (indoors); 2D fixes count; one at
    # another offset (a wrong day) starts a new run.
    ff = fixfilter.FixFilter()
    got = []
    for i in range(10):
        f = fix(t=T0 + i, q=0) if i % 2 else fix(t=T0 + i, ftype=1)
        got.append(ff.check(f, -1, i * 1000)[1])
    assert got == ["clock", "no_fix"] * 4 + ["", "no_fix"] and ff.set_to == -1
    ff = fixfilter.FixFilter()
    for i in range(12):
        wrong = 86400 if i % 4 == 3 else 0
        assert ff.check(fix(t=T0 + i + wrong), -1, i * 1000)[1] == "clock"
    assert ff.set_to == -1 and ff.accepted == 0
    # Several epochs within one second (a 10 Hz receiver) count once.
    ff = fixfilter.FixFilter()
    for i in range(40):
        why = ff.check(fix(t=T0 + i // 10), -1, i * 100)[1]
    assert why == "clock" and ff.run == 4


def test_time_before_the_build_date_is_never_believed():
    ff = fixfilter.FixFilter(built_unix=T0 - 86400)
    # A receiver's placeholder date (1980-01-06), consistent second after second.
    for i in range(20):
        assert ff.check(fix(t=315964800 + i), -1, i * 1000)[1] == "no_time"
    # 1024 weeks early (a GPS week-number rollover).
    for i in range(20):
        assert ff.check(fix(t=T0 - 1024 * 7 * 86400 + i), -1, i * 1000)[1] == "no_time"
    assert agreed(ff, T0 + 100)[1] == "" and ff.set_to == T0 + 100


def test_a_wrong_clock_is_rebased_by_agreeing_epochs_whatever_set_it():
    # Set a day ahead (a receiver's wrong day, agreed over five epochs), or 45 s behind (the
    # home unit's ack arrived late): five consistent epochs of the real time re-base it.
    for ahead in (86400, -45, 3 * 86400):
        ff = fixfilter.FixFilter()
        base = T0 + ahead  # the clock at tick 0
        got = []
        for i in range(6):
            got.append(ff.check(fix(t=T0 + i), base + i, i * 1000)[1])
            if ff.set_to >= 0:
                base = ff.set_to - i  # the caller sets its clock
        assert got == ["clock"] * 4 + ["", ""], ahead
        assert ff.rebased == 1 and ff.accepted == 2
