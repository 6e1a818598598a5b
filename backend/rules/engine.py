"""The rule engine: folds a subject's observations through every rule in event-time order.

Replayability is built in rather than hoped for:

- The state after a fold is a function of the observations alone. `State.covers` says how
  far it has got: every observation with t < covers has been applied and time has been
  advanced to covers. The fold takes a snapshot at every `snapshot_every_s` boundary of event
  time, so a backlog that arrives hours late re-runs from the snapshot before its earliest
  record, over stored data, instead of from the beginning.
- Backend "now" (the horizon) never enters the state: time-driven conclusions up to now (a
  grace period that ran out with no further data, a comms gap still going) are worked out on
  a copy. Their episodes carry the same deterministic keys the fold would give them later.
- Each episode carries `closed_t`, the event time at which it was closed. A run starting at
  `covers` therefore re-derives exactly the episodes that are open or have closed_t >= covers;
  the store reconciles those and leaves older ones alone (store.py)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.rules.base import Context, Rule
from backend.rules.config import SubjectConfig
from backend.rules.model import Command, Episode, Obs, ordered

SNAPSHOT_EVERY_S = 3600


@dataclass
class State:
    covers: int
    rules: dict[str, dict[str, Any]]
    config_version: int = 0
    # The unsettled tail (observations within the allowed lateness) folded on top: what the
    # clock-driven tick continues from without reading stored data again.
    tail_covers: int | None = None
    tail_rules: dict[str, dict[str, Any]] | None = None
    # Bumped by every write of a subject's state or episodes (any worker): the revision a
    # worker's cache is validated against (sink.py). Written first in the JSON so that it
    # can be read back as a short prefix (`revision_of`).
    rev: int = 0
    # A run caught up chunk by chunk (evaluator.py) has not reached the stored data's end:
    # the next evaluation must read stored data from `covers` on. `late`: it re-evaluates
    # data, so what the rest of the run changes is late.
    behind: bool = False
    late: bool = False

    def to_json(self) -> str:
        d: dict[str, Any] = {
            "covers": self.covers,
            "rules": self.rules,
            "config_version": self.config_version,
        }
        if self.tail_rules is not None:
            d["tail_covers"], d["tail_rules"] = self.tail_covers, self.tail_rules
        if self.behind:
            d["behind"], d["late"] = True, self.late
        body = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return f'{{"rev":{self.rev},{body[1:]}'

    @classmethod
    def from_json(cls, text: str) -> State:
        d = json.loads(text)
        return cls(
            int(d["covers"]),
            d["rules"],
            int(d.get("config_version", 0)),
            d.get("tail_covers"),
            d.get("tail_rules"),
            int(d.get("rev", 0)),
            bool(d.get("behind", False)),
            bool(d.get("late", False)),
        )

    def latest(self) -> State:
        """The state with the unsettled tail folded in (itself if there is none)."""
        if self.tail_rules is None or self.tail_covers is None:
            return self
        return State(self.tail_covers, self.tail_rules, self.config_version)


REV_PREFIX = 32  # characters of a stored state that always hold its revision


def revision_of(text: str | None) -> int | None:
    """The revision at the start of a stored state (None: no state, or one written before
    revisions existed — either way not something a cache can vouch for)."""
    m = _REV.match(text or "")
    return int(m.group(1)) if m else None


_REV = re.compile(r'\{"rev":(\d+),')


def copy_state(v: Any) -> Any:
    """A deep copy of JSON-like rule state (dicts, lists, scalars), several times faster than
    copy.deepcopy, which the fold pays on every evaluation."""
    t = type(v)
    if t is dict:
        return {k: copy_state(x) for k, x in v.items()}
    if t is list:
        return [copy_state(x) for x in v]
    if t is str or t is int or t is float or t is bool or v is None:
        return v
    if t is tuple:
        return tuple(copy_state(x) for x in v)
    return copy.deepcopy(v)


NEVER = 2**62  # a deadline that never comes


@dataclass
class Result:
    state: State
    closed: list[Episode]  # closed during this run (closed_t >= the start state's covers)
    open: list[Episode]  # confirmed and still open at the horizon
    snapshots: list[tuple[int, str]] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    skipped: int = 0  # observations before the start state (the caller should have sent them
    #                   to a re-evaluation from an earlier snapshot)
    # With a horizon: the earliest horizon + 1 at which time alone could change the episodes
    # found (Engine.deadline of the state advanced to the horizon); NEVER if nothing is due.
    deadline: int = NEVER

    @property
    def episodes(self) -> list[Episode]:
        return self.closed + self.open


def default_rules() -> list[Rule]:
    from backend.rules import (
        battery,
        charging,
        comms,
        curfew,
        home_unit,
        motion,
        overflow,
        proximity,
        security,
        tamper,
        zones,
    )

    return [
        curfew.Curfew(),
        zones.Zones(),
        tamper.Tamper(),
        battery.Battery(),
        charging.Charging(),
        motion.MotionNoFix(),
        comms.CommsLoss(),
        home_unit.HomeUnit(),
        overflow.Overflow(),
        security.Security(),
        proximity.Proximity(),
        proximity.VictimSilent(),
    ]


class Engine:
    def __init__(
        self, rules: Sequence[Rule] | None = None, snapshot_every_s: int = SNAPSHOT_EVERY_S
    ) -> None:
        self.rules = list(rules) if rules is not None else default_rules()
        self.snapshot_every_s = snapshot_every_s

    def describe(self) -> list[dict[str, Any]]:
        return [r.describe() for r in self.rules]

    def initial(self, config: SubjectConfig, covers: int) -> State:
        return State(
            covers,
            {r.name: r.initial(config, covers) for r in self.rules},
            config_version=config.version,
        )

    def run(
        self,
        config: SubjectConfig,
        state: State,
        observations: Iterable[Obs],
        horizon: int | None = None,
        live: bool = True,
        settle: int | None = None,
        fresh: set[str] | None = None,
    ) -> Result:
        """Fold observations (t >= state.covers; any order, duplicates allowed) into a copy
        of state; then, if a horizon is given, conclude what time alone says up to it.

        With `settle`, only observations before it enter the returned state (which then
        covers up to `settle`); the rest are folded on a copy, for this run's episodes only,
        and their commands (for refs in `fresh`, if given, or that the sink de-duplicates:
        Command.min_gap) are the run's commands. That is
        the allowed lateness: data a little out of order across a subject's devices (a
        relayed tag frame after its home unit's) then continues the state instead of
        re-evaluating it from a snapshot."""
        st = State(state.covers, copy_state(state.rules), state.config_version)
        snapshots: list[tuple[int, str]] = []
        obs = ordered(observations)
        skipped = sum(1 for o in obs if o.t < st.covers)
        batch = [o for o in obs if o.t >= st.covers]
        if settle is None:
            ctx = self._fold(config, st, batch, live, snapshots, end=None)
            closed, commands, tail_state = list(ctx.emitted), list(ctx.commands), st
        else:
            head = [o for o in batch if o.t < settle]
            tail = [o for o in batch if o.t >= settle]
            ctx = self._fold(config, st, head, False, snapshots, end=max(settle, st.covers))
            tail_state = State(st.covers, copy_state(st.rules), st.config_version)
            tctx = self._fold(config, tail_state, tail, live, None, end=None)
            closed = list(ctx.emitted) + list(tctx.emitted)
            # A command the sink de-duplicates (min_gap) goes whatever its observation: the
            # tail's state remembers what it asked, so an ask first made at stored data (a
            # victim's fix folded again when the tag's older batch arrives) is made once.
            commands = [c for c in tctx.commands if fresh is None or c.ref in fresh or c.min_gap]
            st.tail_covers, st.tail_rules = tail_state.covers, tail_state.rules
        open_eps: list[Episode] = []
        deadline = NEVER
        if horizon is not None:
            extra, open_eps, deadline = self.horizon(config, tail_state, horizon)
            closed += extra
        return Result(st, closed, open_eps, snapshots, commands, skipped, deadline)

    def _fold(
        self,
        config: SubjectConfig,
        st: State,
        batch: list[Obs],
        live: bool,
        snapshots: list[tuple[int, str]] | None,
        end: int | None,
    ) -> Context:
        ctx = Context(config, live=live)
        for rule in self.rules:
            rule.prepare(st.rules[rule.name], ctx, batch)
        for o in batch:
            self._advance(st, ctx, o.t, snapshots)
            if config.monitored(o.t) and config.role_of(o.device, o.t) is not None:
                for rule in self.rules:
                    rule.apply(st.rules[rule.name], ctx, o)
        if end is not None:
            self._advance(st, ctx, end, snapshots)
        elif batch:
            self._advance(st, ctx, batch[-1].t + 1, snapshots)
        return ctx

    def horizon(
        self, config: SubjectConfig, state: State, horizon: int
    ) -> tuple[list[Episode], list[Episode], int]:
        """What time alone concludes by `horizon` (closed and open episodes), on a copy (the
        state is left as it was), and the deadline after it: until horizon + 1 reaches it, a
        later horizon concludes exactly the same (advance composes), so the clock tick can
        skip the subject."""
        tmp = State(state.covers, copy_state(state.rules), state.config_version)
        ctx = Context(config, live=False)
        if horizon + 1 > tmp.covers:
            self._advance(tmp, ctx, horizon + 1, None)
        open_eps = [ep for r in self.rules for ep in r.open(tmp.rules[r.name])]
        return list(ctx.emitted), open_eps, self.deadline(config, tmp)

    def deadline(self, config: SubjectConfig, state: State) -> int:
        """The smallest `to` at which advancing `state` could change anything (NEVER if
        nothing is pending; at most state.covers + 1 when some rule cannot tell)."""
        ctx = Context(config, live=False)
        dues = [r.due(state.rules[r.name], ctx) for r in self.rules]
        found = [d for d in dues if d is not None]
        return max(min(found), state.covers + 1) if found else NEVER

    def _advance(
        self, st: State, ctx: Context, to: int, snapshots: list[tuple[int, str]] | None
    ) -> None:
        if to <= st.covers:
            return
        every = self.snapshot_every_s
        if snapshots is not None:
            b = (st.covers // every + 1) * every
            while b <= to:
                self._advance_rules(st, ctx, b)
                snapshots.append((b, st.to_json()))
                b += every
        self._advance_rules(st, ctx, to)

    def _advance_rules(self, st: State, ctx: Context, to: int) -> None:
        if to <= st.covers:
            return
        for rule in self.rules:
            rule.advance(st.rules[rule.name], ctx, to)
        st.covers = to

    def evaluate(
        self,
        config: SubjectConfig,
        observations: Iterable[Obs],
        horizon: int,
        start: int | None = None,
    ) -> list[Episode]:
        """Every episode in the data, from scratch (tests, replays, the simulator's truth
        checks): closed ones and those open at the horizon."""
        obs = ordered(observations)
        t0 = config.evaluation_start(start if start is not None else (obs[0].t if obs else horizon))
        res = self.run(config, self.initial(config, t0), obs, horizon, live=False)
        return res.episodes
