"""The voluntary scheme: a subject's enrolment and consent (read with the conditions scope,
changed with manage), its withdrawal and the removal that follows, and the unit's tag pool
(its supervisors and officers). The domain is backend/scheme/; each change is audited in the
transaction that makes it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from backend.api.deps import (
    DB,
    Audit,
    ClockDep,
    PoolKeeper,
    PoolTagDep,
    SubjectConditions,
    SubjectManage,
)
from backend.api.models_monitoring import Dated
from backend.api.models_scheme import (
    ConsentReview,
    EnrolmentCreate,
    EnrolmentPublic,
    OpenRemovalPublic,
    PoolAdd,
    PoolMove,
    PoolPublic,
    PoolStatePublic,
    PoolTagPublic,
    Removal,
    Withdrawal,
)
from backend.scheme import consent, pool
from backend.security import roles
from backend.security.access import visible_subject_ids

router = APIRouter(prefix="/api", tags=["scheme"])


def _plausible(body: Dated, now: float) -> None:
    problem = body.implausible(now)
    if problem:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problem)


def _refused(e: consent.ConsentError | pool.PoolError) -> HTTPException:
    invalid = isinstance(e, consent.ConsentInvalid | pool.PoolInvalid)
    code = status.HTTP_422_UNPROCESSABLE_CONTENT if invalid else status.HTTP_409_CONFLICT
    return HTTPException(code, str(e))


def _enrolments(db: DB, subject_id: int) -> list[EnrolmentPublic]:
    return [
        EnrolmentPublic.model_validate({**r, "sharing": sorted(roles.parse_scopes(r["sharing"]))})
        for r in consent.enrolment_rows(db, subject_id)
    ]


def _current(db: DB, subject_id: int) -> EnrolmentPublic:
    return _enrolments(db, subject_id)[-1]


# ---- consent ----------------------------------------------------------------------------


@router.get("/subjects/{subject_id}/enrolments", response_model=list[EnrolmentPublic])
def list_enrolments(subject: SubjectConditions, db: DB) -> list[EnrolmentPublic]:
    """The subject's enrolments on voluntary schemes, oldest first: the consent, its
    withdrawal and the removal task it opened."""
    return _enrolments(db, subject.id)


@router.post(
    "/subjects/{subject_id}/enrolments",
    response_model=EnrolmentPublic,
    status_code=status.HTTP_201_CREATED,
)
def enrol(
    subject: SubjectManage, body: EnrolmentCreate, db: DB, clock: ClockDep, log: Audit
) -> EnrolmentPublic:
    """Record the wearer's consent to a scheme (409 while an enrolment is in force)."""
    now = clock.now()
    _plausible(body, now)
    given = consent.Consent(body.scheme, body.consent_at, frozenset(body.sharing),
                            body.witnessed_by, body.document_ref, body.review_at)  # fmt: skip
    assert log.user is not None
    try:
        eid = consent.enrol(db, subject.id, given, log.user.id, now)
    except consent.ConsentError as e:
        raise _refused(e) from e
    detail = {"enrolment_id": eid, "scheme": body.scheme, "document_ref": body.document_ref,
              "sharing": sorted(body.sharing)}  # fmt: skip
    log.record("consent.enrol", subject_ids=[subject.id], scope=roles.MANAGE, detail=detail)
    return _current(db, subject.id)


def _step(
    subject: SubjectManage, db: DB, log: Audit, action: str, detail: dict[str, Any], step: Any
) -> EnrolmentPublic:
    try:
        step()
    except consent.ConsentError as e:
        raise _refused(e) from e
    log.record(action, subject_ids=[subject.id], scope=roles.MANAGE, detail=detail)
    return _current(db, subject.id)


@router.post("/subjects/{subject_id}/consent/review", response_model=EnrolmentPublic)
def review(
    subject: SubjectManage, body: ConsentReview, db: DB, clock: ClockDep, log: Audit
) -> EnrolmentPublic:
    """Consent reviewed with the wearer: set the next review date."""
    now = clock.now()
    _plausible(body, now)
    return _step(subject, db, log, "consent.review", {"review_at": body.review_at},
                 lambda: consent.review(db, subject.id, body.review_at, now))  # fmt: skip


@router.post("/subjects/{subject_id}/consent/withdrawal", response_model=EnrolmentPublic)
def withdraw(
    subject: SubjectManage, body: Withdrawal, db: DB, clock: ClockDep, log: Audit
) -> EnrolmentPublic:
    """The wearer withdrew consent: recorded, and a removal task opens."""
    now = clock.now()
    _plausible(body, now)
    assert log.user is not None
    uid = log.user.id
    return _step(subject, db, log, "consent.withdraw", {"withdrawn_at": body.withdrawn_at},
                 lambda: consent.withdraw(db, subject.id, body.withdrawn_at, body.note, uid,
                                          now))  # fmt: skip


@router.post("/subjects/{subject_id}/consent/removal", response_model=EnrolmentPublic)
def record_removal(
    subject: SubjectManage, body: Removal, db: DB, clock: ClockDep, log: Audit
) -> EnrolmentPublic:
    """The equipment came off at `removed_at`: the subject's assignments end then, the
    enrolment exits, and the devices' data dated from then on is refused at ingest."""
    now = clock.now()
    _plausible(body, now)
    assert log.user is not None
    uid = log.user.id
    stopped: list[int] = []
    detail: dict[str, Any] = {"removed_at": body.removed_at, "devices": stopped}
    return _step(subject, db, log, "consent.removal", detail,
                 lambda: stopped.extend(consent.complete_removal(
                     db, subject.id, body.removed_at, uid, now)))  # fmt: skip


# ---- the tag pool -----------------------------------------------------------------------


def _tag(entry: pool.TagEntry) -> PoolTagPublic:
    return PoolTagPublic.model_validate(entry, from_attributes=True)


def _entry(db: DB, unit_id: int, device: int, now: float) -> PoolTagPublic:
    return next(_tag(e) for e in pool.unit_pool(db, unit_id, now) if e.device == device)


@router.get("/pool", response_model=PoolPublic)
def get_pool(user: PoolKeeper, db: DB, clock: ClockDep) -> PoolPublic:
    """The caller's unit's tags: state, since when, battery health by assignment, whether
    due for service; the counts ("3 free, 1 due for service"); and the removals still to
    do after a wearer withdrew (of subjects the caller may manage)."""
    now = clock.now()
    entries = pool.unit_pool(db, user.unit_id, now)
    removals = consent.open_removals(db, visible_subject_ids(user, roles.MANAGE, now))
    return PoolPublic.model_validate({
        "tags": [_tag(e) for e in entries],
        "counts": pool.counts(entries),
        "removals": [OpenRemovalPublic.model_validate(r._mapping) for r in removals],
    })  # fmt: skip


@router.post("/pool", response_model=PoolTagPublic, status_code=status.HTTP_201_CREATED)
def add_to_pool(
    user: PoolKeeper, body: PoolAdd, db: DB, clock: ClockDep, log: Audit
) -> PoolTagPublic:
    """Take a registered tag into the unit's pool (in stock, or fitted if assigned now)."""
    now = clock.now()
    try:
        state = pool.add(db, body.device, user.unit_id, user.id, now, body.note)
    except pool.PoolError as e:
        raise _refused(e) from e
    log.record("pool.add", detail={"device": body.device, "state": state})
    return _entry(db, user.unit_id, body.device, now)


@router.post("/pool/{device_id}/state", response_model=PoolTagPublic)
def move_tag(tag: PoolTagDep, body: PoolMove, db: DB, clock: ClockDep, log: Audit) -> PoolTagPublic:
    """Change a tag's state by hand: charging, cleaning, faulty, back in stock, retired
    (fitted and removed follow the subjects' equipment)."""
    now = clock.now()
    try:
        pool.move(db, tag.device, body.state, tag.user.id, now, body.note)
    except pool.PoolError as e:
        raise _refused(e) from e
    log.record("pool.move", detail={"device": tag.device, "state": body.state})
    return _entry(db, tag.user.unit_id, tag.device, now)


@router.get("/pool/{device_id}/history", response_model=list[PoolStatePublic])
def tag_history(tag: PoolTagDep, db: DB) -> list[PoolStatePublic]:
    """Every state the tag has been in, oldest first, with who changed it and the
    assignment of each fitting and removal."""
    return [PoolStatePublic.model_validate(r) for r in pool.history(db, tag.device)]
