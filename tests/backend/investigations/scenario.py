"""Staged ground truth for investigations: subjects placed near and not near an incident,
their data stored the way it really arrives — signed frames from registered tags and home
units through the ingest pipeline (and, for the compliance scenario, the monitoring rules).

The incident: a 200 m circle around INCIDENT, window [W0, W1] (one hour). Who should be
found, and how, is written next to each subject in `stage_correlation`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert

from backend.clock import ManualClock
from backend.ingest import DeviceDirectory, Ingest, Message
from backend.registry import KeyVault, Registry
from backend.rules import store
from backend.rules.sink import MonitoringSink
from backend.services import subjects
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    assignments,
    charging_schedules,
    curfews,
    orders,
    zones,
)
from firmware import frame as fr
from firmware import topics
from tests.backend.conftest import T0
from tests.backend.rules.scenario import offset

INCIDENT = (50.7192, -1.8808)  # lat, lon
RADIUS_M = 200.0
W0 = T0 + 7200
W1 = W0 + 3600
SERVER_KEY = bytes(range(32))


def at(dx_m: float, dy_m: float) -> tuple[int, int]:
    """(lat_e7, lon_e7) of a point dx east, dy north of the incident."""
    lat, lon = offset(dx_m, dy_m, *INCIDENT)
    return round(lat * 1e7), round(lon * 1e7)


@dataclass
class Fix:
    t: int
    dx: float
    dy: float
    acc_m: float = 5.0
    source: int = fr.SOURCE_GNSS


@dataclass
class Stage:
    """Registers devices, creates subjects and sends their data through ingest."""

    engine: Engine
    clock: ManualClock
    rules: bool = False
    seq: dict[int, int] = field(default_factory=dict)
    keys: dict[int, bytes] = field(default_factory=dict)
    published: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.registry = Registry(self.engine, KeyVault(SERVER_KEY), self.clock)
        sink = (
            MonitoringSink(self.engine, self.clock, self._publish, self.keys.get)
            if self.rules
            else None
        )
        self.sink = sink
        self.ingest = Ingest(
            self.engine, DeviceDirectory(self.registry), self._publish, clock=self.clock,
            rules=sink,
        )  # fmt: skip

    def _publish(self, topic: str, payload: bytes) -> bool:
        self.published.append((topic, payload))
        return True

    def subject(self, reference: str, unit_id: int) -> int:
        with self.engine.begin() as conn:
            sid = subjects.create(
                conn, reference=reference, name=f"Subject {reference}", unit_id=unit_id,
                risk_notes="", now=self.clock.now(),
            )  # fmt: skip
            store.bump_config(conn, sid, self.clock.now())
        return sid

    def device(self, device_id: int, kind: str, home_unit: int | None = None) -> None:
        dev = self.registry.register(device_id, kind, home_unit=home_unit)
        self.keys[device_id] = dev.key

    def assign(
        self, subject: int, device: int, role: str, start: int, end: int | None = None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(assignments).values(
                    subject_id=subject, device=device, role=role, starts_at=start, ends_at=end,
                    created_at=self.clock.now(),
                )
            )  # fmt: skip
            store.bump_config(conn, subject, self.clock.now())

    def home_zone(self, subject: int, dx: float, dy: float, radius_m: float = 50) -> None:
        lat_e7, lon_e7 = at(dx, dy)
        with self.engine.begin() as conn:
            conn.execute(
                insert(zones).values(
                    subject_id=subject, name="home", kind="home", shape="circle",
                    geometry={"type": "Point", "coordinates": [lon_e7 / 1e7, lat_e7 / 1e7]},
                    radius_m=radius_m, width_m=0, buffer_m=0, victim=False, schedule=[],
                    dwell_s=None, created_at=self.clock.now(),
                )
            )  # fmt: skip
            store.bump_config(conn, subject, self.clock.now())

    def order(self, subject: int, start: int, comms_loss_s: int = 86400) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(orders).values(
                    subject_id=subject, kind="licence", reference=f"ORD-{subject}",
                    starts_at=start, ends_at=None, comms_loss_s=comms_loss_s,
                    curfew_grace_s=None, conditions="", created_at=self.clock.now(),
                )
            )  # fmt: skip
            store.bump_config(conn, subject, self.clock.now())

    def _next(self, device: int) -> int:
        self.seq[device] = self.seq.get(device, 0) + 1
        return self.seq[device]

    def tag_records(self, tag: int, ts: int, records: list[fr.Record]) -> Message:
        f = fr.Frame(fr.TAG_DATA, tag, 1, self._next(tag), ts, records, fr.FLAG_TIME_VALID)
        return Message(topics.tag_up(tag), fr.encode(f, self.keys[tag]))

    def unit_records(self, unit: int, ts: int, records: list[fr.Record]) -> Message:
        f = fr.Frame(fr.HOME_DATA, unit, 1, self._next(unit), ts, records, fr.FLAG_TIME_VALID)
        return Message(topics.home_up(unit), fr.encode(f, self.keys[unit]))

    def fixes(self, tag: int, fixes: list[Fix], per_frame: int = 10) -> list[Message]:
        out = []
        ordered = sorted(fixes, key=lambda f: f.t)
        for k in range(0, len(ordered), per_frame):
            chunk = ordered[k : k + per_frame]
            ts = chunk[-1].t
            recs = []
            for f in chunk:
                lat, lon = at(f.dx, f.dy)
                recs.append(
                    fr.Record(fr.FIX, (ts - f.t, lat, lon, round(f.acc_m * 10), fr.FIX_3D,
                                       f.source, 9, 100, 0, 9))
                )  # fmt: skip
            out.append(self.tag_records(tag, ts, recs))
        return out

    def presence(self, unit: int, tag: int, t: int, home: bool) -> Message:
        state = fr.HOME if home else fr.AWAY
        return self.unit_records(unit, t, [fr.Record(fr.PRESENCE, (0, unit, tag, state, -60))])

    def deliver(self, msgs: list[Message], at_time: float | None = None) -> None:
        if at_time is not None:
            self.clock.set(at_time)
        result = self.ingest.process(msgs)
        assert not result.rejected, result.rejected


def line(t_start: int, t_end: int, step: int, x0: float, y0: float, x1: float, y1: float,
         acc_m: float = 5.0) -> list[Fix]:  # fmt: skip
    """Fixes every `step` s moving at constant speed from (x0, y0) to (x1, y1)."""
    out = []
    n = (t_end - t_start) // step
    for k in range(n + 1):
        g = k / n if n else 0.0
        out.append(Fix(t_start + k * step, x0 + (x1 - x0) * g, y0 + (y1 - y0) * g, acc_m))
    return out


@dataclass
class Truth:
    subjects: dict[str, int] = field(default_factory=dict)
    # reference -> expected status for unit A's officer (absent: must not be returned)
    expected_a: dict[str, str] = field(default_factory=dict)
    expected_b: dict[str, str] = field(default_factory=dict)
    expected_partner: dict[str, str] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)


def stage_correlation(stage: Stage, unit_a: int, unit_b: int, a2: int) -> Truth:
    """Subjects near and not near the incident. `a2` is the world's subject A-2 (unit A,
    shared with probation for its trail, with MOSOVO without it)."""
    tr = Truth()
    msgs: list[Message] = []
    tag = 3000

    def new(ref: str, unit: int | None, subject: int | None = None) -> tuple[int, int]:
        nonlocal tag
        tag += 1
        sid = subject if subject is not None else stage.subject(ref, unit or unit_a)
        stage.device(tag, TAG)
        stage.assign(sid, tag, TAG, T0 - 86400)
        tr.subjects[ref], tr.tags[ref] = sid, tag
        return sid, tag

    # Walks straight through, 50 m from the centre, a fix a minute: within.
    _, t = new("INV-WALK", unit_a)
    msgs += stage.fixes(t, line(W0 + 300, W0 + 3300, 60, -1500, 50, 1500, 50))
    tr.expected_a["INV-WALK"] = "within"
    # Sparse fixes 10 minutes apart, each 600 m out, the straight path between them through
    # the centre: possibly within (interpolated), never "within".
    _, t = new("INV-SPARSE", unit_a)
    msgs += stage.fixes(t, line(W0 + 400, W0 + 2200, 600, -1200, 0, 1200, 0))
    tr.expected_a["INV-SPARSE"] = "possibly_within"
    # Standing 230 m from the centre with 50 m accuracy: possibly within (GPS error).
    _, t = new("INV-EDGE", unit_a)
    msgs += stage.fixes(t, line(W0 - 600, W1 + 600, 60, 230, 0, 230, 0, acc_m=50))
    tr.expected_a["INV-EDGE"] = "possibly_within"
    # 2.8 km away all along: not within (and the exculpatory answer shows where).
    _, t = new("INV-FAR", unit_a)
    msgs += stage.fixes(t, line(W0 - 600, W1 + 600, 60, 2000, 2000, 2000, 2000))
    # At home, 100 m from the centre, the home unit hearing the tag all through the window
    # (no GNSS fixes at all, as in RF mode): within, by home presence.
    sid, t = new("INV-HOME", unit_a)
    stage.device(4001, HOME_UNIT)
    stage.registry.pair(t, 4001)  # only the paired unit speaks for the tag's presence
    stage.assign(sid, 4001, HOME_UNIT, T0 - 86400)
    stage.home_zone(sid, 100, 0)
    msgs.append(stage.presence(4001, t, W0 - 3600, home=True))
    msgs.append(stage.presence(4001, t, W1 + 3600, home=False))
    tr.expected_a["INV-HOME"] = "within"
    # Two addresses (two home zones, neither configured to a unit): a stay is at the one the
    # tag's last fix before it was near. IN walked to its second home, 120 m from the centre:
    # within. OUT walked to its second home, 5 km away, while its first is 60 m from the
    # centre: not found (at the first it would be placed at the scene).
    for n, (ref, first, second) in enumerate(
        (("INV-TWO-HOMES-IN", 4000.0, 120.0), ("INV-TWO-HOMES-OUT", 60.0, 5000.0))
    ):
        sid, t = new(ref, unit_a)
        unit = 4002 + n
        stage.device(unit, HOME_UNIT)
        stage.registry.pair(t, unit)
        stage.assign(sid, unit, HOME_UNIT, T0 - 86400)
        stage.home_zone(sid, first, 0)
        stage.home_zone(sid, second, 0)
        msgs += stage.fixes(t, line(W0 - 5400, W0 - 4200, 60, second + 1200, 0, second + 40, 0))
        msgs.append(stage.presence(unit, t, W0 - 4100, home=True))
        msgs.append(stage.presence(unit, t, W1 + 3600, home=False))
    tr.expected_a["INV-TWO-HOMES-IN"] = "within"
    # Fixes 30 minutes apart either side: too far apart to interpolate: not found.
    _, t = new("INV-GAP", unit_a)
    msgs += stage.fixes(t, line(W0 + 600, W0 + 2400, 1800, -900, 0, 900, 0))
    # Through the centre, but over an hour before the window: not found.
    _, t = new("INV-EARLY", unit_a)
    msgs += stage.fixes(t, line(W0 - 4200, W0 - 1200, 60, -1500, 0, 1500, 0))
    # One tag, two subjects: it served MOVED-A until W0 + 1800 (walking through the scene at
    # W0 + 1000), then MOVED-B, far away. Only MOVED-A was there.
    tag += 1
    moved = tag
    ma, mb = stage.subject("MOVED-A", unit_a), stage.subject("MOVED-B", unit_a)
    stage.device(moved, TAG)
    stage.assign(ma, moved, TAG, T0 - 86400, W0 + 1800)
    stage.assign(mb, moved, TAG, W0 + 1800)
    tr.subjects["MOVED-A"], tr.subjects["MOVED-B"] = ma, mb
    msgs += stage.fixes(moved, line(W0 + 700, W0 + 1300, 60, -300, 0, 300, 0))
    msgs += stage.fixes(moved, line(W0 + 1800, W1, 60, 2000, -2000, 2000, -2000))
    tr.expected_a["MOVED-A"] = "within"
    # Unit B's subject walks through: only unit B sees it.
    _, t = new("INV-B", unit_b)
    msgs += stage.fixes(t, line(W0 + 600, W0 + 1800, 60, 0, -600, 0, 600))
    tr.expected_b["INV-B"] = "within"
    # The world's A-2 walks through: unit A sees it; probation (trail share) sees it;
    # MOSOVO's share has no trail scope, so not MOSOVO.
    _, t = new("A-2", None, subject=a2)
    msgs += stage.fixes(t, line(W0 + 900, W0 + 2100, 60, -600, -20, 600, -20))
    tr.expected_a["A-2"] = "within"
    tr.expected_partner["A-2"] = "within"
    stage.deliver(msgs, W1 + 7200)
    return tr


# ---- the compliance scenario ----------------------------------------------------------------

LONDON = ZoneInfo("Europe/London")


def local(text: str) -> int:
    """Unix time of a Europe/London wall-clock time 'YYYY-MM-DD HH:MM'."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=LONDON).timestamp())


P0, P1 = local("2026-09-22 12:00"), local("2026-09-25 12:00")
RPT_TAG, RPT_UNIT = 5001, 5101
HOME = (5000.0, 0.0)  # the subject's home, metres from the incident point
ZONE = (7000.0, 500.0)  # an exclusion zone centre


@dataclass
class ComplianceTruth:
    subject: int
    nights: dict[str, tuple[bool, float]]  # night -> (kept, minutes away)
    charging: dict[str, tuple[float, bool]]  # local day -> (minutes, compliant)
    expected_fixes: int
    received_fixes: int
    longest_gap_s: int
    tamper_records: int
    zone_minutes: float
    fixes_in_period: int


def stage_compliance(stage: Stage, unit_a: int) -> ComplianceTruth:
    """Three curfew nights (19:00-07:00) over 22-25 September 2026: the 22nd kept, the 23rd
    broken by 45 minutes out (22:00-22:45), the 24th kept; days out with a fix a minute
    (an hour missing on the 24th); a 10-minute stay in an exclusion zone on the 23rd; a strap
    opened and closed on the 24th; battery low on the 24th; charging 90 minutes on the 23rd,
    30 on the 24th (60 required)."""
    sid = stage.subject("RPT-1", unit_a)
    stage.device(RPT_UNIT, HOME_UNIT)
    stage.device(RPT_TAG, TAG, home_unit=RPT_UNIT)
    stage.assign(sid, RPT_TAG, TAG, P0 - 86400)
    stage.assign(sid, RPT_UNIT, HOME_UNIT, P0 - 86400)
    stage.order(sid, P0)
    stage.home_zone(sid, *HOME, radius_m=60)
    lat_e7, lon_e7 = at(*ZONE)
    with stage.engine.begin() as conn:
        conn.execute(insert(curfews).values(
            subject_id=sid, days="mon,tue,wed,thu,fri,sat,sun", start="19:00", end="07:00",
            tz="Europe/London", created_at=stage.clock.now()))  # fmt: skip
        conn.execute(insert(charging_schedules).values(
            subject_id=sid, min_minutes=60, created_at=stage.clock.now()))  # fmt: skip
        conn.execute(insert(zones).values(
            subject_id=sid, name="precinct", kind="exclusion", shape="circle",
            geometry={"type": "Point", "coordinates": [lon_e7 / 1e7, lat_e7 / 1e7]},
            radius_m=100, width_m=0, buffer_m=0, victim=False, schedule=[], dwell_s=None,
            created_at=stage.clock.now()))  # fmt: skip
        store.bump_config(conn, sid, stage.clock.now())

    timeline: list[tuple[int, Message]] = []

    def home(t: int, is_home: bool) -> None:
        timeline.append((t, stage.presence(RPT_UNIT, RPT_TAG, t, is_home)))

    def away_fixes(t0: int, t1: int, where: dict[int, tuple[float, float]] | None = None,
                   skip: tuple[int, int] | None = None) -> int:  # fmt: skip
        fixes = []
        for t in range(t0, t1, 60):
            if skip and skip[0] <= t < skip[1]:
                continue
            x, y = (where or {}).get(t, (ZONE[0], -1000.0))
            fixes.append(Fix(t, x, y, 5.0))
        for m in stage.fixes(RPT_TAG, fixes):
            timeline.append((fr.parse(m.payload).ts, m))
        return len(fixes)

    def tag_record(t: int, rec: fr.Record) -> None:
        timeline.append((t, stage.tag_records(RPT_TAG, t, [rec])))

    # 22nd: out (no presence report yet) until 18:30.
    received = away_fixes(P0, local("2026-09-22 18:30"))
    home(local("2026-09-22 18:30"), True)
    # 23rd: out for the day, 10 minutes inside the exclusion zone from 14:00.
    home(local("2026-09-23 08:00"), False)
    z0 = local("2026-09-23 14:00")
    in_zone = {t: ZONE for t in range(z0, z0 + 600, 60)}
    received += away_fixes(local("2026-09-23 08:00"), local("2026-09-23 18:30"), in_zone)
    home(local("2026-09-23 18:30"), True)
    tag_record(local("2026-09-23 20:00"), fr.Record(fr.BATTERY, (0, 60, 0x03, 3900, 40)))
    tag_record(local("2026-09-23 21:30"), fr.Record(fr.BATTERY, (0, 95, 0x00, 4100, 60)))
    # Out during curfew 22:00-22:45, 1 km from home.
    home(local("2026-09-23 22:00"), False)
    received += away_fixes(
        local("2026-09-23 22:00"),
        local("2026-09-23 22:45"),
        {
            t: (HOME[0], 1000.0)
            for t in range(local("2026-09-23 22:00"), local("2026-09-23 22:45"), 60)
        },
    )
    home(local("2026-09-23 22:45"), True)  # fmt: skip
    # 24th: out, an hour of fixes missing, strap opened and closed, battery low.
    home(local("2026-09-24 08:00"), False)
    gap = (local("2026-09-24 12:00"), local("2026-09-24 13:00"))
    received += away_fixes(local("2026-09-24 08:00"), local("2026-09-24 18:30"), skip=gap)
    tag_record(local("2026-09-24 10:00"), fr.Record(fr.TAMPER, (0, 1, 1)))
    tag_record(local("2026-09-24 10:05"), fr.Record(fr.TAMPER, (0, 1, 0)))
    tag_record(local("2026-09-24 16:00"), fr.Record(fr.BATTERY, (0, 15, 0x04, 3500, 6)))
    home(local("2026-09-24 18:30"), True)
    tag_record(local("2026-09-24 20:00"), fr.Record(fr.BATTERY, (0, 30, 0x03, 3700, 10)))
    tag_record(local("2026-09-24 20:30"), fr.Record(fr.BATTERY, (0, 45, 0x02, 3800, 20)))
    # 25th: out from 08:00 until after the period ends.
    home(local("2026-09-25 08:00"), False)
    received += away_fixes(local("2026-09-25 08:00"), local("2026-09-25 12:30"))
    in_period = received - 30  # the last 30 minutes are after P1
    timeline.sort(key=lambda x: x[0])
    for k in range(0, len(timeline), 8):
        chunk = timeline[k : k + 8]
        stage.deliver([m for _, m in chunk], chunk[-1][0] + 30)
    stage.clock.set(P1 + 3600)
    assert stage.sink is not None
    stage.sink.tick(P1 + 3600)
    away = [(P0, local("2026-09-22 18:30")),
            (local("2026-09-23 08:00"), local("2026-09-23 18:30")),
            (local("2026-09-23 22:00"), local("2026-09-23 22:45")),
            (local("2026-09-24 08:00"), local("2026-09-24 18:30")),
            (local("2026-09-25 08:00"), P1)]  # fmt: skip
    return ComplianceTruth(
        subject=sid,
        nights={
            "2026-09-22": (True, 0.0),
            "2026-09-23": (False, 45.0),
            "2026-09-24": (True, 0.0),
        },
        charging={"2026-09-23": (90.0, True), "2026-09-24": (30.0, False)},
        expected_fixes=sum((b - a) // 60 for a, b in away),
        received_fixes=in_period,
        longest_gap_s=gap[1] - gap[0] + 60,
        tamper_records=2,
        zone_minutes=10.0,
        fixes_in_period=in_period,
    )
