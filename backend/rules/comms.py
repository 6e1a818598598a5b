"""No data from the tag — comms loss (version 1).

Contact is anything the tag itself sent, or a frame from the subject's home unit while it
reports the tag at home (the unit hears the tag's beacons; the tag is in RF mode and
uploads nothing of its own). When event time passes `threshold_s` after the last contact,
an episode starts, dated at the last contact; the next contact ends it.

The threshold is per order (SubjectConfig.comms_loss_s), defaulting to `threshold_s`. A
silence that would become comms loss only once the orders have ended is none.
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

    def _silent_at(self, st: dict[str, Any], ctx: Context) -> int | None:
        """When the silence since the last contact becomes comms loss; None while an episode
        is open, or if monitoring has ended by then (the order's end: a tag handed back is
        silent, not lost)."""
        last = st["last"]
        if last is None or st["open"]:
            return None
        at = int(last) + self._threshold(ctx)
        return at if ctx.config.monitored(at) else None

    def advance(self, st: dict[str, Any], ctx: Context, to: int) -> None:
        at = self._silent_at(st, ctx)
        if at is not None and at < to:
            self.begin(
                st,
                ctx,
                TYPE,
                "tag",
                st["last"],
                grace_s=self._threshold(ctx),
                details={"threshold_s": self._threshold(ctx)},
                severity="medium",
            )
        super().advance(st, ctx, to)

    def due(self, st: dict[str, Any], ctx: Context) -> int | None:
        at = self._silent_at(st, ctx)
        cands = [self._pending_due(st), None if at is None else at + 1]  # begins once at < to
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
