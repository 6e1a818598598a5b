"""Motion without a fix — shielding (version 1).

The tag runs the "motion no GPS" logic itself (firmware/motion.py: minutes of motion without
a fix, the wearer told to go outside, then escalation) and reports each stage in a
motion_no_fix record. The alert is raised at `alert_stage` (2, escalated: the wearer was
told and the grace ran out) and ends when the tag reports the condition cleared or sends a
GNSS fix.

Parameters: `alert_stage` 2 (1 would alert as soon as the wearer is notified)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.rules.base import Context, Rule
from backend.rules.model import TAG, Obs

TYPE = "motion_no_fix"


@dataclass(frozen=True)
class MotionParams:
    alert_stage: int = 2


class MotionNoFix(Rule):
    name = "motion"
    version = 1
    Params = MotionParams

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        if obs.role != TAG:
            return
        sub = str(obs.device)
        if obs.name == "motion_no_fix":
            stage = obs.v("stage")
            if stage >= self.p.alert_stage:
                self.begin(
                    st,
                    ctx,
                    TYPE,
                    sub,
                    obs.t,
                    evidence=obs.evidence(),
                    details={"minutes": obs.v("minutes")},
                )
            elif stage == 0:
                self.end(st, ctx, TYPE, sub, obs.t, obs.t, evidence=obs.evidence())
        elif obs.name == "fix" and obs.v("source") == 0 and obs.v("fix_type") > 0:
            self.end(st, ctx, TYPE, sub, obs.t, obs.t, evidence=obs.evidence())
