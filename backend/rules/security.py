"""Security events from ingest (version 2): frames refused because their MAC did not verify,
or replayed long after the original; records refused because their sender may not make them
(a home unit's presence report for a tag not paired with it then, `not_paired`; a home
unit's record in a tag's frame, `home_record`: backend/registry.py, Pairings).

Ingest writes every refusal to security_events with the backend time it happened; the sink
attributes those naming a device assigned to the subject and hands them in as `security`
observations. A burst is one episode: refusals of the same reason from the same device
within `window_s` of each other join the open episode (its details count them) instead of
each raising its own alert.

Parameters: `reasons` ("mac", "replay", "not_paired", "home_record"), `window_s` 3600."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.registry import HOME_RECORD, NOT_PAIRED
from backend.rules.base import Context, Rule
from backend.rules.model import SECURITY, Obs

TYPE = "security_event"


@dataclass(frozen=True)
class SecurityParams:
    reasons: tuple[str, ...] = ("mac", "replay", NOT_PAIRED, HOME_RECORD)
    window_s: int = 3600


class Security(Rule):
    name = "security"
    version = 2
    Params = SecurityParams

    def initial(self, config: Any, start: int) -> dict[str, Any]:
        return {"open": {}, "last": {}}

    def advance(self, st: dict[str, Any], ctx: Context, to: int) -> None:
        for slot in sorted(st["open"]):
            sub = slot.split("/", 1)[1]
            last = st["last"][sub]
            if last + self.p.window_s < to:
                self.end(st, ctx, TYPE, sub, last, last + self.p.window_s)
                del st["last"][sub]

    def due(self, st: dict[str, Any], ctx: Context) -> int | None:
        # An open burst ends once `to` passes its last refusal + window_s.
        ends = [st["last"][slot.split("/", 1)[1]] + self.p.window_s + 1 for slot in st["open"]]
        return min(ends) if ends else None

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        if obs.name != SECURITY or obs.detail.split(":", 1)[0] not in self.p.reasons:
            return
        reason = obs.detail.split(":", 1)[0]
        sub = f"{obs.device}/{reason}"
        cur = self.begin(
            st,
            ctx,
            TYPE,
            sub,
            obs.t,
            evidence=obs.evidence(),
            details={"reason": reason, "count": 0},
        )
        slot = self.slot(st, TYPE, sub)
        assert slot is not None and cur is not None
        slot["ep"]["details"]["count"] += 1
        st["last"][sub] = obs.t
