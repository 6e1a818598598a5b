"""Signed frames as tags and home units send them, for the backend tests and benchmark."""

from __future__ import annotations

from firmware import frame as fr

LAT0 = 507_192_000  # Bournemouth, 1e-7 degree
LON0 = -18_808_000


def fix(dt: int, lat_e7: int = LAT0, lon_e7: int = LON0) -> fr.Record:
    return fr.Record(fr.FIX, (dt, lat_e7, lon_e7, 42, fr.FIX_3D, fr.SOURCE_GNSS, 9, 140, 27000, 9))


def tag_frame(
    device: int,
    key: bytes,
    seq: int,
    ts: int,
    fixes: int = 1,
    boot: int = 1,
    extra: list[fr.Record] | None = None,
    flags: int = fr.FLAG_TIME_VALID,
) -> bytes:
    """A TAG_DATA frame with `fixes` fixes taken 60 s apart, the last one at ts."""
    recs = [fix(60 * (fixes - 1 - i), LAT0 + 1000 * i, LON0 - 1000 * i) for i in range(fixes)]
    recs += extra or []
    return fr.encode(fr.Frame(fr.TAG_DATA, device, boot, seq, ts, recs, flags), key)


def home_frame(unit: int, key: bytes, seq: int, ts: int, records: list[fr.Record]) -> bytes:
    return fr.encode(fr.Frame(fr.HOME_DATA, unit, 1, seq, ts, records, fr.FLAG_TIME_VALID), key)


def acked(payload: bytes, key: bytes) -> set[tuple[int, int]]:
    """(boot, seq) pairs an ACK frame names, after verifying it with the device's key."""
    f = fr.decode(payload, key)
    assert f.mtype == fr.ACK
    out = set()
    for r in f.records:
        assert r.type == fr.ACK_RANGE
        out |= {(r.boot, s) for s in range(r.first, r.last + 1)}
    return out
