"""The hand-over from ingest (backend/ingest.py RuleSink) and the clock-driven timer.

`MonitoringSink.frames_committed` turns the frames a batch stored into observations, finds
each device's subject by its assignment at the observation's event time, and runs the
Evaluator for each subject in its own transaction: live data continues the fold; anything
behind the subject's state is re-evaluated from stored data (evaluator.py). Commands the
rules ask for (fast sampling near exclusion zones) are signed with the tag's key, numbered
with the device's command sequence and published on its down topic.

`tick(now)` (the RuleTimer thread calls it every `tick_s` of wall time, reading the backend
clock object, so a simulator that drives the clock drives it too) moves every monitored
subject's horizon: comms loss and a curfew absence with no further data alert on time."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog
from sqlalchemy import Connection, Engine, func, insert, select

from backend.clock import Clock, SystemClock
from backend.ingest import Ingest, Rejection, RuleSink, StoredFrame
from backend.rules.config import SubjectConfig
from backend.rules.engine import Engine as RuleEngine
from backend.rules.evaluator import Changes, Evaluator
from backend.rules.model import Command, Obs
from backend.rules.observe import frame_observations, security_observation
from backend.rules.store import SqlRepository, config_versions, load_config, subjects_of_devices
from backend.storage.database import IMMEDIATE
from backend.storage.schema import assignments, device_commands
from firmware import frame as fr
from firmware import topics

log = structlog.get_logger("tagwatch.rules")

Publisher = Callable[[str, bytes], bool]


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
    ) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self.publish = publish
        self.key_for = key_for
        self.rules = rules or RuleEngine()
        self.counts: Counter[str] = Counter()
        self._configs: dict[int, SubjectConfig] = {}
        self._lock = threading.Lock()  # ingest thread and timer thread
        self.on_changes: list[Callable[[int, Changes], None]] = []

    def bind(self, publish: Publisher, key_for: KeyLookup) -> None:
        self.publish, self.key_for = publish, key_for

    # ---- RuleSink --------------------------------------------------------------------

    def frames_committed(self, stored: Sequence[StoredFrame], now: float) -> None:
        by_device: dict[int, list[tuple[StoredFrame, fr.Frame]]] = defaultdict(list)
        for s in stored:
            by_device[s.device].append((s, s.frame))
        with self.engine.connect() as conn:
            owners = subjects_of_devices(conn, by_device)
        per_subject: dict[int, list[Obs]] = defaultdict(list)
        for device, items in by_device.items():
            for s, f in items:
                for role in {r for _, r, _, _ in owners.get(device, [])}:
                    for o in frame_observations(f, role, s.received_at, s.late):
                        subj = _owner(owners[device], role, o.t)
                        if subj is not None:
                            per_subject[subj].append(o)
                        else:
                            self.counts["unassigned"] += 1
        self._evaluate(per_subject, now)

    def frames_rejected(self, rejections: Sequence[Rejection], now: float) -> None:
        devices = [r.device for r in rejections if r.device is not None]
        if not devices:
            return
        with self.engine.connect() as conn:
            owners = subjects_of_devices(conn, devices)
        per_subject: dict[int, list[Obs]] = defaultdict(list)
        seen: Counter[int] = Counter()
        for r in rejections:
            if r.device is None:
                continue
            n = seen[r.device]
            seen[r.device] += 1
            for subj, role, start, end in owners.get(r.device, []):
                if start <= int(now) and (end is None or int(now) < end):
                    per_subject[subj].append(
                        security_observation(r.device, role, now, n, r.reason, r.detail)
                    )
        self._evaluate(per_subject, now)

    # ---- the timer -------------------------------------------------------------------

    def tick(self, now: float | None = None) -> int:
        """Advance every monitored subject's horizon to backend now; returns how many
        subjects had alert changes."""
        now = self.clock.now() if now is None else now
        with self.engine.connect() as conn:
            subjects = sorted(
                set(conn.execute(select(assignments.c.subject_id).distinct()).scalars())
            )
        changed = 0
        for subj in subjects:
            changed += bool(self._run(subj, None, now))
        return changed

    # ---- evaluation ------------------------------------------------------------------

    def _evaluate(self, per_subject: dict[int, list[Obs]], now: float) -> None:
        for subj in sorted(per_subject):
            try:
                self._run(subj, per_subject[subj], now)
            except Exception:
                # Stored data is safe; the next batch or tick re-evaluates from storage.
                log.exception("rule evaluation failed", subject=subj)
                self.counts["evaluation_failed"] += 1

    def config(self, conn: Connection, subject: int) -> SubjectConfig:
        version = config_versions(conn, [subject])[subject]
        cfg = self._configs.get(subject)
        if cfg is None or cfg.version != version:
            cfg = load_config(conn, subject)
            self._configs[subject] = cfg
        return cfg

    def _run(self, subject: int, obs: list[Obs] | None, now: float) -> Changes:
        with (
            self._lock,
            self.engine.connect() as conn,
            conn.execution_options(**IMMEDIATE).begin(),
        ):
            repo = SqlRepository(conn, now)
            repo.lock(subject)
            cfg = self.config(conn, subject)
            ev = Evaluator(repo, self.rules)
            if obs is None:
                changes = ev.tick(cfg, int(now))
            else:
                changes = ev.observe(cfg, obs, int(now))
                self.counts["observations"] += len(obs)
            sent = self._commands(conn, changes.commands, now)
        for c in sent:
            self._send(*c)
        if changes:
            self.counts["alert_changes"] += 1
            for cb in self.on_changes:
                cb(subject, changes)
        return changes

    def _commands(
        self, conn: Connection, commands: list[Command], now: float
    ) -> list[tuple[int, bytes]]:
        """Number and sign commands inside the evaluation's transaction."""
        out = []
        for c in commands:
            key = self.key_for(c.device) if self.key_for else None
            if key is None or self.publish is None:
                self.counts["commands_unsendable"] += 1
                continue
            if c.min_gap:
                # An earlier evaluation may already have asked for nearly the same (the
                # unsettled tail is folded afresh each time): do not send it again.
                prev = conn.execute(
                    select(device_commands.c.value)
                    .where(device_commands.c.device == c.device, device_commands.c.key == c.key)
                    .order_by(device_commands.c.seq.desc())
                    .limit(1)
                ).scalar()
                if prev is not None and prev >= c.value - c.min_gap:
                    self.counts["commands_suppressed"] += 1
                    continue
            last = conn.execute(
                select(func.max(device_commands.c.seq)).where(device_commands.c.device == c.device)
            ).scalar()
            seq = (last or 0) + 1
            rec = fr.Record(fr.CMD_CONFIG, key=c.key, value=c.value)
            frame = fr.Frame(fr.COMMAND, c.device, 0, seq, int(now), [rec], fr.FLAG_TIME_VALID)
            conn.execute(
                insert(device_commands).values(
                    device=c.device, seq=seq, key=c.key, value=c.value, reason=c.reason[:64], at=now
                )
            )
            out.append((c.device, fr.encode(frame, key)))
        return out

    def _send(self, device: int, payload: bytes) -> None:
        assert self.publish is not None
        if self.publish(topics.tag_down(device), payload):
            self.counts["commands_sent"] += 1
        else:
            self.counts["commands_failed"] += 1


def _owner(history: list[tuple[int, str, int, int | None]], role: str, t: int) -> int | None:
    for subj, r, start, end in history:
        if r == role and start <= t and (end is None or t < end):
            return subj
    return None


class RuleTimer:
    """Calls sink.tick() every `every_s` seconds of wall time (the horizon it passes is the
    backend clock's now) until stopped."""

    def __init__(self, sink: MonitoringSink, every_s: float = 30.0) -> None:
        self.sink = sink
        self.every_s = every_s
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

    sink = MonitoringSink(worker.engine, worker.ingest.clock, worker.ingest.publish, key_for)
    worker.ingest.rules = sink
    return RuleTimer(sink, tick_s).start()
