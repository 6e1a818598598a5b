"""The hand-over from ingest (backend/ingest.py RuleSink) and the clock-driven timer.

`MonitoringSink.frames_committed` turns the frames a batch stored into observations, finds
each device's subject by its assignment at the observation's event time, and evaluates every
subject of the batch once, all in one transaction (BEGIN IMMEDIATE on SQLite; on PostgreSQL
the subjects' advisory locks, taken in id order): live data continues the fold; anything
behind the subject's state is re-evaluated from stored data (evaluator.py). Configuration,
state and stored episodes come from the worker's cache (cache.py), checked against the
database by one query per batch, so several workers on a shared subscription stay
consistent. If the batch transaction fails, each subject is retried alone. Commands the
rules ask for (fast sampling near exclusion zones) are signed with the tag's key, numbered
with the device's command sequence and published on its down topic. So is the subject's
set of circular exclusion zones (cmd_zone, backend/zone_push.py) whenever it differs from the
last set recorded for its current tag; checked against the database only when the subject's
config version or tag changes.

The hand-over is durable. Ingest writes each batch's rules_pending row (the ids of the frames
it stored and of the security events it wrote) in the batch's own transaction; the
transaction evaluating the batch deletes it first, and evaluates nothing if it is gone
(another worker got there first). `sweep()` evaluates the rows a worker left that died
between its commit and its hand-over (or whose evaluation failed with the database away),
each as its hand-over would have: when a worker starts (`resume`), and at every tick those
older than HANDOVER_GRACE_S. A batch evaluated twice all the same changes no alert the
second time (episode keys are deterministic), so every committed batch is evaluated once in
effect.

`tick(now)` (the RuleTimer thread calls it every `tick_s` of wall time, reading the backend
clock object, so a simulator that drives the clock drives it too) moves every monitored
subject's horizon: comms loss and a curfew absence with no further data alert on time. It
reads every subject's config version and state revision in one query and evaluates only
subjects whose deadline (Rule.due: the next time the clock alone could change anything) has
come, or whose cached entry is stale. Each tick first sends the commands operators queued (a
tag's broker list) and sends again those a device must acknowledge and has not (a victim's
warning), giving up on one after its policy's sends and raising `victim_not_reached` for the
on-call officer (backend/device_commands.py, backend/rules/delivery.py), all numbered under
the lock of the evaluations. Each hand-over first looks in its batch for answers to
warnings already given up, and notes them on the officer's alert (device_commands.
answered_late).

No evaluation folds more than a day of event time (evaluator.py): a subject whose run is
longer — the first evaluation after a configuration change, a backlog, an order or fitting
entered long after it began — is worked through a chunk per evaluation. Batches of ingest
evaluate such a subject one chunk, like any other; the clock goes on with it, each chunk in a
transaction of its own, up to `CATCHUP_CHUNKS` chunks a tick. So one subject's long run
delays only its own alerts, never the rest of a batch, and never holds the write lock for
long."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import structlog
from sqlalchemy import Connection, Engine, select

from backend import metrics
from backend.clock import Clock, SystemClock
from backend.device_commands import (
    RAN,
    LateAnswer,
    Resend,
    Unreached,
    answered_late,
    notify_key,
    notify_message,
    numbered,
    resend_due,
    resend_policy,
    send_queued,
)
from backend.ingest import Ingest, Rejection, RuleSink, StoredFrame
from backend.rules.cache import CachedRepository, SubjectCache, revisions
from backend.rules.config import SubjectConfig
from backend.rules.delivery import note_answer, raise_unreached
from backend.rules.engine import Engine as RuleEngine
from backend.rules.evaluator import Changes, Evaluator
from backend.rules.model import Command, Obs, to_send
from backend.rules.observe import frame_observations, security_observation
from backend.rules.proximity import NOTIFY_PATTERN, NOTIFY_REPEATS
from backend.rules.store import (
    config_versions,
    load_config,
    pending_batch,
    settle,
    subjects_of_devices,
)
from backend.settings import Settings
from backend.storage.database import IMMEDIATE
from backend.storage.schema import TAG, VICTIM, device_commands, rules_pending
from backend.zone_push import zone_update
from firmware import frame as fr
from firmware import topics

log = structlog.get_logger("tagwatch.rules")

Publisher = Callable[[str, bytes], bool]
Work = Mapping[int, list[Obs] | None] | Callable[[Connection], Mapping[int, list[Obs] | None]]
TICK_CHUNK = 200  # subjects per clock-tick transaction (bounds how long it holds locks)
CATCHUP_CHUNKS = 24  # chunks of runs catching up that one tick works through, in all
# A batch's hand-over normally settles within a second of its commit; a sweep on the clock
# leaves younger rows to their own worker (taking one is safe, only wasted work).
HANDOVER_GRACE_S = 10.0
SWEEP_LIMIT = 100  # batches one sweep evaluates at most (the next tick goes on)


class IngestWorkerLike(Protocol):
    engine: Engine
    ingest: Ingest


KeyLookup = Callable[[int], bytes | None]


class MonitoringSink(RuleSink):
    def __init__(
        self,
        engine: Engine,
        clock: Clock | None = None,
        publish: Publisher | None = None,
        key_for: KeyLookup | None = None,
        rules: RuleEngine | None = None,
        cache: SubjectCache | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.engine = engine
        # How a warning its victim's device does not acknowledge goes again (docs/rules.md).
        self.warnings = Resend.warnings(settings or Settings())
        self.clock = clock or SystemClock()
        self.publish = publish
        self.key_for = key_for
        self.rules = rules or RuleEngine()
        self.counts: Counter[str] = Counter()
        self.cache = cache or SubjectCache()
        self._lock = threading.RLock()  # ingest thread and timer thread
        self.on_changes: list[Callable[[int, Changes], None]] = []
        # Per subject, the (config version, tag) whose zones were last found recorded for
        # that tag: zones change only with the version (the API bumps it), so the database
        # is asked again only when either changes. Set after the transaction commits.
        self._zones_checked: dict[int, tuple[int, int | None]] = {}

    def bind(self, publish: Publisher, key_for: KeyLookup) -> None:
        self.publish, self.key_for = publish, key_for

    # ---- RuleSink --------------------------------------------------------------------

    durable = True

    def batch_committed(
        self,
        stored: Sequence[StoredFrame],
        rejections: Sequence[Rejection],
        now: float,
        pending: str | None,
    ) -> None:
        self._hand_over(stored, rejections, now, now, pending)

    def frames_committed(self, stored: Sequence[StoredFrame], now: float) -> None:
        self._hand_over(stored, (), now, now, None)

    def frames_rejected(self, rejections: Sequence[Rejection], now: float) -> None:
        self._hand_over((), rejections, now, now, None)

    def resume(self, now: float) -> None:
        self.sweep(now, grace_s=0.0)

    def _hand_over(
        self,
        stored: Sequence[StoredFrame],
        rejections: Sequence[Rejection],
        at: float,
        now: float,
        pending: str | None,
    ) -> dict[int, Changes]:
        """Evaluate what a batch stored and refused at backend time `at` (its frames with
        the subjects their devices had at each observation's time, its refusals with those
        at `at`), up to the horizon `now`, and settle its rules_pending row."""
        by_device: dict[int, list[StoredFrame]] = defaultdict(list)
        for s in stored:
            by_device[s.device].append(s)
        # Before the evaluation settles the batch's rules_pending row: if this fails, the
        # row stays and a sweep does both again (a second time marks nothing).
        self._answered_late(stored, at, now)
        refused = [r for r in rejections if r.device is not None]
        devices = set(by_device) | {r.device for r in refused if r.device is not None}
        if not devices and pending is None:
            return {}

        def work(conn: Connection) -> Mapping[int, list[Obs] | None]:
            owners = subjects_of_devices(conn, devices)
            per_subject: dict[int, list[Obs]] = defaultdict(list)
            for device, items in by_device.items():
                history = owners.get(device, [])
                for s in items:
                    for role in {r for _, r, _, _ in history}:
                        for o in frame_observations(
                            s.frame, role, s.received_at, s.late, s.refused
                        ):
                            subj = _owner(history, role, o.t)
                            if subj is not None:
                                per_subject[subj].append(o)
                            else:
                                self.counts["unassigned"] += 1
            seen: Counter[int] = Counter()
            for r in refused:
                assert r.device is not None
                n = seen[r.device]
                seen[r.device] += 1
                for subj, role, start, end in owners.get(r.device, []):
                    if start <= int(at) and (end is None or int(at) < end):
                        per_subject[subj].append(
                            security_observation(r.device, role, at, n, r.reason, r.detail)
                        )
            return per_subject

        return self._evaluate(work, now, pending)

    # ---- the sweep -------------------------------------------------------------------

    def sweep(
        self, now: float | None = None, grace_s: float = HANDOVER_GRACE_S, limit: int = SWEEP_LIMIT
    ) -> int:
        """Evaluate batches committed at least `grace_s` ago whose hand-over never settled
        (rules_pending rows: their worker died between its commit and its hand-over, or the
        database went away during the evaluation), oldest first, at most `limit`; each as
        its hand-over would have (store.pending_batch), in a transaction that settles its
        row. Returns how many were evaluated."""
        now = self.clock.now() if now is None else now
        p = rules_pending.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(p.token, p.at, p.frames, p.refusals)
                .where(p.at <= now - grace_s)
                .order_by(p.at)
                .limit(limit)
            ).all()
        done = 0
        for row in rows:
            try:
                with self.engine.connect() as conn:
                    stored, rejections = pending_batch(conn, row.frames, row.refusals)
                self._hand_over(stored, rejections, row.at, now, row.token)
            except Exception:
                log.exception("evaluating a batch left pending failed", token=row.token)
                continue
            done += 1
        self.counts["handovers_swept"] += done
        return done

    # ---- the timer -------------------------------------------------------------------

    def tick(self, now: float | None = None) -> int:
        """Advance every monitored subject's horizon to backend now; returns how many
        subjects had alert changes. First, batches whose hand-over never settled are
        evaluated (sweep), queued operator commands sent and unacknowledged ones sent again.
        One query checks every subject against the cache; only subjects whose deadline has
        come (or whose cache entry is stale) are evaluated."""
        now = self.clock.now() if now is None else now
        self.sweep(now)
        self.send_queued(now)
        with self._lock:
            with self.engine.connect() as conn:
                db = revisions(conn)
            due = [
                s
                for s in sorted(db.versions)
                if not self.cache.quiet(s, db.versions[s], db.revs[s], int(now))
            ]
            self.counts["ticks"] += 1
            self.counts["tick_subjects"] += len(db.versions)
            self.counts["tick_due"] += len(due)
        changed: set[int] = set()

        def evaluate(subjects: Sequence[int]) -> list[int]:
            """Evaluate; the subjects whose runs are still catching up."""
            out = self._evaluate(dict.fromkeys(subjects), now)
            changed.update(s for s, c in out.items() if c)
            return [s for s, c in out.items() if c.behind]

        # Runs known to be catching up go alone (below): a transaction of many would be long.
        behind = [s for s in due if self.cache.behind(s)]
        rest = [s for s in due if not self.cache.behind(s)]
        # Chunk by chunk, each taking the lock itself: ingest's hand-over gets in between
        # (a fresh worker's first tick evaluates every subject).
        for i in range(0, len(rest), TICK_CHUNK):
            behind += evaluate(rest[i : i + TICK_CHUNK])
        # One chunk per transaction, round-robin over the runs catching up, within a budget
        # per tick: however long their runs, ingest waits at most that long for the lock.
        budget = CATCHUP_CHUNKS
        while behind and budget > 0:
            turn, behind = behind[:budget], behind[budget:]
            budget -= len(turn)
            self.counts["catchup_chunks"] += len(turn)
            for s in turn:
                behind += evaluate([s])
        return len(changed)

    # ---- evaluation ------------------------------------------------------------------

    def _evaluate(self, work: Work, now: float, pending: str | None = None) -> dict[int, Changes]:
        """Every subject of a batch in one transaction, which also settles the batch's
        rules_pending row (`pending`); if that fails, each subject alone (so one subject's
        failure cannot hold back the others), and then the row on its own. `work` maps
        subjects to their new observations (None: the clock), or is a function that reads
        it."""
        with self._lock:
            if callable(work) and self.engine.dialect.name == "sqlite":
                # Find the subjects before taking SQLite's one write lock (reads are cheap
                # in-process, and a batch of unassigned devices then takes the lock only to
                # settle its row). Over the network (PostgreSQL) it is read inside the
                # transaction instead: two round trips fewer.
                with self.engine.connect() as conn:
                    work = work(conn)
            if not callable(work) and not work and pending is None:
                return {}
            try:
                return self._transaction(work, now, pending)
            except Exception:
                if callable(work):
                    with self.engine.connect() as conn:
                        work = work(conn)
                self.cache.drop(work)
                out: dict[int, Changes] = {}
                if len(work) > 1:
                    self.counts["batch_retried"] += 1
                    for subj in sorted(work):
                        out.update(self._evaluate({subj: work[subj]}, now))
                elif work:
                    log.exception("rule evaluation failed", subjects=sorted(work))
                    self.counts["evaluation_failed"] += len(work)
            if pending is not None:
                # Settled even if a subject failed: a rule that raises on a subject's data
                # would raise again at every sweep (the failure is logged and counted). If
                # this fails too, the database is away: the row stays for a sweep.
                self._transaction({}, now, pending)
            return out

    def config(self, conn: Connection, subject: int, version: int | None = None) -> SubjectConfig:
        """The subject's configuration at `version` (read if not given), from the cache."""
        if version is None:
            version = config_versions(conn, [subject])[subject]
        e = self.cache.get(subject)
        if e.config is None or e.config.version != version:
            e.config = load_config(conn, subject)
        return e.config

    def _transaction(
        self, work: Work, now: float, pending: str | None = None
    ) -> dict[int, Changes]:
        started = time.perf_counter()
        results: dict[int, Changes] = {}
        sent: list[tuple[int, bytes]] = []
        checked: dict[int, tuple[int, int | None]] = {}
        with self.engine.connect() as conn, conn.execution_options(**IMMEDIATE).begin():
            if pending is not None and not settle(conn, pending):
                # Another worker's sweep evaluated the batch (and deleted its row) first.
                self.counts["handovers_taken"] += 1
                return {}
            if callable(work):
                work = work(conn)
            subjects = sorted(work)
            if not subjects:
                return {}
            repo = CachedRepository(conn, now, self.cache)
            repo.lock_all(subjects)
            db = repo.validate(subjects)
            ev = Evaluator(repo, self.rules)
            for subj in subjects:
                cfg = self.config(conn, subj, db.versions[subj])
                obs = work[subj]
                if obs is None:
                    results[subj] = ev.tick(cfg, int(now))
                else:
                    results[subj] = ev.observe(cfg, obs, int(now))
                sent += self._commands(conn, results[subj].commands, now)
                sent += self._zones(conn, cfg, now, checked)
            repo.flush()
        metrics.observe_evaluation(results.values(), time.perf_counter() - started, now)
        self._zones_checked.update(checked)
        self.counts["evaluations"] += len(subjects)
        self.counts["observations"] += sum(len(o) for o in work.values() if o is not None)
        for subj, changes in results.items():
            self.cache.get(subj).deadline = changes.deadline
        for c in sent:
            self._send(*c)
        for subj, changes in results.items():
            if changes:
                self.counts["alert_changes"] += 1
                for cb in self.on_changes:
                    cb(subj, changes)
        return results

    def _commands(
        self, conn: Connection, commands: list[Command], now: float
    ) -> list[tuple[int, bytes]]:
        """Number and sign commands inside the evaluation's transaction."""
        out = []
        for c in to_send(commands):
            key = self.key_for(c.device) if self.key_for else None
            if key is None or self.publish is None:
                self.counts["commands_unsendable"] += 1
                continue
            code = notify_key(c.key) if c.cmd == fr.CMD_NOTIFY else c.key
            if c.min_gap:
                # An earlier evaluation may already have asked for nearly the same (the
                # unsettled tail is folded afresh each time): do not send it again.
                prev = conn.execute(
                    select(device_commands.c.value)
                    .where(device_commands.c.device == c.device, device_commands.c.key == code)
                    .order_by(device_commands.c.seq.desc())
                    .limit(1)
                ).scalar()
                if c.repeats(prev):
                    self.counts["commands_suppressed"] += 1
                    continue
            _, data = numbered(
                conn,
                c.device,
                [_record(c)],
                key,
                code=code,
                value=c.value,
                reason=c.reason,
                now=now,
                resend=resend_policy(code, self.warnings),
            )
            out.append((c.device, data))
        return out

    def _zones(
        self,
        conn: Connection,
        cfg: SubjectConfig,
        now: float,
        checked: dict[int, tuple[int, int | None]],
    ) -> list[tuple[int, bytes]]:
        """A cmd_zone for the subject's current tag if its zones differ from the last set
        recorded for that tag, numbered inside the evaluation's transaction."""
        if self.publish is None or self.key_for is None:
            return []
        current = [a for a in cfg.assignments if a.role == TAG and a.covers(int(now))]
        device = max(current, key=lambda a: a.start).device if current else None
        seen = (cfg.version, device)
        if self._zones_checked.get(cfg.subject) == seen:
            return []
        if device is None:
            checked[cfg.subject] = seen
            return []
        key = self.key_for(device)
        if key is None:
            self.counts["commands_unsendable"] += 1
            return []
        checked[cfg.subject] = seen
        data = zone_update(conn, device, cfg.subject, key, now)
        if data is None:
            return []
        self.counts["zone_pushes"] += 1
        return [(device, data)]

    def send_queued(self, now: float) -> int:
        """Publish the commands operators queued, and send again those their devices must
        acknowledge and have not (or give them up: the officer is told; backend/
        device_commands.py); how many went."""
        if self.publish is None or self.key_for is None:
            return 0
        with self._lock:  # numbered in turn with this worker's evaluations
            sent, dropped = send_queued(self.engine, self.key_for, now)
            again = resend_due(
                self.engine, self.key_for, _resent, now, self._unreached, self.warnings
            )
        self.counts["commands_unsendable"] += dropped
        self.counts["commands_resent"] += len(again)
        for c in sent + again:
            self._send(*c)
        return len(sent) + len(again)

    def _unreached(self, conn: Connection, u: Unreached) -> int | None:
        """A command given up unacknowledged: the alert, on the subject whose victim device
        it was when first sent, in the transaction that gives it up; the alert's id."""
        self.counts["commands_unreached"] += 1
        t = int(u.sent_at[0]) if u.sent_at else int(u.at)
        history = subjects_of_devices(conn, {u.device}).get(u.device, [])
        owner = _owner(history, VICTIM, t)
        if owner is None:
            # Only victims' warnings have a resend policy; its link gone, no one to tell.
            log.error("unacknowledged command of no victim's device", device=u.device)
            return None
        return raise_unreached(conn, owner, u, u.at)

    def _answered_late(self, stored: Sequence[StoredFrame], at: float, now: float) -> None:
        """Answers in the batch to a warning given up already: noted on the officer's alert
        (backend/rules/delivery.py)."""
        ran = [
            (s.device, r.cmd_seq)
            for s in stored
            for i, r in enumerate(s.frame.records)
            if r.type == fr.COMMAND_RESULT and r.result in RAN and i not in s.refused
        ]
        if not ran:
            return

        def note(conn: Connection, a: LateAnswer) -> None:
            note_answer(conn, a, at, now)

        with self._lock:
            self.counts["commands_answered_late"] += answered_late(self.engine, ran, note)

    def _send(self, device: int, payload: bytes) -> None:
        assert self.publish is not None
        if self.publish(topics.tag_down(device), payload):
            self.counts["commands_sent"] += 1
        else:
            self.counts["commands_failed"] += 1


def _record(c: Command) -> fr.Record:
    """The command record a rule's Command asks for."""
    if c.cmd == fr.CMD_NOTIFY:
        return _notify(c.key)
    return fr.Record(fr.CMD_CONFIG, key=c.key, value=c.value)


def _notify(message: int) -> fr.Record:
    return fr.Record(fr.CMD_NOTIFY, pattern=NOTIFY_PATTERN, repeats=NOTIFY_REPEATS, message=message)


def _resent(code: int) -> list[fr.Record]:
    """The records of a command sent again: a warning (device_commands.resend_policy)."""
    return [_notify(notify_message(code))]


def _owner(history: list[tuple[int, str, int, int | None]], role: str, t: int) -> int | None:
    for subj, r, start, end in history:
        if r == role and start <= t and (end is None or t < end):
            return subj
    return None


class RuleTimer:
    """Calls sink.tick() every `every_s` seconds of wall time (the horizon it passes is the
    backend clock's now) until stopped. `last_tick` is the wall time the last tick completed
    (at start: when the timer was made), which readiness and metrics report."""

    def __init__(self, sink: MonitoringSink, every_s: float = 30.0) -> None:
        self.sink = sink
        self.every_s = every_s
        self.last_tick = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rule-timer", daemon=True)

    def start(self) -> RuleTimer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.sink.tick()
                self.last_tick = time.time()
            except Exception:
                log.exception("rule timer tick failed")


def attach(worker: IngestWorkerLike, tick_s: float = 30.0) -> RuleTimer:
    """Wire rules into an ingest worker: its Ingest hands frames to a MonitoringSink that
    publishes commands through the worker's client and signs them with the registry's keys;
    a RuleTimer moves horizons on. Returns the started timer (stop it before closing)."""
    directory = worker.ingest.directory

    def key_for(device: int) -> bytes | None:
        dev = directory.get(device)
        return None if dev is None else dev.key

    ingest = worker.ingest
    sink = MonitoringSink(
        worker.engine, ingest.clock, ingest.publish, key_for, settings=ingest.settings
    )
    worker.ingest.rules = sink
    return RuleTimer(sink, tick_s).start()
