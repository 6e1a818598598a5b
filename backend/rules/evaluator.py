"""Incremental evaluation with late-data re-evaluation, over a repository of stored data.

`Evaluator.observe(config, new, horizon)` is called with observations just stored (any
order, duplicates removed by the repository). If they all lie after the subject's saved
state (`State.covers`), the fold simply continues (the live path). If any lies before it —
a backlog, a reordered frame — the fold re-runs from the latest snapshot at or before the
earliest new record, over everything stored since (the late path), and the episodes it
finds replace those in the re-run window. Either way the episodes are reconciled against
the stored ones whose fate the run decides (open, or closed at or after where the run
started): same key → updated if changed, new key → raised, missing → cleared. A late run
marks what it raises, changes or clears as late.

`Evaluator.tick(config, horizon)` moves only the horizon (backend clock): what time alone
concludes (a grace run out, a comms gap) is raised without new data.

No evaluation works through an unbounded span of event time, so no subject's evaluation can
hold a write transaction (and every other subject of its batch) for long:

- it never starts before the subject's first tag was fitted (SubjectConfig.evaluation_start)
  nor more than `LOOKBACK_S` before backend now (no frame older than that is accepted,
  bounds.FRAME_AGE_S);
- one evaluation folds at most `max_run_s` of event time (and its horizon step at most that
  much more). A run that would go further — the first evaluation after a configuration
  change, a backlog days late, a long silence — folds one chunk, saves the state where the
  chunk ends and reports `Changes.behind` with a deadline of now: the next evaluation (the
  clock's tick, or new data) goes on from there, each in its own transaction. A chunk
  reconciles only the episodes whose fate it decides (closed within it); the chunks
  together find exactly what one run would (the fold and its keys are deterministic).

The repository is an interface: MemoryRepository here (tests, simulator), SqlRepository in
store.py (production)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from backend.bounds import FRAME_AGE_S
from backend.rules.config import SubjectConfig
from backend.rules.engine import NEVER, Engine, State
from backend.rules.model import Command, Episode, Obs, ordered

SNAPSHOT_KEEP_S = 7 * 86400  # snapshots further back than this before covers are pruned
LATENESS_S = 900  # allowed lateness: a tag's batch period plus relay delays
MAX_RUN_S = 86400  # event time one evaluation folds at most; beyond, chunk by chunk
LOOKBACK_S = FRAME_AGE_S  # an evaluation never starts further back before backend now
DUE_NOW = 0  # the deadline of a run still catching up: the clock goes on with it at once


@dataclass
class Changes:
    raised: list[Episode] = field(default_factory=list)
    updated: list[Episode] = field(default_factory=list)
    cleared: list[Episode] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    late: bool = False
    # The earliest horizon + 1 at which the clock alone could change this subject's episodes
    # again (engine.Result.deadline); the sink's tick skips the subject until then.
    deadline: int = NEVER
    # The run folded one chunk and is not yet at the horizon: evaluate again to go on.
    behind: bool = False

    def __bool__(self) -> bool:
        return bool(self.raised or self.updated or self.cleared)


class Repository(Protocol):
    def state(self, subject: int) -> State | None: ...
    def save_state(self, subject: int, state: State, snapshots: Sequence[tuple[int, str]]) -> None:
        """Save the current state and upsert snapshots; prune snapshots older than
        state.covers - SNAPSHOT_KEEP_S."""

    def snapshot_at_or_before(self, subject: int, t: int) -> State | None: ...
    def observations(
        self, config: SubjectConfig, since: int, until: int | None = None
    ) -> list[Obs]:
        """Stored observations of the subject's devices with since <= t (< until)."""

    def first_time(self, config: SubjectConfig) -> int | None: ...
    def episodes_in_scope(self, subject: int, since: int) -> list[Episode]:
        """Stored, not cleared: open ones and those with closed_t >= since."""

    def apply(self, subject: int, changes: Changes) -> None: ...


class Evaluator:
    """`lateness_s`: how far behind the newest stored observation the saved state is kept
    (Engine.run's `settle`). Data up to that much out of order across a subject's devices
    continues the state; only data later than that re-evaluates from a snapshot.
    `max_run_s`: the event time one evaluation folds at most (the module docstring)."""

    def __init__(
        self,
        repo: Repository,
        engine: Engine | None = None,
        lateness_s: int = LATENESS_S,
        max_run_s: int = MAX_RUN_S,
    ) -> None:
        self.repo = repo
        self.engine = engine or Engine()
        self.lateness_s = lateness_s
        self.max_run_s = max_run_s

    def observe(self, config: SubjectConfig, new: Iterable[Obs], horizon: int) -> Changes:
        fresh = ordered(new)
        if not fresh:
            return self.tick(config, horizon)
        state = self.repo.state(config.subject)
        valid = state is not None and state.config_version == config.version
        tmin = fresh[0].t
        flagged = any(o.late for o in fresh)  # ingest: a backlog behind backend now
        refs = {o.ref for o in fresh}
        if valid and state is not None and tmin >= state.covers:
            tail = state.tail_covers
            span = fresh[-1].t + 1 - state.covers  # the tail's span if these joined it
            near = horizon + 1 - state.covers <= self.max_run_s  # the horizon step is short
            if tail is not None and tmin >= tail and span <= 2 * self.lateness_s and near:
                return self._extend(config, state, fresh, horizon, flagged)
            return self._run(config, state, horizon, flagged or state.late, refs)
        start = self.repo.snapshot_at_or_before(config.subject, tmin) if valid else None
        if start is None:
            first = self.repo.first_time(config)
            t0 = config.evaluation_start(tmin if first is None else min(first, tmin))
            start = self.engine.initial(config, max(t0, horizon - LOOKBACK_S))
        # A first evaluation (no state yet, or a new configuration) is not late data unless
        # the data itself is; a re-evaluation behind the state is.
        late = flagged if not valid else True
        return self._run(config, start, horizon, late, refs)

    def tick(self, config: SubjectConfig, horizon: int) -> Changes:
        """Only the horizon moves: continue from the saved state with its tail (no stored
        data is read, nothing is saved unless an episode changes) — or, for a run catching
        up or a state more than `max_run_s` behind the horizon (a long silence), go on with
        the run over stored data."""
        state = self.repo.state(config.subject)
        if state is None or state.config_version != config.version:
            return Changes()
        if state.behind or horizon + 1 - state.covers > self.max_run_s:
            return self._run(config, state, horizon, state.late, set())
        latest = state.latest()
        closed, open_eps, deadline = self.engine.horizon(config, latest, horizon)
        changes = self.reconcile(config.subject, closed + open_eps, latest.covers, late=False)
        changes.deadline = deadline
        self.repo.apply(config.subject, changes)
        return changes

    def _extend(
        self, config: SubjectConfig, state: State, fresh: list[Obs], horizon: int, late: bool
    ) -> Changes:
        """In order after everything seen: fold onto the tail, reading nothing stored. The
        settled state moves on (a full _run) once the tail spans twice the lateness."""
        latest = state.latest()
        res = self.engine.run(config, latest, fresh, horizon, live=not late)
        new = State(
            state.covers, state.rules, state.config_version, res.state.covers, res.state.rules
        )
        self.repo.save_state(config.subject, new, [])
        changes = self.reconcile(config.subject, res.episodes, latest.covers, late)
        changes.commands, changes.deadline = res.commands, res.deadline
        self.repo.apply(config.subject, changes)
        return changes

    def _run(
        self, config: SubjectConfig, start: State, horizon: int, late: bool, fresh: set[str]
    ) -> Changes:
        if horizon + 1 - start.covers > self.max_run_s:
            return self._chunk(config, start, late)
        obs = self.repo.observations(config, start.covers)
        settle = max(o.t for o in obs) + 1 - self.lateness_s if obs else start.covers
        res = self.engine.run(
            config, start, obs, horizon, live=not late, settle=settle, fresh=fresh
        )
        self.repo.save_state(config.subject, res.state, res.snapshots)
        changes = self.reconcile(config.subject, res.episodes, start.covers, late)
        changes.commands, changes.deadline = res.commands, res.deadline
        self.repo.apply(config.subject, changes)
        return changes

    def _chunk(self, config: SubjectConfig, start: State, late: bool) -> Changes:
        """Fold `max_run_s` of event time from `start` and save the state there; only the
        episodes closed within the chunk are settled (the rest are the next chunk's)."""
        end = start.covers + self.max_run_s
        obs = self.repo.observations(config, start.covers, end)
        res = self.engine.run(config, start, obs, None, live=False, settle=end)
        state = res.state
        state.tail_covers, state.tail_rules = None, None
        state.behind, state.late = True, late
        self.repo.save_state(config.subject, state, res.snapshots)
        changes = self.reconcile(config.subject, res.closed, start.covers, late, until=end)
        changes.behind, changes.deadline = True, DUE_NOW
        self.repo.apply(config.subject, changes)
        return changes

    def reconcile(
        self,
        subject: int,
        found: Sequence[Episode],
        since: int,
        late: bool,
        until: int | None = None,
    ) -> Changes:
        """Changes that make the stored episodes whose fate a run from `since` decides
        (open, or closed at or after `since`; with `until`, only those closed before it)
        those `found`."""
        stored = {e.key: e for e in self.repo.episodes_in_scope(subject, since)}
        changes = Changes(late=late)
        seen = set()
        for ep in found:
            if ep.key in seen:
                continue
            seen.add(ep.key)
            old = stored.get(ep.key)
            if old is None:
                ep.late = late
                changes.raised.append(ep)
            elif _material(old) != _material(ep) or old.evidence != ep.evidence:
                ep.late = old.late or late
                changes.updated.append(ep)
        for key, old in stored.items():
            if key in seen:
                continue
            if until is not None and (old.closed_t is None or old.closed_t >= until):
                continue
            old.late = True if late else old.late
            changes.cleared.append(old)
        return changes


def _material(ep: Episode) -> tuple[object, ...]:
    return (ep.end, ep.closed_t, ep.confirmed_t, ep.version, sorted(ep.details.items()))


class MemoryRepository:
    """Everything in memory: the tests' and the simulator's repository."""

    def __init__(self) -> None:
        self.obs: dict[str, Obs] = {}
        self.states: dict[int, State] = {}
        self.snaps: dict[int, dict[int, str]] = {}
        self.episodes: dict[str, Episode] = {}
        self.cleared: dict[str, Episode] = {}
        self.log: list[Changes] = []

    def store(self, observations: Iterable[Obs]) -> list[Obs]:
        """Store; return the observations not seen before (what ingest would hand over)."""
        new = []
        for o in observations:
            if o.ref not in self.obs:
                self.obs[o.ref] = o
                new.append(o)
        return new

    def state(self, subject: int) -> State | None:
        return self.states.get(subject)

    def save_state(self, subject: int, state: State, snapshots: Sequence[tuple[int, str]]) -> None:
        self.states[subject] = state
        snaps = self.snaps.setdefault(subject, {})
        snaps.update(dict(snapshots))
        for at in [a for a in snaps if a < state.covers - SNAPSHOT_KEEP_S]:
            del snaps[at]

    def snapshot_at_or_before(self, subject: int, t: int) -> State | None:
        snaps = self.snaps.get(subject, {})
        best = max((a for a in snaps if a <= t), default=None)
        return None if best is None else State.from_json(snaps[best])

    def observations(
        self, config: SubjectConfig, since: int, until: int | None = None
    ) -> list[Obs]:
        devices = {a.device for a in config.assignments}
        return ordered(
            o
            for o in self.obs.values()
            if o.t >= since and (until is None or o.t < until) and o.device in devices
        )

    def first_time(self, config: SubjectConfig) -> int | None:
        devices = {a.device for a in config.assignments}
        t = min((o.t for o in self.obs.values() if o.device in devices), default=None)
        return None if t is None else max(t, min(a.start for a in config.assignments))

    def episodes_in_scope(self, subject: int, since: int) -> list[Episode]:
        return [
            Episode.from_dict(e.to_dict())
            for e in self.episodes.values()
            if e.subject == subject and (e.end is None or (e.closed_t or 0) >= since)
        ]

    def apply(self, subject: int, changes: Changes) -> None:
        for ep in changes.raised + changes.updated:
            self.episodes[ep.key] = ep
            self.cleared.pop(ep.key, None)
        for ep in changes.cleared:
            self.episodes.pop(ep.key, None)
            self.cleared[ep.key] = ep
        if changes:
            self.log.append(changes)
