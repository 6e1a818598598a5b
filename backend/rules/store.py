"""The rules' storage side: subject configurations from the domain tables, the SQL
repository the Evaluator runs over, and the alert workflow the episodes feed.

Alerts (docs/rules.md, "Alert lifecycle"): an episode the rules raise joins the latest alert
of its group (subject, type, zone/sensor/...) if that alert has not been cleared and its
condition ended less than `REOPEN_WITHIN_S` before the new episode started (or is still
going); a resolved alert it joins is reopened. Otherwise it raises a new alert. So a
flapping condition is one alert, and an officer sees a recurrence on the alert they closed.
Every change is an alert_actions row — the history, and what the live stream follows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, or_, select, text, update

from backend.ingest import Rejection, StoredFrame
from backend.notify import outbox
from backend.registry import Pairings, presence_tags
from backend.rules.config import Assignment, SubjectConfig, VictimLink
from backend.rules.engine import REV_PREFIX, State, revision_of
from backend.rules.evaluator import SNAPSHOT_KEEP_S, Changes
from backend.rules.geo import ZoneSpec
from backend.rules.model import DELIVERY, HOME_UNIT, Episode, Obs, ordered
from backend.rules.observe import frame_observations, security_observation
from backend.rules.schedule import DEFAULT_TZ, Exception_, Weekly
from backend.storage.schema import (
    alert_actions,
    alert_episodes,
    alerts,
    assignments,
    charging_schedules,
    curfew_exceptions,
    curfews,
    devices,
    frames,
    orders,
    rule_snapshots,
    rule_state,
    rules_pending,
    security_events,
    subject_monitoring,
    victim_devices,
    zones,
)
from firmware import frame as fr

REOPEN_WITHIN_S = 3600
MAX_DT = 0xFFFF  # a record is at most this many seconds older than its frame

OPEN, ACKNOWLEDGED, RESOLVED, CLEARED = "open", "acknowledged", "resolved", "cleared"
STATES = (OPEN, ACKNOWLEDGED, RESOLVED, CLEARED)
OUTCOMES = ("breach_confirmed", "false_alert", "technical_fault", "authorised_absence")


# ---- configuration ------------------------------------------------------------------------


def config_versions(conn: Connection, subject_ids: Iterable[int]) -> dict[int, int]:
    ids = sorted(set(subject_ids))
    if not ids:
        return {}
    rows = conn.execute(
        select(subject_monitoring.c.subject_id, subject_monitoring.c.config_version).where(
            subject_monitoring.c.subject_id.in_(ids)
        )
    )
    found = {r.subject_id: r.config_version for r in rows}
    return {s: found.get(s, 0) for s in ids}


def bump_config(conn: Connection, subject_id: int, now: float, tz: str | None = None) -> int:
    """Record that something the rules read has changed (the engine starts afresh)."""
    row = conn.execute(
        select(subject_monitoring).where(subject_monitoring.c.subject_id == subject_id)
    ).first()
    if row is None:
        conn.execute(
            insert(subject_monitoring).values(
                subject_id=subject_id, tz=tz or DEFAULT_TZ, config_version=1, updated_at=now
            )
        )
        return 1
    values: dict[str, Any] = {"config_version": row.config_version + 1, "updated_at": now}
    if tz is not None:
        values["tz"] = tz
    conn.execute(
        update(subject_monitoring)
        .where(subject_monitoring.c.subject_id == subject_id)
        .values(**values)
    )
    return int(row.config_version) + 1


def zone_spec(row: Any) -> ZoneSpec:
    return ZoneSpec(
        id=row.id,
        kind=row.kind,
        shape=row.shape,
        geometry=row.geometry,
        radius_m=row.radius_m,
        width_m=row.width_m,
        buffer_m=row.buffer_m,
        schedule=tuple(
            Weekly(tuple(w["days"]), w["start"], w["end"], w.get("tz", DEFAULT_TZ))
            for w in row.schedule
        ),
        dwell_s=row.dwell_s,
        name=row.name,
    )


def load_config(conn: Connection, subject_id: int) -> SubjectConfig:
    mon = conn.execute(
        select(subject_monitoring).where(subject_monitoring.c.subject_id == subject_id)
    ).first()
    cfg = SubjectConfig(
        subject=subject_id,
        tz=mon.tz if mon else DEFAULT_TZ,
        version=mon.config_version if mon else 0,
    )
    for a in conn.execute(
        select(assignments).where(assignments.c.subject_id == subject_id).order_by(assignments.c.id)
    ):
        cfg.assignments.append(Assignment(a.device, a.role, a.starts_at, a.ends_at))
    ords = list(conn.execute(select(orders).where(orders.c.subject_id == subject_id)))
    if ords:
        cfg.start = min(o.starts_at for o in ords)
        ends = [o.ends_at for o in ords]
        cfg.end = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
        comms = [o.comms_loss_s for o in ords if o.comms_loss_s]
        cfg.comms_loss_s = min(comms) if comms else None
        graces = [o.curfew_grace_s for o in ords if o.curfew_grace_s is not None]
        cfg.curfew_grace_s = min(graces) if graces else None
    v = victim_devices.c
    for r in conn.execute(
        select(v.device, v.warn_m, v.alert_m, v.starts_at, v.ends_at, v.silent_s)
        .where(v.subject_id == subject_id)
        .order_by(v.id)
    ):
        cfg.victims.append(
            VictimLink(r.device, r.warn_m, r.alert_m, r.starts_at, r.ends_at, r.silent_s)
        )
    for c in conn.execute(select(curfews).where(curfews.c.subject_id == subject_id)):
        cfg.curfews.append(Weekly(tuple(c.days.split(",")), c.start, c.end, c.tz))
    for x in conn.execute(
        select(curfew_exceptions).where(curfew_exceptions.c.subject_id == subject_id)
    ):
        cfg.exceptions.append(Exception_(x.starts_at, x.ends_at, x.kind))
    for z in conn.execute(
        select(zones).where(zones.c.subject_id == subject_id).order_by(zones.c.id)
    ):
        cfg.zones.append(zone_spec(z))
    charge = conn.execute(
        select(charging_schedules.c.min_minutes).where(
            charging_schedules.c.subject_id == subject_id
        )
    ).scalar()
    cfg.charge_min_minutes = charge
    return cfg


_OWNERS = select(
    assignments.c.device,
    assignments.c.subject_id,
    assignments.c.role,
    assignments.c.starts_at,
    assignments.c.ends_at,
).where(assignments.c.device.in_(bindparam("devices", expanding=True)))


def subjects_of_devices(
    conn: Connection, devices: Iterable[int]
) -> dict[int, list[tuple[int, str, int, int | None]]]:
    """device -> [(subject, role, starts_at, ends_at)] over its whole assignment history."""
    ids = sorted(set(devices))
    out: dict[int, list[tuple[int, str, int, int | None]]] = {d: [] for d in ids}
    if not ids:
        return out
    for a in conn.execute(_OWNERS, {"devices": ids}):
        out[a.device].append((a.subject_id, a.role, a.starts_at, a.ends_at))
    return out


def refused_again(conn: Connection, stored: Sequence[tuple[fr.Frame, str]]) -> list[set[int]]:
    """The record indexes ingest refused of each of these stored frames (with its sender's
    kind: a unit speaking for a tag not paired with it then), refused again by the same rule
    over the same pairing history."""
    pairings = Pairings.load(
        conn, presence_tags(rec for f, kind in stored if kind == HOME_UNIT for rec in f.records)
    )
    return [{x.idx for x in pairings.refusals(f, kind, enumerate(f.records))} for f, kind in stored]


# ---- the hand-over from ingest ------------------------------------------------------------


def pending_batch(
    conn: Connection, frame_ids: Sequence[int], refusal_ids: Sequence[int]
) -> tuple[list[StoredFrame], list[Rejection]]:
    """A batch ingest committed, as its hand-over to the rules had it (a rules_pending
    row's frames and security events): the frames in event-time order per device, the
    refusals in the order they were written."""
    f, d = frames.c, devices.c
    rows = list(
        conn.execute(
            select(f.id, f.device, f.via_unit, f.raw, f.received_at, f.late, d.kind)
            .join(devices, d.id == f.device)
            .where(f.id.in_(sorted(frame_ids)))
            .order_by(f.device, f.boot, f.ts, f.seq)
        )
    )
    parsed = [fr.parse(r.raw) for r in rows]  # verified when stored
    refusals = refused_again(conn, [(p, r.kind) for p, r in zip(parsed, rows, strict=True)])
    stored = [
        StoredFrame(
            r.id, r.device, r.kind, r.via_unit, p, bool(r.late), r.received_at, frozenset(x)
        )
        for p, r, x in zip(parsed, rows, refusals, strict=True)
    ]
    s = security_events.c
    rejections = [
        Rejection(r.reason, r.device, r.topic, r.detail)
        for r in conn.execute(
            select(s.reason, s.device, s.topic, s.detail)
            .where(s.id.in_(sorted(refusal_ids)))
            .order_by(s.id)
        )
    ]
    return stored, rejections


def settle(conn: Connection, token: str) -> bool:
    """Delete a batch's rules_pending row in the transaction that evaluates it; False if it
    is gone: another transaction evaluated the batch first (on PostgreSQL this delete waits
    for one that deleted the row to end, on SQLite they take turns at the write lock)."""
    n = conn.execute(delete(rules_pending).where(rules_pending.c.token == token)).rowcount
    return bool(n)


# ---- the repository -------------------------------------------------------------------


class SqlRepository:
    """Evaluator repository over one open transaction (`conn`), at backend time `now`."""

    def __init__(self, conn: Connection, now: float) -> None:
        self.conn = conn
        self.now = now
        self.actions: list[int] = []  # alert ids changed (for callers that publish them)
        self._saved: set[int] = set()  # subjects whose state this transaction wrote

    def lock(self, subject: int) -> None:
        lock_subject(self.conn, subject)

    def state(self, subject: int) -> State | None:
        row = self.conn.execute(
            select(rule_state).where(rule_state.c.subject_id == subject)
        ).first()
        if row is None:
            return None
        st = State.from_json(row.state)
        st.covers, st.config_version = row.covers, row.config_version
        return st

    def _stored_rev(self, subject: int) -> int:
        head = self.conn.execute(
            select(func.substr(rule_state.c.state, 1, REV_PREFIX)).where(
                rule_state.c.subject_id == subject
            )
        ).scalar()
        return revision_of(head) or 0

    def save_state(self, subject: int, state: State, snapshots: Sequence[tuple[int, str]]) -> None:
        # Every write moves the revision on: the workers' caches (cache.py) check it.
        state.rev = self._stored_rev(subject) + 1
        self._saved.add(subject)
        values = {
            "covers": state.covers,
            "config_version": state.config_version,
            "state": state.to_json(),
            "updated_at": self.now,
        }
        n = self.conn.execute(
            update(rule_state).where(rule_state.c.subject_id == subject).values(**values)
        ).rowcount
        if n == 0:
            self.conn.execute(insert(rule_state).values(subject_id=subject, **values))
        if snapshots:
            ats = [a for a, _ in snapshots]
            self.conn.execute(
                delete(rule_snapshots).where(
                    rule_snapshots.c.subject_id == subject, rule_snapshots.c.at.in_(ats)
                )
            )
            self.conn.execute(
                insert(rule_snapshots),
                [{"subject_id": subject, "at": a, "state": s} for a, s in snapshots],
            )
        self.conn.execute(
            delete(rule_snapshots).where(
                rule_snapshots.c.subject_id == subject,
                rule_snapshots.c.at < state.covers - SNAPSHOT_KEEP_S,
            )
        )

    def snapshot_at_or_before(self, subject: int, t: int) -> State | None:
        row = self.conn.execute(
            select(rule_snapshots.c.state)
            .where(rule_snapshots.c.subject_id == subject, rule_snapshots.c.at <= t)
            .order_by(rule_snapshots.c.at.desc())
            .limit(1)
        ).first()
        return None if row is None else State.from_json(row.state)

    def observations(
        self, config: SubjectConfig, since: int, until: int | None = None
    ) -> list[Obs]:
        roles = {a.device: a.role for a in config.assignments}
        if not roles:
            return []
        out: list[Obs] = []
        framed = select(frames.c.raw, frames.c.received_at, frames.c.late).where(
            frames.c.device.in_(sorted(roles)), frames.c.ts >= since
        )
        if until is not None:
            # A record is dated up to MAX_DT before its frame.
            framed = framed.where(frames.c.ts < until + MAX_DT)
        rows = list(self.conn.execute(framed))
        # Home-unit frames stored since, whatever their timestamp: a last will is dated at
        # its arrival (observe.py), which can be long after the time it was signed.
        homes = sorted(d for d, role in roles.items() if role == HOME_UNIT)
        if homes:
            wills = select(frames.c.raw, frames.c.received_at, frames.c.late).where(
                frames.c.device.in_(homes),
                frames.c.mtype == fr.HOME_DATA,
                frames.c.received_at >= since,
                frames.c.ts < since,
            )
            if until is not None:
                wills = wills.where(frames.c.received_at < until)
            rows += list(self.conn.execute(wills))
        parsed = [fr.parse(r.raw) for r in rows]  # verified when stored
        refused_sets = refused_again(self.conn, [(f, roles[f.device]) for f in parsed])
        for f, r, refused in zip(parsed, rows, refused_sets, strict=True):
            role = roles[f.device]
            out += [
                o
                for o in frame_observations(f, role, r.received_at, r.late, refused)
                if o.t >= since and (until is None or o.t < until)
            ]
        seen: dict[tuple[int, float], int] = {}
        refusals = select(security_events).where(
            security_events.c.device.in_(sorted(roles)), security_events.c.at >= since
        )
        if until is not None:
            refusals = refusals.where(security_events.c.at < until)
        for s in self.conn.execute(refusals.order_by(security_events.c.id)):
            n = seen.get((s.device, s.at), 0)
            seen[(s.device, s.at)] = n + 1
            out.append(security_observation(s.device, roles[s.device], s.at, n, s.reason, s.detail))
        return ordered(out)

    def first_time(self, config: SubjectConfig) -> int | None:
        """Where a subject's first evaluation starts: its devices' first frame with calendar
        time (a frame without TIME_VALID carries seconds since boot, near 1970), never
        before its first assignment (nothing earlier can be the subject's). Starting at 1970
        would walk (and snapshot) every hour since."""
        devices = sorted({a.device for a in config.assignments})
        if not devices:
            return None
        t = self.conn.execute(
            select(func.min(frames.c.ts)).where(
                frames.c.device.in_(devices),
                frames.c.flags.op("&")(fr.FLAG_TIME_VALID) != 0,
            )
        ).scalar()
        if t is None:
            return None
        return max(int(t) - MAX_DT, min(a.start for a in config.assignments))

    def episodes_in_scope(self, subject: int, since: int) -> list[Episode]:
        c = alert_episodes.c
        rows = self.conn.execute(
            select(alert_episodes).where(
                c.subject_id == subject,
                c.cleared_at.is_(None),
                or_(c.end.is_(None), c.closed_t >= since),
                c.rule != DELIVERY,  # no rule finds these: a run must not clear them
            )
        )
        return [_episode(r) for r in rows]

    # ---- the alert workflow -----------------------------------------------------------

    def apply(self, subject: int, changes: Changes) -> None:
        self.apply_episodes(changes)
        if changes and subject not in self._saved:
            # Episodes changed without a new state (a clock tick): move the revision on all
            # the same, so that caches of these episodes elsewhere are seen to be stale.
            row = self.conn.execute(
                select(rule_state.c.state).where(rule_state.c.subject_id == subject)
            ).first()
            if row is not None:
                st = State.from_json(row.state)
                self.save_state(subject, st, [])

    def apply_episodes(self, changes: Changes) -> None:
        """The alert workflow for what the rules found."""
        for ep in changes.raised:
            self._raise(ep)
        for ep in changes.updated:
            self._update(ep)
        for ep in changes.cleared:
            self._clear(ep)

    def _raise(self, ep: Episode) -> None:
        group = group_key(ep)
        # The key may exist as a cleared episode: late data cleared it, later data restored it.
        old = self.conn.execute(
            select(alert_episodes.c.id, alert_episodes.c.alert_id).where(
                alert_episodes.c.key == ep.key
            )
        ).first()
        a = alerts.c
        target = self.conn.execute(
            select(alerts)
            .where(
                a.group_key == group,
                a.state != CLEARED,
                or_(a.end.is_(None), a.end >= ep.start - REOPEN_WITHIN_S),
                a.start <= (ep.end if ep.end is not None else ep.start) + REOPEN_WITHIN_S,
            )
            .order_by(a.start.desc())
            .limit(1)
        ).first()
        if target is None:
            alert_id = self.conn.execute(
                insert(alerts)
                .values(
                    subject_id=ep.subject,
                    rule=ep.rule,
                    type=ep.type,
                    group_key=group,
                    severity=ep.severity,
                    state=OPEN,
                    start=ep.start,
                    end=ep.end,
                    episodes=0,
                    late=ep.late,
                    rule_version=ep.version,
                    raised_at=self.now,
                    updated_at=self.now,
                    reopened=0,
                )
                .returning(alerts.c.id)
            ).scalar_one()
            self._action(alert_id, "raised", None)
        else:
            alert_id = target.id
            if target.state == RESOLVED:
                self.conn.execute(
                    update(alerts)
                    .where(a.id == alert_id)
                    .values(state=OPEN, reopened=target.reopened + 1)
                )
                self._action(alert_id, "reopened", f"recurred at {ep.start}")
        row = _episode_row(ep, alert_id, self.now)
        if old is None:
            self.conn.execute(insert(alert_episodes).values(**row))
        else:
            row.pop("raised_at")
            self.conn.execute(
                update(alert_episodes)
                .where(alert_episodes.c.id == old.id)
                .values(**row, cleared_at=None)
            )
            if old.alert_id != alert_id:
                self._refresh(old.alert_id)
        self._refresh(alert_id)

    def _update(self, ep: Episode) -> None:
        row = _episode_row(ep, None, self.now)
        row.pop("raised_at")
        row.pop("alert_id")
        self.conn.execute(
            update(alert_episodes).where(alert_episodes.c.key == ep.key).values(**row)
        )
        alert_id = self.conn.execute(
            select(alert_episodes.c.alert_id).where(alert_episodes.c.key == ep.key)
        ).scalar()
        if alert_id is not None:
            self._refresh(alert_id, "updated")

    def _clear(self, ep: Episode) -> None:
        self.conn.execute(
            update(alert_episodes)
            .where(alert_episodes.c.key == ep.key)
            .values(cleared_at=self.now, late=True, updated_at=self.now)
        )
        alert_id = self.conn.execute(
            select(alert_episodes.c.alert_id).where(alert_episodes.c.key == ep.key)
        ).scalar()
        if alert_id is not None:
            self._refresh(alert_id)

    def _refresh(self, alert_id: int, action: str | None = None) -> None:
        """Recompute an alert's span from its live episodes; clear it if it has none."""
        e = alert_episodes.c
        live = list(
            self.conn.execute(
                select(e.start, e.end, e.late, e.rule_version, e.severity).where(
                    e.alert_id == alert_id, e.cleared_at.is_(None)
                )
            )
        )
        cur = self.conn.execute(select(alerts).where(alerts.c.id == alert_id)).one()
        if not live:
            if cur.state != CLEARED:
                self.conn.execute(
                    update(alerts)
                    .where(alerts.c.id == alert_id)
                    .values(state=CLEARED, late=True, updated_at=self.now, episodes=0)
                )
                self._action(alert_id, "cleared", "late data showed the condition did not occur")
            return
        end = None if any(r.end is None for r in live) else max(r.end for r in live)
        values = {
            "start": min(r.start for r in live),
            "end": end,
            "episodes": len(live),
            "late": cur.late or any(r.late for r in live),
            "rule_version": max(r.rule_version for r in live),
            "updated_at": self.now,
        }
        if cur.state == CLEARED:
            values["state"] = OPEN
            self._action(alert_id, "reopened", "late data restored the condition")
        self.conn.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))
        if action and (cur.end != end or cur.start != values["start"]):
            self._action(alert_id, action, None)

    def annotate(self, alert_id: int, action: str, note: str) -> None:
        """Something the backend learned about an alert after raising it, not from its rule
        (a victim's device answering the warning after the officer was told): a history row,
        which the alert's page shows and the live stream carries. Its state stays the
        officer's to change."""
        self.conn.execute(update(alerts).where(alerts.c.id == alert_id).values(updated_at=self.now))
        self._action(alert_id, action, note)

    def _action(
        self, alert_id: int, action: str, note: str | None, user: int | None = None
    ) -> None:
        self.conn.execute(
            insert(alert_actions).values(
                alert_id=alert_id, at=self.now, user_id=user, action=action, note=note
            )
        )
        self.actions.append(alert_id)
        if action in ("raised", "reopened"):
            # The one hand-over to notifications, committed with the alert (notify/outbox.py).
            outbox.alert_raised(self.conn, alert_id, self.now)


def group_key(ep: Episode) -> str:
    return f"{ep.subject}:{ep.type}:{ep.subkey.split('@')[0]}"[:128]


def _episode_row(ep: Episode, alert_id: int | None, now: float) -> dict[str, Any]:
    return {
        "key": ep.key[:200],
        "alert_id": alert_id,
        "subject_id": ep.subject,
        "rule": ep.rule,
        "type": ep.type,
        "subkey": ep.subkey[:100],
        "rule_version": ep.version,
        "severity": ep.severity,
        "start": ep.start,
        "end": ep.end,
        "confirmed_t": ep.confirmed_t,
        "closed_t": ep.closed_t,
        "evidence": json.loads(json.dumps(ep.evidence, default=str)),
        "details": json.loads(json.dumps(ep.details, default=str)),
        "late": ep.late,
        "raised_at": now,
        "updated_at": now,
    }


def stored_form(ep: Episode) -> Episode:
    """The episode as episodes_in_scope reads it back once applied (evidence and details
    through JSON, the sub-key as stored): what a cache of stored episodes must hold."""
    row = _episode_row(ep, None, 0.0)
    return Episode(
        subject=ep.subject,
        rule=ep.rule,
        type=ep.type,
        subkey=row["subkey"],
        start=ep.start,
        version=ep.version,
        confirmed_t=ep.confirmed_t,
        end=ep.end,
        closed_t=ep.closed_t,
        severity=ep.severity,
        evidence=row["evidence"],
        details=row["details"],
        late=ep.late,
    )


def _episode(r: Any) -> Episode:
    return Episode(
        subject=r.subject_id,
        rule=r.rule,
        type=r.type,
        subkey=r.subkey,
        start=r.start,
        version=r.rule_version,
        confirmed_t=r.confirmed_t,
        end=r.end,
        closed_t=r.closed_t,
        severity=r.severity,
        evidence=list(r.evidence),
        details=dict(r.details),
        late=r.late,
    )


# ---- officer actions ------------------------------------------------------------------


class WorkflowError(ValueError):
    pass


def lock_subject(conn: Connection, subject: int) -> None:
    """Serialize what changes one subject's alerts: its evaluations across workers, and an
    officer's acknowledgement or resolution against them (SQLite: BEGIN IMMEDIATE already
    does). Without it, a resolution committed between the rules' read of an open alert and
    their write of its recurrence left the recurrence on a resolved alert, never reopened."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": 6_000_000 + subject})


def _lock_alert(conn: Connection, alert_id: int) -> None:
    subject = conn.execute(select(alerts.c.subject_id).where(alerts.c.id == alert_id)).scalar()
    if subject is not None:
        lock_subject(conn, subject)


def acknowledge(conn: Connection, alert_id: int, user: int, note: str | None, now: float) -> None:
    _lock_alert(conn, alert_id)
    cur = conn.execute(select(alerts.c.state).where(alerts.c.id == alert_id)).scalar()
    if cur != OPEN:
        raise WorkflowError(f"only an open alert can be acknowledged (this one is {cur})")
    conn.execute(
        update(alerts)
        .where(alerts.c.id == alert_id)
        .values(state=ACKNOWLEDGED, acknowledged_by=user, acknowledged_at=now, updated_at=now)
    )
    conn.execute(
        insert(alert_actions).values(
            alert_id=alert_id, at=now, user_id=user, action="acknowledged", note=note
        )
    )


def resolve(
    conn: Connection, alert_id: int, user: int, outcome: str, note: str, now: float
) -> None:
    if outcome not in OUTCOMES:
        raise WorkflowError(f"outcome must be one of {OUTCOMES}")
    _lock_alert(conn, alert_id)
    cur = conn.execute(select(alerts.c.state).where(alerts.c.id == alert_id)).scalar()
    if cur not in (OPEN, ACKNOWLEDGED):
        raise WorkflowError(
            f"only an open or acknowledged alert can be resolved (this one is {cur})"
        )
    conn.execute(
        update(alerts)
        .where(alerts.c.id == alert_id)
        .values(
            state=RESOLVED,
            resolved_by=user,
            resolved_at=now,
            outcome=outcome,
            note=note,
            updated_at=now,
        )
    )
    conn.execute(
        insert(alert_actions).values(
            alert_id=alert_id, at=now, user_id=user, action="resolved", note=f"{outcome}: {note}"
        )
    )
