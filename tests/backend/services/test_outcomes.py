"""An outcome's date is checked against the subject's own civil date, as officers record it."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from backend.services import outcomes, subjects
from backend.services.errors import Invalid
from tests.backend.services.conftest import Unit

# 00:30 on 2 July in London is 23:30 on 1 July in UTC.
LONDON_AFTER_MIDNIGHT = datetime(2026, 7, 2, 0, 30, tzinfo=ZoneInfo("Europe/London")).timestamp()


def test_today_is_the_subjects_local_date(unit: Unit) -> None:
    with unit.engine.begin() as conn:
        got = outcomes.record(conn, unit.subject, "completed", date(2026, 7, 2), "", None,
                              unit.officer, LONDON_AFTER_MIDNIGHT)  # fmt: skip
        assert outcomes.get(conn, got).occurred_on == "2026-07-02"
        with pytest.raises(Invalid, match=r"today \(2026-07-02\)"):
            outcomes.record(conn, unit.subject, "completed", date(2026, 7, 3), "", None,
                            unit.officer, LONDON_AFTER_MIDNIGHT)  # fmt: skip
        subjects.update_subject(conn, unit.subject, {"tz": "UTC"}, LONDON_AFTER_MIDNIGHT)
        with pytest.raises(Invalid, match=r"today \(2026-07-01\)"):
            outcomes.record(conn, unit.subject, "completed", date(2026, 7, 2), "", None,
                            unit.officer, LONDON_AFTER_MIDNIGHT)  # fmt: skip
