"""Evidence-grade exports: a subject's trail for a time range as GeoJSON, GPX and KML, their
device events and alerts as CSV, bundled in a zip with a manifest — who exported it, when,
why, the query, row counts and the SHA-256 of every file — so the bundle can stand as
evidence: anyone can re-hash the files and compare them with the manifest and with the
audit record written when it was made (docs/investigations.md, "Exports").

Pure functions from rows to bytes, plus the reads; the route (backend/api/routes/exports.py)
guards, audits and serves."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

import gpxpy
import gpxpy.gpx
from sqlalchemy import Connection, or_, select

from backend import csv_cells
from backend.investigations import evidence as ev
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    alerts,
    device_events,
    positions,
    presence,
)

MANIFEST_FORMAT = "tagwatch-export/1"
FORMATS = ("geojson", "gpx", "kml", "events", "alerts")
FILE_NAMES = {
    "geojson": "trail.geojson",
    "gpx": "trail.gpx",
    "kml": "trail.kml",
    "events": "events.csv",
    "alerts": "alerts.csv",
}
KML_NS = "http://www.opengis.net/kml/2.2"
GX_NS = "http://www.google.com/kml/ext/2.2"
# A new GPX track segment / KML track starts after a gap longer than this: a straight line
# drawn across hours without data would suggest a path nobody measured.
SEGMENT_GAP_S = 900


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


# ---- reads ------------------------------------------------------------------------------


def trail_points(conn: Connection, subject_id: int, t0: int, t1: int) -> list[ev.FixRef]:
    """The subject's fixes in [t0, t1] from every tag it wore then, in time order."""
    c = positions.c
    out: list[ev.FixRef] = []
    for tn, span in ev.served(conn, subject_id, TAG, t0, t1):
        rows = conn.execute(
            select(c.ts, c.lat_e7, c.lon_e7, c.acc_dm, c.source)
            .where(c.device == tn.device, c.ts.between(*span))
            .order_by(c.ts, c.id)
        )
        out += [
            ev.FixRef(int(r[0]), r[1] / 1e7, r[2] / 1e7, r[3] / 10, tn.device,
                  "rf_home" if r[4] == 1 else "gnss")
            for r in rows
        ]  # fmt: skip
    out.sort(key=lambda p: (p.t, p.device))
    return out


EVENT_COLUMNS = ("t", "time_utc", "device", "role", "kind", "data")


def event_rows(conn: Connection, subject_id: int, t0: int, t1: int) -> list[dict[str, Any]]:
    """Device events of the subject's tags and home units in [t0, t1] (tamper, battery,
    mode, status, ...) and the home unit's presence reports for its tags."""
    out: list[dict[str, Any]] = []
    e = device_events.c
    for role in (TAG, HOME_UNIT):
        for tn, span in ev.served(conn, subject_id, role, t0, t1):
            for r in conn.execute(
                select(e.ts, e.kind, e.data)
                .where(e.device == tn.device, e.ts.between(*span))
                .order_by(e.ts, e.id)
            ):
                out.append(_event(int(r.ts), tn.device, role, r.kind, r.data))
    p = presence.c
    for tn, span in ev.served(conn, subject_id, TAG, t0, t1):
        for pr in conn.execute(
            select(p.ts, p.home_unit, p.state, p.rssi)
            .where(p.tag == tn.device, p.ts.between(*span))
            .order_by(p.ts, p.id)
        ):
            data = {"tag": tn.device, "state": "home" if pr.state == 1 else "away",
                    "rssi": pr.rssi}  # fmt: skip
            out.append(_event(int(pr.ts), int(pr.home_unit), HOME_UNIT, "presence", data))
    out.sort(key=lambda x: (x["t"], x["device"], x["kind"]))
    return out


def _event(t: int, device: int, role: str, kind: str, data: Any) -> dict[str, Any]:
    return {
        "t": t,
        "time_utc": iso(t),
        "device": device,
        "role": role,
        "kind": kind,
        "data": json.dumps(data, sort_keys=True, separators=(",", ":")),
    }


ALERT_COLUMNS = (
    "id", "type", "rule", "rule_version", "severity", "state", "start", "start_utc", "end",
    "end_utc", "duration_s", "episodes", "late", "raised_at_utc", "acknowledged_at_utc",
    "resolved_at_utc", "outcome", "note",
)  # fmt: skip


def alert_rows(conn: Connection, subject_id: int, t0: int, t1: int) -> list[dict[str, Any]]:
    """The subject's alerts whose condition overlaps [t0, t1] (cleared ones included: they
    are part of the record, marked as such)."""
    a = alerts.c
    rows = conn.execute(
        select(alerts)
        .where(a.subject_id == subject_id, a.start <= t1, or_(a.end.is_(None), a.end >= t0))
        .order_by(a.start, a.id)
    )
    out = []
    for r in rows:
        out.append(
            {
                "id": r.id, "type": r.type, "rule": r.rule, "rule_version": r.rule_version,
                "severity": r.severity, "state": r.state, "start": r.start,
                "start_utc": iso(r.start), "end": r.end,
                "end_utc": "" if r.end is None else iso(r.end),
                "duration_s": "" if r.end is None else r.end - r.start,
                "episodes": r.episodes, "late": r.late, "raised_at_utc": iso(r.raised_at),
                "acknowledged_at_utc": "" if r.acknowledged_at is None else iso(r.acknowledged_at),
                "resolved_at_utc": "" if r.resolved_at is None else iso(r.resolved_at),
                "outcome": r.outcome or "", "note": r.note or "",
            }
        )  # fmt: skip
    return out


# ---- formats ----------------------------------------------------------------------------


def segments(points: Sequence[ev.FixRef], gap_s: int = SEGMENT_GAP_S) -> list[list[ev.FixRef]]:
    """Points split where the time between fixes exceeds gap_s, or the device changes."""
    out: list[list[ev.FixRef]] = []
    for p in points:
        if out and p.t - out[-1][-1].t <= gap_s and p.device == out[-1][-1].device:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def trail_geojson(points: Sequence[ev.FixRef], meta: dict[str, Any]) -> bytes:
    """A FeatureCollection: one Point Feature per fix (time, accuracy, device, source) and
    a MultiLineString of the path (one line per segment of two or more fixes)."""
    feats: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]},
            "properties": {"t": p.t, "time": iso(p.t), "accuracy_m": p.accuracy_m,
                           "device": p.device, "source": p.source},
        }
        for p in points
    ]  # fmt: skip
    lines = [[[p.lon, p.lat] for p in seg] for seg in segments(points) if len(seg) >= 2]
    if lines:
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "MultiLineString", "coordinates": lines},
                "properties": {"kind": "path", "segment_gap_s": SEGMENT_GAP_S},
            }
        )
    doc = {"type": "FeatureCollection", "properties": meta, "features": feats}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def trail_gpx(points: Sequence[ev.FixRef], meta: dict[str, Any]) -> bytes:
    """GPX 1.1: one track, one segment per stretch without a long gap; each point's comment
    carries its accuracy, device and source."""
    gpx = gpxpy.gpx.GPX()
    gpx.creator = "tagwatch"
    gpx.name = f"{meta['subject_reference']} {iso(meta['from'])} - {iso(meta['to'])}"
    gpx.description = f"Exported for: {meta['purpose']}"
    track = gpxpy.gpx.GPXTrack(name=meta["subject_reference"])
    gpx.tracks.append(track)
    for seg in segments(points):
        s = gpxpy.gpx.GPXTrackSegment()
        for p in seg:
            s.points.append(
                gpxpy.gpx.GPXTrackPoint(
                    latitude=p.lat, longitude=p.lon,
                    time=datetime.fromtimestamp(p.t, UTC),
                    comment=f"accuracy_m={p.accuracy_m} device={p.device} source={p.source}",
                )
            )  # fmt: skip
        track.segments.append(s)
    return gpx.to_xml(version="1.1").encode()


def trail_kml(points: Sequence[ev.FixRef], meta: dict[str, Any]) -> bytes:
    """KML 2.2: a gx:Track per segment (times and coordinates, accuracy as ExtendedData),
    which Google Earth and QGIS play back along a time slider."""
    ET.register_namespace("", KML_NS)
    ET.register_namespace("gx", GX_NS)
    k, gx = f"{{{KML_NS}}}", f"{{{GX_NS}}}"
    root = ET.Element(f"{k}kml")
    doc = ET.SubElement(root, f"{k}Document")
    ET.SubElement(doc, f"{k}name").text = f"{meta['subject_reference']} trail"
    ET.SubElement(
        doc, f"{k}description"
    ).text = f"{iso(meta['from'])} - {iso(meta['to'])}; exported for: {meta['purpose']}"
    schema = ET.SubElement(doc, f"{k}Schema", id="fix")
    field = ET.SubElement(schema, f"{gx}SimpleArrayField", name="accuracy_m", type="float")
    ET.SubElement(field, f"{k}displayName").text = "accuracy (m)"
    for n, seg in enumerate(segments(points), start=1):
        pm = ET.SubElement(doc, f"{k}Placemark")
        ET.SubElement(pm, f"{k}name").text = f"segment {n} (device {seg[0].device})"
        track = ET.SubElement(pm, f"{gx}Track")
        for p in seg:
            ET.SubElement(track, f"{k}when").text = iso(p.t)
        for p in seg:
            ET.SubElement(track, f"{gx}coord").text = f"{p.lon} {p.lat} 0"
        ext = ET.SubElement(track, f"{k}ExtendedData")
        data = ET.SubElement(ext, f"{k}SchemaData", schemaUrl="#fix")
        arr = ET.SubElement(data, f"{gx}SimpleArrayData", name="accuracy_m")
        for p in seg:
            ET.SubElement(arr, f"{gx}value").text = str(p.accuracy_m)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


# ---- the bundle -------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ExportFile:
    name: str
    data: bytes
    rows: int
    media_type: str

    def entry(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "bytes": len(self.data),
                "sha256": sha256(self.data), "media_type": self.media_type}  # fmt: skip


def build_files(
    conn: Connection,
    subject_id: int,
    t0: int,
    t1: int,
    include: Sequence[str],
    meta: dict[str, Any],
) -> list[ExportFile]:
    out: list[ExportFile] = []
    trail_formats = [f for f in include if f in ("geojson", "gpx", "kml")]
    points = trail_points(conn, subject_id, t0, t1) if trail_formats else []
    for fmt in trail_formats:
        if fmt == "geojson":
            out.append(ExportFile(FILE_NAMES[fmt], trail_geojson(points, meta), len(points),
                                  "application/geo+json"))  # fmt: skip
        elif fmt == "gpx":
            out.append(ExportFile(FILE_NAMES[fmt], trail_gpx(points, meta), len(points),
                                  "application/gpx+xml"))  # fmt: skip
        else:
            out.append(ExportFile(FILE_NAMES[fmt], trail_kml(points, meta), len(points),
                                  "application/vnd.google-earth.kml+xml"))  # fmt: skip
    if "events" in include:
        rows = event_rows(conn, subject_id, t0, t1)
        out.append(ExportFile(FILE_NAMES["events"], csv_cells.table(rows, EVENT_COLUMNS),
                              len(rows), "text/csv"))  # fmt: skip
    if "alerts" in include:
        arows = alert_rows(conn, subject_id, t0, t1)
        out.append(ExportFile(FILE_NAMES["alerts"], csv_cells.table(arows, ALERT_COLUMNS),
                              len(arows), "text/csv"))  # fmt: skip
    return out


def manifest(
    files: Sequence[ExportFile], meta: dict[str, Any], audit_id: int | None
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        **meta,
        "audit_id": audit_id,
        "files": [f.entry() for f in files],
        "verify": "sha256sum of each file must equal files[].sha256; the audit record "
        "audit_id holds the same hashes",
    }


def bundle(files: Sequence[ExportFile], man: dict[str, Any], at: float) -> bytes:
    """The zip: every file and manifest.json, with fixed timestamps (the export time) so
    the same export gives the same bytes."""
    stamp = datetime.fromtimestamp(at, UTC).timetuple()[:6]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.writestr(zipfile.ZipInfo(f.name, date_time=stamp), f.data, zipfile.ZIP_DEFLATED)
        z.writestr(
            zipfile.ZipInfo("manifest.json", date_time=stamp),
            json.dumps(man, indent=2, sort_keys=True).encode(),
            zipfile.ZIP_DEFLATED,
        )
    return buf.getvalue()
