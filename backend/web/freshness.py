"""Whether a subject's equipment is reporting as it should: the time since its last contact
judged against what the tag is expected to send in its current mode, not against one fixed
age (docs/web.md, "Freshness").

- **At home** (the home unit reports the tag present, or the tag's last MODE record is RF):
  the tag takes no GNSS fixes and the home unit speaks for it, with a status report every
  `heartbeat_s` (home_unit/settings.py), so the newest record of either device counts.
- **Moving** (its last two GNSS fixes a few fix intervals apart): a fix a minute, uploaded in
  batches that close at most `batch_s` after their first record (firmware/config.py).
- **At rest**: a fix every `fix_rest_s`, then the batch.
- **Unknown** (no fix yet): only the comms-loss threshold applies.

Late is past the mode's interval plus half of it (at least 5 minutes); silent is past the
comms-loss threshold (the comms rule's, or the subject's order's `comms_loss_s`), when the
comms_loss alert takes over."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, func, select

from backend.rules.comms import CommsParams
from backend.storage.schema import device_events, devices, orders, positions
from firmware.config import DEFAULTS as TAG
from firmware.frame import MODE_RF
from home_unit.settings import HomeUnitSettings

Mode = Literal["home", "moving", "resting", "unknown"]
State = Literal["on_time", "late", "silent"]
MIN_SLACK_S = 300


def _tag(key: str) -> int:
    value = TAG[key]
    assert isinstance(value, int)
    return value


@dataclass(frozen=True)
class Cadence:
    """How often each mode reports (seconds), from the devices' own defaults."""

    home_s: int = int(HomeUnitSettings.model_fields["heartbeat_s"].default)
    moving_s: int = _tag("batch_s")
    resting_s: int = _tag("fix_rest_s") + _tag("batch_s")
    moving_fix_s: int = 3 * _tag("fix_moving_s")  # fixes this close: moving

    def expected_s(self, mode: Mode, silent_after_s: int) -> int:
        return {
            "home": self.home_s,
            "moving": self.moving_s,
            "resting": self.resting_s,
            "unknown": silent_after_s,
        }[mode]


@dataclass(frozen=True)
class Freshness:
    mode: Mode
    last_contact: int | None  # event time of the newest record that speaks for the tag
    expected_s: int  # the mode's reporting interval
    late_after_s: int
    silent_after_s: int
    state: State  # at the time it was judged


def judge(
    mode: Mode, last_contact: int | None, now: float, silent_after_s: int, cadence: Cadence
) -> Freshness:
    expected = cadence.expected_s(mode, silent_after_s)
    late_after = min(silent_after_s, expected + max(expected // 2, MIN_SLACK_S))
    age = None if last_contact is None else now - last_contact
    state: State = (
        "silent"
        if age is None or age > silent_after_s
        else "late"
        if age > late_after
        else "on_time"
    )
    return Freshness(mode, last_contact, expected, late_after, silent_after_s, state)


@dataclass(frozen=True)
class Fitted:
    """A subject's equipment as the live map sees it: its tag, its home unit, and whether
    the home unit last reported the tag present (None: no report)."""

    subject_id: int
    tag: int
    home_unit: int | None
    at_home: bool | None


def read(
    db: Connection,
    subject_id: int,
    tag: int,
    home_unit: int | None,
    at_home: bool | None,
    now: float,
    cadence: Cadence | None = None,
) -> Freshness:
    """The subject's freshness at `now` from what is stored: its tag's mode and newest
    records, its home unit's when the tag is at home, and its orders' comms threshold."""
    fitted = Fitted(subject_id, tag, home_unit, at_home)
    return read_many(db, [fitted], now, cadence)[subject_id]


def read_many(
    db: Connection, fitted: Sequence[Fitted], now: float, cadence: Cadence | None = None
) -> dict[int, Freshness]:
    """`read` for many subjects in two queries, whatever their number (the live map)."""
    if not fitted:
        return {}
    cadence = cadence or Cadence()
    o = orders.c
    comms = {
        int(sid): least
        for sid, least in db.execute(
            select(o.subject_id, func.min(o.comms_loss_s))
            .where(o.subject_id.in_([f.subject_id for f in fitted]), o.comms_loss_s > 0)
            .group_by(o.subject_id)
        )
    }
    e, p, d = device_events.c, positions.c, devices.c
    last_mode = (
        select(e.data)
        .where(e.device == d.id, e.kind == "mode", e.ts.is_not(None))
        .order_by(e.ts.desc(), e.id.desc())
        .limit(1)
        .scalar_subquery()
    )

    def gnss_fix(nth: int) -> Any:
        return (
            select(p.ts)
            .where(p.device == d.id, p.source == 0)
            .order_by(p.ts.desc(), p.id.desc())
            .limit(1)
            .offset(nth)
            .scalar_subquery()
        )

    tags = {f.tag for f in fitted}
    speakers = tags | {f.home_unit for f in fitted if f.home_unit is not None}
    seen = {
        r.id: r
        for r in db.execute(
            select(
                d.id,
                d.last_event_at,
                last_mode.label("last_mode"),
                gnss_fix(0).label("fix0"),
                gnss_fix(1).label("fix1"),
            ).where(d.id.in_(sorted(speakers)))
        )
    }
    out: dict[int, Freshness] = {}
    for f in fitted:
        tag = seen.get(f.tag)
        silent_after = int(comms.get(f.subject_id) or CommsParams.threshold_s)
        mode_data = tag.last_mode if tag is not None else None
        if isinstance(mode_data, str):
            mode_data = json.loads(mode_data)
        rf = isinstance(mode_data, dict) and mode_data.get("mode") == MODE_RF
        home = bool(f.at_home) if f.at_home is not None else rf
        fixes = [int(t) for t in ((tag.fix0, tag.fix1) if tag is not None else ()) if t is not None]
        mode: Mode
        if home:
            mode = "home"
        elif not fixes:
            mode = "unknown"
        elif len(fixes) == 2 and fixes[0] - fixes[1] <= cadence.moving_fix_s:
            mode = "moving"
        else:
            mode = "resting"
        speaking = [f.tag, f.home_unit] if mode == "home" and f.home_unit is not None else [f.tag]
        heard = [seen[s].last_event_at for s in speaking if s in seen]
        candidates = [int(t) for t in (*heard, fixes[0] if fixes else None) if t is not None]
        out[f.subject_id] = judge(
            mode, max(candidates) if candidates else None, now, silent_after, cadence
        )
    return out
