"""Strap and case tamper (version 1).

The tag reports each sensor's transitions (tamper record: sensor 1 strap, 2 case; state 1
open, 0 closed). An open sensor starts an episode at the record's event time; the closing
record ends it. The tag sends tamper records as URGENT frames, so the alert follows the cut
within one upload (NIJ 1004.00: report within 3 minutes).

Parameters: `grace_s` (default 0) — how long a sensor must stay open before it alerts; 0
alerts at once (a strap cut is never a false reading of a closed optical loop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.rules.base import Context, Rule
from backend.rules.model import TAG, Obs

TYPES = {1: "strap_tamper", 2: "case_tamper"}


@dataclass(frozen=True)
class TamperParams:
    grace_s: int = 0


class Tamper(Rule):
    name = "tamper"
    version = 1
    Params = TamperParams

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        if obs.name != "tamper" or obs.role != TAG:
            return
        type_ = TYPES.get(obs.v("sensor"))
        if type_ is None:
            return
        sub = str(obs.device)
        if obs.v("state") == 1:
            self.begin(
                st,
                ctx,
                type_,
                sub,
                obs.t,
                grace_s=self.p.grace_s,
                evidence=obs.evidence(),
                severity="critical",
            )
        else:
            self.end(st, ctx, type_, sub, obs.t, obs.t, evidence=obs.evidence())
