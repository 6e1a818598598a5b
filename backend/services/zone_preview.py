"""The zone preview: what the zone rule would have found for a zone being drawn, over a
subject's stored fixes in a window. It runs the rule itself (backend/rules/zones.py) through
the evaluator, over an in-memory repository holding the very observations the rule reads in
production (SqlRepository.observations, fixes only), with the subject's real configuration
(equipment, orders, time zone) and the drawn zone as its only zone. So margins, hysteresis,
the accuracy believed for doubtful fixes, dwell, schedules, crossings interpolated between
fixes and pass-throughs are the rule's, never a copy of it.

What it answers: each fix the rule judged that was a breach sample (confidently on the wrong
side of the edge while the zone's schedule applies) or within the edge's uncertain band,
with its distance to the edge; the episodes the rule raised (`would_alert`), and the visits
it opened and let go without alerting (near misses)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection

from backend.rules.engine import NEVER, Engine
from backend.rules.evaluator import LOOKBACK_S, Evaluator, MemoryRepository
from backend.rules.geo import ZoneIndex, ZoneSpec
from backend.rules.model import TAG, Obs
from backend.rules.store import SqlRepository, load_config
from backend.rules.track import usable
from backend.rules.zones import Trace, Zones

# The drawn zone has no id yet: it is zone 0 in the rule's configuration.
DRAWN = 0


@dataclass(frozen=True)
class Fix:
    t: int
    lat: float
    lon: float
    accuracy_m: float  # as the device reported it
    distance_m: float  # signed distance to the zone's edge, < 0 inside
    breach: bool
    scheduled: bool


@dataclass(frozen=True)
class Episode:
    start: int
    end: int  # the end, or (ongoing) the last fix counted in it
    fixes: int  # breach samples within it (none for a pass-through between two fixes)
    would_alert: bool
    pass_through: bool
    ongoing: bool  # still going at the window's end


@dataclass(frozen=True)
class Preview:
    checked: int  # fixes in the window the rule could use
    dwell_s: int
    fixes: list[Fix]
    episodes: list[Episode]


def preview(
    conn: Connection, subject_id: int, zone: ZoneSpec, start: int, end: int, now: float
) -> Preview:
    spec = dataclasses.replace(zone, id=DRAWN)
    config = dataclasses.replace(load_config(conn, subject_id), zones=[spec])
    fixes = [
        o
        for o in SqlRepository(conn, now).observations(config, start, end + 1)
        if o.name == "fix" and o.role == TAG
    ]
    trace = Trace()
    rule = Zones(trace=trace)
    repo = MemoryRepository()
    repo.store(fixes)
    # One run from the window's start (never further back than the evaluator looks), with
    # no snapshots: nothing is kept.
    evaluator = Evaluator(repo, Engine([rule], snapshot_every_s=NEVER), max_run_s=LOOKBACK_S + 1)
    evaluator.observe(config, fixes, end)
    checked = [
        o
        for o in fixes
        if usable(o, rule.p.max_accuracy_m)
        and config.monitored(o.t)
        and config.role_of(o.device, o.t) == TAG
    ]
    distance = _distances(config.zone_index, checked)
    by_ref = {o.ref: o for o in checked}
    shown: list[Fix] = []
    breaches: list[int] = []
    for j in trace.judged:
        o = by_ref.get(j.ref)
        if o is None:
            continue
        breach = j.wrong and j.active
        if breach:
            breaches.append(o.t)
        if breach or not (j.wrong or j.right):
            shown.append(
                Fix(
                    t=o.t,
                    lat=o.v("lat_e7") / 1e7,
                    lon=o.v("lon_e7") / 1e7,
                    accuracy_m=o.v("acc_dm") / 10,
                    distance_m=round(distance[o.ref], 1),
                    breach=breach,
                    scheduled=j.active,
                )
            )
    episodes = [
        _episode(ep.start, ep.end, ep.evidence, ep.details, breaches)
        for ep in sorted(repo.episodes.values(), key=lambda e: (e.start, e.key))
    ]
    episodes += [Episode(m.start, m.end, m.fixes, False, False, False) for m in trace.near_misses]
    episodes.sort(key=lambda e: (e.start, e.end))
    return Preview(len(checked), rule.dwell(spec), shown, episodes)


def _episode(
    start: int,
    end: int | None,
    evidence: list[dict[str, Any]],
    details: dict[str, Any],
    breaches: list[int],
) -> Episode:
    last = end
    if last is None:
        last = max([start, *(int(e["t"]) for e in evidence if "t" in e)])
    inside = sum(1 for t in breaches if start <= t <= last)
    return Episode(start, last, inside, True, bool(details.get("pass_through")), end is None)


def _distances(index: ZoneIndex, fixes: list[Obs]) -> dict[str, float]:
    """Each fix's signed distance to the drawn zone's edge (the zone index's own measure),
    however far: reach beyond the farthest fix. None for a zone the rule does not judge (a
    home zone: presence is the home unit's to tell)."""
    if not fixes or index.tree is None:
        return {}
    lat = np.array([o.v("lat_e7") / 1e7 for o in fixes])
    lon = np.array([o.v("lon_e7") / 1e7 for o in fixes])
    x, y = index.proj.xy(lat, lon)
    reach = float(np.hypot(x, y).max()) + 1e6
    pi, _zi, d = index.near(np.asarray(x, float), np.asarray(y, float), reach)
    out = dict.fromkeys((o.ref for o in fixes), float("inf"))
    for p, dist in zip(pi.tolist(), d.tolist(), strict=True):
        out[fixes[p].ref] = float(dist)
    return out
