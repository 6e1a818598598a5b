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
