"""Battery low and critical (version 1).

From the tag's battery records (level %, flags: 1 charging, 4 low, 8 critical). An episode
starts when the level falls to the threshold (or the tag flags it) while not charging, and
ends when the tag is charging or the level has risen `recover_pct` above the threshold —
hysteresis, so a level wobbling around 20 % is one episode, not many.

Parameters: `low_pct` 20, `critical_pct` 5, `recover_pct` 5."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.rules.base import Context, Rule
from backend.rules.model import TAG, Obs

CHARGING = 0x01
FLAG_LOW = 0x04
FLAG_CRITICAL = 0x08


@dataclass(frozen=True)
class BatteryParams:
    low_pct: int = 20
    critical_pct: int = 5
    recover_pct: int = 5


class Battery(Rule):
    name = "battery"
    version = 1
    Params = BatteryParams

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        if obs.name != "battery" or obs.role != TAG:
            return
        level, flags = obs.v("level"), obs.v("flags")
        charging = bool(flags & CHARGING)
        sub = str(obs.device)
        for type_, limit, flag, sev in (
            ("battery_low", self.p.low_pct, FLAG_LOW, "medium"),
            ("battery_critical", self.p.critical_pct, FLAG_CRITICAL, "high"),
        ):
            if self.is_open(st, type_, sub):
                if charging or level >= limit + self.p.recover_pct:
                    self.end(st, ctx, type_, sub, obs.t, obs.t, evidence=obs.evidence())
                else:
                    self.evidence(st, type_, sub, obs.evidence())
            elif not charging and (level <= limit or flags & flag):
                self.begin(
                    st,
                    ctx,
                    type_,
                    sub,
                    obs.t,
                    evidence=obs.evidence(),
                    details={"level": level},
                    severity=sev,
                )
