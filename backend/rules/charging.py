"""Not charged per schedule (version 1).

UK location tags must be charged at least an hour a day (REFERENCES.md). The tag's battery
records carry a charging flag; the time between a record with the flag and the next one
without it is charging time, counted per local civil day (SubjectConfig.tz, so a day is 23
or 25 hours across a clock change). A day that ends with less than the subject's schedule
(SubjectConfig.charge_min_minutes) is one episode spanning that day. Counting starts at the
first local midnight after monitoring starts (the order's start, or the first tag's fitting
if later, or where the evaluation begins), so a partial first day is never judged, and no
day before a tag was worn; nor is the day in which the orders end, nor any after it.

Parameters: `max_gap_s` 21600 — a charging stretch with no battery record for longer than
this counts only up to it (a tag that died on the charger did not charge all night)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta
from functools import lru_cache
from typing import Any

from backend.rules.base import Context, Rule
from backend.rules.config import SubjectConfig
from backend.rules.model import TAG, Obs
from backend.rules.schedule import local_date, to_unix

TYPE = "not_charged"
CHARGING = 0x01


@dataclass(frozen=True)
class ChargingParams:
    max_gap_s: int = 21600


@lru_cache(maxsize=4096)  # advance() asks for the same day's end on every step
def _next_midnight(t: int, tz: str) -> int:
    d = local_date(t, tz) + timedelta(days=1)
    return to_unix(d, time(0, 0), tz)


class Charging(Rule):
    name = "charging"
    version = 1
    Params = ChargingParams

    def initial(self, config: SubjectConfig, start: int) -> dict[str, Any]:
        fitted = config.fitted
        if config.start is None or fitted is None:
            day = None
        else:
            day = _next_midnight(max(config.start, fitted, start), config.tz)
        return {"open": {}, "day": day, "secs": 0, "since": None, "last": None}

    def _credit(self, st: dict[str, Any], upto: int) -> None:
        since = st["since"]
        if since is None or st["day"] is None:
            return
        stop = min(upto, since + self.p.max_gap_s)
        st["secs"] += max(0, stop - max(since, st["day"]))

    def advance(self, st: dict[str, Any], ctx: Context, to: int) -> None:
        need = ctx.config.charge_min_minutes
        while st["day"] is not None:
            day_end = _next_midnight(st["day"], ctx.config.tz)
            if not ctx.config.monitored(day_end - 1):
                # The orders end within the day: no part-day is judged (as none is at the
                # start), nor any day after.
                st["day"] = None
                break
            if day_end >= to:
                break
            self._credit(st, day_end)
            if need is not None and st["secs"] < need * 60:
                date = local_date(st["day"], ctx.config.tz).isoformat()
                self.begin(
                    st,
                    ctx,
                    TYPE,
                    date,
                    st["day"],
                    grace_s=0,
                    severity="medium",
                    details={"charged_minutes": st["secs"] // 60, "required_minutes": need},
                )
                self.end(st, ctx, TYPE, date, day_end, day_end)
            st["day"], st["secs"] = day_end, 0

    def due(self, st: dict[str, Any], ctx: Context) -> int | None:
        # The day is judged once `to` passes its end; nothing else is time-driven (episodes
        # begin and end in the same step, and advance() keeps no pending graces).
        return None if st["day"] is None else _next_midnight(st["day"], ctx.config.tz) + 1

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        if obs.role != TAG or obs.name != "battery":
            return
        if st["day"] is None:
            st["day"] = _next_midnight(obs.t, ctx.config.tz)
        charging = bool(obs.v("flags") & CHARGING)
        if st["since"] is not None:
            self._credit(st, obs.t)
            st["since"] = obs.t if charging else None
        elif charging:
            st["since"] = obs.t
