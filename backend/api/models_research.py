"""Pydantic v2 models of evaluation: outcomes officers record for a subject's episode, and
the pseudonymised cohort figures researchers read (docs/api.md, "Evaluation")."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from backend import bounds
from backend.api.models_monitoring import Strict

OutcomeKind = Literal["reoffended", "recalled", "completed", "withdrawn", "other"]


class OutcomeCreate(Strict):
    kind: OutcomeKind
    occurred_on: date = Field(
        strict=False,  # JSON has no date type: the ISO text is parsed
        description="civil date YYYY-MM-DD, from 2000-01-01 to today",
    )
    note: str = Field(default="", max_length=bounds.MAX_OUTCOME_NOTE)
    order_id: int | None = Field(default=None, ge=1, le=2**62, description="the order it ends")


class OutcomePublic(BaseModel):
    id: int
    subject_id: int
    order_id: int | None
    kind: OutcomeKind
    occurred_on: str
    note: str
    recorded_by: int
    recorded_at: float


class CohortRow(BaseModel):
    """One subject under its pseudonymous id: no name, reference, date or place."""

    pid: str = Field(description="HMAC of the subject id under the server's research key")
    wear_days: float = Field(description="days monitored in the period (tag fitted, order running)")
    nights_kept: int
    nights_broken: int
    zone_events: dict[str, int] = Field(description="exclusion_entry / inclusion_exit")
    alerts_by_type: dict[str, int]
    alerts_by_outcome: dict[str, int]
    outcomes: list[OutcomeKind]


class Cohort(BaseModel):
    start: int = Field(alias="from")
    end: int = Field(alias="to")
    min_cell_count: int = Field(description="aggregate counts from 1 to below this are null")
    subjects: int | None
    totals: dict[str, int | None] = Field(description="aggregate counts, small ones null")
    rows: list[CohortRow] = Field(
        description="per pseudonymous id; empty when the cohort is smaller than min_cell_count"
    )

    model_config = ConfigDict(populate_by_name=True)
