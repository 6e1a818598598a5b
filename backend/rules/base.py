"""The one interface every rule implements, and the episode bookkeeping they share.

A rule is a fold over a subject's observations in event-time order. Its state is a plain
JSON-able dict (so it can be snapshotted and stored); it never reads a clock:

- `initial(config, start)` is the state where an evaluation begins (never before the first
  tag was fitted, SubjectConfig.evaluation_start);
- `advance(st, ctx, to)` handles what happens by the passage of event time alone, strictly
  before `to` (a curfew window opening, a grace period running out, a local day ending);
- `apply(st, ctx, obs)` takes one observation at `obs.t` (after `advance(obs.t)`);
- `open(st)` lists the confirmed episodes still open;
- `due(st, ctx)` says when the passage of time alone next matters: the smallest `to` at
  which `advance` could emit, confirm or begin anything (None: nothing pending). The clock
  tick uses it as a deadline index, so it must never be later than the truth; a rule that
  overrides `advance` without `due` is treated as always due (correct, only slower).

`advance` must compose: advance(advance(s, a), b) == advance(s, b) for a <= b. The engine
(engine.py) owns ordering, snapshots and the horizon (backend "now")."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from backend.rules.config import SubjectConfig
from backend.rules.model import Command, Episode, Obs

PENDING = -1  # confirmed_t of an episode whose grace/dwell has not passed yet
ALWAYS = -(2**62)  # Rule.due: time may matter at any moment (no deadline known)


@dataclass
class Context:
    config: SubjectConfig
    live: bool = True  # False when re-evaluating stored data: no commands
    emitted: list[Episode] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    # Per-run scratch space for rules that precompute over the whole batch (prepare()).
    cache: dict[str, Any] = field(default_factory=dict)

    def emit(self, ep: Episode) -> None:
        self.emitted.append(ep)


class Rule(abc.ABC):
    name: ClassVar[str]
    version: ClassVar[int]
    Params: ClassVar[type]

    def __init__(self, params: Any = None) -> None:
        self.p = params if params is not None else self.Params()

    def describe(self) -> dict[str, Any]:
        return {"rule": self.name, "version": self.version, "params": asdict(self.p)}

    def initial(self, config: SubjectConfig, start: int) -> dict[str, Any]:
        """The state at event time `start`, where the evaluation begins (nothing before it
        is judged)."""
        return {"open": {}}

    def prepare(self, st: dict[str, Any], ctx: Context, batch: Sequence[Obs]) -> None:
        """Optional: precompute over the run's observations at once (vectorized work)."""
        return None

    def advance(self, st: dict[str, Any], ctx: Context, to: int) -> None:
        self._confirm_due(st, to)

    def due(self, st: dict[str, Any], ctx: Context) -> int | None:
        """The earliest `to` at which advance() may change anything observable. This base
        version knows only pending graces (confirmed once due < to)."""
        if type(self).advance is not Rule.advance and type(self).due is Rule.due:
            return ALWAYS
        return self._pending_due(st)

    def _pending_due(self, st: dict[str, Any]) -> int | None:
        dues = [
            cur["due"] + 1
            for cur in st["open"].values()
            if cur["ep"]["confirmed_t"] == PENDING and cur["due"] is not None
        ]
        return min(dues) if dues else None

    @abc.abstractmethod
    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None: ...

    def open(self, st: dict[str, Any]) -> list[Episode]:
        return [
            Episode.from_dict(e["ep"])
            for _, e in sorted(st["open"].items())
            if e["ep"]["confirmed_t"] != PENDING
        ]

    # ---- shared episode bookkeeping ---------------------------------------------------------

    def begin(
        self,
        st: dict[str, Any],
        ctx: Context,
        type_: str,
        subkey: str,
        t: int,
        *,
        grace_s: int | None = 0,
        evidence: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
        severity: str = "high",
    ) -> dict[str, Any]:
        """Open (or return the already open) episode `subkey`. grace_s=0 confirms at once;
        a number confirms once the condition has lasted that long; None waits for an
        explicit confirm() (e.g. a dwell that also needs a second fix)."""
        slot = f"{type_}/{subkey}"
        cur = st["open"].get(slot)
        if cur is not None:
            if evidence:
                _add(cur["ep"], evidence)
            return dict(cur)
        ep = Episode(
            subject=ctx.config.subject,
            rule=self.name,
            type=type_,
            subkey=subkey,
            start=t,
            version=self.version,
            confirmed_t=t if grace_s == 0 else PENDING,
            severity=severity,
            details=dict(details or {}),
        )
        if evidence:
            ep.add_evidence(evidence)
        due = None if grace_s is None else t + grace_s
        st["open"][slot] = {"ep": ep.to_dict(), "due": due}
        return dict(st["open"][slot])

    def is_open(self, st: dict[str, Any], type_: str, subkey: str) -> bool:
        return f"{type_}/{subkey}" in st["open"]

    def slot(self, st: dict[str, Any], type_: str, subkey: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = st["open"].get(f"{type_}/{subkey}")
        return found

    def confirm(self, st: dict[str, Any], type_: str, subkey: str, t: int) -> None:
        cur = self.slot(st, type_, subkey)
        if cur is not None and cur["ep"]["confirmed_t"] == PENDING:
            cur["ep"]["confirmed_t"] = t

    def evidence(
        self, st: dict[str, Any], type_: str, subkey: str, item: Mapping[str, Any]
    ) -> None:
        cur = self.slot(st, type_, subkey)
        if cur is not None:
            _add(cur["ep"], item)

    def end(
        self,
        st: dict[str, Any],
        ctx: Context,
        type_: str,
        subkey: str,
        end: int,
        closed_t: int,
        evidence: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Episode | None:
        """Close the episode; emit it if it was confirmed (else it was a near miss)."""
        cur = st["open"].pop(f"{type_}/{subkey}", None)
        if cur is None:
            return None
        due = cur["due"]
        if cur["ep"]["confirmed_t"] == PENDING and due is not None and due < end:
            cur["ep"]["confirmed_t"] = due
        if cur["ep"]["confirmed_t"] == PENDING:
            return None
        ep = Episode.from_dict(cur["ep"])
        ep.end, ep.closed_t = max(end, ep.start), closed_t
        if evidence:
            ep.add_evidence(evidence)
        if details:
            ep.details.update(details)
        ctx.emit(ep)
        return ep

    def _confirm_due(self, st: dict[str, Any], to: int) -> None:
        for cur in st["open"].values():
            due = cur["due"]
            if cur["ep"]["confirmed_t"] == PENDING and due is not None and due < to:
                cur["ep"]["confirmed_t"] = due


def instant(
    rule: Rule,
    ctx: Context,
    type_: str,
    subkey: str,
    obs: Obs,
    details: Mapping[str, Any] | None = None,
    severity: str = "high",
) -> None:
    """An episode with no duration (an overflow, a security event)."""
    ep = Episode(
        subject=ctx.config.subject,
        rule=rule.name,
        type=type_,
        subkey=subkey,
        start=obs.t,
        version=rule.version,
        confirmed_t=obs.t,
        end=obs.t,
        closed_t=obs.t,
        severity=severity,
        details=dict(details or {}),
    )
    ep.add_evidence(obs.evidence())
    ctx.emit(ep)


def _add(ep: dict[str, Any], item: Mapping[str, Any]) -> None:
    from backend.rules.model import add_evidence

    add_evidence(ep["evidence"], item)
