"""Scoring a run against ground truth: data completeness, and alerts per type.

Completeness (needs nothing but storage): every frame a tag's firmware sealed is either
stored by the backend or still on the tag; every fix in those frames is a position row
exactly once. Read from the backend's own tables after the run.

Alerts (needs the rules engine): the backend's alerts come through `AlertSource`, a small
interface (TableAlertSource reads the backend's `alerts` table), as `Alert(type, subject,
start_ms, raised_ms, end_ms)` in the truth log's vocabulary. Truth applies no grace or
dwell (sim.truth); the scorer applies each rule's: a truth episode that lasted at least the
rule's required duration must be alerted (recall), shorter ones must not be; an alert that
matches no episode long enough is a false alert (precision, false alerts per 100 tag-days).
Detection latency is alert raised time minus the moment it became due (episode start plus
the required duration), in simulated time; for what only the tag's own cellular uplink can
report (an exclusion-zone entry: the subject is away from home), a moment due inside a
coverage gap in the truth (dead zone, outage) is due when coverage returns.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Engine, MetaData, Table, func, select

from backend.rules.comms import CommsParams
from backend.rules.curfew import CurfewParams
from backend.rules.home_unit import HomeUnitParams
from backend.rules.zones import ZoneParams
from firmware import config as fw_config
from firmware import frame as fr
from sim import truth as tr
from sim.fleet import RunResult

MIN_MS = 60_000
# An episode's evidence that never existed (Criterion.evidence): unreported, as if due after
# the run's end.
NEVER_MS = 2**62


# ---- completeness ------------------------------------------------------------------------


def _fixes(payload: bytes) -> list[tuple[int, int, int, int]]:
    """(device, ts, lat_e7, lon_e7) of every fix in a frame, as ingest stores them."""
    f = fr.parse(payload)
    if not f.flags & fr.FLAG_TIME_VALID:
        return []
    return [
        (f.device, f.ts - r.values[0], r.values[1], r.values[2])
        for r in f.records
        if r.type == fr.FIX
    ]


@dataclass
class Completeness:
    frames_sealed: int
    frames_stored: int
    frames_on_tags: int
    frames_lost: int  # sealed, neither stored nor still on the tag
    frames_unknown: int  # stored frames no tag of this run sealed
    positions_generated: int  # fixes in the frames the tags sealed (and whose bytes we saw)
    positions_stored: int
    positions_on_tags: int
    positions_lost: int
    positions_doubled: int
    positions_mismatched: int  # stored rows that differ from what the frame said
    lost: list[tuple[int, int, int]] = field(default_factory=list)  # the first lost frames

    @property
    def ok(self) -> bool:
        return not (
            self.frames_lost
            or self.frames_unknown
            or self.positions_lost
            or self.positions_doubled
            or self.positions_mismatched
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def completeness(result: RunResult, engine: Engine) -> Completeness:
    devices = sorted(result.sealed)
    md = MetaData()
    frames_t = Table("frames", md, autoload_with=engine)
    pos_t = Table("positions", md, autoload_with=engine)
    with engine.connect() as conn:
        stored = {
            (r.device, r.boot, r.seq)
            for r in conn.execute(
                select(frames_t.c.device, frames_t.c.boot, frames_t.c.seq).where(
                    frames_t.c.device.in_(devices), frames_t.c.mtype == fr.TAG_DATA
                )
            )
        }
        rows = [
            (r.device, r.ts, r.lat_e7, r.lon_e7)
            for r in conn.execute(
                select(pos_t.c.device, pos_t.c.ts, pos_t.c.lat_e7, pos_t.c.lon_e7).where(
                    pos_t.c.device.in_(devices)
                )
            )
        ]
        dup_refs = conn.execute(
            select(func.count()).select_from(
                select(pos_t.c.frame_id, pos_t.c.idx)
                .where(pos_t.c.device.in_(devices))
                .group_by(pos_t.c.frame_id, pos_t.c.idx)
                .having(func.count() > 1)
                .subquery()
            )
        ).scalar_one()
    sealed = {(d, b, s) for d, bs in result.sealed.items() for b, s in bs}
    on_tags = set(result.pending)
    known = dict(result.frames)
    known.update(result.pending)
    want_stored: Counter[tuple[int, int, int, int]] = Counter()
    want_pending: Counter[tuple[int, int, int, int]] = Counter()
    for key in sealed:
        payload = known.get(key)
        if payload is None:
            continue
        target = want_stored if key in stored else want_pending if key in on_tags else None
        if target is None:
            target = want_stored  # lost: counted below as generated but not stored
        target.update(_fixes(payload))
    got = Counter(rows)
    generated = sum(want_stored.values()) + sum(want_pending.values())
    missing = want_stored - got
    extra = got - want_stored
    doubled = sum(n - 1 for n in got.values() if n > 1) + int(dup_refs)
    return Completeness(
        frames_sealed=len(sealed),
        frames_stored=len(stored & sealed),
        frames_on_tags=len(on_tags & sealed - stored),
        frames_lost=len(sealed - stored - on_tags),
        lost=sorted(sealed - stored - on_tags)[:20],
        frames_unknown=len(stored - sealed),
        positions_generated=generated,
        positions_stored=len(rows),
        positions_on_tags=sum(want_pending.values()),
        positions_lost=sum(missing.values()),
        positions_doubled=doubled,
        positions_mismatched=sum(n for k, n in extra.items() if k not in want_stored),
    )


# ---- alerts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    type: str  # truth vocabulary (sim.truth)
    subject: int  # simulation subject index
    start_ms: int  # when the backend says the condition started (event time)
    raised_ms: int  # when the alert became visible (backend clock, simulated)
    end_ms: int | None = None
    rule_type: str = ""  # the backend's own name for it
    # Late data withdrew it afterwards (the backend's state `cleared`); until then an officer
    # saw it. Scored only where the criterion says a cleared alert still told them in time.
    cleared: bool = False


class AlertSource(Protocol):
    def alerts(self) -> list[Alert]: ...


# The backend's alert types (backend/rules) in the truth log's vocabulary.
RULE_TO_TRUTH = {
    "curfew_breach": tr.CURFEW_BREACH,
    "curfew_late_return": tr.CURFEW_BREACH,
    "exclusion_entry": tr.EXCLUSION_ZONE_ENTRY,
    "strap_tamper": tr.STRAP_CUT,
    "case_tamper": tr.CASE_OPEN,
    "motion_no_fix": tr.FOIL_SHIELDING,
    "battery_critical": tr.FLAT_BATTERY,
    "not_charged": tr.NOT_CHARGED,
    "home_power_loss": tr.HOME_UNIT_UNPLUGGED,
    "comms_loss": tr.COMMS_LOSS,
}


class TableAlertSource:
    """Alerts as the backend stored them (its `alerts` table, read by reflection so the
    scorer does not depend on the rules' code). `subject_of` maps the backend's subject id
    to the simulation's subject index."""

    def __init__(self, engine: Engine, subject_of: dict[int, int]) -> None:
        self.engine = engine
        self.subject_of = subject_of
        self.unmapped: Counter[str] = Counter()

    def alerts(self) -> list[Alert]:
        t = Table("alerts", MetaData(), autoload_with=self.engine)
        out = []
        with self.engine.connect() as conn:
            for r in conn.execute(select(t)):
                m = r._mapping
                kind = RULE_TO_TRUTH.get(m["type"])
                subject = self.subject_of.get(m["subject_id"])
                if kind is None or subject is None:
                    self.unmapped[m["type"]] += 1
                    continue
                cleared = m["state"] == "cleared"
                end = m["end"]
                if end is None and cleared:
                    end = m["updated_at"]  # shown until late data cleared it
                out.append(
                    Alert(
                        kind,
                        subject,
                        int(m["start"]) * 1000,
                        int(m["raised_at"] * 1000),
                        None if end is None else int(end * 1000),
                        m["type"],
                        cleared,
                    )
                )
        return out


def shielding_onset(e: tr.Episode) -> int | None:
    """When a shielding episode became one the tag counts: the start of the wearer's
    `mnf_minutes`-th minute of motion within `mnf_window_min` (the firmware's own counting,
    firmware/motion.py: the wearer is then told to go outside); None if they never moved
    that much while shielded (at rest, shielding is not detectable: nothing to alert)."""
    need = int(str(fw_config.DEFAULTS["mnf_minutes"]))
    window = int(str(fw_config.DEFAULTS["mnf_window_min"])) * MIN_MS
    minutes: list[int] = e.detail.get("moving_min", [])
    for k in range(need - 1, len(minutes)):
        if minutes[k] - minutes[k - need + 1] < window:
            return minutes[k]
    return None


@dataclass(frozen=True)
class Criterion:
    """What an alert type must achieve: episodes whose counted condition lasted at least
    `required_ms` (the rule's grace or dwell) must alert, within `latency_ms` of becoming
    due; `tolerance_ms` widens an episode for matching (GPS sampling: a fix a minute).

    The counted condition starts at the episode's start unless `onset` says otherwise
    (shielding: once the wearer has moved long enough without a fix; None: never); it is due
    at onset + required_ms, or at the episode's end with `at_end` (a day judged once it is
    over). An alert matching no required episode is false, except one matching an episode
    whose counted condition came within `borderline_ms` (below, above) of the requirement
    (at the edge, the rule may or may not alert: such an episode is not required either),
    or an episode of a type in `excused_by` (a battery at the critical level that was
    charged before it ran flat: the warning was right)."""

    required_ms: int
    latency_ms: int
    tolerance_ms: int = 5 * MIN_MS
    # Reported only through the tag's own cellular uplink (the subject is away from home):
    # a moment due without coverage (a dead zone, an outage: in the truth) is due when
    # coverage returns. No tag can report sooner; it must report then, within latency_ms.
    cellular: bool = False
    onset: Callable[[tr.Episode], int | None] | None = None
    at_end: bool = False
    borderline_ms: tuple[int, int] = (0, 0)
    excused_by: tuple[str, ...] = ()
    early_ms: int | None = None  # how long before the episode its alert may begin (tolerance)
    # When the backend could first have held the evidence that an episode was due, if the
    # simulation knows it was later than due (`Episode -> due ms -> ms or None`): a moment
    # due while that evidence could not reach it (a device offline, or trying and getting no
    # fix) is due when it could, as `cellular` moves it to when coverage returns.
    # NEVER_MS: the evidence never existed (a device that could get no fix while the episode
    # could be confirmed), so no device could report it: unreported, an alert on it true.
    evidence: Callable[[tr.Episode, int], int | None] | None = None
    first_day: bool = True  # False: the rule never judges the run's first day (not_charged)
    # An alert late data cleared (Alert.cleared) still counts, as a detection or a false
    # alert: it was raised when the condition held, and the data that cleared it could only
    # come after (comms loss: the backlog a tag uploads once it can reach the backend again
    # shows it was recording, docs/rules.md). Otherwise cleared alerts are not scored.
    cleared_counts: bool = False
    # Where the truth cannot be measured to the limit the rule decides on (an approach that
    # never came closer than the alert distance minus the noise band), an episode is still
    # required, but its latency is held to latency_ms only from when it overlaps an episode
    # of one of these types, if that is later than it was due (an approach that stood in the
    # band for 40 minutes before it came closer is held to time from then); a detection later
    # than its due but in time from then, or of an episode with no such overlap, is listed in
    # `late_borderline`.
    latency_within: tuple[str, ...] = ()

    def start(self, e: tr.Episode) -> int | None:
        return e.start_ms if self.onset is None else self.onset(e)

    def counted_ms(self, e: tr.Episode) -> int | None:
        a = self.start(e)
        return None if a is None else e.end_ms - a

    def due(self, e: tr.Episode) -> int:
        a = self.start(e)
        assert a is not None
        return e.end_ms if self.at_end else a + self.required_ms


def _fw_s(key: str) -> int:
    """A firmware default in seconds, as ms."""
    return int(str(fw_config.DEFAULTS[key])) * 1000


# Defaults follow backend/rules (curfew grace 10 min, the zone rule's exclusion dwell,
# tamper at once, the home unit's power grace, the comms threshold) and the firmware
# (motion without fix: 10 moving minutes within an hour, then 10 minutes' grace); latency
# targets are what a monitoring centre needs to act in time (tamper within 60 s, zone entry
# within 2 min) and NIJ 1004.00's 4 minutes for active tracking elsewhere, with a rule's own
# cadence added where it has one (a day is judged at the next minute's tick, once the
# allowed lateness has passed).
CRITERIA: dict[str, Criterion] = {
    # Home is judged from a fix a minute on the way back (the home unit hears the tag only at
    # the door): a return within fix_moving_s of the grace's end may or may not alert.
    tr.CURFEW_BREACH: Criterion(
        CurfewParams().grace_s * 1000, 5 * MIN_MS, borderline_ms=(_fw_s("fix_moving_s"), 0)
    ),
    tr.EXCLUSION_ZONE_ENTRY: Criterion(
        ZoneParams().exclusion_dwell_s * 1000, 2 * MIN_MS, cellular=True
    ),
    tr.STRAP_CUT: Criterion(0, 60_000, 60_000),
    tr.CASE_OPEN: Criterion(0, 60_000, 60_000),
    # Escalated after the grace; the wearer is away (moving), so it goes by cellular. A
    # shielding removed within 2 minutes of the escalation may or may not beat the next fix.
    tr.FOIL_SHIELDING: Criterion(
        int(str(fw_config.DEFAULTS["mnf_grace_min"])) * MIN_MS,
        4 * MIN_MS,
        cellular=True,
        onset=shielding_onset,
        borderline_ms=(0, 2 * MIN_MS),
    ),
    # The critical alert warns at 5 %, hours before the cell is flat (REF 700 mAh at a few
    # mA): it may begin up to a day before; a critical cell charged in time was a true one.
    tr.FLAT_BATTERY: Criterion(
        0, 10 * MIN_MS, early_ms=24 * 60 * MIN_MS, excused_by=(tr.BATTERY_CRITICAL,)
    ),
    tr.NOT_CHARGED: Criterion(0, 30 * MIN_MS, 30 * MIN_MS, at_end=True, first_day=False),
    tr.HOME_UNIT_UNPLUGGED: Criterion(HomeUnitParams().power_grace_s * 1000, 2 * MIN_MS),
    # Contact is what the backend hears: the tag's uploads or its home unit hearing it. The
    # truth's gap is the time the tag could not reach the backend; the backend's silence
    # around it is longer, by up to a rest-cadence upload before it (at rest a tag records,
    # and so uploads, once per fix_rest_s) and up to a back-off after it (the tag retries a
    # failed upload after at most backoff_max_s). A gap within that of the threshold may
    # alert or not (a near miss); one the threshold long must. The backlog uploaded after a
    # gap clears the alert: it is scored as raised.
    tr.COMMS_LOSS: Criterion(
        CommsParams().threshold_s * 1000,
        5 * MIN_MS,
        15 * MIN_MS,
        borderline_ms=(_fw_s("fix_rest_s") + _fw_s("backoff_max_s"), 0),
        cleared_counts=True,
    ),
}


@dataclass
class TypeScore:
    type: str
    episodes: int  # long enough to require an alert
    detected: int
    alerts: int
    true_alerts: int
    false_alerts: int
    excused_alerts: int = 0  # for near misses at the edge or excusing truth (Criterion)
    excused: list[dict[str, Any]] = field(default_factory=list)  # those alerts
    false: list[dict[str, Any]] = field(default_factory=list)  # the false alerts
    borderline: int = 0  # near-miss episodes within the criterion's borderline
    latencies_ms: list[int] = field(default_factory=list)
    # From the moment the episode was due in the truth, before `cellular` or `evidence` moved
    # it: the latency a user would see.
    plain_latencies_ms: list[int] = field(default_factory=list)
    missed: list[dict[str, Any]] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)
    # In time only because the moment was moved (no coverage, evidence late): later than the
    # criterion after the truth's due, listed so that the move hides nothing.
    held_back: list[dict[str, Any]] = field(default_factory=list)
    # Detected later than the criterion where it does not hold the latency (latency_within).
    late_borderline: list[dict[str, Any]] = field(default_factory=list)
    # Not alerted, and due (moved for coverage or evidence) only at or after the run's end,
    # or never (NEVER_MS): no device could have reported it within the run (a tag entering a
    # zone inside a dead zone the run ends in; an approach during which a victim's phone
    # indoors got no fix after the dwell). Not counted as episodes; listed so that it hides
    # nothing.
    unreported: list[dict[str, Any]] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return None if self.episodes == 0 else self.detected / self.episodes

    @property
    def precision(self) -> float | None:
        return None if self.alerts == 0 else self.true_alerts / self.alerts

    def latency_p(self, q: float, plain: bool = False) -> float | None:
        values = self.plain_latencies_ms if plain else self.latencies_ms
        if not values:
            return None
        return float(np.percentile(np.array(values) / 1000.0, q))

    def to_json(self, tag_days: float) -> dict[str, Any]:
        return {
            "type": self.type,
            "episodes": self.episodes,
            "detected": self.detected,
            "alerts": self.alerts,
            "false_alerts": self.false_alerts,
            "excused_alerts": self.excused_alerts,
            "borderline": self.borderline,
            "excused": self.excused,
            "false": self.false,
            "recall": self.recall,
            "precision": self.precision,
            "false_per_100_tag_days": false_rate(self.false_alerts, tag_days),
            "latency_p50_s": self.latency_p(50),
            "latency_p95_s": self.latency_p(95),
            "plain_latency_p50_s": self.latency_p(50, plain=True),
            "plain_latency_p95_s": self.latency_p(95, plain=True),
            "missed": self.missed,
            "late": self.late,
            "held_back": self.held_back,
            "late_borderline": self.late_borderline,
            "unreported": self.unreported,
        }


def false_rate(n: int, tag_days: float) -> float:
    return 100.0 * n / tag_days if tag_days > 0 else 0.0


NO_COVERAGE = (tr.CELLULAR_DEAD_ZONE, tr.CELLULAR_OUTAGE)


def _timed_due(c: Criterion, truth: tr.TruthLog, e: tr.Episode, due: int) -> int | None:
    """From when episode `e`'s latency is held to the criterion's limit: `due`, or with
    latency_within, the first moment it overlaps such an episode if that is later (None if
    it never does)."""
    if not c.latency_within:
        return due
    inner = [
        o.start_ms
        for k in c.latency_within
        for o in truth.of_type(k)
        if o.subject == e.subject and o.start_ms < e.end_ms and e.start_ms < o.end_ms
    ]
    return max(due, min(inner)) if inner else None


def covered_from(truth: tr.TruthLog, subject: int, t_ms: int) -> int:
    """The first instant at or after t_ms at which the subject's tag has cellular coverage,
    from the truth's dead-zone visits and outages (one subject's, or everyone's)."""
    gaps = [e for e in truth.of_subject(subject) if e.type in NO_COVERAGE]
    moved = True
    while moved:
        moved = False
        for e in gaps:
            if e.start_ms <= t_ms < e.end_ms:
                t_ms, moved = e.end_ms, True
    return t_ms


def _overlaps(a: Alert, lo: int, hi: int) -> bool:
    return a.start_ms <= hi and (a.end_ms is None or a.end_ms >= lo)


def score_alerts(
    truth: tr.TruthLog,
    alerts: Sequence[Alert],
    criteria: dict[str, Criterion] | None = None,
    subjects: Iterable[int] | None = None,
) -> dict[str, TypeScore]:
    """Per truth type in `criteria`: match alerts to episodes of the same subject whose
    span (start to end, or still open) overlaps the episode widened by the tolerance."""
    criteria = criteria or CRITERIA
    only = set(subjects) if subjects is not None else None
    out: dict[str, TypeScore] = {}
    for kind, c in criteria.items():
        eps = [e for e in truth.of_type(kind) if only is None or e.subject in only]
        if not c.first_day:
            eps = [e for e in eps if e.start_ms > truth.start_ms]
        if c.at_end:  # judged when over: a day the run (or its window) ends in never is
            eps = [e for e in eps if not e.detail.get("ongoing_at_end")]
        mine = [
            a
            for a in alerts
            if a.type == kind
            and (only is None or a.subject in only)
            and (c.cleared_counts or not a.cleared)
        ]
        below, above = c.borderline_ms
        counted = [(e, c.counted_ms(e)) for e in eps]
        must = [e for e, n in counted if n is not None and n >= c.required_ms + above]
        near = [
            e
            for e, n in counted
            if n is not None and c.required_ms - below <= n < c.required_ms + above
        ]
        by_subject: dict[int, list[Alert]] = defaultdict(list)
        for a in mine:
            by_subject[a.subject].append(a)
        used: set[int] = set()
        ts = TypeScore(kind, len(must), 0, len(mine), 0, 0)
        early = c.tolerance_ms if c.early_ms is None else c.early_ms
        for e in sorted(must):
            # An alert is this episode's if its span overlaps the episode (widened by the
            # tolerance): where the condition starts is measured differently by the backend
            # (the home unit losing the tag at the door, the first fix away) and by the truth
            # (leaving the home zone), but an alert covering the breach is not a false one.
            lo, hi = e.start_ms - early, e.end_ms + c.tolerance_ms
            cands = [a for a in by_subject.get(e.subject, []) if _overlaps(a, lo, hi)]
            due = plain_due = c.due(e)
            if c.cellular:
                due = covered_from(truth, e.subject, due)
            if c.evidence is not None:
                due = max(due, c.evidence(e, due) or due)
            if due >= NEVER_MS or (not cands and due >= truth.end_ms):
                ts.episodes -= 1
                row: dict[str, Any] = {"subject": e.subject, "start_ms": e.start_ms}
                if due >= NEVER_MS:
                    row.update(no_evidence=True, alerted=bool(cands))
                    used.update(id(a) for a in cands)  # an alert on it is not a false one
                ts.unreported.append(row)
                continue
            if not cands:
                ts.missed.append({"subject": e.subject, "start_ms": e.start_ms, "end_ms": e.end_ms})
                continue
            first = min(cands, key=lambda a: a.raised_ms)
            ts.detected += 1
            used.update(id(a) for a in cands)
            lat = max(0, first.raised_ms - due)
            plain = max(0, first.raised_ms - plain_due)
            ts.latencies_ms.append(lat)
            ts.plain_latencies_ms.append(plain)
            row = {"subject": e.subject, "start_ms": e.start_ms, "latency_ms": lat}
            if due != plain_due:
                row.update(due_ms=due, plain_latency_ms=plain)  # held back until then
            timed = _timed_due(c, truth, e, due)
            if lat > c.latency_ms and (timed is None or first.raised_ms - timed <= c.latency_ms):
                ts.late_borderline.append(row)
            elif lat > c.latency_ms:
                ts.late.append(row)
            elif plain > c.latency_ms:
                ts.held_back.append(row)
        excusing = near + [
            e for k in c.excused_by for e in truth.of_type(k) if only is None or e.subject in only
        ]
        ts.borderline = len(near)
        for a in mine:
            if id(a) in used:
                continue
            if any(
                e.subject == a.subject
                and _overlaps(a, e.start_ms - early, e.end_ms + c.tolerance_ms)
                for e in excusing
            ):
                ts.excused_alerts += 1
                ts.excused.append({"subject": a.subject, "start_ms": a.start_ms})
            else:
                ts.false.append({"subject": a.subject, "start_ms": a.start_ms})
        ts.true_alerts = sum(1 for a in mine if id(a) in used)
        ts.false_alerts = len(mine) - ts.true_alerts - ts.excused_alerts
        out[kind] = ts
    return out


def tag_days(result: RunResult) -> float:
    return len(result.sim.subjects) * (result.sim.end_ms - result.sim.start_ms) / 86_400_000


def report(
    result: RunResult,
    comp: Completeness | None,
    scores: dict[str, TypeScore] | None,
    note: str = "",
) -> dict[str, Any]:
    days = tag_days(result)
    sim_days = result.sim_ms / 86_400_000
    return {
        "scenario": result.sim.scenario.name,
        "seed": result.sim.seed,
        "subjects": len(result.sim.subjects),
        "hil_tags": len(result.hil),
        "days": result.sim.days,
        "tag_days": days,
        "wall_s": round(result.wall_s, 2),
        "tag_days_per_wall_minute": round(days / max(result.wall_s, 1e-9) * 60, 2),
        "simulated_days": round(sim_days, 4),
        "truth": result.sim.truth.counts(),
        "completeness": comp.to_json() if comp is not None else None,
        "alerts": ({k: s.to_json(days) for k, s in scores.items()} if scores is not None else None),
        "alerts_note": note,
        "counters": result.counters,
    }
