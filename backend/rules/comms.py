"""No data from the tag — comms loss (version 1).

Contact is anything the tag itself sent, or a frame from the subject's home unit while it
reports the tag at home (the unit hears the tag's beacons; the tag is in RF mode and
uploads nothing of its own). When event time passes `threshold_s` after the last contact,
an episode starts, dated at the last contact; the next contact ends it.

The threshold is per order (SubjectConfig.comms_loss_s), defaulting to `threshold_s`.
Between data it is the backend clock (the horizon, see engine.py) that moves time on, so
the alert comes threshold_s after the last contact even if nothing else arrives — and a
backlog that later shows the tag was recording all along clears it (late data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.rules.base import Context, Rule
from backend.rules.config import SubjectConfig
from backend.rules.model import HOME_UNIT, TAG, Obs

TYPE = "comms_loss"


@dataclass(frozen=True)
class CommsParams:
    threshold_s: int = 7200


class CommsLoss(Rule):
    name = "comms"
    version = 1
    Params = CommsParams

    def initial(self, config: SubjectConfig, start: int) -> dict[str, Any]:
        # Counting starts when monitoring does: the order's start, or the tag's fitting if
        # that is later (a tag cannot be silent before it is worn, nor without one), and
        # never before the evaluation does.
        fitted = config.fitted
        last = None if fitted is None else max(fitted, start, config.start or fitted)
        return {"open": {}, "last": last, "home": False}

    def _threshold(self, ctx: Context) -> int:
        return ctx.config.comms_loss_s or self.p.threshold_s

    def advance(self, st: dict[str, Any], ctx: Context, to: int) -> None:
        last = st["last"]
        if last is not None and not st["open"] and last + self._threshold(ctx) < to:
            self.begin(
                st,
                ctx,
                TYPE,
                "tag",
                last,
                grace_s=self._threshold(ctx),
                details={"threshold_s": self._threshold(ctx)},
                severity="medium",
            )
        super().advance(st, ctx, to)

    def due(self, st: dict[str, Any], ctx: Context) -> int | None:
        cands = [self._pending_due(st)]
        if st["last"] is not None and not st["open"]:
            cands.append(st["last"] + self._threshold(ctx) + 1)  # begins once last + t < to
        return min((c for c in cands if c is not None), default=None)

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        if obs.name == "presence":
            st["home"] = obs.v("state") == 1
        contact = obs.role == TAG or (obs.role == HOME_UNIT and st["home"])
        if obs.name == "security" or (obs.name == "link" and obs.v("state") == 0):
            contact = False  # a refused frame or the unit's last will proves nothing
        if not contact:
            return
        self.end(st, ctx, TYPE, "tag", obs.t, obs.t, evidence=obs.evidence())
        st["last"] = obs.t if st["last"] is None else max(st["last"], obs.t)
