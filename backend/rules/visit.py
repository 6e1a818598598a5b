"""A pending visit's evidence, as the zone rule (zones.py: the wrong side of a zone's edge) and
the proximity rule (proximity.py: within a distance of a victim's device) both weigh it, so an
approach means the same to both.

A visit opens where a reading first falls on the wrong side of the line, dated at the
crossing (`since`); the rule's episode is pending from the first reading there *with
confidence*. While pending it keeps a balance of support: +1 for each confident reading on the
wrong side, -1 for each reading on the other side of the line that the tracks explain (a
doubted one counts for nothing). It ends as a near miss when the balance reaches 0, or when no
reading has supported it for the rule's evidence gap: stray multipath readings minutes apart
never add up. It is confirmed at a supporting reading once the dwell has passed since the
crossing with at least `min_fixes` readings; once confirmed only a confident reading on the
right side ends it (the rule's own check), so drift at the line cannot flap.

State (JSON, part of the rule's snapshot): since, n (supporting readings), support (the
balance), last (the event time of the last supporting reading or of the opening), unheard
(optional: seconds since last in which no reading was possible), plus what the rule keeps
beside them."""

from __future__ import annotations

from typing import Any


def opened(since: int, t: int, **extra: Any) -> dict[str, Any]:
    """A new visit crossed at `since`, seen at `t`, with nothing supporting it yet."""
    return {"since": since, "n": 0, "support": 0, "last": t, **extra}


def stale(vs: dict[str, Any], t: int, evidence_gap_s: int) -> bool:
    """Nothing has supported the (unconfirmed) visit for longer than the evidence gap, not
    counting `unheard` (seconds since `last` in which nothing could be read at all, kept by a
    rule whose readings need two devices: one of them silent says nothing either way)."""
    return t - int(vs["last"]) - int(vs.get("unheard", 0)) > evidence_gap_s


def support(vs: dict[str, Any], t: int) -> None:
    """A confident reading on the wrong side, at `t`."""
    vs["n"] += 1
    vs["support"] += 1
    vs["last"] = t
    if "unheard" in vs:
        vs["unheard"] = 0


def withdraw(vs: dict[str, Any], k: int) -> None:
    """Take back `k` supporting readings found since to have been no readings (a track's
    spike): neither count nor balance keeps them. A balance so spent ends the visit at its
    next refuting reading or when it goes stale, as any other."""
    vs["n"] -= k
    vs["support"] -= k


def refute(vs: dict[str, Any]) -> bool:
    """An explained reading on the right side: whether the balance is spent (a near miss)."""
    vs["support"] -= 1
    return bool(vs["support"] <= 0)


def due(vs: dict[str, Any], t: int, readings: int, min_fixes: int, dwell_s: int) -> bool:
    """Whether a supporting reading at `t` confirms: the dwell has passed since the crossing
    and `readings` (the rule's count of independent supporting readings) reach min_fixes."""
    return readings >= min_fixes and t - int(vs["since"]) >= dwell_s
