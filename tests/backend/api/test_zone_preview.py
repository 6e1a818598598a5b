"""The zone preview runs the zone rule itself: over the same stored fixes, the episodes it
says would alert are exactly the alerts the rules engine raises once that zone is saved —
an entry dated at the edge crossing interpolated between two fixes, and a pass-through
between two fixes that both lie outside — and a visit the rule lets go is shown as not
alerting. On SQLite and PostgreSQL, with the fixes sent as signed frames through ingest."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from backend.clock import ManualClock
from backend.storage.schema import alert_episodes
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import UNIT_A, World
from tests.backend.conftest import ENGINES
from tests.backend.investigations.scenario import Fix, Stage, at

TAG = 5101
PURPOSE = {"purpose": "checking a new exclusion zone"}


def _zone() -> dict[str, Any]:
    """A 100 m exclusion circle around the scenario's origin."""
    lat_e7, lon_e7 = at(0, 0)
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon_e7 / 1e7, lat_e7 / 1e7]},
        "properties": {"name": "town centre", "kind": "exclusion", "radius_m": 100},
    }


def _fixes(t: int) -> list[Fix]:
    """Three visits along the x axis at a walking 2 m/s:
    - an entry: a fix 20 m outside the edge, then 30 s later one 40 m inside (the crossing
      lies between them), three fixes inside, and out again (an alert, dated at the
      crossings);
    - a pass-through: two fixes 300 m either side of the centre, 400 s apart — the line
      between them spends 100 s inside, longer than the dwell (an alert, no fix inside);
    - a brief look inside: one fix inside between two outside (a near miss)."""
    entry = [Fix(t + 30 * i, -120 + 60 * i, 0) for i in range(6)]  # -120 .. 180
    through = [Fix(t + 1800, -400, 0), Fix(t + 2200, 400, 0)]
    glance = [Fix(t + 3600 + 30 * i, x, 0) for i, x in enumerate((-120, -60, -120))]
    return entry + through + glance


@pytest.mark.parametrize("api_engine", ENGINES, indirect=True)
def test_the_preview_finds_what_the_rule_raises_on_the_same_fixes(
    client: TestClient, world: World, api_engine: Engine, api_clock: ManualClock
) -> None:
    officer = bearer(login(client, world.user(UNIT_A, "officer")))
    sid = world.subjects["A-1"]
    t = int(api_clock.now()) - 7200
    stage = Stage(api_engine, api_clock, rules=True)
    stage.device(TAG, "tag")
    stage.assign(sid, TAG, "tag", t - 3600)
    window = {"start": t - 600, "end": t + 4000}

    # Drawn before saving: the preview over the stored fixes.
    stage.deliver(stage.fixes(TAG, _fixes(t), per_frame=1), t + 3700)
    r = client.post(
        f"/api/web/subjects/{sid}/zone-preview",
        json={"zone": _zone(), **window},
        params=PURPOSE,
        headers=officer,
    )
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["checked"] == 11 and preview["dwell_s"] == 60

    # Saved: the rules engine evaluates the subject's stored data with it.
    r = client.post(f"/api/subjects/{sid}/zones", json=_zone(), headers=officer)
    assert r.status_code == 201, r.text
    stage.deliver(stage.fixes(TAG, [Fix(t + 3900, -400, 0)]), t + 3950)
    with api_engine.connect() as conn:
        raised = conn.execute(
            select(alert_episodes.c.start, alert_episodes.c.end, alert_episodes.c.details).where(
                alert_episodes.c.subject_id == sid,
                alert_episodes.c.type == "exclusion_entry",
                alert_episodes.c.cleared_at.is_(None),
            )
        ).all()
    rule = sorted((r.start, r.end, bool(r.details.get("pass_through"))) for r in raised)
    alerting = [e for e in preview["episodes"] if e["would_alert"]]
    assert [(e["start"], e["end"], e["pass_through"]) for e in alerting] == rule
    entry, through = alerting

    # The entry starts at the crossing between the fix outside and the first inside, not at
    # the first fix seen inside; it counts the three breach samples.
    assert t < entry["start"] < t + 30 and not entry["pass_through"]
    assert t + 90 < entry["end"] < t + 120 and entry["fixes"] == 3
    # The pass-through has no fix inside at all: the rule saw the line cross the zone.
    assert t + 1800 < through["start"] < through["end"] < t + 2200
    assert through["pass_through"] and through["fixes"] == 0
    # The brief look: the rule opened a visit and let it go.
    missed = [e for e in preview["episodes"] if not e["would_alert"]]
    assert [(e["fixes"], e["pass_through"]) for e in missed] == [(1, False)]
    assert t + 3600 < missed[0]["start"] < t + 3630
    # Breach samples are the rule's: inside beyond the accuracy, while the zone applies.
    breaches = [f for f in preview["fixes"] if f["breach"]]
    assert [f["t"] for f in breaches] == [t + 30, t + 60, t + 90, t + 3630]
    assert all(f["distance_m"] <= -f["accuracy_m"] and f["scheduled"] for f in breaches)
