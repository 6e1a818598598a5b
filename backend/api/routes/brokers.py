"""A tag's broker list (cmd_broker), set by an administrator for one tag or every tag of a
unit's pool, and where it is: queued, sent, or the tag's answer (backend/services/
broker_push.py). Setting one is audited (`tag.brokers`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from backend.api.deps import DB, Administrator, Audit, ClockDep
from backend.api.models_monitoring import Strict
from backend.services import broker_push

router = APIRouter(prefix="/api/brokers", tags=["admin"])

# Bounds of the request itself; the list is then checked as the tag checks it (1-4 brokers,
# host:port, at most 64 characters each), with a sentence for what is wrong.
MAX_ENTRIES = 16
MAX_ENTRY = 256
DeviceId = Annotated[int, Field(ge=1, le=0xFFFFFFFF, description="a registered tag")]
UnitId = Annotated[int, Field(ge=1, le=2**62, description="every tag in this unit's pool")]


class BrokerListSet(Strict):
    brokers: list[Annotated[str, Field(max_length=MAX_ENTRY)]] = Field(
        max_length=MAX_ENTRIES, description="host:port each, in the order the tag tries them"
    )
    tag: DeviceId | None = None
    unit_id: UnitId | None = None


class BrokerDelivery(BaseModel):
    id: int
    tag: int
    brokers: list[str]
    actor: str
    queued_at: float
    seq: int | None
    sent_at: float | None
    result: int | None
    state: str


def _public(tags: list[int], db: DB) -> list[BrokerDelivery]:
    return [
        BrokerDelivery.model_validate(d, from_attributes=True)
        for d in broker_push.deliveries(db, tags)
    ]


@router.post("", response_model=list[BrokerDelivery], status_code=status.HTTP_202_ACCEPTED)
def set_brokers(
    body: BrokerListSet, admin: Administrator, db: DB, clock: ClockDep, log: Audit
) -> list[BrokerDelivery]:
    """Queue a new broker list for one tag or every tag of a unit's pool; an ingest worker
    sends it at its next rules tick, and the tag takes it from its next session."""
    listed = broker_push.checked(body.brokers)
    tags = broker_push.target_tags(db, body.tag, body.unit_id)
    ids = broker_push.queue(db, listed, tags, admin.username, clock.now())
    log.record(
        "tag.brokers",
        detail={"brokers": listed, "tags": tags, "unit_id": body.unit_id, "queued": ids},
    )
    return _public(tags, db)


@router.get("", response_model=list[BrokerDelivery])
def broker_status(
    admin: Administrator,
    db: DB,
    tag: Annotated[int | None, Query(ge=1, le=0xFFFFFFFF)] = None,
    unit_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> list[BrokerDelivery]:
    """The newest broker list queued for one tag, or for each tag of a unit's pool, and what
    became of it: queued, sent, dropped, taken or refused by the tag."""
    return _public(broker_push.target_tags(db, tag, unit_id), db)
