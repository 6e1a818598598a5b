"""Inclusion-zone exit and exclusion-zone entry (version 2), and fast sampling near
exclusion zones.

Against GPS drift (Traccar's flapping geofences) each fix is judged with the accuracy the
track lets us believe: with d the signed distance from the fix to the zone's edge (negative
inside) and a that accuracy,

- *inside with confidence*  when d <= -k·a   (the whole accuracy circle is inside);
- *outside with confidence* when d >= k·a + hysteresis_m;
- anything between changes nothing by itself.

The accuracy believed for a fix is the track's (track.py): the reported accuracy, inflated
where the fix is further from the last one the track explained than both accuracies and the
wearer's motion allow (multipath). Such a fix is "unexplained".

An exclusion entry (or an inclusion exit) opens a pending episode at the first fix inside
with confidence, dated from the moment of crossing — interpolated along the segment from the
fix before, not the time of the first fix seen inside. While pending it keeps a balance of
support: +1 for each fix inside with confidence, -1 for each fix on the other side of the
edge that the track explains (an unexplained one, a multipath jump, counts for nothing); it
ends as a near miss when the balance reaches 0, or when no fix has been inside with
confidence for `evidence_gap_s`. It is confirmed at a fix inside with confidence once
`dwell_s` (zone's own dwell, else the default for its kind) has passed since the crossing
with at least `min_fixes` such fixes: consecutive evidence within a bounded time, so stray
multipath fixes minutes apart never add up. Once confirmed, only a fix outside with
confidence ends it (drift at the edge cannot flap), dated at the crossing on the line from
the visit's last fix on the wrong side of the edge, however many doubted fixes came between.

Sparse fixes: when two consecutive fixes are both outside an exclusion zone but the straight
segment between them crosses it for at least `dwell_s` (at the segment's average speed) and
`min_cross_m`, a pass-through episode is raised (details.pass_through), provided the fixes
are at most `max_gap_s` apart. A visit that ends unconfirmed is judged the same way on the
segment from the fix before it to the fix that ended it, so a fix inside never removes a
pass-through the outside fixes prove. Fixes implying more than `max_speed_mps` from the
previous accepted fix are dropped as jumps (stuck or multipath GNSS; counted in the state).

A fix within `near_m` of an exclusion zone asks the tag (a COMMAND with cmd_config
CFG_FAST_UNTIL) to sample fast for `fast_for_s`; the sink sends it for live data only.

Zones with a schedule apply only inside their weekly windows; an open episode ends at the
first fix after its zone's window has closed.

Vectorized: prepare() projects the run's fixes and asks the zones' STRtree for every
(fix, zone) pair within reach in one query, and for every segment that intersects a zone in
another; the per-fix fold then only looks at those pairs.

A `Trace` given to the rule records its judgement of every fix it looks at and the visits it
let go (near misses): the web UI's zone preview runs this very rule over a subject's stored
fixes and shows them, so the preview cannot drift from what the rule raises.

docs/rules.md ("Zone edges: what buffer to give") has the measured false-entry rates by
distance outside the edge and GNSS error, and detection by visit length."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np

from backend.rules import track, visit
from backend.rules.base import PENDING, Context, Rule
from backend.rules.geo import EXCLUSION, INCLUSION, ZoneIndex, ZoneSpec
from backend.rules.model import Obs
from backend.rules.schedule import active_at
from backend.rules.track import ask_fast, is_jump, usable

ENTRY = "exclusion_entry"
EXIT = "inclusion_exit"


@dataclass(frozen=True)
class ZoneParams:
    exclusion_dwell_s: int = 60
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
    move_mps: float = 2.5  # how fast a wearer may have moved on foot, unseen by the track
    reanchor_fixes: int = 3  # unexplained fixes in a row that move the anchor
    evidence_gap_s: int = 120  # a pending entry without a fix inside for this long ends


class Here(NamedTuple):
    """The fix being judged: where it is and the accuracy believed for it."""

    obs: Obs
    x: float
    y: float
    acc: float  # believed: the reported accuracy, inflated where the track contradicts it
    consistent: bool  # the track explains the fix with its reported accuracy


@dataclass(frozen=True)
class Judgement:
    """What the fold made of one fix against one zone (a Trace records them)."""

    ref: str  # the fix (Obs.ref)
    zone: int  # the zone's id
    accuracy_m: float  # the accuracy believed for the fix (inflated where the track doubts it)
    wrong: bool  # on the wrong side of the edge with confidence (a breach sample, if active)
    right: bool  # on the right side with confidence
    active: bool  # the zone's schedule applies at the fix's time


@dataclass(frozen=True)
class NearMiss:
    """A visit that opened a pending episode and ended without alerting: too short, too few
    fixes, or not supported by the track."""

    zone: int
    start: int  # the crossing
    end: int
    fixes: int  # fixes inside with confidence


@dataclass
class Trace:
    """What the fold decided, fix by fix, and the visits it let go: for a caller that shows
    the rule's reasoning (the zone preview). The engine's own runs keep none."""

    judged: list[Judgement] = field(default_factory=list)
    near_misses: list[NearMiss] = field(default_factory=list)


class Zones(Rule):
    name = "zones"
    version = 2
    Params = ZoneParams

    def __init__(self, params: ZoneParams | None = None, trace: Trace | None = None) -> None:
        super().__init__(params)
        self.trace = trace

    def initial(self, config: Any, start: int) -> dict[str, Any]:
        # last: the last accepted fix [t, x, y, believed accuracy, ref]; anchor: the last fix
        # the track explained [t, x, y, accuracy, speed] and odd, the unexplained ones since;
        # zone: per zone index, a visit (a fix on the wrong side of its edge): its crossing
        # time, confident fixes, support balance, last confident fix, the fix before it and
        # its last fix on the wrong side.
        return {
            "open": {},
            "last": None,
            "anchor": None,
            "odd": 0,
            "zone": {},
            "fast_until": 0,
            "jumps": 0,
        }

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
        if is_jump(prev, obs.t, x, y, acc, self.p.max_speed_mps):
            st["jumps"] += 1
            return
        believed = track.believed(
            st, obs.t, x, y, acc, self.p.move_mps, self.p.max_speed_mps, self.p.reanchor_fixes
        )
        consistent = believed == acc
        near = self._near(ctx, obs, x, y, acc)
        cross = self._cross(ctx, prev, obs, x, y) if prev is not None else {}
        # Only zones the fix could be entering, zones already entered, and zones the segment
        # from the previous fix crosses need judging; the rest are merely near (fast sampling).
        edge = self.p.k * believed + self.p.hysteresis_m
        candidates = {z for z, d in near.items() if d < edge} | set(cross)
        candidates |= {int(z) for z in st["zone"]}
        if "inclusion" not in ctx.cache:
            ctx.cache["inclusion"] = {i for i, s in enumerate(index.specs) if s.kind == INCLUSION}
        candidates |= ctx.cache["inclusion"]
        here = Here(obs, x, y, believed, consistent)
        for zi in sorted(candidates):
            self._judge(st, ctx, here, index, zi, near.get(zi), prev, cross.get(zi))
        self._fast(st, ctx, obs, index, near, acc)
        st["last"] = [obs.t, x, y, believed, obs.ref]

    def _judge(
        self,
        st: dict[str, Any],
        ctx: Context,
        here: Here,
        index: ZoneIndex,
        zi: int,
        d: float | None,
        prev: list[Any] | None,
        seg: tuple[float, float] | None,
    ) -> None:
        obs = here.obs
        spec = index.specs[zi]
        excl = spec.kind == EXCLUSION
        type_ = ENTRY if excl else EXIT
        dist = float("inf") if d is None else d
        inside = dist <= -self.p.k * here.acc
        outside = dist >= self.p.k * here.acc + self.p.hysteresis_m
        wrong, right = (inside, outside) if excl else (outside, inside)
        # Which side of the edge the fix itself is on, whatever its accuracy.
        over = dist <= 0 if excl else dist > 0
        key = str(zi)
        zs = _visit(st["zone"].get(key))
        active = not spec.schedule or active_at(spec.schedule, obs.t)
        confirmed = zs is not None and self._confirmed(st, type_, spec, zs)
        slot = "" if zs is None else f"{spec.id}@{zs['since']}"
        if self.trace is not None:
            self.trace.judged.append(Judgement(obs.ref, spec.id, here.acc, wrong, right, active))
        if zs is not None and not confirmed and visit.stale(zs, obs.t, self.p.evidence_gap_s):
            # Nothing has supported it for too long: a near miss, and this fix starts afresh.
            self.end(st, ctx, type_, slot, obs.t, obs.t)
            self._missed(spec, zs, obs.t)
            del st["zone"][key]
            zs = None
        if zs is not None:
            # Unconfirmed, a fix on the right side of the edge that the track does not
            # contradict counts against it (visit.py). Confirmed, only a confident fix on the
            # right side ends it (drift at the edge cannot flap).
            spent = not confirmed and not over and here.consistent and visit.refute(zs)
            if (right and confirmed) or spent or not active:
                end = obs.t if over else self._left(ctx, here, zi, zs["over"])
                self.end(st, ctx, type_, slot, end, obs.t, evidence=obs.evidence())
                if not confirmed:
                    self._missed(spec, zs, end)
                del st["zone"][key]
                if not confirmed and not over and active:
                    self._chord(st, ctx, here, index, zi, zs)
            else:
                if over:
                    zs["over"] = [obs.t, here.x, here.y, here.acc, obs.ref]
                if wrong:
                    self._support(st, ctx, obs, spec, type_, zs)
            return
        if not over:
            if excl and active and seg is not None and prev is not None:
                self._pass_through(st, ctx, here, spec, prev, seg)
            return
        if not active:
            return
        since = obs.t
        if prev is not None and seg is not None:
            f = seg[0] if excl else seg[1]
            since = int(prev[0] + f * (obs.t - prev[0]))
        fix = [obs.t, here.x, here.y, here.acc, obs.ref]
        zs = visit.opened(since, obs.t, before=prev, over=fix)
        st["zone"][key] = zs
        if wrong:
            self._support(st, ctx, obs, spec, type_, zs)

    def _support(
        self,
        st: dict[str, Any],
        ctx: Context,
        obs: Obs,
        spec: ZoneSpec,
        type_: str,
        zs: dict[str, Any],
    ) -> None:
        """A fix confidently on the wrong side: open the pending episode (at the crossing),
        count it, and confirm once the dwell has passed with min_fixes of them."""
        slot = f"{spec.id}@{zs['since']}"
        visit.support(zs, obs.t)
        if zs["n"] == 1:
            self.begin(
                st,
                ctx,
                type_,
                slot,
                zs["since"],
                grace_s=None,
                evidence=obs.evidence(),
                details={"zone": spec.id, "zone_name": spec.name},
            )
            before = zs["before"]
            if before is not None:
                self.evidence(st, type_, slot, {"t": before[0], "ref": before[4], "name": "fix"})
        else:
            self.evidence(st, type_, slot, obs.evidence())
        if visit.due(zs, obs.t, zs["n"], self.p.min_fixes, self.dwell(spec)):
            self.confirm(st, type_, slot, obs.t)

    def _left(self, ctx: Context, here: Here, zi: int, over: list[Any] | None) -> int:
        """When the visit ended: where the straight line from its last fix on the wrong side
        of the edge to this one crosses it (a fix between them the track could not explain
        does not move it), else now."""
        if over is None:
            return here.obs.t
        seg = self._cross(ctx, over, here.obs, here.x, here.y).get(zi)
        if seg is None:
            return here.obs.t
        f = seg[1] if ctx.config.zone_index.specs[zi].kind == EXCLUSION else seg[0]
        return int(over[0] + f * (here.obs.t - over[0]))

    def _confirmed(
        self, st: dict[str, Any], type_: str, spec: ZoneSpec, zs: dict[str, Any]
    ) -> bool:
        cur = self.slot(st, type_, f"{spec.id}@{zs['since']}")
        return cur is not None and cur["ep"]["confirmed_t"] != PENDING

    def _chord(
        self,
        st: dict[str, Any],
        ctx: Context,
        here: Here,
        index: ZoneIndex,
        zi: int,
        zs: dict[str, Any],
    ) -> None:
        """A visit that ended unconfirmed: the straight line from the fix before it to this
        one may still prove a pass-through, as it would have with no fix between them."""
        before = zs["before"]
        spec = index.specs[zi]
        if before is None or spec.kind != EXCLUSION:
            return
        seg = self._cross(ctx, before, here.obs, here.x, here.y).get(zi)
        if seg is not None:
            self._pass_through(st, ctx, here, spec, before, seg)

    def _pass_through(
        self,
        st: dict[str, Any],
        ctx: Context,
        here: Here,
        spec: ZoneSpec,
        prev: list[Any],
        seg: tuple[float, float],
    ) -> None:
        obs, x, y = here.obs, here.x, here.y
        gap = obs.t - prev[0]
        if gap <= 0 or gap > self.p.max_gap_s:
            return
        length = math.hypot(x - prev[1], y - prev[2])
        inside_m = (seg[1] - seg[0]) * length
        inside_s = (seg[1] - seg[0]) * gap
        if inside_m < self.p.min_cross_m or inside_s < self.dwell(spec):
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

    def _missed(self, spec: ZoneSpec, zs: dict[str, Any], end: int) -> None:
        if self.trace is not None and zs["n"] > 0:
            self.trace.near_misses.append(NearMiss(spec.id, zs["since"], end, zs["n"]))

    def dwell(self, spec: ZoneSpec) -> int:
        """How long a visit must last to alert: the zone's own dwell, else its kind's."""
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
        if close:
            ask_fast(st, ctx, obs.device, obs.t, obs.ref, self.p.fast_for_s, "near exclusion zone")


def _visit(zs: dict[str, Any] | None) -> dict[str, Any] | None:
    """A zone's visit state (in, pending or confirmed), with what version 1 did not keep
    filled in: its confident fixes as support, the visit's start as the last of them, no
    fix before it to judge a pass-through by nor last fix inside to date its end from."""
    if zs is not None and "support" not in zs:
        zs.update(support=zs["n"], last=zs["since"], before=None, over=None)
    return zs
