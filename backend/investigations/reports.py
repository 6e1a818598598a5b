"""Compliance reports per subject and period, the caseload summary of a unit, and fleet
health for operators (docs/investigations.md, "Reports").

The numbers come from what is stored — the rules' episodes for curfew and zone outcomes
(the same ones officers work as alerts), device events, presence and positions for the rest —
so a report says what the record says. Times are event times; curfew nights and charging
days are local civil days in the subject's time zone (Europe/London unless the subject has
its own), and the printable and CSV forms show times in that zone's civil time.

Only the monitored part of the period counts: while a tag was fitted and an order ran
(before the fitting nothing was measured, so nothing was kept or broken), and not after the
backend's now. A curfew night still under way is "in progress", neither kept nor broken
unless the rule has already found a breach in it."""

from __future__ import annotations

import io
import itertools
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import jinja2
from sqlalchemy import Connection, Select, func, or_, select

from backend import csv_cells
from backend.investigations import evidence as ev
from backend.rules import curfew as curfew_rule
from backend.rules.schedule import local_date, merge, subtract, to_unix
from backend.rules.store import load_config
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    alert_episodes,
    alerts,
    assignments,
    device_events,
    devices,
    frames,
    positions,
    subjects,
)

CURFEW_TYPES = ("curfew_breach", "curfew_late_return")
ZONE_TYPES = ("exclusion_entry", "inclusion_exit")
TAMPER_TYPES = ("strap_tamper", "case_tamper")
BATTERY_TYPES = ("battery_low", "battery_critical")
CHARGING = 0x01
CHARGE_MAX_GAP_S = 21600  # as the charging rule: a stretch without records counts up to this
MAX_PERIOD_S = 92 * 86400
TEMPLATES = Path(__file__).parent / "templates"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["utc"] = lambda t: "" if t is None else iso_minute(t)
    env.filters["local"] = lambda t, tz: "" if t is None else local_minute(t, tz)
    env.filters["minutes"] = lambda s: "" if s is None else f"{s / 60:,.0f}"
    env.filters["pct"] = lambda f: "" if f is None else f"{f * 100:.1f} %"
    return env


def iso_minute(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def local_minute(t: float, tz: str) -> str:
    """Civil time with the zone's abbreviation (BST/GMT: an hour repeated in autumn is not
    ambiguous), as the web application shows times."""
    return datetime.fromtimestamp(t, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


NightStatus = Literal["kept", "broken", "in_progress"]


@dataclass
class Night:
    night: str  # the local date the curfew window starts on
    start: int  # the window (from the fitting, for a night the tag was fitted during)
    end: int
    status: NightStatus
    minutes_away: float
    alerts: list[int]

    @property
    def kept(self) -> bool:
        return self.status == "kept"


@dataclass
class Completeness:
    fix_interval_s: int
    away_s: int  # monitored time not at home (when the tag is expected to send fixes)
    expected_fixes: int
    received_fixes: int
    ratio: float | None
    longest_gap_s: int  # longest time without a fix while away
    frames_expected: int  # by the devices' sequence numbers
    frames_received: int


@dataclass
class ChargingDay:
    day: str
    minutes: float
    required: int | None
    compliant: bool | None


@dataclass
class Compliance:
    subject_id: int
    reference: str
    name: str
    tz: str
    start: int
    end: int
    generated_at: float
    # The parts of the period that count: a tag fitted, an order running, up to now.
    monitored: list[tuple[int, int]] = field(default_factory=list)
    nights: list[Night] = field(default_factory=list)
    zone_events: list[dict[str, Any]] = field(default_factory=list)
    tamper_events: list[dict[str, Any]] = field(default_factory=list)
    battery_events: list[dict[str, Any]] = field(default_factory=list)
    charging: list[ChargingDay] = field(default_factory=list)
    completeness: Completeness | None = None
    alerts_by_outcome: dict[str, int] = field(default_factory=dict)
    alerts_by_type: dict[str, int] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def nights_kept(self) -> int:
        return sum(1 for n in self.nights if n.kept)

    @property
    def nights_broken(self) -> int:
        return sum(1 for n in self.nights if n.status == "broken")

    @property
    def nights_in_progress(self) -> int:
        return sum(1 for n in self.nights if n.status == "in_progress")

    @property
    def minutes_away(self) -> float:
        return sum(n.minutes_away for n in self.nights)

    def summary(self) -> dict[str, Any]:
        c = self.completeness
        charged = [d for d in self.charging if d.compliant is not None]
        return {
            "curfew_nights": len(self.nights),
            "curfew_nights_kept": self.nights_kept,
            "curfew_nights_broken": self.nights_broken,
            "curfew_nights_in_progress": self.nights_in_progress,
            "monitored_s": sum(b - a for a, b in self.monitored),
            "curfew_minutes_away": round(self.minutes_away, 1),
            "zone_events": len(self.zone_events),
            "tamper_events": len(self.tamper_events),
            "battery_events": len(self.battery_events),
            "charging_days": len(charged),
            "charging_days_compliant": sum(1 for d in charged if d.compliant),
            "expected_fixes": c.expected_fixes if c else 0,
            "received_fixes": c.received_fixes if c else 0,
            "completeness": c.ratio if c else None,
            "alerts": sum(self.alerts_by_type.values()),
        }

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for night, n in zip(d["nights"], self.nights, strict=True):
            night["kept"] = n.kept
        d["monitored"] = [list(span) for span in self.monitored]
        d["summary"] = self.summary()
        return d


def check_period(start: int, end: int) -> None:
    if end <= start:
        raise ValueError("`to` must be after `from`")
    if end - start > MAX_PERIOD_S:
        raise ValueError(f"a report covers at most {MAX_PERIOD_S // 86400} days")


def compliance(
    conn: Connection, subject_id: int, start: int, end: int, now: float, fix_interval_s: int = 60
) -> Compliance:
    check_period(start, end)
    cfg = load_config(conn, subject_id)
    s = conn.execute(select(subjects).where(subjects.c.id == subject_id)).one()
    rep = Compliance(subject_id, s.reference, s.name, cfg.tz, start, end, now)
    rep.monitored = _monitored(conn, subject_id, cfg, start, end, now)
    eps = _episodes(conn, subject_id, start, end)
    rep.nights = _nights(cfg, eps, rep.monitored, now)
    rep.zone_events = [_ep(e) for e in eps if e["type"] in ZONE_TYPES]
    rep.tamper_events = _device_events(conn, subject_id, start, end, ("tamper", "home_tamper"))
    rep.battery_events = [_ep(e) for e in eps if e["type"] in BATTERY_TYPES]
    rep.charging = _charging(conn, subject_id, cfg.tz, cfg.charge_min_minutes, rep.monitored)
    rep.completeness = _completeness(conn, subject_id, rep.monitored, fix_interval_s)
    rows = conn.execute(
        select(alerts)
        .where(
            alerts.c.subject_id == subject_id,
            alerts.c.start < end,
            or_(alerts.c.end.is_(None), alerts.c.end >= start),
        )
        .order_by(alerts.c.start, alerts.c.id)
    ).all()
    rep.alerts = [
        {"id": r.id, "type": r.type, "state": r.state, "start": r.start, "end": r.end,
         "outcome": r.outcome, "severity": r.severity}
        for r in rows
    ]  # fmt: skip
    rep.alerts_by_type = dict(Counter(r.type for r in rows if r.state != "cleared"))
    rep.alerts_by_outcome = dict(
        Counter((r.outcome or r.state) if r.state == "resolved" else r.state for r in rows)
    )
    return rep


def _episodes(conn: Connection, subject_id: int, start: int, end: int) -> list[dict[str, Any]]:
    e = alert_episodes.c
    rows = conn.execute(
        select(e.alert_id, e.type, e.subkey, e.start, e.end, e.details)
        .where(
            e.subject_id == subject_id,
            e.cleared_at.is_(None),
            e.start < end,
            or_(e.end.is_(None), e.end > start),
        )
        .order_by(e.start, e.id)
    )
    return [dict(r._mapping) for r in rows]


def _ep(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "alert_id": e["alert_id"],
        "type": e["type"],
        "subkey": e["subkey"],
        "start": e["start"],
        "end": e["end"],
        "duration_s": None if e["end"] is None else e["end"] - e["start"],
        "details": e["details"],
    }


def _monitored(
    conn: Connection, subject_id: int, cfg: Any, start: int, end: int, now: float
) -> list[tuple[int, int]]:
    """The parts of [start, end) that count: a tag fitted and an order running, up to now."""
    lo = max(start, cfg.start) if cfg.start is not None else start
    hi = min(end, int(now), cfg.end if cfg.end is not None else end)
    tags = ev.tenures(conn, lo, hi - 1, role=TAG, subject_ids=[subject_id])
    return merge([(max(t.start, lo), min(t.end or hi, hi)) for t in tags])


def _nights(
    cfg: Any, eps: list[dict[str, Any]], monitored: list[tuple[int, int]], now: float
) -> list[Night]:
    """Curfew windows in the monitored spans (the configured weekly windows minus authorised
    absences, plus extra ones; a window the tag was fitted during counts from the fitting),
    each kept, broken by the curfew rule's episodes, or in progress while it has not ended
    without a breach, with the minutes away inside the window."""
    out: list[Night] = []
    if not monitored:
        return out
    for ws, we, night in curfew_rule.windows(cfg, monitored[0][0], monitored[-1][1]):
        spans = [(max(ws, a), min(we, b)) for a, b in monitored if a < we and b > ws]
        if not spans:
            continue
        ws = spans[0][0]
        mine = [e for e in eps if e["type"] in CURFEW_TYPES and e["subkey"].split("@")[0] == night
                and e["start"] < we and (e["end"] is None or e["end"] > ws)]  # fmt: skip
        away = 0.0
        for e in mine:
            e_end = min(we, now) if e["end"] is None else min(e["end"], we)
            away += max(0, e_end - max(e["start"], ws))
        status: NightStatus = "broken" if mine else "in_progress" if we > now else "kept"
        out.append(Night(night, ws, we, status, round(away / 60, 1),
                         sorted({int(e["alert_id"]) for e in mine})))  # fmt: skip
    return out


def _device_events(
    conn: Connection, subject_id: int, start: int, end: int, kinds: tuple[str, ...]
) -> list[dict[str, Any]]:
    out = []
    e = device_events.c
    for role in (TAG, HOME_UNIT):
        for tn, span in ev.served(conn, subject_id, role, start, end - 1):
            for r in conn.execute(
                select(e.ts, e.kind, e.data)
                .where(e.device == tn.device, e.kind.in_(kinds), e.ts.between(*span))
                .order_by(e.ts, e.id)
            ):
                data = dict(r.data)
                out.append({"t": r.ts, "device": tn.device, "kind": r.kind,
                            "sensor": data.get("sensor", data.get("kind")),
                            "state": "open" if data.get("state") == 1 else "closed"})  # fmt: skip
    out.sort(key=lambda x: (x["t"], x["device"]))
    return out


def _charging(
    conn: Connection, subject_id: int, tz: str, need: int | None, monitored: list[tuple[int, int]]
) -> list[ChargingDay]:
    """Charging minutes per whole local day monitored throughout, from the tag's battery
    records' charging flag (the time from a record with the flag to the next record, at most
    CHARGE_MAX_GAP_S), against the charging schedule."""
    if not monitored:
        return []
    start, end = monitored[0][0], monitored[-1][1]
    e = device_events.c
    recs: list[tuple[int, bool]] = []
    for tn, span in ev.served(conn, subject_id, TAG, start - CHARGE_MAX_GAP_S, end - 1):
        for r in conn.execute(
            select(e.ts, e.data)
            .where(e.device == tn.device, e.kind == "battery", e.ts.between(*span))
            .order_by(e.ts, e.id)
        ):
            recs.append((int(r.ts), bool(int(r.data.get("flags", 0)) & CHARGING)))
    recs.sort()
    stretches = []
    for k, (t, charging) in enumerate(recs):
        if charging:
            nxt = recs[k + 1][0] if k + 1 < len(recs) else t
            stretches.append((t, min(t + CHARGE_MAX_GAP_S, nxt)))
    out = []
    d = local_date(start, tz)
    if to_unix(d, time(0, 0), tz) < start:
        d += timedelta(days=1)
    while True:
        d0 = to_unix(d, time(0, 0), tz)
        d1 = to_unix(d + timedelta(days=1), time(0, 0), tz)
        if d1 > end:
            break
        if not any(a <= d0 and d1 <= b for a, b in monitored):
            d += timedelta(days=1)
            continue
        secs = sum(max(0, min(b, d1) - max(a, d0)) for a, b in stretches)
        ok = None if need is None else secs >= need * 60
        out.append(ChargingDay(d.isoformat(), round(secs / 60, 1), need, ok))
        d += timedelta(days=1)
    return out


def _completeness(
    conn: Connection, subject_id: int, monitored: list[tuple[int, int]], interval: int
) -> Completeness:
    """Expected fixes: one per `interval` seconds of monitored time away from home (at home
    the tag is in RF mode and the home unit speaks for it); received: GNSS fixes taken while
    away. Frames: expected by the devices' sequence numbers (first to last in the period, per
    boot), received as stored — a gap in sequence numbers is data that never arrived."""
    if not monitored:
        return Completeness(interval, 0, 0, 0, None, 0, 0, 0)
    start, end = monitored[0][0], monitored[-1][1]
    tags = ev.served(conn, subject_id, TAG, start, end - 1)
    stays = ev.load_stays(conn, [tn for tn, _ in tags], start, end - 1)
    home = merge([(max(s.start, start), min(s.end, end)) for s in stays])
    away = subtract(monitored, home)
    away_s = sum(b - a for a, b in away)
    expected = sum((b - a) // interval for a, b in away)
    received = 0
    longest = 0
    c = positions.c
    for tn, span in tags:
        ts = [int(t) for t in conn.execute(
            select(c.ts).where(c.device == tn.device, c.ts.between(*span), c.source == 0)
            .order_by(c.ts)
        ).scalars()]  # fmt: skip
        for a, b in away:
            inside = [t for t in ts if a <= t < b]
            received += len(inside)
            marks = [a, *inside, b]
            longest = max(longest, *(y - x for x, y in itertools.pairwise(marks)))
    f = frames.c
    exp_frames = got_frames = 0
    for role in (TAG, HOME_UNIT):
        for tn, span in ev.served(conn, subject_id, role, start, end - 1):
            for _boot, lo, hi, n in conn.execute(
                select(f.boot, func.min(f.seq), func.max(f.seq), func.count())
                .where(f.device == tn.device, f.ts.between(*span), f.mtype.in_((1, 2)))
                .group_by(f.boot)
            ):
                exp_frames += int(hi) - int(lo) + 1
                got_frames += int(n)
    ratio = None if expected == 0 else min(1.0, received / expected)
    return Completeness(interval, away_s, expected, received, ratio, longest, exp_frames,
                        got_frames)  # fmt: skip


# ---- rendering --------------------------------------------------------------------------


def compliance_html(rep: Compliance) -> str:
    return _env().get_template("compliance.html").render(r=rep, s=rep.summary())


def compliance_csv(rep: Compliance) -> bytes:
    """One table: section, item, value, detail — the summary first, then every night,
    charging day, event and alert."""
    buf = io.StringIO()
    w = csv_cells.Writer(buf, lineterminator="\r\n")
    w.writerow(["section", "item", "value", "detail"])
    w.writerow(["subject", rep.reference, rep.subject_id, rep.name])
    w.writerow(["period", local_minute(rep.start, rep.tz), local_minute(rep.end, rep.tz), rep.tz])
    for a, b in rep.monitored:
        w.writerow(["monitored", local_minute(a, rep.tz), local_minute(b, rep.tz), ""])
    for k, v in rep.summary().items():
        w.writerow(["summary", k, "" if v is None else v, ""])
    for n in rep.nights:
        w.writerow(
            [
                "curfew_night",
                n.night,
                n.status,
                f"from={local_minute(n.start, rep.tz)} to={local_minute(n.end, rep.tz)} "
                f"minutes_away={n.minutes_away} alerts={' '.join(map(str, n.alerts))}",
            ]
        )
    for d in rep.charging:
        w.writerow(
            ["charging_day", d.day, d.minutes, f"required={d.required} compliant={d.compliant}"]
        )
    for e in rep.zone_events:
        w.writerow(["zone_event", e["type"], e["duration_s"] or "",
                    f"start={local_minute(e['start'], rep.tz)}"])  # fmt: skip
    for e in rep.tamper_events:
        w.writerow(["tamper_event", e["kind"], e["state"],
                    f"t={local_minute(e['t'], rep.tz)} sensor={e['sensor']}"])  # fmt: skip
    for e in rep.battery_events:
        w.writerow(["battery_event", e["type"], e["duration_s"] or "",
                    f"start={local_minute(e['start'], rep.tz)}"])  # fmt: skip
    for k, v in sorted(rep.alerts_by_outcome.items()):
        w.writerow(["alerts_by_outcome", k, v, ""])
    for k, v in sorted(rep.alerts_by_type.items()):
        w.writerow(["alerts_by_type", k, v, ""])
    c = rep.completeness
    if c is not None:
        w.writerow(["completeness", "longest_gap_s", c.longest_gap_s, ""])
        w.writerow(["completeness", "frames", c.frames_received,
                    f"expected={c.frames_expected}"])  # fmt: skip
    return buf.getvalue().encode()


# ---- caseload and fleet ---------------------------------------------------------------------


def caseload(
    conn: Connection, visible: Select[Any], unit_id: int, start: int, end: int, now: float
) -> list[dict[str, Any]]:
    """One row per subject of the unit's caseload (owned by the unit, or shared with it for
    reports): the period's compliance summary, open alerts and last contact."""
    ids = [int(i) for i in conn.execute(
        select(subjects.c.id).where(subjects.c.id.in_(visible)).order_by(subjects.c.reference)
    ).scalars()]  # fmt: skip
    out = []
    for sid in ids:
        rep = compliance(conn, sid, start, end, now)
        open_alerts = conn.execute(
            select(func.count()).where(
                alerts.c.subject_id == sid, alerts.c.state.in_(("open", "acknowledged"))
            )
        ).scalar_one()
        devs = [tn.device for tn in ev.tenures(conn, 0, 2**62, role=TAG, subject_ids=[sid])]
        last = None
        if devs:
            last = conn.execute(
                select(func.max(devices.c.last_event_at)).where(devices.c.id.in_(devs))
            ).scalar()
        unit = conn.execute(select(subjects.c.unit_id).where(subjects.c.id == sid)).scalar()
        out.append({"subject_id": sid, "reference": rep.reference, "name": rep.name,
                    "owned": unit == unit_id, "open_alerts": int(open_alerts),
                    "last_contact": last, **rep.summary()})  # fmt: skip
    return out


def caseload_html(rows: list[dict[str, Any]], unit: str, start: int, end: int, now: float) -> str:
    return (
        _env()
        .get_template("caseload.html")
        .render(rows=rows, unit=unit, start=start, end=end, now=now)
    )


def table_csv(rows: list[dict[str, Any]], columns: list[str]) -> bytes:
    return csv_cells.table(rows, columns)


CASELOAD_COLUMNS = [
    "subject_id", "reference", "name", "owned", "open_alerts", "last_contact", "curfew_nights",
    "curfew_nights_kept", "curfew_nights_broken", "curfew_minutes_away", "zone_events",
    "tamper_events", "battery_events", "charging_days", "charging_days_compliant",
    "expected_fixes", "received_fixes", "completeness", "alerts",
]  # fmt: skip
FLEET_COLUMNS = [
    "device", "kind", "registered_at", "retired", "last_contact", "last_event_at",
    "contact_age_s", "online", "battery_pct", "charging", "firmware", "buffer_fill",
    "home_link", "subject_id",
]  # fmt: skip


def fleet(
    conn: Connection, now: float, device_ids: list[int] | None, offline_after_s: int
) -> list[dict[str, Any]]:
    """Device health: last contact (backend time of the last frame), battery, firmware,
    buffer fill, and for home units whether they are offline (their LINK last will, or
    silent for longer than `offline_after_s`). Devices only — no subject data."""
    q = select(devices).order_by(devices.c.id)
    if device_ids is not None:
        q = q.where(devices.c.id.in_(device_ids))
    out = []
    e = device_events.c
    for d in conn.execute(q):
        latest: dict[str, Any] = {}
        for kind in ("battery", "status", "boot", "link"):
            r = conn.execute(
                select(e.data)
                .where(e.device == d.id, e.kind == kind, e.ts.is_not(None))
                .order_by(e.ts.desc(), e.id.desc())
                .limit(1)
            ).first()
            latest[kind] = None if r is None else dict(r.data)
        status, battery = latest["status"], latest["battery"]
        boot, link = latest["boot"], latest["link"]
        age = None if d.last_seen_at is None else round(now - d.last_seen_at)
        link_state = None if link is None else ("online" if link.get("state") == 1 else "offline")
        silent = age is None or age > offline_after_s
        online = not silent and link_state != "offline"
        fw = (status or {}).get("fw_version", (boot or {}).get("fw_version"))
        fill = None
        if status and (status.get("buf_used", 0) + status.get("buf_free", 0)) > 0:
            fill = round(status["buf_used"] / (status["buf_used"] + status["buf_free"]), 3)
        out.append({
            "device": d.id, "kind": d.kind, "registered_at": d.registered_at,
            "retired": d.retired_at is not None, "last_contact": d.last_seen_at,
            "last_event_at": d.last_event_at, "contact_age_s": age, "online": online,
            "battery_pct": None if battery is None else battery.get("level"),
            "charging": None if battery is None else bool(battery.get("flags", 0) & CHARGING),
            "firmware": fw, "buffer_fill": fill, "home_link": link_state,
        })  # fmt: skip
    return out


def fleet_devices_of(conn: Connection, visible: Select[Any], now: float) -> dict[int, int]:
    """Devices currently assigned to the subjects `visible` selects: device -> subject."""
    a = assignments.c
    rows = conn.execute(
        select(a.device, a.subject_id).where(
            a.subject_id.in_(visible), a.starts_at <= now, or_(a.ends_at.is_(None), a.ends_at > now)
        )
    )
    return {int(r[0]): int(r[1]) for r in rows}


def fleet_html(rows: list[dict[str, Any]], now: float, offline_after_s: int) -> str:
    return _env().get_template("fleet.html").render(
        rows=rows, now=now, offline_after_s=offline_after_s,
        home_offline=sum(1 for r in rows if r["kind"] == HOME_UNIT and not r["online"]),
    )  # fmt: skip
