"""Prometheus metrics of the backend's processes (docs/operations.md, "Monitoring").

- What ingest and the rules already count (`Ingest.counts`, `Ingest.rejections`, the rule
  sink's `counts`) is not counted a second time: collectors read those counters when
  Prometheus scrapes, so a log line and a metric can never disagree.
- What nothing else measures is observed at one point each: a batch's processing time and
  its frames' age at commit (the worker), an evaluation's time and the latency of each alert
  raised (the rule sink), and the API's requests (backend/api/request_metrics.py).
- State that lives in the database (open alerts, silent devices, home units offline) is
  read by the API process when it is scraped; several API replicas report the same values,
  which the alerting rules take the maximum of.
- Every label set is bounded: rejection reasons, downlink outcomes, device kinds, alert
  severities and states, route templates and status classes. Never a device, subject, user
  or raw path; a value outside a known set is reported as "other".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, and_, case, func, or_, select

from backend.clock import Clock
from backend.notify.dispatcher import OUTCOMES
from backend.notify.outbox import KINDS as NOTIFY_KINDS
from backend.notify.outbox import PENDING
from backend.rules.comms import CommsParams
from backend.rules.home_unit import HomeUnitParams
from backend.rules.model import SEVERITIES
from backend.rules.proximity import SilentParams
from backend.storage.schema import (
    HOME_UNIT,
    TAG,
    VICTIM,
    alert_episodes,
    alerts,
    assignments,
    devices,
    notification_outbox,
    orders,
    victim_devices,
)
from firmware import frame as fr

if TYPE_CHECKING:
    from backend.ingest import BatchResult
    from backend.rules.evaluator import Changes

log = structlog.get_logger("tagwatch.metrics")
# No `_created` series beside every counter and histogram: nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Observed at one point each. registry=None: each process's registry (below) registers the
# ones it serves, so tests may build several apps or workers in one process.
WORK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
INGEST_BATCH_SECONDS = Histogram(
    "tagwatch_ingest_batch_seconds",
    "Time to run the ingest pipeline over one batch (verify, store, acknowledge, rules).",
    buckets=WORK_BUCKETS,
    registry=None,
)
FRAME_AGE_SECONDS = Histogram(
    "tagwatch_ingest_frame_age_seconds",
    "Device event time of a newly stored frame to its commit (frames with a set clock).",
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 4 * 3600, 86400),
    registry=None,
)
ALERT_LATENCY_SECONDS = Histogram(
    "tagwatch_alert_latency_seconds",
    "Event time at which a condition became alert-worthy to the alert being raised; "
    'late="true" for episodes found in late data (the device uploaded late).',
    ["late"],
    buckets=(1, 5, 10, 30, 60, 120, 240, 600, 1800, 3600, 4 * 3600),
    registry=None,
)
RULES_EVALUATION_SECONDS = Histogram(
    "tagwatch_rules_evaluation_seconds",
    "Time of one rule-evaluation transaction (a batch's subjects or a clock-tick chunk).",
    buckets=WORK_BUCKETS,
    registry=None,
)
HTTP_REQUESTS = Counter(
    "tagwatch_http_requests",
    "API requests by method, route template and status class.",
    ["method", "route", "status"],
    registry=None,
)
HTTP_REQUEST_SECONDS = Histogram(
    "tagwatch_http_request_seconds",
    "API request time to the start of the answer, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=None,
)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OPEN_STATES = ("open", "acknowledged")
KINDS = (TAG, HOME_UNIT, VICTIM)


def bounded(value: str, allowed: Iterable[str]) -> str:
    return value if value in allowed else "other"


# ---- observation points ---------------------------------------------------------------


def observe_batch(result: BatchResult, seconds: float) -> None:
    """A batch went through the pipeline: its time, and each new frame's age at commit."""
    INGEST_BATCH_SECONDS.observe(seconds)
    for s in result.stored:
        if s.frame.flags & fr.FLAG_TIME_VALID:
            FRAME_AGE_SECONDS.observe(max(0.0, result.committed_at - s.frame.ts))


def observe_evaluation(results: Iterable[Changes], seconds: float, now: float) -> None:
    """A rule-evaluation transaction committed: its time, and each alert it raised."""
    RULES_EVALUATION_SECONDS.observe(seconds)
    for changes in results:
        for ep in changes.raised:
            latency = max(0.0, now - ep.confirmed_t)
            ALERT_LATENCY_SECONDS.labels(late="true" if ep.late else "false").observe(latency)


# ---- collectors -------------------------------------------------------------------------


def _labelled(name: str, doc: str, label: str, values: Mapping[str, float]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, n in sorted(values.items()):
        family.add_metric([key], n)
    return family


# Ingest.counts keys -> (metric, help). Rejections come from Ingest.rejections (by reason).
_INGEST = {
    "received": ("tagwatch_ingest_frames_received", "Messages taken from the broker into a batch."),
    "frames_stored": ("tagwatch_ingest_frames_stored", "Frames stored for the first time."),
    "frames_late": ("tagwatch_ingest_frames_late", "Stored frames flagged late."),
    "duplicates": (
        "tagwatch_ingest_duplicates",
        "Frames already stored (retransmissions, replays, retained copies).",
    ),
    "retained_known": (
        "tagwatch_ingest_retained_known",
        "Duplicates that were the broker's retained copy of a unit's status.",
    ),
    "batch_failed": (
        "tagwatch_ingest_batch_failures",
        "Batches the database refused (retried; nothing acknowledged).",
    ),
    "rules_failed": (
        "tagwatch_ingest_rules_handover_failures",
        "Batches whose hand-over to the rules raised (frames stay stored).",
    ),
}
_ACKS = {
    "acks_queued": "queued",
    "acks_published": "published",
    "acks_refused": "refused",
    "acks_failed": "failed",
}
# Commands: handed over by the rules (sink counts) and answered by the broker (worker counts).
_COMMANDS = {
    "commands_sent": "sent",
    "commands_failed": "failed",
    "commands_suppressed": "suppressed",
    "commands_unsendable": "unsendable",
    "commands_published": "published",
    "commands_refused": "refused",
    "commands_resent": "resent",
    "commands_unreached": "unreached",
    "commands_answered_late": "answered_late",
}
_RULES = {
    "evaluations": ("tagwatch_rules_evaluations", "Subject evaluations committed."),
    "evaluation_failed": (
        "tagwatch_rules_evaluation_failures",
        "Subject evaluations that failed (a batch's again at a sweep if the database was away).",
    ),
    "handovers_swept": (
        "tagwatch_rules_handovers_swept",
        "Batches evaluated by a sweep: committed, never evaluated by their own worker.",
    ),
    "alert_changes": (
        "tagwatch_rules_alert_changes",
        "Evaluations that raised, updated or cleared alerts.",
    ),
    "ticks": ("tagwatch_rules_ticks", "Clock ticks started."),
}


class IngestCollector(Collector):
    """An ingest worker's counters, connection, downlinks and rule timer, read at scrape time.
    `state` returns the worker's counters and gauges (IngestWorker.snapshot)."""

    def __init__(
        self,
        state: Callable[[], Mapping[str, Any]],
        rule_counts: Callable[[], Mapping[str, int]],
        last_tick: Callable[[], float | None],
    ) -> None:
        self.state = state
        self.rule_counts = rule_counts
        self.last_tick = last_tick

    def collect(self) -> Iterator[Metric]:
        snap = self.state()
        counts: Mapping[str, int] = snap["counts"]
        rules = self.rule_counts()
        for key, (name, doc) in _INGEST.items():
            yield CounterMetricFamily(name, doc, value=counts.get(key, 0))
        # Reasons are the codec's and ingest's own constants, never text from a device.
        yield _labelled(
            "tagwatch_ingest_frames_rejected",
            "Frames refused, by reason (each is also a security event).",
            "reason",
            snap["rejections"],
        )
        yield _labelled(
            "tagwatch_ingest_acks",
            "End-to-end ACKs: queued to the client, published or refused by the broker, "
            "failed (refused, or the client would not take them).",
            "outcome",
            {o: counts.get(k, 0) for k, o in _ACKS.items()},
        )
        both = {**rules, **counts}
        yield _labelled(
            "tagwatch_rules_commands",
            "Device commands: sent (handed to the client), failed, suppressed, unsendable, "
            "published or refused by the broker, resent (not acknowledged), unreached (given "
            "up unacknowledged: the officer is told), answered_late (answered after that: "
            "noted on the alert).",
            "outcome",
            {o: both.get(k, 0) for k, o in _COMMANDS.items()},
        )
        for key, (name, doc) in _RULES.items():
            yield CounterMetricFamily(name, doc, value=rules.get(key, 0))
        yield CounterMetricFamily(
            "tagwatch_ingest_batches", "Batches processed.", value=snap["batches"]
        )
        yield GaugeMetricFamily(
            "tagwatch_broker_connected",
            "1 while the worker holds a connection to a broker (any of its list).",
            value=1 if snap["connected"] else 0,
        )
        up = GaugeMetricFamily(
            "tagwatch_broker_link_up",
            "1 while the worker holds its connection to this broker of its list (by index).",
            labels=["broker"],
        )
        for i, connected in enumerate(snap.get("brokers_connected", [])):
            up.add_metric([str(i)], 1 if connected else 0)
        yield up
        yield GaugeMetricFamily(
            "tagwatch_ingest_downlinks_awaiting_puback",
            "Downlinks published without a PUBACK yet (stays high: the connection is stuck).",
            value=snap["awaiting"],
        )
        last = self.last_tick()
        if last is not None:
            yield GaugeMetricFamily(
                "tagwatch_rules_last_tick_timestamp_seconds",
                "Wall time of the rule timer's last completed clock tick.",
                value=last,
            )


class DatabaseCollector(Collector):
    """Monitoring state held in the database, read when the API is scraped: open alerts by
    severity, assigned devices and how many are silent, home units offline."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        try:
            with self.engine.connect() as conn:
                now = self.clock.now()
                open_alerts = conn.execute(
                    select(alerts.c.severity, alerts.c.state, func.count())
                    .where(alerts.c.state.in_(OPEN_STATES))
                    .group_by(alerts.c.severity, alerts.c.state)
                ).all()
                fleet = conn.execute(silent_devices_query(now)).all()
                offline = conn.execute(
                    select(func.count()).where(
                        alert_episodes.c.type == "home_unit_offline",
                        alert_episodes.c.end.is_(None),
                        alert_episodes.c.cleared_at.is_(None),
                    )
                ).scalar_one()
        except Exception as e:
            log.warning("database metrics unavailable", error=type(e).__name__)
            return
        by_sev = GaugeMetricFamily(
            "tagwatch_alerts_open",
            "Alerts not yet resolved, by severity and state (open or acknowledged).",
            labels=["severity", "state"],
        )
        counted: dict[tuple[str, str], int] = {(s, st): 0 for s in SEVERITIES for st in OPEN_STATES}
        for sev, state, n in open_alerts:
            key = (bounded(sev, SEVERITIES), state)
            counted[key] = counted.get(key, 0) + n
        for (sev, state), n in sorted(counted.items()):
            by_sev.add_metric([sev, state], n)
        yield by_sev
        assigned = GaugeMetricFamily(
            "tagwatch_devices_assigned",
            "Devices currently assigned to a subject, by kind.",
            labels=["kind"],
        )
        silent = GaugeMetricFamily(
            "tagwatch_devices_silent",
            "Assigned devices not heard from for longer than expected: a tag for its "
            "subject's comms-loss threshold, a home unit for its offline grace, a victim's "
            "device for its link's silence threshold.",
            labels=["kind"],
        )
        rows = {kind: (0, 0) for kind in KINDS}
        for kind, n, quiet in fleet:
            rows[bounded(kind, KINDS)] = (int(n), int(quiet or 0))
        for kind, (n, quiet) in sorted(rows.items()):
            assigned.add_metric([kind], n)
            silent.add_metric([kind], quiet)
        yield assigned
        yield silent
        yield GaugeMetricFamily(
            "tagwatch_home_units_offline",
            "Home units with an open offline episode (their last will, past the grace).",
            value=offline,
        )


def silent_devices_query(now: float) -> Any:
    """(kind, assigned, silent) for devices assigned now. Last contact is the backend time
    of the device's last frame (or its assignment's start, if never heard). A tag is silent
    past its subject's comms-loss threshold (the smallest of its current orders', else the
    comms rule's default), a home unit past the home-unit rule's offline grace: the times
    after which the rules themselves would alert; a victim's device past its link's silence
    threshold (else the victim_silent rule's default)."""
    a, d, o = assignments.c, devices.c, orders.c
    t = int(now)
    order_threshold = (
        select(func.min(o.comms_loss_s))
        .where(
            o.subject_id == a.subject_id,
            o.starts_at <= t,
            or_(o.ends_at.is_(None), o.ends_at > t),
        )
        .scalar_subquery()
    )
    v = victim_devices.c
    link_threshold = (
        select(func.min(v.silent_s))
        .where(v.device == a.device, v.starts_at <= t, or_(v.ends_at.is_(None), v.ends_at > t))
        .scalar_subquery()
    )
    threshold = case(
        (a.role == TAG, func.coalesce(order_threshold, CommsParams().threshold_s)),
        (a.role == VICTIM, func.coalesce(link_threshold, SilentParams().threshold_s)),
        else_=HomeUnitParams().offline_grace_s,
    )
    last = func.coalesce(d.last_seen_at, a.starts_at)
    return (
        select(a.role, func.count(), func.sum(case((last < now - threshold, 1), else_=0)))
        .select_from(assignments.join(devices, d.id == a.device))
        .where(
            and_(a.starts_at <= t, or_(a.ends_at.is_(None), a.ends_at > t)),
            d.retired_at.is_(None),
        )
        .group_by(a.role)
    )


class NotificationCollector(Collector):
    """The notification dispatcher of this process (its outcomes per kind of outbox row),
    and the outbox as stored: rows waiting, and how overdue the oldest is (a dispatcher
    that stopped working shows as a growing age)."""

    def __init__(
        self,
        counts: Callable[[], Mapping[tuple[str, str], int]],
        engine: Engine,
        clock: Clock,
    ) -> None:
        self.counts = counts
        self.engine = engine
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "tagwatch_notifications",
            "Outbox rows worked by this process's dispatcher, by kind (plan, escalate, email, "
            "push, webhook) and outcome (sent, retried, failed, dropped, paged, ...).",
            labels=["kind", "outcome"],
        )
        counted: dict[tuple[str, str], int] = {(k, "sent"): 0 for k in NOTIFY_KINDS}
        counted.update({(k, "failed"): 0 for k in NOTIFY_KINDS})
        for (kind, outcome), n in self.counts().items():
            key = (bounded(kind, NOTIFY_KINDS), bounded(outcome, OUTCOMES))
            counted[key] = counted.get(key, 0) + n
        for (kind, outcome), n in sorted(counted.items()):
            family.add_metric([kind, outcome], n)
        yield family
        o = notification_outbox.c
        try:
            with self.engine.connect() as conn:
                now = self.clock.now()
                rows = conn.execute(
                    select(o.kind, func.count(), func.min(o.due_at))
                    .where(o.state == PENDING, o.due_at <= now)
                    .group_by(o.kind)
                ).all()
        except Exception as e:
            log.warning("notification metrics unavailable", error=type(e).__name__)
            return
        due = GaugeMetricFamily(
            "tagwatch_notifications_due",
            "Outbox rows due and not yet worked (retries waiting for their back-off are not).",
            labels=["kind"],
        )
        waiting = {k: 0 for k in NOTIFY_KINDS}
        oldest = now
        for kind, n, first in rows:
            k = bounded(kind, NOTIFY_KINDS)
            waiting[k] = waiting.get(k, 0) + int(n)
            oldest = min(oldest, float(first))
        for kind, n in sorted(waiting.items()):
            due.add_metric([kind], n)
        yield due
        yield GaugeMetricFamily(
            "tagwatch_notifications_oldest_due_seconds",
            "How long the oldest due outbox row has waited (0: none waiting).",
            value=max(0.0, now - oldest),
        )


class ReadinessCollector(Collector):
    """tagwatch_ready{check}: the readiness checks (backend/health.py), as a gauge."""

    def __init__(self, checks: Callable[[], Mapping[str, bool]]) -> None:
        self.checks = checks

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "tagwatch_ready", "1 if the readiness check passes.", labels=["check"]
        )
        for name, ok in sorted(self.checks().items()):
            family.add_metric([name], 1 if ok else 0)
        yield family


class PoolCollector(Collector):
    """The SQLAlchemy connection pool of one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        pool: Any = self.engine.pool
        if not hasattr(pool, "checkedout"):
            return
        family = GaugeMetricFamily(
            "tagwatch_db_pool_connections",
            "Database connections of this process: in use (checked out) and idle in the pool.",
            labels=["state"],
        )
        family.add_metric(["in_use"], pool.checkedout())
        family.add_metric(["idle"], pool.checkedin())
        yield family
        yield GaugeMetricFamily("tagwatch_db_pool_size", "Configured pool size.", value=pool.size())


def registry(*collectors: Collector) -> CollectorRegistry:
    """A process's registry: its process metrics and the given collectors."""
    reg = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=reg)
    for c in collectors:
        reg.register(c)
    return reg
