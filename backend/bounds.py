"""The plausible bounds of everything a user or a device gives the system — times, spans,
sizes and counts — in one place, with the pydantic types that enforce them at the API
(docs/security.md, "Plausibility bounds", lists each and what happens beyond it).

Beyond a bound, an API request gets a 4xx whose detail says which bound in a sentence, and a
device's frame is a counted rejection; nothing stored is touched either way. The bounds are
not only hygiene: each one caps work. An order dated 1970 once made the rules walk every day
since then inside one write transaction and stopped alerts for every unit."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field, WithJsonSchema

DAY_S = 86_400
YEAR_S = 365 * DAY_S

# ---- times ------------------------------------------------------------------------------------

# Every time anyone sends lies before 2100-01-01 UTC. Far beyond any order, and it keeps every
# date within what the calendar code handles in every time zone (2^40 s is past year 9999).
LATEST_S = 4_102_444_800
# Orders, equipment assignments and curfew exceptions are dated within ten years either side
# of backend now: a case entered years after it began is plausible, 1970 is a typo.
RECORD_PAST_S = 10 * YEAR_S
RECORD_AHEAD_S = 10 * YEAR_S
# One curfew exception (an authorised absence, an extra curfew) spans at most this long.
EXCEPTION_MAX_S = 366 * DAY_S
# A device frame with calendar time (TIME_VALID) is dated at most this far ahead of backend
# now (GNSS time is exact; this absorbs an unsynchronised backend clock) ...
FRAME_AHEAD_S = 3600
# ... and at most this far behind it: a tag's flash holds about three weeks of fixes and a
# home unit's queue less; frames are kept 90 days by default. Older is a broken clock (or a
# receiver's placeholder date), and the rules never look further back than this.
FRAME_AGE_S = 90 * DAY_S

# ---- sizes and counts -------------------------------------------------------------------------

# Per subject, what its evaluation reads on every frame.
MAX_ORDERS = 20
MAX_CURFEWS = 28  # four windows a day, every day
MAX_EXCEPTIONS = 500
MAX_ZONES = 50
# A zone's geometry: vertices over all its rings, and rings (the outline plus holes).
MAX_ZONE_VERTICES = 2_000
MAX_ZONE_RINGS = 16
# Outcomes recorded per subject (backend/services/outcomes.py) and the length of their note.
MAX_OUTCOMES = 20
MAX_OUTCOME_NOTE = 2_000
# Cohort figures (backend/services/research.py): an aggregate count from 1 to below this is
# suppressed (shown as null), so that no figure singles out a handful of people.
MIN_CELL_COUNT = 5


# ---- pydantic types ---------------------------------------------------------------------------

# A query's or a report's time: Unix seconds before LATEST_S.
Time = Annotated[int, Field(ge=0, lt=LATEST_S, description="Unix seconds (before 2100)")]


def record_time_problem(name: str, t: int, now: float) -> str | None:
    """Why `t` is not a plausible date for an order, assignment or exception (None if it
    is): a sentence for the caller."""
    if not now - RECORD_PAST_S <= t <= now + RECORD_AHEAD_S:
        return f"{name} must be within ten years of today (Unix seconds)"
    return None


def _position(p: list[float]) -> list[float]:
    if not all(math.isfinite(v) for v in p):
        raise ValueError("coordinates must be finite numbers")
    if not (-180 <= p[0] <= 180 and -90 <= p[1] <= 90):
        raise ValueError("a position is [longitude -180..180, latitude -90..90]")
    return p


_NUMBER: dict[str, Any] = {"type": "number"}
# A GeoJSON position: [lon, lat] or [lon, lat, altitude], finite numbers (never strings or
# booleans: the models that use it are strict).
Position = Annotated[
    list[float],
    Field(min_length=2, max_length=3),
    AfterValidator(_position),
    WithJsonSchema(
        {
            "type": "array",
            "minItems": 2,
            "maxItems": 3,
            "prefixItems": [
                {"type": "number", "minimum": -180, "maximum": 180},
                {"type": "number", "minimum": -90, "maximum": 90},
                _NUMBER,
            ],
            "items": _NUMBER,
            "description": "[lon, lat] or [lon, lat, altitude]",
        }
    ),
]
