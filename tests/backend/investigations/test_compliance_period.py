"""The compliance report counts only what was monitored, in local civil days: a tag fitted
mid-week in the week the clocks go back (Sunday 26 October 2025, 02:00 BST -> 01:00 GMT),
the report asked for the whole week and made before its end — on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert

from backend.clock import ManualClock
from backend.investigations import reports as rp
from backend.rules import store
from backend.services import units
from backend.storage.schema import HOME_UNIT, TAG, curfews
from tests.backend.investigations.scenario import Stage

LONDON = ZoneInfo("Europe/London")
TAG_ID, UNIT_ID = 7101, 7102


def local(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=LONDON).timestamp())


def test_only_the_fitted_period_counts_across_the_clock_change(engine: Engine) -> None:
    week = (local("2025-10-22 00:00"), local("2025-10-29 00:00"))
    fitted = local("2025-10-24 12:00")
    now = local("2025-10-27 22:00")  # the Monday night's curfew is under way
    stage = Stage(engine, ManualClock(now))
    with engine.begin() as conn:
        unit = units.create(conn, "DST unit", "police", now)
    sid = stage.subject("DST-1", unit)
    stage.device(UNIT_ID, HOME_UNIT)
    stage.device(TAG_ID, TAG, home_unit=UNIT_ID)
    stage.order(sid, local("2025-10-20 09:00"))  # the order began before the fitting
    stage.assign(sid, TAG_ID, TAG, fitted)
    stage.assign(sid, UNIT_ID, HOME_UNIT, fitted)
    with engine.begin() as conn:
        conn.execute(insert(curfews).values(
            subject_id=sid, days="mon,tue,wed,thu,fri,sat,sun", start="19:00", end="07:00",
            tz="Europe/London", created_at=now))  # fmt: skip
        store.bump_config(conn, sid, now)
    with engine.connect() as conn:
        rep = rp.compliance(conn, sid, *week, now)

    assert rep.monitored == [(fitted, now)]
    nights = [(n.night, n.start, n.end, n.status) for n in rep.nights]
    # Nothing before the fitting (the night of the 23rd ended at 07:00 on the 24th, before
    # it); the night the clocks go back is 12 hours on the clock and 13 elapsed; the
    # Monday night is in progress, neither kept nor broken.
    assert nights == [
        ("2025-10-24", local("2025-10-24 19:00"), local("2025-10-25 07:00"), "kept"),
        ("2025-10-25", local("2025-10-25 19:00"), local("2025-10-26 07:00"), "kept"),
        ("2025-10-26", local("2025-10-26 19:00"), local("2025-10-27 07:00"), "kept"),
        ("2025-10-27", local("2025-10-27 19:00"), local("2025-10-28 07:00"), "in_progress"),
    ]
    assert rep.nights[1].end - rep.nights[1].start == 13 * 3600
    summary = rep.summary()
    assert (summary["curfew_nights_kept"], summary["curfew_nights_in_progress"]) == (3, 1)
    assert summary["curfew_nights_broken"] == 0
    assert summary["monitored_s"] == now - fitted
    # Whole local days monitored throughout and over: the 25th and the 25-hour 26th; not
    # the fitting day, not the unfinished 27th, not the days before.
    assert [d.day for d in rep.charging] == ["2025-10-25", "2025-10-26"]
    # Nothing away from home can have been expected before the fitting or after now.
    assert rep.completeness is not None and rep.completeness.away_s == now - fitted

    rows = list(csv.reader(io.StringIO(rp.compliance_csv(rep).decode())))
    assert ["monitored", "2025-10-24 12:00 BST", "2025-10-27 22:00 GMT", ""] in rows
    night = next(r for r in rows if r[:2] == ["curfew_night", "2025-10-25"])
    assert night[2] == "kept"
    assert "from=2025-10-25 19:00 BST to=2025-10-26 07:00 GMT" in night[3]
    assert next(r for r in rows if r[:2] == ["curfew_night", "2025-10-27"])[2] == "in_progress"
    html = rp.compliance_html(rep)
    assert "2025-10-25 19:00 BST to 2025-10-26 07:00 GMT" in html and "in progress" in html
    assert "2025-10-22" not in html.split("<h2>Curfew nights</h2>")[1].split("</table>")[0]


def test_a_subject_never_fitted_in_the_period_has_nothing_to_count(engine: Engine) -> None:
    now = local("2025-10-27 22:00")
    stage = Stage(engine, ManualClock(now))
    with engine.begin() as conn:
        unit = units.create(conn, "DST unit", "police", now)
    sid = stage.subject("DST-2", unit)
    stage.order(sid, local("2025-10-20 09:00"))
    with engine.begin() as conn:
        conn.execute(insert(curfews).values(
            subject_id=sid, days="mon,tue,wed,thu,fri,sat,sun", start="19:00", end="07:00",
            tz="Europe/London", created_at=now))  # fmt: skip
        store.bump_config(conn, sid, now)
    with engine.connect() as conn:
        rep = rp.compliance(conn, sid, local("2025-10-20 00:00"), local("2025-10-27 00:00"), now)
    assert rep.monitored == [] and rep.nights == [] and rep.charging == []
    assert rep.summary()["curfew_nights"] == 0
    assert "nothing: no tag was fitted" in rp.compliance_html(rep)
