"""Frames and rejections as the rules see them: observations (model.Obs).

One function for both paths — a frame ingest has just stored (live) and a frame read back
from storage for re-evaluation (late) — so both give identical observations, refs included."""

from __future__ import annotations

from collections.abc import Collection

from backend.rules.model import SECURITY, Obs
from firmware import frame as fr

# The LINK offline record is the MQTT last will, signed at connect time: its own timestamp
# says when the unit connected, not when it was lost (docs/home-unit.md). Dated instead at
# the backend time the will was received, which is stored with the frame.
_RECEIVED_DATED = {(fr.LINK, fr.LINK_OFFLINE)}


def frame_observations(
    f: fr.Frame,
    role: str,
    received_at: float,
    late: bool = False,
    refused: Collection[int] = (),
) -> list[Obs]:
    """Observations of one stored frame, but for the `refused` record indexes (records its
    sender may not make: backend/registry.py, Pairings.refusals). Frames without calendar
    time (no TIME_VALID) give none: their seconds since boot cannot be placed on the
    event-time line."""
    if not f.flags & fr.FLAG_TIME_VALID:
        return []
    out = []
    for idx, rec in enumerate(f.records):
        if idx in refused:
            continue
        spec = fr.SPECS.get(rec.type)
        if spec is None or spec[2][:1] != ("dt",):
            continue
        values = dict(zip(spec[2], rec.values, strict=True))
        t = f.ts - values.pop("dt")
        if (rec.type, values.get("state")) in _RECEIVED_DATED:
            t = max(t, int(received_at))
        ref = f"{f.device}/{f.boot}/{f.seq}/{idx}"
        out.append(Obs(t, f.device, role, spec[0], ref, values, late=late))
    return out


def security_observation(
    device: int, role: str, at: float, n: int, reason: str, detail: str
) -> Obs:
    """A refused frame (security_events row): dated at the backend time of the refusal; `n`
    orders refusals of one device at the same instant (their order in the batch)."""
    return Obs(
        int(at), device, role, SECURITY, f"sec/{device}/{at!r}/{n}", {}, f"{reason}:{detail}"
    )
