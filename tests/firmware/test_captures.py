"""Real receivers' output (tests/corpus/nmea/real: u-blox, MediaTek, SiRF, Garmin, Furuno)
through the tag's NMEA reader and application, on CPython and under MicroPython, in chunks of
seeded random size: every fix matches pynmea2's independent decode of the same epoch, and
every epoch the application does not record is explained by the fix filter's rules."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import pynmea2
import pytest

from firmware import fixfilter
from sim import micropython
from tests.firmware import capture_replay as cr

CPYTHON_ONLY = "pynmea2, and drives the micropython binary"
HERE = Path(__file__).resolve().parent.parent / "corpus" / "nmea" / "real"
CAPTURES = sorted(p.name for p in HERE.glob("*.nmea"))
SEEDS = (1, 7, 2026)


@dataclass
class Epoch:
    """One epoch as pynmea2 reads it: the first GGA/GNS of its time, its RMC and ZDA."""

    tod_ms: int
    pos: pynmea2.NMEASentence | None = None
    rmc: pynmea2.NMEASentence | None = None
    days: int = -1
    kinds: list[str] = field(default_factory=list)


def _tod(t: dt.time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1000 + t.microsecond // 1000


def decode(name: str) -> dict[int, Epoch]:
    epochs: dict[int, Epoch] = {}
    for line in (HERE / name).read_text(encoding="utf-8").splitlines():
        if not line.startswith("$"):
            continue
        try:
            msg = pynmea2.parse(line, check=True)
        except pynmea2.ParseError:
            continue  # a line cut short in the capture
        kind = type(msg).__name__
        if kind not in ("GGA", "GNS", "RMC", "ZDA") or not getattr(msg, "timestamp", None):
            continue
        ep = epochs.setdefault(_tod(msg.timestamp), Epoch(_tod(msg.timestamp)))
        ep.kinds.append(kind)
        if kind in ("GGA", "GNS") and ep.pos is None:
            ep.pos = msg
        elif kind == "RMC" and ep.rmc is None:
            ep.rmc = msg
            if msg.datestamp:
                ep.days = (msg.datestamp - dt.date(1970, 1, 1)).days
        elif kind == "ZDA":
            ep.days = (
                dt.date(int(msg.year), int(msg.month), int(msg.day)) - dt.date(1970, 1, 1)
            ).days
    return epochs


def hdop_d(p: pynmea2.NMEASentence) -> int:
    """HDOP in tenths, truncated as the reader documents (255: none given)."""
    h = p.horizontal_dil if type(p).__name__ == "GGA" else p.hdop
    return int(float(h) * 10 + 1e-6) if h else 255


def is_fix(ep: Epoch) -> bool:
    """The reader's documented rule: GGA quality 1-5 or a GNS mode A D P R F, and an RMC (if
    any) with status A and no mode E, M, S or N."""
    p = ep.pos
    if p is None:
        return False
    if type(p).__name__ == "GGA":
        ok = 0 < int(p.gps_qual or 0) < 6
    else:
        ok = any(c in "ADPRF" for c in p.mode_indicator)
    if ep.rmc is not None:
        mode = getattr(ep.rmc, "mode_indicator", None) if len(ep.rmc.data) > 11 else None
        ok = ok and ep.rmc.status == "A" and mode not in ("E", "M", "S", "N")
    return ok


def _replay(name: str, seed: int) -> dict[str, object]:
    data = cr.read(name)
    fixes, counts = cr.reader_fixes(data, seed)
    app, rejected = cr.app_fixes(data, seed)
    return {"reader": fixes, "counts": counts, "app": app, "rejected": rejected}


@pytest.fixture(scope="module")
def under_micropython() -> dict[tuple[str, int], dict[str, object]]:
    cases = [(n, s) for n in CAPTURES for s in SEEDS]
    stdin = "".join(f"{n} {s}\n" for n, s in cases).encode()
    proc = micropython.run(
        ["tests/firmware/mp_capture_replay.py"], heap="256k", stdin=stdin, timeout=600
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert len(lines) == len(cases)
    return dict(zip(cases, lines, strict=True))


def test_captures_from_five_makes() -> None:
    makes = {n.split("-")[0] for n in CAPTURES}
    assert makes >= {"ublox", "mtk", "sirf", "garmin", "furuno"}


@pytest.mark.parametrize("name", CAPTURES)
def test_every_fix_the_reader_emits_matches_pynmea2(name: str) -> None:
    epochs = decode(name)
    # Bad: the header's comment lines (a '$' in one starts a sentence that is not one), and
    # the Foretrex capture's two joined samples.
    comments = sum(1 + x.count(b"$") for x in cr.read(name).splitlines() if x.startswith(b"#"))
    for seed in SEEDS:
        fixes, counts = cr.reader_fixes(cr.read(name), seed)
        assert comments - 1 <= counts[1] <= comments + 1
        got = {f[0]: f for f in fixes}
        assert len(got) == len(fixes)  # one emission per epoch
        # Every epoch but the last (still open at the end of the capture) is emitted.
        last = max(epochs)
        assert set(got) == {t for t in epochs if t != last} | ({last} & set(got))
        for tod, f in got.items():
            ep = epochs[tod]
            _tod_ms, days, lat, lon, q, sats, hdop, ftype, speed, course, valid = f
            assert days == ep.days, (name, tod)
            assert bool(valid) == is_fix(ep), (name, tod)
            if ep.pos is None:
                assert q == 0 and not valid
                continue
            assert sats == int(ep.pos.num_sats or 0)
            if hdop_d(ep.pos) != 255:
                assert hdop == hdop_d(ep.pos)
            if valid:
                assert abs(lat - round(ep.pos.latitude * 1e7)) <= 1
                assert abs(lon - round(ep.pos.longitude * 1e7)) <= 1
                assert ftype in (1, 2)
            if ep.rmc is not None and ep.rmc.spd_over_grnd is not None:
                assert abs(speed - float(ep.rmc.spd_over_grnd) * 51.444) <= 1
            if ep.rmc is not None and ep.rmc.true_course not in (None, ""):
                assert abs(course - float(ep.rmc.true_course) * 100) <= 1


@pytest.mark.parametrize("name", CAPTURES)
def test_the_application_records_each_fix_or_the_filter_says_why(name: str) -> None:
    epochs = decode(name)
    by_time = {ep.days * 86400 + ep.tod_ms // 1000: ep for ep in epochs.values() if ep.days >= 0}
    fixes = [t for t, ep in by_time.items() if is_fix(ep) and hdop_d(ep.pos) <= 50]
    for seed in SEEDS:
        app, rejected = cr.app_fixes(cr.read(name), seed)
        why = dict(rejected)
        for t, lat, lon, acc, sats, speed, course in app:
            # Recorded at the tag's clock, set from GNSS time: within a second or two of its
            # epoch (the poll that read it), and equal to that epoch's decode.
            same = [
                by_time[u]
                for u in fixes
                if abs(u - t) <= 2
                and abs(lat - round(by_time[u].pos.latitude * 1e7)) <= 1
                and abs(lon - round(by_time[u].pos.longitude * 1e7)) <= 1
                and sats == int(by_time[u].pos.num_sats or 0)
            ]
            assert same, (name, t, lat, lon)
            assert any(
                acc in (fixfilter.accuracy_dm(hdop_d(e.pos), k, sats) for k in (1, 2))
                and (e.rmc is None or abs(speed - float(e.rmc.spd_over_grnd) * 51.444) <= 1)
                and (e.rmc is None or abs(course - float(e.rmc.true_course or 0) * 100) <= 1)
                for e in same
            ), (name, t, acc, speed)
        # The filter's rules account for every dated fix epoch not recorded: the first
        # ones wait for five to agree on the time ("clock"), none is lost otherwise.
        expected = len([t for t in fixes if t <= max(fixes)]) - 4 if fixes else 0
        assert len(app) + why["clock"] >= expected - 1, (name, seed, len(app), why)
        assert why["clock"] <= 4 and why["stale"] == 0 and why["jump"] == 0
        if not fixes:  # the Garmin's demo mode (quality 8, status V): never a fix
            assert app == [] and why["no_fix"] > 0


@pytest.mark.micropython
@pytest.mark.parametrize("name", CAPTURES)
def test_micropython_replays_the_captures_identically(
    name: str, under_micropython: dict[tuple[str, int], dict[str, object]]
) -> None:
    for seed in SEEDS:
        assert under_micropython[(name, seed)] == json.loads(json.dumps(_replay(name, seed)))
