"""Request and answer bodies of the on-call and notification routes (routes/oncall.py,
routes/notifications.py). Every field carries its bound (docs/operations.md,
"Notifications"); what the schema cannot state is checked by backend/services/oncall.py."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, Field

from backend.notify.ack import AckResultKind

Channel = Literal["email", "push"]
Severity = Literal["critical", "high", "medium", "low"]
# A shift's times: Unix seconds up to 2100.
Time = Annotated[float, Field(ge=0, le=4_102_444_800)]
HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
AlertType = Annotated[
    str,
    Path(
        pattern=r"^(\*|[a-z][a-z0-9_]{0,47})$",
        max_length=48,
        description="an alert type, or * for every type without a policy of its own",
    ),
]


class ShiftCreate(BaseModel):
    user_id: int = Field(ge=1, le=2**62)
    rank: int = Field(ge=1, le=9, description="1 is paged first; 2 when 1 does not acknowledge")
    starts_at: Time
    ends_at: Time
    channels: list[Channel] = Field(min_length=1, max_length=2)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class ShiftPublic(BaseModel):
    id: int
    user_id: int
    rank: int
    starts_at: float
    ends_at: float
    channels: list[str]
    email: str | None

    @classmethod
    def of(cls, r: dict[str, Any]) -> ShiftPublic:
        return cls(**{**{k: r[k] for k in cls.model_fields}, "channels": r["channels"].split(",")})


class PolicySet(BaseModel):
    min_severity: Severity
    escalate_after_s: int = Field(ge=30, le=24 * 3600)
    dedup_s: int = Field(ge=0, le=7 * 86_400)
    quiet_start: HHMM | None = None
    quiet_end: HHMM | None = None
    tz: str = Field(default="Europe/London", min_length=1, max_length=64)
    webhook_url: str | None = Field(default=None, max_length=500)


class PolicyPublic(BaseModel):
    id: int
    alert_type: str
    min_severity: str
    escalate_after_s: int
    dedup_s: int
    quiet_start: str | None
    quiet_end: str | None
    tz: str
    webhook_url: str | None

    @classmethod
    def of(cls, r: dict[str, Any]) -> PolicyPublic:
        return cls(**{k: r[k] for k in cls.model_fields})


class PolicySaved(PolicyPublic):
    webhook_key: str | None = Field(
        description="hex HMAC key the webhook's receiver checks signatures with (docs/"
        "operations.md); shown when the policy is saved, never listed"
    )


class PushKeys(BaseModel):
    p256dh: str = Field(min_length=1, max_length=128)
    auth: str = Field(min_length=1, max_length=64)


class PushSubscriptionIn(BaseModel):
    """As the browser's PushSubscription.toJSON() gives it (expirationTime is ignored)."""

    endpoint: str = Field(min_length=1, max_length=1000)
    keys: PushKeys


class PushKey(BaseModel):
    public_key: str = Field(description="the VAPID application server key (base64url)")


class Created(BaseModel):
    id: int


class AckResult(BaseModel):
    alert_id: int
    result: AckResultKind
