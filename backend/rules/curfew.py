"""Curfew (version 1): must be at home during weekly windows in local civil time.

Where the subject is comes from the latest evidence in event time:
- home-unit presence: home (the unit hears the tag) / away (dated at the last beacon that
  kept the tag home — the best evidence of when they left, docs/home-unit.md);
- the tag's mode record switching to RF on a home acknowledgement (home), and fixes with
  source RF-home (home);
- GNSS fixes against the subject's home zone (a `home` zone): inside the zone is home,
  outside it by more than the fix's accuracy plus `hysteresis_m` is away; a fix in between,
  or one with worse accuracy than `max_accuracy_m`, changes nothing (drift at the edge).
  Away from GNSS needs two such fixes in a row (dated from the first): indoors one multipath
  fix lands 100 m off with a good HDOP, and at rest the next fix is an hour later.

Away is evidence only while the tag is heard from: when a window opens and the tag's last
contact (any record of its own, or the home unit hearing it) is older than the comms-loss
threshold (the order's `comms_loss_s`, else `stale_s`), where the subject is is unknown — a
tag that went flat in the morning says nothing about the evening. The late return is then
held: once the tag is heard from again in the window (it comes home, or reports from
outside) it stands, from the window's start with the usual grace; a tag never heard from
again raises no late return (the comms-loss rule reports the silence). Version 2.

Alert types (sub-key: the local date the window starts on, i.e. the curfew night):
- `curfew_late_return`: not home when the window opens, still not home `grace_s` later;
  ends at the return (or the window's end);
- `curfew_breach`: left home during the window and away for longer than `grace_s`;
- `curfew_home_unit_offline`: the home unit is offline (link last will) during the window
  for longer than `offline_grace_s`, so presence cannot be known.

Windows come from SubjectConfig.curfews (backend/rules/schedule.py handles DST), minus
`excused` exceptions (authorised absence), plus `extra` ones. An absence shorter than the
grace is a near miss and raises nothing.

Parameters: `grace_s` 600 (a per-subject SubjectConfig.curfew_grace_s overrides it),
`offline_grace_s` 900, `hysteresis_m` 15, `max_accuracy_m` 100, `stale_s` 7200."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.rules.base import ALWAYS, Context, Rule
from backend.rules.config import SubjectConfig
from backend.rules.geo import ZoneIndex
from backend.rules.model import HOME_UNIT, TAG, Obs
from backend.rules.schedule import local_date, subtract
from firmware import frame as fr

LATE = "curfew_late_return"
BREACH = "curfew_breach"
OFFLINE = "curfew_home_unit_offline"
HOME, AWAY, UNKNOWN = "home", "away", "unknown"
LOOKAHEAD_S = 2 * 86400  # how far ahead the next window boundary is looked for


@dataclass(frozen=True)
class CurfewParams:
    grace_s: int = 600
    offline_grace_s: int = 900
    hysteresis_m: float = 15.0
    max_accuracy_m: float = 100.0
    stale_s: int = 7200  # as the comms rule's default threshold


def windows(config: SubjectConfig, t0: int, t1: int) -> list[tuple[int, int, str]]:
    """Curfew intervals overlapping [t0, t1): (start, end, night id), sorted."""
    out: list[tuple[int, int, str]] = []
    excused = [(x.start, x.end) for x in config.exceptions if x.kind == "excused"]
    for w in config.curfews:
        for s, e, night in w.windows(t0, t1):
            out += [(a, b, night) for a, b in subtract([(s, e)], excused)]
    for x in config.exceptions:
        if x.kind == "extra" and x.start < t1 and x.end > t0:
            out.append((x.start, x.end, local_date(x.start, config.tz).isoformat()))
    return sorted(set(out))


class Curfew(Rule):
    name = "curfew"
    version = 2
    Params = CurfewParams

    def initial(self, config: SubjectConfig, start: int) -> dict[str, Any]:
        return {
            "open": {},
            "loc": UNKNOWN,
            "offline": False,
            "win": None,
            "t": None,
            "nb": None,
            "contact": None,
            "away_fix": None,  # the first of a run of GNSS fixes away (needs a second)
            "away_ev": None,
        }

    def _grace(self, ctx: Context) -> int:
        g = ctx.config.curfew_grace_s
        return self.p.grace_s if g is None else g

    def advance(self, st: dict[str, Any], ctx: Context, to: int) -> None:
        if not ctx.config.curfews and not ctx.config.exceptions:
            return
        if st["t"] is None:
            # First look: if monitoring starts inside a window, that window is in force.
            st["t"] = to - 1
            inside = [w for w in windows(ctx.config, to - 1, to) if w[0] < to - 1 < w[1]]
            st["win"] = list(inside[0]) if inside else None
        t = st["t"]
        if to <= t:
            return
        if st.get("nb") is not None and to <= st["nb"]:
            st["t"] = to  # no window opens or closes before `to`: the common case
            super().advance(st, ctx, to)
            return
        # Boundaries in [t, to), in time order: window ends first at the same second.
        events: list[tuple[int, int, tuple[int, int, str]]] = []
        for w in windows(ctx.config, t - 1, to):
            if t <= w[0] < to:
                events.append((w[0], 1, w))
            if t <= w[1] < to:
                events.append((w[1], 0, w))
        for at, kind, w in sorted(events):
            if kind == 0:
                self._close_window(st, ctx, at)
            else:
                self._open_window(st, ctx, w)
        st["t"] = to
        ahead = [b for w in windows(ctx.config, to, to + LOOKAHEAD_S) for b in w[:2] if b >= to]
        st["nb"] = min(ahead) if ahead else to + LOOKAHEAD_S
        super().advance(st, ctx, to)

    def due(self, st: dict[str, Any], ctx: Context) -> int | None:
        if not ctx.config.curfews and not ctx.config.exceptions:
            return None  # advance() does nothing at all
        if st["t"] is None or st.get("nb") is None:
            return ALWAYS  # the first look decides which window is in force
        # Nothing opens or closes up to nb (the fast path); pending graces run out on their own.
        cands: list[int | None] = [int(st["nb"]) + 1, self._pending_due(st)]
        return min(c for c in cands if c is not None)

    def _stale(self, ctx: Context) -> int:
        return ctx.config.comms_loss_s or self.p.stale_s

    def _open_window(self, st: dict[str, Any], ctx: Context, w: tuple[int, int, str]) -> None:
        st["win"] = list(w)
        ws, _, night = w
        if st["loc"] == AWAY:
            # Heard from lately: away stands and the grace runs. Silent for longer than the
            # comms-loss threshold: the late return waits for the tag to be heard from again
            # (its grace then counts from the window's start); never heard, it raises nothing.
            contact = st.get("contact")
            silent = contact is not None and ws - contact > self._stale(ctx)
            self.begin(
                st,
                ctx,
                LATE,
                night,
                ws,
                grace_s=None if silent else self._grace(ctx),
                details={"window": [w[0], w[1]]},
            )
        if st["offline"]:
            self.begin(
                st,
                ctx,
                OFFLINE,
                night,
                ws,
                grace_s=self.p.offline_grace_s,
                details={"window": [w[0], w[1]]},
                severity="medium",
            )

    def _close_window(self, st: dict[str, Any], ctx: Context, at: int) -> None:
        night = st["win"][2] if st["win"] else None
        st["win"] = None
        if night is None:
            return
        for type_ in (LATE, BREACH, OFFLINE):
            self.end(st, ctx, type_, night, at, at, details={"window_ended": True})

    def _where(self, ctx: Context, obs: Obs) -> str | None:
        heard = ctx.config.presence(obs)
        if heard is not None:
            return HOME if heard else AWAY
        if obs.role != TAG:
            return None
        if obs.name == "mode" and obs.v("mode") == 1 and obs.v("reason") == 1:
            return HOME
        if obs.name != "fix":
            return None
        if obs.v("source") == fr.SOURCE_RF_HOME:
            return HOME  # the firmware sends these with fix type 0 (not a GNSS fix)
        if obs.v("fix_type") == 0:
            return None
        acc = obs.v("acc_dm") / 10
        index = ctx.config.home_index
        if index.tree is None or acc > self.p.max_accuracy_m:
            return None
        known = ctx.cache.get("curfew_home")
        if known is not None and obs.ref in known:
            judged: str | None = known[obs.ref]  # prepare() judged every fix of the run
            return judged
        proj = index.proj
        x, y = proj.xy(obs.v("lat_e7") / 1e7, obs.v("lon_e7") / 1e7)
        return self._judge(index, np.array([float(x)]), np.array([float(y)]), [acc])[0]

    def _judge(self, index: ZoneIndex, x: Any, y: Any, acc: list[float]) -> list[str | None]:
        """Home (inside a home zone), away (farther than accuracy + hysteresis from every
        home zone) or None (in between: no change), for each point."""
        reach = np.asarray(acc) + self.p.hysteresis_m + 1
        pi, _, d = index.near(x, y, reach)
        out: list[str | None] = [AWAY] * len(acc)
        for p, dist in zip(pi.tolist(), d.tolist(), strict=True):
            if dist <= 0:
                out[p] = HOME
            elif out[p] is AWAY:
                out[p] = None
        return out

    def prepare(self, st: dict[str, Any], ctx: Context, batch: Sequence[Obs]) -> None:
        """Judge all the run's GNSS fixes against the home zones in one tree query."""
        index = ctx.config.home_index
        fixes = [
            o
            for o in batch
            if o.name == "fix"
            and o.role == TAG
            and o.v("fix_type") != 0
            and o.v("source") != 1
            and o.v("acc_dm") / 10 <= self.p.max_accuracy_m
        ]
        if index.tree is None or not fixes:
            return
        lat = np.fromiter((o.v("lat_e7") for o in fixes), float, len(fixes)) / 1e7
        lon = np.fromiter((o.v("lon_e7") for o in fixes), float, len(fixes)) / 1e7
        x, y = index.proj.xy(lat, lon)
        judged = self._judge(index, x, y, [o.v("acc_dm") / 10 for o in fixes])
        ctx.cache["curfew_home"] = {o.ref: w for o, w in zip(fixes, judged, strict=True)}

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        if obs.role == HOME_UNIT:
            if obs.name == "link":
                st["offline"] = obs.v("state") == 0
            else:
                st["offline"] = False  # any other frame proves the unit is connected
            win = st["win"]
            if win is not None:
                if st["offline"]:
                    self.begin(
                        st,
                        ctx,
                        OFFLINE,
                        win[2],
                        obs.t,
                        grace_s=self.p.offline_grace_s,
                        evidence=obs.evidence(),
                        severity="medium",
                    )
                else:
                    self.end(st, ctx, OFFLINE, win[2], obs.t, obs.t, evidence=obs.evidence())
        where = self._where(ctx, obs)
        if obs.role == TAG or (where == HOME and obs.role == HOME_UNIT):
            st["contact"] = obs.t
            held = self.slot(st, LATE, st["win"][2]) if st["win"] is not None else None
            if held is not None and held["due"] is None:
                held["due"] = held["ep"]["start"] + self._grace(ctx)
        if where is None:
            return
        since = obs.t
        if where == AWAY and obs.name == "fix" and st["loc"] != AWAY:
            # One fix away is not enough: indoors a multipath fix can land 100 m off with a
            # good HDOP. Away from GNSS takes two in a row (no home evidence between), and
            # then dates from the first; a subject really out gives a fix a minute.
            first = st.get("away_fix")
            if first is None:
                st["away_fix"], st["away_ev"] = obs.t, obs.evidence()
                return
            since = first
        first_ev = st.get("away_ev")
        st["away_fix"], st["away_ev"] = None, None
        st["loc"] = where
        win = st["win"]
        if win is None:
            return
        night = win[2]
        if where == HOME:
            for type_ in (LATE, BREACH):
                self.end(st, ctx, type_, night, obs.t, obs.t, evidence=obs.evidence())
        elif self.is_open(st, LATE, night):
            self.evidence(st, LATE, night, obs.evidence())
        else:
            late = since < win[0]  # away since before the window opened: a late return
            self.begin(
                st,
                ctx,
                LATE if late else BREACH,
                night,
                win[0] if late else since,
                grace_s=self._grace(ctx),
                evidence=first_ev or obs.evidence(),
                details={"window": [win[0], win[1]]},
            )
            if first_ev:
                self.evidence(st, LATE if late else BREACH, night, obs.evidence())
