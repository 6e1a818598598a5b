"""Home unit power loss, tamper and offline (version 1).

From the home unit's own HOME_DATA records:
- `home_power` mains 0 starts a power-loss episode (the unit runs on its backup cell), mains
  1 ends it; alerts after `power_grace_s` so a brief cut or a plug moved does not.
- `home_tamper` (kind 1 moved, 2 case; state 1) starts an episode per kind, state 0 ends it.
- `link` offline starts an offline episode, alerting after `offline_grace_s`; link online or
  any other frame from the unit ends it. The offline record is the MQTT last will the broker
  publishes when the unit's connection dies; it was signed at connect time, so the sink
  dates it at the backend time the will was received (docs/home-unit.md, "Link status").

Parameters: `power_grace_s` 300, `offline_grace_s` 900."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.rules.base import Context, Rule
from backend.rules.model import HOME_UNIT, Obs

TAMPER_TYPES = {1: "home_unit_moved", 2: "home_unit_case"}


@dataclass(frozen=True)
class HomeUnitParams:
    power_grace_s: int = 300
    offline_grace_s: int = 900


class HomeUnit(Rule):
    name = "home_unit"
    version = 1
    Params = HomeUnitParams

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        if obs.role != HOME_UNIT:
            return
        sub = str(obs.device)
        ev = obs.evidence()
        if obs.name == "link" and obs.v("state") == 0:
            self.begin(
                st,
                ctx,
                "home_unit_offline",
                sub,
                obs.t,
                grace_s=self.p.offline_grace_s,
                evidence=ev,
            )
            return
        # Anything else the unit sends proves it is connected again.
        self.end(st, ctx, "home_unit_offline", sub, obs.t, obs.t, evidence=ev)
        if obs.name == "home_power":
            if obs.v("mains") == 0:
                self.begin(
                    st,
                    ctx,
                    "home_power_loss",
                    sub,
                    obs.t,
                    grace_s=self.p.power_grace_s,
                    evidence=ev,
                    severity="medium",
                )
            else:
                self.end(st, ctx, "home_power_loss", sub, obs.t, obs.t, evidence=ev)
        elif obs.name == "home_tamper":
            type_ = TAMPER_TYPES.get(obs.v("kind"))
            if type_ is None:
                return
            if obs.v("state") == 1:
                self.begin(st, ctx, type_, sub, obs.t, evidence=ev)
            else:
                self.end(st, ctx, type_, sub, obs.t, obs.t, evidence=ev)
