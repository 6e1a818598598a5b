"""Pushing a subject's exclusion zones to their tag (cmd_zone, docs/protocol.md), so the tag
samples fast near a zone and uploads an entry at once (docs/firmware.md, "Zones on the tag").

`zone_command` builds one signed COMMAND frame with the subject's circular exclusion zones
(at most 8, nearest-first is not needed: the tag watches all it holds; unused slots are
cleared) and records it in `device_commands`, whose per-device sequence it shares with the
rules' commands. Send it on the tag's down topic whenever the subject's zones or tag change.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, insert, select

from backend.storage.schema import device_commands, zones
from firmware import frame as fr

SLOTS = 8
ZONE_COMMAND_KEY = 0  # device_commands.key for a cmd_zone frame (cmd_config keys are 1-8)


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


def zone_command(conn: Connection, device: int, subject_id: int, key: bytes, now: float) -> bytes:
    """The signed COMMAND frame for the tag, numbered and recorded in this transaction."""
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
            value=sum(1 for r in recs if r.radius_m),
            reason="zones",
            at=now,
        )
    )
    frame = fr.Frame(fr.COMMAND, device, 0, seq, int(now), recs, fr.FLAG_TIME_VALID)
    return fr.encode(frame, key)
