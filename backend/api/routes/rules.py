"""The rules: every rule's version and parameters with their defaults (docs/rules.md), and
the backend's check of its victims' warnings (backend/rules/delivery.py: `victim_not_reached`
is raised by it, not by a rule) with the resend policy this process's settings hold."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import Context, CurrentUser
from backend.api.models_monitoring import RuleInfo
from backend.device_commands import Resend
from backend.rules import delivery
from backend.rules.engine import Engine

router = APIRouter(prefix="/api/rules", tags=["alerts"])


@router.get("", response_model=list[RuleInfo])
def list_rules(user: CurrentUser, ctx: Context) -> list[RuleInfo]:
    """Every rule, its version and its parameters with their defaults; last, `delivery`, the
    check of the warnings sent to victims' devices (as configured)."""
    described = [*Engine().describe(), delivery.describe(Resend.warnings(ctx.settings))]
    return [RuleInfo.model_validate(d) for d in described]
