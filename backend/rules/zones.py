"""Inclusion-zone exit and exclusion-zone entry (version 1), and fast sampling near
exclusion zones.

Against GPS drift (Traccar's flapping geofences) each fix is judged with its own accuracy:
with d the signed distance from the fix to the zone's edge (negative inside) and a its
estimated accuracy,

- *inside with confidence*  when d <= -k·a   (the whole accuracy circle is inside);
- *outside with confidence* when d >= k·a + hysteresis_m;
- anything between changes nothing.

An exclusion entry (or an inclusion exit) opens a pending episode at the moment of
crossing — interpolated along the segment from the previous fix, not the time of the first
fix seen inside — and is confirmed once the subject has been on the wrong side for
`dwell_s` (zone's own dwell, else the default for its kind) with at least `min_fixes`
confident fixes. It ends at the interpolated crossing back. A pending episode that ends
before it is confirmed is a near miss and raises nothing.

Sparse fixes: when two consecutive fixes are both outside an exclusion zone but the straight
segment between them crosses it for at least `dwell_s` (at the segment's average speed) and
`min_cross_m`, a pass-through episode is raised (details.pass_through), provided the fixes
are at most `max_gap_s` apart. Fixes implying more than `max_speed_mps` from the previous
accepted fix are dropped as jumps (stuck or multipath GNSS; counted in the state).

A fix within `near_m` of an exclusion zone asks the tag (a COMMAND with cmd_config
CFG_FAST_UNTIL) to sample fast for `fast_for_s`; the sink sends it for live data only.

Zones with a schedule apply only inside their weekly windows; an open episode ends at the
first fix after its zone's window has closed.

Vectorized: prepare() projects the run's fixes and asks the zones' STRtree for every
(fix, zone) pair within reach in one query, and for every segment that intersects a zone in
another; the per-fix fold then only looks at those pairs.

Parameters: `exclusion_dwell_s` 30, `inclusion_dwell_s` 60, `min_fixes` 2, `k` 1.0,
`hysteresis_m` 10, `max_accuracy_m` 100, `max_speed_mps` 70, `max_gap_s` 900,
`min_cross_m` 20, `near_m` 300, `fast_for_s` 900."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from backend.rules.base import Context, Rule
from backend.rules.geo import EXCLUSION, INCLUSION, ZoneIndex, ZoneSpec
from backend.rules.model import TAG, Command, Obs
from backend.rules.schedule import active_at
from firmware import frame as fr

ENTRY = "exclusion_entry"
EXIT = "inclusion_exit"


@dataclass(frozen=True)
class ZoneParams:
    exclusion_dwell_s: int = 30
    inclusion_dwell_s: int = 60
    min_fixes: int = 2
    k: float = 1.0
    hysteresis_m: float = 10.0
    max_accuracy_m: float = 100.0
    max_speed_mps: float = 70.0
    max_gap_s: int = 900
    min_cross_m: float = 20.0
    near_m: float = 300.0
    fast_for_s: int = 900


def usable(obs: Obs, max_accuracy_m: float) -> bool:
    return (
        obs.name == "fix"
        and obs.role == TAG
        and obs.v("source") == fr.SOURCE_GNSS
        and obs.v("fix_type") > 0
        and obs.v("acc_dm") / 10 <= max_accuracy_m
    )


class Zones(Rule):
    name = "zones"
    version = 1
    Params = ZoneParams

    def initial(self, config: Any, start: int) -> dict[str, Any]:
        # last: the last accepted fix [t, x, y, acc]; zone: per zone id, "in" (on the
        # wrong side, pending or confirmed) with entry time and fix count.
        return {"open": {}, "last": None, "zone": {}, "fast_until": 0, "jumps": 0}

    # ---- vectorized precomputation over the run ----------------------------------------

    def prepare(self, st: dict[str, Any], ctx: Context, batch: Sequence[Obs]) -> None:
        index = ctx.config.zone_index
        fixes = [o for o in batch if usable(o, self.p.max_accuracy_m)]
        near: dict[str, list[tuple[int, float]]] = {}
        cross: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
        ctx.cache["zones"] = (near, cross)
        if index.tree is None or not fixes:
            return
        lat = np.fromiter((o.v("lat_e7") for o in fixes), float, len(fixes)) / 1e7
        lon = np.fromiter((o.v("lon_e7") for o in fixes), float, len(fixes)) / 1e7
        acc = np.fromiter((o.v("acc_dm") for o in fixes), float, len(fixes)) / 10
        x, y = index.proj.xy(lat, lon)
        reach = self.p.k * acc + self.p.hysteresis_m + self.p.near_m + 1
        pi, zi, d = index.near(x, y, reach)
        for p, z, dist in zip(pi.tolist(), zi.tolist(), d.tolist(), strict=True):
            near.setdefault(fixes[p].ref, []).append((z, dist))
        if len(fixes) > 1:
            for s, z, f0, f1 in index.crossings(x[:-1], y[:-1], x[1:], y[1:]):
                key = (fixes[s].ref, fixes[s + 1].ref)
                cross.setdefault(key, []).append((z, f0, f1))
        # The segments judged above join each fix to the next one in the batch. The fold's
        # previous fix is another one when a fix between was dropped (a jump, or outside the
        # subject's monitoring): that segment was never asked and must be, not assumed clear.
        ctx.cache["zones_next"] = {a.ref: b.ref for a, b in pairwise(fixes)}
        ctx.cache["zones_xy"] = {
            o.ref: (float(a), float(b)) for o, a, b in zip(fixes, x, y, strict=True)
        }

    def _near(self, ctx: Context, obs: Obs, x: float, y: float, acc: float) -> dict[int, float]:
        near, _ = ctx.cache.get("zones", ({}, {}))
        if obs.ref in near:
            return dict(near[obs.ref])
        if "zones_xy" in ctx.cache and obs.ref in ctx.cache["zones_xy"]:
            return {}  # precomputed: nothing within reach
        index = ctx.config.zone_index
        reach = self.p.k * acc + self.p.hysteresis_m + self.p.near_m + 1
        _, zi, d = index.near(np.array([x]), np.array([y]), reach)
        return dict(zip(zi.tolist(), d.tolist(), strict=True))

    def _cross(
        self, ctx: Context, prev: list[Any], obs: Obs, x: float, y: float
    ) -> dict[int, tuple[float, float]]:
        _, cross = ctx.cache.get("zones", ({}, {}))
        key = (prev[4], obs.ref)
        if key in cross:
            return {z: (f0, f1) for z, f0, f1 in cross[key]}
        if ctx.cache.get("zones_next", {}).get(prev[4]) == obs.ref:
            return {}  # precomputed: this very segment crosses nothing
        index = ctx.config.zone_index
        hits = index.crossings(
            np.array([prev[1]]), np.array([prev[2]]), np.array([x]), np.array([y])
        )
        return {z: (f0, f1) for _, z, f0, f1 in hits}

    # ---- the fold --------------------------------------------------------------------

    def apply(self, st: dict[str, Any], ctx: Context, obs: Obs) -> None:
        if not usable(obs, self.p.max_accuracy_m):
            return
        index = ctx.config.zone_index
        if index.tree is None:
            return
        acc = obs.v("acc_dm") / 10
        xy = ctx.cache.get("zones_xy", {}).get(obs.ref)
        if xy is None:
            px, py = index.proj.xy(obs.v("lat_e7") / 1e7, obs.v("lon_e7") / 1e7)
            xy = (float(px), float(py))
        x, y = xy
        prev = st["last"]
        if prev is not None and obs.t > prev[0]:
            dist = float(np.hypot(x - prev[1], y - prev[2]))
            slack = acc + prev[3]
            if dist > slack and (dist - slack) / (obs.t - prev[0]) > self.p.max_speed_mps:
                st["jumps"] += 1
                return
        near = self._near(ctx, obs, x, y, acc)
        cross = self._cross(ctx, prev, obs, x, y) if prev is not None else {}
        # Only zones the fix could be entering, zones already entered, and zones the segment
        # from the previous fix crosses need judging; the rest are merely near (fast sampling).
        edge = self.p.k * acc + self.p.hysteresis_m
        candidates = {z for z, d in near.items() if d < edge} | set(cross)
        candidates |= {int(z) for z in st["zone"]}
        if "inclusion" not in ctx.cache:
            ctx.cache["inclusion"] = {i for i, s in enumerate(index.specs) if s.kind == INCLUSION}
        candidates |= ctx.cache["inclusion"]
        here = (obs, x, y, acc)
        for zi in sorted(candidates):
            self._judge(st, ctx, here, index, zi, near.get(zi), prev, cross.get(zi))
        self._fast(st, ctx, obs, index, near, acc)
        st["last"] = [obs.t, x, y, acc, obs.ref]

    def _judge(
        self,
        st: dict[str, Any],
        ctx: Context,
        here: tuple[Obs, float, float, float],
        index: ZoneIndex,
        zi: int,
        d: float | None,
        prev: list[Any] | None,
        seg: tuple[float, float] | None,
    ) -> None:
        obs, _, _, acc = here
        spec = index.specs[zi]
        type_ = ENTRY if spec.kind == EXCLUSION else EXIT
        sub = str(spec.id)
        dist = float("inf") if d is None else d
        inside = dist <= -self.p.k * acc
        outside = dist >= self.p.k * acc + self.p.hysteresis_m
        wrong, right = (inside, outside) if spec.kind == EXCLUSION else (outside, inside)
        zs = st["zone"].get(str(zi))
        active = not spec.schedule or active_at(spec.schedule, obs.t)
        if zs is not None:
            if right or not active:
                end = obs.t
                if prev is not None and seg is not None and right:
                    f = seg[1] if spec.kind == EXCLUSION else seg[0]
                    end = int(prev[0] + f * (obs.t - prev[0]))
                self.end(
                    st, ctx, type_, f"{sub}@{zs['since']}", end, obs.t, evidence=obs.evidence()
                )
                del st["zone"][str(zi)]
            elif wrong:
                zs["n"] += 1
                slot = f"{sub}@{zs['since']}"
                self.evidence(st, type_, slot, obs.evidence())
                if zs["n"] >= self.p.min_fixes and obs.t - zs["since"] >= self._dwell(spec):
                    self.confirm(st, type_, slot, obs.t)
            return
        if not active:
            return
        if wrong:
            since = obs.t
            if prev is not None and seg is not None:
                f = seg[0] if spec.kind == EXCLUSION else seg[1]
                since = int(prev[0] + f * (obs.t - prev[0]))
            st["zone"][str(zi)] = {"since": since, "n": 1}
            self.begin(
                st,
                ctx,
                type_,
                f"{sub}@{since}",
                since,
                grace_s=None,
                evidence=obs.evidence(),
                details={"zone": spec.id, "zone_name": spec.name},
            )
            if prev is not None and seg is not None:
                self.evidence(
                    st, type_, f"{sub}@{since}", {"t": prev[0], "ref": prev[4], "name": "fix"}
                )
            if self.p.min_fixes <= 1 and obs.t - since >= self._dwell(spec):
                self.confirm(st, type_, f"{sub}@{since}", obs.t)
        elif spec.kind == EXCLUSION and seg is not None and prev is not None:
            self._pass_through(st, ctx, here, spec, prev, seg)

    def _pass_through(
        self,
        st: dict[str, Any],
        ctx: Context,
        here: tuple[Obs, float, float, float],
        spec: ZoneSpec,
        prev: list[Any],
        seg: tuple[float, float],
    ) -> None:
        obs, x, y, _ = here
        gap = obs.t - prev[0]
        if gap <= 0 or gap > self.p.max_gap_s:
            return
        length = float(np.hypot(x - prev[1], y - prev[2]))
        inside_m = (seg[1] - seg[0]) * length
        inside_s = (seg[1] - seg[0]) * gap
        if inside_m < self.p.min_cross_m or inside_s < self._dwell(spec):
            return
        start = int(prev[0] + seg[0] * gap)
        sub = f"{spec.id}@{start}"
        self.begin(
            st,
            ctx,
            ENTRY,
            sub,
            start,
            details={
                "zone": spec.id,
                "zone_name": spec.name,
                "pass_through": True,
                "inside_m": round(inside_m, 1),
            },
            evidence={"t": prev[0], "ref": prev[4], "name": "fix"},
        )
        self.end(st, ctx, ENTRY, sub, int(prev[0] + seg[1] * gap), obs.t, evidence=obs.evidence())

    def _dwell(self, spec: ZoneSpec) -> int:
        if spec.dwell_s is not None:
            return spec.dwell_s
        dwell: int = (
            self.p.exclusion_dwell_s if spec.kind == EXCLUSION else self.p.inclusion_dwell_s
        )
        return dwell

    def _fast(
        self,
        st: dict[str, Any],
        ctx: Context,
        obs: Obs,
        index: ZoneIndex,
        near: dict[int, float],
        acc: float,
    ) -> None:
        close = any(
            index.specs[z].kind == EXCLUSION and d <= self.p.near_m + acc for z, d in near.items()
        )
        if not close or st["fast_until"] >= obs.t + self.p.fast_for_s // 2:
            return
        st["fast_until"] = obs.t + self.p.fast_for_s
        if ctx.live:
            ctx.commands.append(
                Command(
                    obs.device,
                    fr.CFG_FAST_UNTIL,
                    st["fast_until"],
                    "near exclusion zone",
                    obs.ref,
                    self.p.fast_for_s // 2,
                )
            )
