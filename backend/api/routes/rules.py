"""The rules: every rule's version and parameters with their defaults (docs/rules.md)."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import CurrentUser
from backend.api.models_monitoring import RuleInfo
from backend.rules.engine import Engine

router = APIRouter(prefix="/api/rules", tags=["alerts"])


@router.get("", response_model=list[RuleInfo])
def list_rules(user: CurrentUser) -> list[RuleInfo]:
    """Every rule, its version and its parameters with their defaults."""
    return [RuleInfo.model_validate(d) for d in Engine().describe()]
