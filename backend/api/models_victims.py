"""Pydantic v2 models of the victim-device routes (backend/api/routes/victims.py): linking a
victim's own device to one of the subject's orders, ending the link, and what the owning
unit may read of it. Bounds: backend/services/victims.py."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from backend.api.models_monitoring import Dated, Unix
from backend.services import victims


class VictimLinkCreate(Dated):
    dated: ClassVar[tuple[str, ...]] = ("starts_at",)
    order_id: int = Field(ge=1, le=2**62)
    device: int = Field(ge=1, le=0xFFFFFFFF, description="a registered victim device's id")
    warn_m: int = Field(default=500, ge=victims.MIN_ALERT_M, le=victims.MAX_WARN_M)
    alert_m: int = Field(default=200, ge=victims.MIN_ALERT_M, le=victims.MAX_WARN_M)
    silent_s: int | None = Field(default=None, ge=victims.MIN_SILENT_S, le=victims.MAX_SILENT_S)
    victim_safe: bool = Field(
        default=True, description="on: no one is shown the victim's positions"
    )
    starts_at: Unix | None = Field(default=None, description="default: now")


class VictimLinkEnd(Dated):
    dated: ClassVar[tuple[str, ...]] = ("ends_at",)
    ends_at: Unix


class VictimLinkPublic(BaseModel):
    id: int
    device: int
    order_id: int
    subject_id: int
    warn_m: int
    alert_m: int
    silent_s: int | None
    victim_safe: bool
    starts_at: int
    ends_at: int | None


class WarningPublic(BaseModel):
    seq: int
    message: int = Field(description="1 within the warning distance, 2 the alert distance")
    about: int = Field(description="the episode's start (event time)")
    sent_at: float
    acknowledged: bool


class VictimPosition(BaseModel):
    t: int
    lat: float
    lon: float
    accuracy_m: float
