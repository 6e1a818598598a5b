"""Pushing a subject's exclusion zones to their tag (cmd_zone, docs/protocol.md), so the tag
samples fast near a zone and uploads an entry at once (docs/firmware.md, "Zones on the tag").

`zone_command` builds one signed COMMAND frame with the subject's circular exclusion zones
(at most 8, nearest-first is not needed: the tag watches all it holds; unused slots are
cleared) and records it in `device_commands`, whose per-device sequence it shares with the
rules' commands, with a digest of the zone set as its value. Send it on the tag's down topic
whenever the subject's zones or tag change: `zone_update` gives the frame only when the
digest differs from the last cmd_zone recorded for the device (the rules sink calls it).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, func, insert, select

from backend.storage.schema import device_commands, zones
from firmware import frame as fr

SLOTS = 8
ZONE_COMMAND_KEY = 0  # device_commands.key for a cmd_zone frame (cmd_config keys are 1-8)
ZONE_REASON = "zones"


def zone_records(conn: Connection, subject_id: int) -> list[fr.Record]:
    rows = conn.execute(
        select(zones.c.geometry, zones.c.radius_m)
        .where(
            zones.c.subject_id == subject_id,
            zones.c.kind == "exclusion",
            zones.c.shape == "circle",
        )
        .order_by(zones.c.id)
    ).all()
    recs = []
    for slot in range(SLOTS):
        if slot < len(rows):
            geometry, radius = rows[slot]
            lon, lat = geometry["coordinates"]
            recs.append(
                fr.Record(
                    fr.CMD_ZONE,
                    slot=slot,
                    lat_e7=round(lat * 1e7),
                    lon_e7=round(lon * 1e7),
                    radius_m=min(round(radius), 0xFFFF),
                )
            )
        else:
            recs.append(fr.Record(fr.CMD_ZONE, slot=slot, lat_e7=0, lon_e7=0, radius_m=0))
    return recs


def zone_digest(recs: list[fr.Record]) -> int:
    """A digest of the slots' contents (device_commands.value: signed 64-bit, so 62 bits)."""
    text = ";".join(f"{r.slot},{r.lat_e7},{r.lon_e7},{r.radius_m}" for r in recs)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 2


EMPTY_DIGEST = zone_digest(
    [fr.Record(fr.CMD_ZONE, slot=s, lat_e7=0, lon_e7=0, radius_m=0) for s in range(SLOTS)]
)


def last_zone_digest(conn: Connection, device: int) -> int:
    """The digest of the last cmd_zone recorded for the device; a device never sent one
    holds no zones, as if sent an empty set."""
    value = conn.execute(
        select(device_commands.c.value)
        .where(device_commands.c.device == device, device_commands.c.key == ZONE_COMMAND_KEY)
        .order_by(device_commands.c.seq.desc())
        .limit(1)
    ).scalar()
    return EMPTY_DIGEST if value is None else int(value)


def zone_command(
    conn: Connection,
    device: int,
    subject_id: int,
    key: bytes,
    now: float,
    recs: list[fr.Record] | None = None,
) -> bytes:
    """The signed COMMAND frame for the tag, numbered and recorded (with the zone set's
    digest) in this transaction."""
    if recs is None:
        recs = zone_records(conn, subject_id)
    last = conn.execute(
        select(func.max(device_commands.c.seq)).where(device_commands.c.device == device)
    ).scalar()
    seq = (last or 0) + 1
    conn.execute(
        insert(device_commands).values(
            device=device,
            seq=seq,
            key=ZONE_COMMAND_KEY,
            value=zone_digest(recs),
            reason=ZONE_REASON,
            at=now,
        )
    )
    frame = fr.Frame(fr.COMMAND, device, 0, seq, int(now), recs, fr.FLAG_TIME_VALID)
    return fr.encode(frame, key)


def zone_update(
    conn: Connection, device: int, subject_id: int, key: bytes, now: float
) -> bytes | None:
    """zone_command if the subject's zones differ from the last set recorded for the
    device (a changed, new or removed zone, or a tag that held another set), else None."""
    recs = zone_records(conn, subject_id)
    if zone_digest(recs) == last_zone_digest(conn, device):
        return None
    return zone_command(conn, device, subject_id, key, now, recs)
