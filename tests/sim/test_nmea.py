"""NMEA sentences: checksums, field formats, any talker, and a library round trip."""

from __future__ import annotations

import re

import pynmea2
import pytest

from sim import nmea

T = 1_749_474_930_250  # 2025-06-09 13:15:30.25 UTC


def _check(s: str) -> str:
    m = re.fullmatch(r"\$([^*$]+)\*([0-9A-F]{2})\r\n", s)
    assert m, s
    c = 0
    for ch in m.group(1).encode():
        c ^= ch
    assert f"{c:02X}" == m.group(2)
    return m.group(1)


def test_checksum_of_the_textbook_sentence() -> None:
    body = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    assert nmea.checksum(body) == "47"


@pytest.mark.parametrize("talker", nmea.TALKERS)
def test_every_sentence_checks_and_round_trips(talker: str) -> None:
    lat, lon = 50.720123, -1.879512
    lines = nmea.epoch(
        talker, T, lat, lon, 14, 0.83, speed_mps=1.4, course_deg=271.5, kinds=nmea.KINDS
    )
    assert [_check(s)[:5] for s in lines] == [talker + k for k in nmea.KINDS]
    rmc, gga, gsa, gns = (pynmea2.parse(s.strip()) for s in lines)
    for msg in (rmc, gga, gns):
        assert abs(msg.latitude - lat) < 1e-6 and abs(msg.longitude - lon) < 1e-6
    ts = gga.timestamp
    assert (ts.hour, ts.minute, ts.second, ts.microsecond) == (13, 15, 30, 250_000)
    assert gga.gps_qual == 1 and gga.num_sats == "14" and float(gga.horizontal_dil) == 0.83
    assert rmc.status == "A" and rmc.datestamp.isoformat() == "2025-06-09"
    assert abs(float(rmc.spd_over_grnd) - 1.4 * 3600 / 1852) < 1e-3
    assert gsa.mode_fix_type == "3" and float(gsa.hdop) == 0.83 and gsa.sv_id01 == "01"
    assert gns.num_sats == "14"


def test_no_fix_epoch() -> None:
    rmc, gga, gsa, gns = (
        pynmea2.parse(s.strip()) for s in nmea.epoch("GN", T, None, None, kinds=nmea.KINDS)
    )
    assert rmc.status == "V" and gga.gps_qual == 0 and gsa.mode_fix_type == "1"
    assert gga.lat == "" and gns.mode_indicator == "NNNN"


def test_field_formats_and_hemispheres() -> None:
    body = _check(nmea.gga("GP", T, -33.8688, 151.2093, 9, 1.1))
    f = body.split(",")
    assert f[2] == "3352.12800" and f[3] == "S" and f[4] == "15112.55800" and f[5] == "E"
    # Rounding that carries into the next whole degree.
    body = _check(nmea.gga("GP", T, 50.9999999999, -1.99999999999, 9, 1.1))
    f = body.split(",")
    assert f[2] == "5100.00000" and f[4] == "00200.00000" and f[5] == "W"
    assert _check(nmea.gga("GP", 86_399_990, 1.0, 1.0)).split(",")[1] == "235959.99"


def test_bad_inputs_raise() -> None:
    with pytest.raises(nmea.NmeaError):
        nmea.gga("gp", T, 1.0, 1.0)
    with pytest.raises(nmea.NmeaError):
        nmea.gga("GPS", T, 1.0, 1.0)
    with pytest.raises(nmea.NmeaError):
        nmea.gga("GP", T, 91.0, 1.0)
    with pytest.raises(nmea.NmeaError):
        nmea.gga("GP", T, float("nan"), 1.0)
    with pytest.raises(nmea.NmeaError):
        nmea.epoch("GP", T, 1.0, 1.0, kinds=["VTG"])
    with pytest.raises(nmea.NmeaError):
        nmea.sentence("GPTXT,a*b")


def _seconds(profile: str, fixed_from: int, seconds: int, cold: bool = True) -> list[bytes]:
    r = nmea.Receiver(profile, seed=7)
    t0 = T // 1000
    r.power_on(T, cold)
    out = []
    for s in range(seconds):
        # walking north-east at ~1.4 m/s
        pos = nmea.Position(50.7 + s * 9e-6, -1.87 + s * 14e-6, 9, 0.9) if s >= fixed_from else None
        out.append(r.second(t0 + s, pos))
    return out


def _stream(profile: str, fixed_from: int, seconds: int, cold: bool = True) -> bytes:
    return b"".join(_seconds(profile, fixed_from, seconds, cold))


@pytest.mark.parametrize("profile", sorted(nmea.PROFILES))
def test_every_receiver_profile_reads_back_through_the_tags_reader(profile: str) -> None:
    from firmware import nmea as reader

    r = reader.Reader()
    fixes = []
    for second in _seconds(profile, 10, 30):  # a poll a second, as the tag reads its UART
        r.feed(second)
        while (f := r.take()) is not None:
            fixes.append(f)
    data = _stream(profile, 10, 30)
    p = nmea.PROFILES[profile]
    day = T // 86_400_000
    good = [f for f in fixes if f.valid and f.days == day]
    # An epoch a second (at 10 Hz the newest 4 of each second's 10 are kept for a poll a
    # second) once the receiver has a time; damaged lines lose a few.
    per_s = min(p.rate_hz, 4)
    seconds = 30 if p.placeholder else 30 - p.time_after_s
    assert len(fixes) >= (seconds * per_s - 1) * (0.8 if p.damage_p else 1)
    assert len(good) >= (19 * per_s) * (0.8 if p.damage_p else 1)
    for f in good:
        s = f.unix() - T // 1000
        assert abs(f.lat_e7 - round((50.7 + s * 9e-6) * 1e7)) <= 2
        assert abs(f.lon_e7 - round((-1.87 + s * 14e-6) * 1e7)) <= 2
        assert f.sats == 9 and f.hdop_d == 9
        if s > 10:  # speed and course from the previous second's position: ~1.4 m/s, ~45 deg
            assert 120 <= f.speed_cms <= 160 and 4000 <= f.course_cd <= 5500
    if p.placeholder:  # MTK: a clock from power-on dated 1980-01-06, then its first fix too
        dated = [f for f in fixes if f.days >= 0]
        assert dated[0].days == nmea.GPS_EPOCH_MS // 86_400_000 and not dated[0].valid
        first = next(f for f in fixes if f.valid)
        if p.rate_hz == 1:  # (at 10 Hz that epoch is one of the six a poll does not keep)
            assert first.days == nmea.GPS_EPOCH_MS // 86_400_000
    else:  # before the time is known: empty time fields, counted as no-fix, not as bad
        assert r.nofix >= 2
    if p.binary_p:
        assert r.garbage > 0 and any(c > 127 for c in data)
    if p.damage_p:
        assert r.checksum_errors + r.partial + r.garbage > 0
    assert r.malformed == 0
    if not p.damage_p and not p.binary_p:
        assert r.bad() == 0


def test_receiver_order_talker_rate_and_gsv() -> None:
    lines = _stream("sirf", 0, 2, cold=False).decode().split()
    assert [x[:6] for x in lines[:3]] == ["$GPGGA", "$GPGSA", "$GPGSV"] and lines[-1][
        :6
    ] == "$GPRMC"
    for x in lines:
        pynmea2.parse(x)
    lines = _stream("ublox-m10", 0, 1, cold=False).decode().split()
    assert [x[:6] for x in lines] == ["$GNRMC", "$GNGGA", "$GNGSA"]
    tods = {
        x.split(",")[1]
        for x in _stream("mtk-10hz", 0, 1, cold=False).decode().split()
        if "GSA" not in x
    }
    assert len(tods - {""}) == 10
    with pytest.raises(nmea.NmeaError):
        nmea.Receiver("garmin-etrex")
