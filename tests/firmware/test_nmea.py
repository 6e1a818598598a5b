# NMEA reader: sentences of every supported type and talker, and every kind of bad input.
from firmware import nmea

MICROPYTHON = True

RMC = "GPRMC,123519.00,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"
GGA = "GPGGA,123519.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
GSA = "GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1"


def feed(r, *bodies):
    for b in bodies:
        r.feed(nmea.sentence(b))


def test_epoch_merges_rmc_gsa_gga():
    r = nmea.Reader()
    feed(r, GSA, RMC, GGA)
    fix = r.take()
    assert fix is not None and r.take() is None
    # 48 deg 07.038 min = 48.1173 deg; 11 deg 31.000 min = 11.516666.. deg
    assert fix.lat_e7 == 481173000
    assert fix.lon_e7 == 115166667
    assert fix.sats == 8 and fix.hdop_d == 9 and fix.quality == 1
    assert fix.fix_type == 2 and fix.valid
    assert fix.speed_cms == 1152  # 22.4 kn
    assert fix.course_cd == 8440
    assert fix.unix() == 764426119  # 1994-03-23 12:35:19 UTC
    assert r.good == 3 and r.bad() == 0


def test_any_talker_and_gns_and_southern_western_hemispheres():
    for talker in ("GP", "GN", "GL", "GA", "GB"):
        r = nmea.Reader()
        feed(
            r,
            talker + "RMC,000001,A,3351.000,S,15112.600,W,0.0,,010125,,",
            talker + "GNS,000001,3351.000,S,15112.600,W,AAN,10,1.2,10.0,,,,",
        )
        fix = r.take()
        assert fix is not None, talker
        assert fix.lat_e7 == -338500000 and fix.lon_e7 == -1512100000
        assert fix.valid and fix.sats == 10 and fix.hdop_d == 12
        assert fix.unix() == 1735689601


def test_no_fix_epoch_is_reported_invalid():
    r = nmea.Reader()
    feed(r, "GNRMC,101010,V,,,,,,,010125,,,N", "GNGGA,101010,,,,,0,00,99.99,,,,,,")
    fix = r.take()
    assert fix is not None and not fix.valid and fix.quality == 0 and fix.fix_type == 0


def test_2d_fix_from_gsa():
    r = nmea.Reader()
    feed(r, "GPGSA,A,2,04,05,09,,,,,,,,,,3.0,2.0,2.2", GGA, RMC)
    assert r.take().fix_type == 1


def test_bad_checksum_counted_and_dropped():
    r = nmea.Reader()
    line = nmea.sentence(GGA)
    bad = line[:-4] + (b"00" if line[-4:-2] != b"00" else b"11") + b"\r\n"
    r.feed(bad)
    assert r.take() is None and r.checksum_errors == 1 and r.good == 0


def test_half_line_waits_then_completes_byte_by_byte():
    r = nmea.Reader()
    line = nmea.sentence(GGA) + nmea.sentence(RMC)
    for i in range(len(line) - 2):  # up to the CR that ends the epoch's last sentence
        r.feed(line[i : i + 1])
        assert r.take() is None
    r.feed(line[-2:])
    assert r.take() is not None and r.bad() == 0


def test_partial_line_cut_by_next_dollar():
    r = nmea.Reader()
    line = nmea.sentence(GGA)
    r.feed(line[:30] + line + nmea.sentence(RMC))
    assert r.partial == 1 and r.take() is not None


def test_overlong_line_dropped_reader_recovers():
    r = nmea.Reader()
    r.feed(b"$GPXXX," + b"9" * 300 + b"\r\n")
    assert r.overlong == 1
    feed(r, GGA, RMC)
    assert r.take() is not None


def test_garbage_and_binary_counted():
    r = nmea.Reader()
    r.feed(b"hello world\r\n\x00\x01\xff\xfe\r\n$GPGGA*ZZ\r\n")
    assert r.garbage == 3 and r.take() is None


def test_malformed_fields_counted():
    r = nmea.Reader()
    feed(
        r,
        "GPGGA,123519,48x7.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GPGGA,123519,4807.038,Q,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GPGGA,256519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GPRMC,123519,A,4807.038,N,01131.000,E,0,0,320394,,",
        "GPGGA,1",
    )
    assert r.malformed == 5 and r.take() is None


def test_other_sentences_ignored_not_bad():
    r = nmea.Reader()
    feed(r, "GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00", "GPTXT,01,01,02,x")
    assert r.ignored == 2 and r.bad() == 0


def test_unread_fixes_bounded():
    r = nmea.Reader()
    for s in range(20):
        feed(r, GGA.replace("123519.00", "1235%02d.00" % s))
    n = 0
    while r.take() is not None:
        n += 1
    assert n == 4  # the 20th epoch is still open: no sentence of a later second came


def test_days_from_civil():
    assert nmea.days_from_civil(1970, 1, 1) == 0
    assert nmea.days_from_civil(2000, 3, 1) == 11017
    assert nmea.days_from_civil(2026, 11, 27) * 86400 == 1795737600


def fixes(r):
    out = []
    f = r.take()
    while f is not None:
        out.append(f)
        f = r.take()
    return out


def test_fix_dated_only_by_an_rmc_of_its_own_second_across_midnight():
    # GGA before RMC (MTK, SiRF, older u-blox, Garmin): the epoch after midnight must not
    # take the date of the RMC that came last, which was yesterday's.
    r = nmea.Reader()
    feed(
        r,
        "GPGGA,235959.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GPRMC,235959.00,A,4807.038,N,01131.000,E,022.4,084.4,311224,003.1,W",
        "GPGGA,000000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
    )
    got = fixes(r)
    assert len(got) == 1 and got[0].unix() == nmea.days_from_civil(2024, 12, 31) * 86400 + 86399
    feed(r, "GPRMC,000000.00,A,4807.038,N,01131.000,E,022.4,084.4,010125,003.1,W")
    got = fixes(r)
    assert len(got) == 1 and got[0].unix() == nmea.days_from_civil(2025, 1, 1) * 86400
    # Without an RMC (or ZDA) of its own second an epoch's date is unknown.
    feed(r, "GPGGA,000001.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    feed(r, "GPGGA,000002.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    got = fixes(r)
    assert len(got) == 1 and got[0].tod_ms == 1000 and got[0].days == -1 and got[0].unix() == -1


def test_speed_course_and_status_kept_when_rmc_follows_gga():
    r = nmea.Reader()
    feed(r, GGA, RMC)
    fix = r.take()
    assert fix is not None and r.take() is None
    assert fix.speed_cms == 1152 and fix.course_cd == 8440 and fix.valid
    assert fix.unix() == 764426119
    r = nmea.Reader()
    feed(r, GGA, RMC.replace(",A,", ",V,"))  # the receiver says the fix is not valid
    fix = r.take()
    assert fix is not None and not fix.valid


def test_dollar_starts_a_sentence_after_an_overlong_run_of_binary():
    r = nmea.Reader()
    r.feed(bytes(range(128, 229)) + nmea.sentence(RMC) + nmea.sentence(GGA))
    fix = r.take()
    assert fix is not None and fix.unix() == 764426119 and fix.speed_cms == 1152
    assert r.overlong == 1 and r.good == 2


def test_cold_start_sentences_count_as_no_fix_not_malformed():
    r = nmea.Reader()
    r.feed(b"$GNRMC,,V,,,,,,,,,,N,V*37\r\n$GNGGA,,,,,,0,00,99.99,,,,,,*56\r\n")
    assert r.nofix == 2 and r.malformed == 0 and r.bad() == 0 and r.take() is None


def test_zda_dates_its_epoch():
    r = nmea.Reader()
    feed(r, GGA.replace(",1,08,", ",2,08,"), "GPZDA,123519.00,23,03,1994,,")
    feed(r, "GPGGA,123520.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    fix = r.take()
    assert fix is not None and fix.unix() == 764426119 and fix.valid


def test_one_epoch_from_several_talkers_and_position_sentences():
    # SiRFstarV: GPGGA and GLGGA of one second, then GSA, then GNRMC; Furuno: RMC, GNS, GGA.
    r = nmea.Reader()
    feed(
        r,
        "GPGGA,020935.000,4404.1351,N,12118.8556,W,1,08,0.9,1123.9,M,-19.6,M,,0000",
        "GLGGA,020935.000,4404.1351,N,12118.8556,W,1,02,0.9,1123.9,M,-19.6,M,,0000",
        "GNGSA,A,3,15,17,30,28,01,19,24,11,,,,,1.8,0.9,1.5",
        "GNRMC,020935.000,A,4404.1351,N,12118.8556,W,0.04,359.11,050219,,,A",
        "GNRMC,020936.000,A,4404.1351,N,12118.8557,W,0.11,359.11,050219,,,A",
        "GNGNS,020936.000,4404.1351,N,12118.8557,W,NDD,11,1.3,168.9,39.5,,,V",
        "GNGGA,020936.000,4404.1351,N,12118.8557,W,2,00,1.3,168.9,M,39.5,M,,",
    )
    got = fixes(r)
    assert [f.sats for f in got] == [8, 11] and [f.hdop_d for f in got] == [9, 13]
    assert all(f.valid and f.unix() > 0 for f in got)


def test_estimated_manual_and_simulated_fixes_are_not_fixes():
    for q in ("6", "7", "8"):
        r = nmea.Reader()
        feed(r, GGA.replace(",1,08,", "," + q + ",08,"), RMC)
        fix = r.take()
        assert fix is not None and not fix.valid and fix.fix_type == 0, q
    r = nmea.Reader()  # RMC mode indicator E (dead reckoning) overrides status A
    feed(r, GGA, "GPRMC,123519.00,A,4807.038,N,01131.000,E,0.0,,230394,,,E")
    assert not r.take().valid


def test_empty_hdop_taken_from_gsa_else_unknown():
    r = nmea.Reader()
    feed(r, GSA, GGA.replace(",0.9,", ",,"), RMC)
    assert r.take().hdop_d == 13
    r = nmea.Reader()
    feed(r, GGA.replace(",0.9,", ",,"), RMC)
    assert r.take().hdop_d == 255
