"""The one authorization dependency and the scoped queries (STYLE.md 9).

Every route takes its caller from here, never from a check of its own:

- `CurrentUser`: the authenticated user (401 otherwise). `require_role(...)` narrows it.
- `subject_scope(scope)`: for a route with a `subject_id` path parameter; returns the
  `SubjectAccess` if the caller may use that subject with `scope`, answers 404 if the caller
  may not see the subject at all (whether or not it exists) and 403 if it may see it but not
  with this scope. Consultation scopes (every scope but view and manage) are audited here,
  before the route reads anything; trail also requires a `purpose` query parameter.
- `object_scope(kind, scope)`: the same for a record that belongs to a subject (an alert,
  a zone...: `access.SUBJECT_OBJECTS`), reached through its subject; a foreign one is 404.
- `unit_scope(write)`, `user_scope(write)`, `share_scope(write)`, `shift_scope`: the guards
  of units, user accounts, shares and on-call shifts, whose visibility is not a subject's
  (access.py says who sees which);
  `write` adds who may change it (administrators; the owning unit's supervisor for a share)
  with 403 for one who may see it but not change it. `SubjectShare`: sharing a subject.
- `PageAck`: acknowledging from a page's link, whose token names the page: manage on the
  page's alert's subject, as acknowledging from the queue needs.
- Role dependencies for routes without an id (`Administrator`, `Editor`, ...), built with
  `require_role(...)`, and `fleet_view` (administrators see every device and no subject).
- `visible_subjects(scope)`: for list routes: `Visible.where(column)` restricts any query
  to subjects the caller may use with that scope, so lists never leak. A list that shows
  consultation-scope data records the subjects it showed with `Auditor.consulted`.
- `DB`: the request's connection. Its transaction begins at the route's first statement
  (BEGIN IMMEDIATE on SQLite, so a route that reads then writes cannot fail to upgrade its
  lock; on PostgreSQL the transaction of a request other than GET/HEAD/OPTIONS begins by
  waiting for the one before it, `storage.database.SERIAL_CHANGES`, so a route that checks
  then writes sees what the one before it committed) and commits when the route returns; any
  exception rolls it back. The dependencies above use short transactions of their own,
  finished before the route body runs. Streams (WebSocket/SSE) must not hold `DB` open for
  their lifetime: take `EngineDep` and open short transactions per message.
- `stream_access(scope, via)`: for streams (SSE), which authenticate once: the session is
  re-checked periodically, and each event's subject at the moment it is sent (a share that
  ends stops what the stream shows at once); every subject whose data a stream sends is
  audited per subject.
- `pool_keeper` / `pool_tag_scope(write)`: the unit's tag pool, kept by its supervisors and
  officers; a `device_id` is a tag in the caller's unit's pool, else 404.
- `Audit`: `await`-free `Auditor.record(action, ...)` appends to the hash-chained audit log
  inside the request's transaction when one is open (so a change and its record commit
  together), else in a transaction of its own.

Every guard carries what it authorizes (`Guarded`: the path parameter, the resource, and
whether it allows changing it). The route inventory test (tests/backend/api/
test_route_inventory.py) fails if a route with an id path parameter reaches its handler
without the guard of the resource its path names, or changes something through a guard
that only lets it read.
"""

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import Body, Depends, HTTPException, Path, Query, WebSocketException, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import ColumnElement, Connection, Engine, Select
from starlette.requests import HTTPConnection

from backend import bounds
from backend.api.context import ApiContext
from backend.clock import Clock
from backend.notify.ack import AckError, page_subject
from backend.security import access, audit, roles
from backend.security.access import (
    SUBJECT_OBJECTS,
    SubjectAccess,
    User,
    subject_access,
    visible_subject_ids,
)
from backend.security.sessions import LoginError, session_stands
from backend.security.tokens import TokenError
from backend.services import oncall, units
from backend.storage.database import IMMEDIATE, SERIAL_CHANGES

log = structlog.get_logger("tagwatch.api")

# Attribute a guard dependency carries: what it authorizes (a tuple of Guarded). The route
# inventory test looks for it in every route's dependency tree.
GUARDS_ATTR = "__tagwatch_guards__"
# And the subject scope a subject/object guard enforces (the authorization matrix reads it).
SCOPE_ATTR = "__tagwatch_scope__"
TOKEN_URL = "/api/auth/token"
PURPOSE_MIN, PURPOSE_MAX = 3, 500

__all__ = [
    "DB",
    "Audit",
    "Auditor",
    "ClockDep",
    "Context",
    "CurrentUser",
    "EngineDep",
    "RequestId",
    "StreamAccess",
    "SubjectAccess",
    "User",
    "Visible",
    "get_clock",
    "get_context",
    "get_current_user",
    "get_db",
    "get_engine",
    "object_scope",
    "require_role",
    "session_active",
    "stream_access",
    "subject_scope",
    "visible_subject_ids",
    "visible_subjects",
]


# Plumbing -------------------------------------------------------------------------------


def get_context(conn: HTTPConnection) -> ApiContext:
    ctx: ApiContext = conn.app.state.tagwatch
    return ctx


Context = Annotated[ApiContext, Depends(get_context)]


def get_engine(ctx: Context) -> Engine:
    return ctx.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def get_clock(ctx: Context) -> Clock:
    return ctx.clock


ClockDep = Annotated[Clock, Depends(get_clock)]


def get_request_id(conn: HTTPConnection) -> str:
    rid: str = conn.scope.get("state", {}).get("request_id", "")
    return rid


RequestId = Annotated[str, Depends(get_request_id)]


# Methods that change nothing; any other request's transaction is serial with the others'.
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_db(engine: EngineDep, request: HTTPConnection) -> Iterator[Connection]:
    with engine.connect() as conn:
        conn.execution_options(**IMMEDIATE)
        if request.scope.get("method", "GET") not in _READS:
            conn.execution_options(**SERIAL_CHANGES)
        try:
            yield conn
        except BaseException:
            if conn.in_transaction():
                conn.rollback()
            raise
        if conn.in_transaction():
            conn.commit()


# Committed when the route returns, before its answer is sent (scope "function"): a client
# that sends its next request as soon as it has the answer (logout, then a read) sees it.
DB = Annotated[Connection, Depends(get_db, scope="function")]


# Authentication -------------------------------------------------------------------------


class _Bearer(OAuth2PasswordBearer):
    """The OAuth2 password-flow bearer scheme (so OpenAPI documents it), reading the token
    from the Authorization header on HTTP and on WebSocket handshakes, or, for browsers
    that cannot set headers on a WebSocket, from the `access_token` query parameter."""

    async def __call__(self, conn: HTTPConnection) -> str | None:
        header = conn.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            return token.strip()
        if conn.scope["type"] == "websocket":
            return conn.query_params.get("access_token")
        return None


bearer = _Bearer(tokenUrl=TOKEN_URL, auto_error=False)


def _unauthorized(conn: HTTPConnection, detail: str) -> Exception:
    if conn.scope["type"] == "websocket":
        return WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason=detail)
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def get_current_user(
    conn: HTTPConnection,
    ctx: Context,
    token: Annotated[str | None, Depends(bearer)],
) -> User:
    if not token:
        raise _unauthorized(conn, "not authenticated")
    try:
        with ctx.engine.connect() as db:
            return ctx.sessions.authenticate(db, token, ctx.clock.now())
    except (TokenError, LoginError) as e:
        log.info("token_refused", reason=str(e))
        raise _unauthorized(conn, "invalid or expired token") from e


CurrentUser = Annotated[User, Depends(get_current_user)]


def _forbidden(conn: HTTPConnection, detail: str) -> Exception:
    if conn.scope["type"] == "websocket":
        return WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason=detail)
    return HTTPException(status.HTTP_403_FORBIDDEN, detail)


def _not_found(conn: HTTPConnection, what: str) -> Exception:
    if conn.scope["type"] == "websocket":
        return WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason="not found")
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")


def require_role(*allowed: str) -> Callable[..., User]:
    """A dependency: the current user if its role is one of `allowed`, else 403."""
    unknown = set(allowed) - set(roles.ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    def dependency(conn: HTTPConnection, user: CurrentUser) -> User:
        if user.role not in allowed:
            raise _forbidden(conn, f"requires role {' or '.join(allowed)}")
        return user

    dependency.__name__ = f"require_{'_or_'.join(allowed)}"
    return dependency


# Audit ----------------------------------------------------------------------------------


@dataclass
class Auditor:
    """Appends audit records for the current request (who, request id, clock)."""

    user: User | None
    request_id: str
    clock: Clock
    engine: Engine
    db: Connection | None = None

    def record(
        self,
        action: str,
        *,
        subject_ids: list[int] | None = None,
        scope: str | None = None,
        purpose: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        entry = audit.Entry(
            actor=self.user.username if self.user else "anonymous",
            action=action,
            detail=detail or {},
            user_id=self.user.id if self.user else None,
            unit_id=self.user.unit_id if self.user else None,
            subject_ids=subject_ids,
            scope=scope,
            purpose=purpose,
            request_id=self.request_id,
        )
        if self.db is not None and self.db.in_transaction():
            return audit.append(self.db, entry, self.clock.now())
        return audit.append_now(self.engine, entry, self.clock.now())

    def consulted(
        self, scope: str, subject_ids: Iterable[int], detail: dict[str, Any], now: float
    ) -> None:
        """Record that the caller was shown `scope` data of each of these subjects at once
        (a list, the live map, a stream): `read.<scope>` names its own unit's subjects,
        `disclose.<scope>` those it sees through a share, with the shares in force at `now`."""
        ids = sorted(set(subject_ids))
        if not ids or self.user is None:
            return
        if self.db is not None and self.db.in_transaction():
            owned, shared = access.owned_and_shared(self.db, self.user, ids, now)
        else:
            with self.engine.connect() as conn:
                owned, shared = access.owned_and_shared(conn, self.user, ids, now)
        if owned:
            self.record(
                f"read.{scope}", subject_ids=owned, scope=scope, detail={**detail, "owner": True}
            )
        if shared:
            share_ids = sorted({i for found in shared.values() for i in found})
            self.record(
                f"disclose.{scope}",
                subject_ids=sorted(shared),
                scope=scope,
                detail={**detail, "owner": False, "share_ids": share_ids},
            )


def get_auditor(user: CurrentUser, ctx: Context, request_id: RequestId, db: DB) -> Auditor:
    return Auditor(user, request_id, ctx.clock, ctx.engine, db)


Audit = Annotated[Auditor, Depends(get_auditor)]


# Object-level authorization -------------------------------------------------------------


def _authorize(
    conn: HTTPConnection,
    ctx: ApiContext,
    user: User,
    request_id: str,
    subject_id: int,
    scope: str,
    purpose: str | None,
    via: dict[str, Any],
) -> SubjectAccess:
    now = ctx.clock.now()
    with ctx.engine.connect() as db:
        found = subject_access(db, user, subject_id, now)
    auditor = Auditor(user, request_id, ctx.clock, ctx.engine)
    where = {"method": conn.scope.get("method", "WEBSOCKET"), "path": conn.url.path, **via}
    if found is None or not found.can(scope):
        # A refused look is recorded too: probing for other units' subjects is exactly
        # what the curious-officer threat looks like (docs/security.md).
        auditor.record(
            "access.denied",
            subject_ids=[subject_id],
            scope=scope,
            purpose=purpose,
            detail={**where, "visible": found is not None},
        )
        if found is None:
            raise _not_found(conn, "subject")
        raise _forbidden(conn, f"no {scope} access to this subject")
    if scope in roles.CONSULTATION:
        detail = {**where, "owner": found.owner}
        if not found.owner:
            detail["share_ids"] = list(found.share_ids)
        # Consultation through a share is a disclosure to another unit, recorded as such.
        action = f"read.{scope}" if found.owner else f"disclose.{scope}"
        auditor.record(
            action, subject_ids=[subject_id], scope=scope, purpose=purpose, detail=detail
        )
    return found


@dataclass(frozen=True)
class Guarded:
    """What one guard authorizes: the path parameter, the resource it names ("subject",
    "alert", "unit"...) and whether the guard lets the route change it."""

    param: str
    resource: str
    write: bool


def _mark(dependency: Callable[..., Any], param: str, resource: str, write: bool) -> None:
    setattr(dependency, GUARDS_ATTR, (Guarded(param, resource, write),))


def subject_scope(scope: str) -> Callable[..., SubjectAccess]:
    """Dependency for routes with a `subject_id` path parameter (see module docstring)."""
    if scope not in roles.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    SubjectId = Annotated[int, Path(ge=1, le=2**62, description="subject id")]

    if scope in roles.PURPOSE_REQUIRED:

        def dependency(
            conn: HTTPConnection,
            ctx: Context,
            user: CurrentUser,
            request_id: RequestId,
            subject_id: SubjectId,
            purpose: Annotated[
                str,
                Query(
                    min_length=PURPOSE_MIN,
                    max_length=PURPOSE_MAX,
                    description="why this data is consulted (recorded in the audit log)",
                ),
            ],
        ) -> SubjectAccess:
            return _authorize(conn, ctx, user, request_id, subject_id, scope, purpose, {})

    else:

        def dependency(  # type: ignore[misc]
            conn: HTTPConnection,
            ctx: Context,
            user: CurrentUser,
            request_id: RequestId,
            subject_id: SubjectId,
            purpose: Annotated[
                str | None,
                Query(
                    max_length=PURPOSE_MAX,
                    description="why this data is consulted (recorded in the audit log)",
                ),
            ] = None,
        ) -> SubjectAccess:
            return _authorize(conn, ctx, user, request_id, subject_id, scope, purpose, {})

    dependency.__name__ = f"subject_scope_{scope}"
    _mark(dependency, "subject_id", "subject", scope == roles.MANAGE)
    setattr(dependency, SCOPE_ATTR, scope)
    return dependency


@dataclass(frozen=True)
class ObjectAccess:
    """An object of a subject (alert, zone, ...) and the caller's access to that subject."""

    object_id: int
    subject: SubjectAccess


def object_scope(kind: str, scope: str) -> Callable[..., ObjectAccess]:
    """Dependency for routes with the id of a record that belongs to a subject (a kind in
    `access.SUBJECT_OBJECTS`: its path parameter and table): the caller needs `scope` on the
    record's subject. Answers 404 for a missing record and for one of a subject the caller
    may not see, so existence does not leak."""
    found = SUBJECT_OBJECTS[kind]
    return object_guard(found.param, found.subject_of, scope, kind)


def object_guard(
    param: str,
    resolve: Callable[[Connection, int], int | None],
    scope: str,
    what: str,
) -> Callable[..., ObjectAccess]:
    """`object_scope` for any resolver: `resolve(conn, object_id)` gives the object's
    subject id (None: no such object)."""
    if scope not in roles.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def dependency(**kwargs: Any) -> ObjectAccess:
        conn: HTTPConnection = kwargs["conn"]
        ctx: ApiContext = kwargs["ctx"]
        user: User = kwargs["user"]
        object_id: int = kwargs[param]
        with ctx.engine.connect() as db:
            subject_id = resolve(db, object_id)
        if subject_id is None:
            raise _not_found(conn, what)
        via = {"object": what, "object_id": object_id}
        try:
            found = _authorize(
                conn, ctx, user, kwargs["request_id"], subject_id, scope, kwargs["purpose"], via
            )
        except HTTPException as e:
            if e.status_code == status.HTTP_404_NOT_FOUND:
                raise _not_found(conn, what) from e
            raise
        return ObjectAccess(object_id, found)

    purpose_default: Any = inspect.Parameter.empty if scope in roles.PURPOSE_REQUIRED else None
    purpose_type: Any = str if scope in roles.PURPOSE_REQUIRED else (str | None)
    query = (
        Query(min_length=PURPOSE_MIN, max_length=PURPOSE_MAX)
        if scope in roles.PURPOSE_REQUIRED
        else Query(max_length=PURPOSE_MAX)
    )
    kw = inspect.Parameter.KEYWORD_ONLY
    dependency.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("conn", kw, annotation=HTTPConnection),
            inspect.Parameter("ctx", kw, annotation=Context),
            inspect.Parameter("user", kw, annotation=CurrentUser),
            inspect.Parameter("request_id", kw, annotation=RequestId),
            inspect.Parameter(param, kw, annotation=Annotated[int, Path(ge=1, le=2**62)]),
            inspect.Parameter(
                "purpose", kw, annotation=Annotated[purpose_type, query], default=purpose_default
            ),
        ],
        return_annotation=ObjectAccess,
    )
    dependency.__name__ = f"object_scope_{param}_{scope}"
    _mark(dependency, param, what, scope == roles.MANAGE)
    setattr(dependency, SCOPE_ATTR, scope)
    return dependency


# Units, users and shares ----------------------------------------------------------------

Id = Annotated[int, Path(ge=1, le=2**62)]


def _role(user: User, allowed: Iterable[str], conn: HTTPConnection) -> None:
    allowed = tuple(allowed)
    if user.role not in allowed:
        raise _forbidden(conn, f"requires role {' or '.join(allowed)}")


def unit_scope(write: bool) -> Callable[..., int]:
    """Guard of `{unit_id}`: every user may see the units (to know whom a share goes to), an
    id that does not exist is 404; changing one needs an administrator (403)."""

    def dependency(conn: HTTPConnection, unit_id: Id, user: CurrentUser, ctx: Context) -> int:
        with ctx.engine.connect() as db:
            if not units.exists(db, unit_id):
                raise _not_found(conn, "unit")
        if write:
            _role(user, (roles.ADMINISTRATOR,), conn)
        return unit_id

    dependency.__name__ = f"unit_scope_{'write' if write else 'read'}"
    _mark(dependency, "unit_id", "unit", write)
    return dependency


def user_scope(write: bool) -> Callable[..., int]:
    """Guard of `{user_id}`: an account is visible to itself, administrators, auditors and
    its unit's supervisors (access.visible_users); to anyone else it does not exist (404).
    Changing one needs an administrator (403)."""

    def dependency(conn: HTTPConnection, user_id: Id, viewer: CurrentUser, ctx: Context) -> int:
        with ctx.engine.connect() as db:
            if not access.user_visible(db, viewer, user_id):
                raise _not_found(conn, "user")
        if write:
            _role(viewer, (roles.ADMINISTRATOR,), conn)
        return user_id

    dependency.__name__ = f"user_scope_{'write' if write else 'read'}"
    _mark(dependency, "user_id", "user", write)
    return dependency


def share_scope(write: bool) -> Callable[..., int]:
    """Guard of `{share_id}`: a share is visible to the supervisors and officers of the unit
    that owns its subject and to the users of the unit it is granted to (access.
    visible_shares); to anyone else it does not exist (404). Ending one needs a supervisor
    of the owning unit (403)."""

    def dependency(conn: HTTPConnection, share_id: Id, user: CurrentUser, ctx: Context) -> int:
        with ctx.engine.connect() as db:
            owner = access.share_owner(db, user, share_id)
        if owner is None:
            raise _not_found(conn, "share")
        if write and not access.may_revoke_share(user, owner):
            raise _forbidden(conn, "only the owning unit's supervisor")
        return share_id

    dependency.__name__ = f"share_scope_{'write' if write else 'read'}"
    _mark(dependency, "share_id", "share", write)
    return dependency


_subject_manage = subject_scope(roles.MANAGE)


def subject_share(
    conn: HTTPConnection,
    subject: Annotated[SubjectAccess, Depends(_subject_manage)],
    user: CurrentUser,
) -> SubjectAccess:
    """Sharing a subject with another unit: manage on it (its own unit), and a supervisor."""
    if not roles.may_share(user.role):
        raise _forbidden(conn, "only a supervisor shares a subject")
    return subject


def pool_keeper(conn: HTTPConnection, user: CurrentUser) -> User:
    """The unit's tag pool is its supervisors' and officers' (roles.may_keep_pool); 403 else."""
    if not roles.may_keep_pool(user.role):
        raise _forbidden(conn, "the tag pool is kept by supervisors and officers")
    return user


PoolKeeper = Annotated[User, Depends(pool_keeper)]


def pool_tag_scope(write: bool) -> Callable[..., int]:
    """Guard of `{device_id}` under /api/pool: a tag in the caller's unit's pool, for its
    supervisors and officers (403 for other roles); a tag in no pool or in another unit's
    does not exist to the caller (404)."""

    def dependency(conn: HTTPConnection, device_id: Id, user: PoolKeeper, ctx: Context) -> int:
        with ctx.engine.connect() as db:
            if not access.pool_tag_visible(db, user, device_id):
                raise _not_found(conn, "tag in your unit's pool")
        return device_id

    dependency.__name__ = f"pool_tag_scope_{'write' if write else 'read'}"
    _mark(dependency, "device_id", "tag", write)
    return dependency


PoolTagRead = Annotated[int, Depends(pool_tag_scope(write=False))]
PoolTagWrite = Annotated[int, Depends(pool_tag_scope(write=True))]


@dataclass(frozen=True)
class Visible:
    """The subjects the caller may use with `scope` now, as SQL."""

    user: User
    scope: str
    ids: Select[Any]

    def where(self, column: Any) -> ColumnElement[bool]:
        """`query.where(visible.where(table.c.subject_id))`"""
        clause: ColumnElement[bool] = column.in_(self.ids)
        return clause


def session_active(engine: Engine, user: User, now: float) -> bool:
    """Whether the caller's session still stands (not logged out, revoked, expired, nor the
    user disabled). Long-lived streams call it periodically and end when it is False,
    since their authentication happened once, at subscription."""
    with engine.connect() as db:
        return session_stands(db, user.id, user.session_id, now)


def visible_subjects(scope: str) -> Callable[..., Visible]:
    """Dependency for list routes (see module docstring)."""
    if scope not in roles.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def dependency(user: CurrentUser, ctx: Context) -> Visible:
        return Visible(user, scope, visible_subject_ids(user, scope, ctx.clock.now()))

    dependency.__name__ = f"visible_subjects_{scope}"
    return dependency


@dataclass(frozen=True)
class FleetView:
    """Which devices a fleet report shows: `subjects` None for administrators (operators:
    every device, and no subject data), else the subjects whose devices the caller may
    manage (its unit's)."""

    user: User
    subjects: Visible | None


def fleet_view(
    user: Annotated[
        User, Depends(require_role(roles.ADMINISTRATOR, roles.SUPERVISOR, roles.OFFICER))
    ],
    ctx: Context,
) -> FleetView:
    if user.role == roles.ADMINISTRATOR:
        return FleetView(user, None)
    return FleetView(
        user, Visible(user, roles.MANAGE, visible_subject_ids(user, roles.MANAGE, ctx.clock.now()))
    )


# How long a stream's disclosure record of a subject stands before the stream, still sending
# that subject's data, records it again (backend time): an auditor can tell to within this
# how long a stream showed a subject.
DISCLOSURE_RENEW_S = 900.0


class StreamAccess:
    """A long-lived stream's (SSE) authorization, decided again each time it sends: the
    session must still stand, and each event's subject must still be visible with the
    stream's scope at the moment of sending, not only when the event was read (a share that
    ends between the two withholds the event). Every subject whose data is sent is recorded
    per subject (`Auditor.consulted`) before it is sent, and again every
    `DISCLOSURE_RENEW_S` while the stream keeps sending it."""

    def __init__(self, user: User, scope: str, via: str, auditor: Auditor) -> None:
        self.user = user
        self.scope = scope
        self.via = via
        self._auditor = auditor
        self._recorded: dict[int, float] = {}

    def visible(self, now: float) -> Visible:
        """The subjects visible with the stream's scope at `now`, as SQL for its query."""
        return Visible(self.user, self.scope, visible_subject_ids(self.user, self.scope, now))

    def session_active(self, now: float) -> bool:
        return session_active(self._auditor.engine, self.user, now)

    def opened(self, action: str, detail: dict[str, Any]) -> None:
        """Record that the stream was opened, with what it follows."""
        self._auditor.record(action, scope=self.scope, detail=detail)

    def deliverable(self, subject_ids: Iterable[int], now: float) -> set[int]:
        """The subjects among `subject_ids` whose events may be sent now; records them."""
        with self._auditor.engine.connect() as conn:
            allowed = access.permitted(conn, self.user, self.scope, subject_ids, now)
        due = [
            s
            for s in sorted(allowed)
            if s not in self._recorded or now - self._recorded[s] >= DISCLOSURE_RENEW_S
        ]
        if due:
            self._auditor.consulted(self.scope, due, {"via": self.via}, now)
            self._recorded.update((s, now) for s in due)
        return allowed


def stream_access(scope: str, via: str) -> Callable[..., StreamAccess]:
    """Dependency for SSE routes (see StreamAccess)."""
    if scope not in roles.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def dependency(user: CurrentUser, ctx: Context, request_id: RequestId) -> StreamAccess:
        return StreamAccess(user, scope, via, Auditor(user, request_id, ctx.clock, ctx.engine))

    dependency.__name__ = f"stream_access_{scope}"
    return dependency


# Convenience aliases for the common scopes.
SubjectView = Annotated[SubjectAccess, Depends(subject_scope(roles.VIEW))]
SubjectLive = Annotated[SubjectAccess, Depends(subject_scope(roles.LIVE))]
SubjectTrail = Annotated[SubjectAccess, Depends(subject_scope(roles.TRAIL))]
SubjectAlerts = Annotated[SubjectAccess, Depends(subject_scope(roles.ALERTS))]
SubjectReports = Annotated[SubjectAccess, Depends(subject_scope(roles.REPORTS))]
SubjectConditions = Annotated[SubjectAccess, Depends(subject_scope(roles.CONDITIONS))]
SubjectManage = Annotated[SubjectAccess, Depends(subject_scope(roles.MANAGE))]
SubjectVictim = Annotated[SubjectAccess, Depends(subject_scope(roles.VICTIM))]
SubjectShare = Annotated[SubjectAccess, Depends(subject_share)]

OrderManage = Annotated[ObjectAccess, Depends(object_scope("order", roles.MANAGE))]
AssignmentManage = Annotated[ObjectAccess, Depends(object_scope("assignment", roles.MANAGE))]
CurfewManage = Annotated[ObjectAccess, Depends(object_scope("curfew", roles.MANAGE))]
ExceptionManage = Annotated[ObjectAccess, Depends(object_scope("curfew exception", roles.MANAGE))]
ZoneManage = Annotated[ObjectAccess, Depends(object_scope("zone", roles.MANAGE))]
AlertRead = Annotated[ObjectAccess, Depends(object_scope("alert", roles.ALERTS))]
AlertWork = Annotated[ObjectAccess, Depends(object_scope("alert", roles.MANAGE))]
OutcomeManage = Annotated[ObjectAccess, Depends(object_scope("outcome", roles.MANAGE))]
VictimLinkRead = Annotated[ObjectAccess, Depends(object_scope("victim device link", roles.VICTIM))]
VictimLinkManage = Annotated[
    ObjectAccess, Depends(object_scope("victim device link", roles.MANAGE))
]

UnitRead = Annotated[int, Depends(unit_scope(write=False))]
UnitWrite = Annotated[int, Depends(unit_scope(write=True))]
UserRead = Annotated[int, Depends(user_scope(write=False))]
UserWrite = Annotated[int, Depends(user_scope(write=True))]
ShareRead = Annotated[int, Depends(share_scope(write=False))]
ShareRevoke = Annotated[int, Depends(share_scope(write=True))]
Fleet = Annotated[FleetView, Depends(fleet_view)]

# Roles, for routes without an id.
Administrator = Annotated[User, Depends(require_role(roles.ADMINISTRATOR))]
AuditReader = Annotated[User, Depends(require_role(roles.AUDITOR))]
DirectoryReader = Annotated[
    User, Depends(require_role(roles.ADMINISTRATOR, roles.AUDITOR, roles.SUPERVISOR))
]
# Supervisors and officers create their unit's subjects.
Editor = Annotated[User, Depends(require_role(roles.SUPERVISOR, roles.OFFICER))]
# Correlation and caseload: the roles that work with subjects (never administrators and
# auditors, whom separation of duties keeps away from subject data).
Investigator = Annotated[
    User, Depends(require_role(roles.SUPERVISOR, roles.OFFICER, roles.PARTNER))
]

# On call and notifications: officers and supervisors read their own unit's rota and
# policies (they are the ones paged); only the unit's supervisor changes them. Everything is
# scoped to the caller's unit: no route takes a unit from the request.
OnCallReader = Annotated[User, Depends(require_role(roles.SUPERVISOR, roles.OFFICER))]
OnCallEditor = Annotated[User, Depends(require_role(roles.SUPERVISOR))]
# Evaluation: pseudonymised cohort figures of the caller's own unit (no subject named).
CohortReader = Annotated[User, Depends(require_role(roles.RESEARCHER, roles.SUPERVISOR))]


def shift_scope(conn: HTTPConnection, shift_id: Id, user: OnCallEditor, ctx: Context) -> int:
    """Guard of `{shift_id}`: a shift on the supervisor's own unit's rota; any other is 404."""
    with ctx.engine.connect() as db:
        if oncall.shift_unit(db, shift_id) != user.unit_id:
            raise _not_found(conn, "shift")
    return shift_id


_mark(shift_scope, "shift_id", "shift", True)
ShiftWrite = Annotated[int, Depends(shift_scope)]


@dataclass(frozen=True)
class PageAccess:
    """A page named by the token of its link, whose alert's subject the caller may manage."""

    page_id: int
    expires_at: int
    subject: SubjectAccess


def _page_token(token: Annotated[str, Body(min_length=1, max_length=2048, embed=True)]) -> str:
    return token


def page_scope(
    conn: HTTPConnection,
    ctx: Context,
    user: CurrentUser,
    request_id: RequestId,
    token: Annotated[str, Depends(_page_token)],
) -> PageAccess:
    """Acknowledging from a page's link: the token must be ours (422 otherwise) and the
    caller needs manage on the alert's subject, as acknowledging from the queue does; that
    the page was sent to the caller is the acknowledgement's own rule (notify/ack.py)."""
    try:
        page_id, expires_at = ctx.dispatcher.tokens.page_of(token)
    except AckError as e:
        raise HTTPException(e.status, str(e)) from e
    with ctx.engine.connect() as db:
        subject_id = page_subject(db, page_id)
    if subject_id is None:
        raise HTTPException(422, "this acknowledgement link is not valid")
    via = {"object": "page", "object_id": page_id}
    found = _authorize(conn, ctx, user, request_id, subject_id, roles.MANAGE, None, via)
    return PageAccess(page_id, expires_at, found)


PageAck = Annotated[PageAccess, Depends(page_scope)]


# A time window asked for in a query; backend/services/trail.window fills the defaults and
# bounds its length.
WindowFrom = Annotated[
    int | None,
    Query(alias="from", ge=0, lt=bounds.LATEST_S, description="Unix s; default to-24h"),
]
WindowTo = Annotated[
    int | None, Query(alias="to", ge=0, lt=bounds.LATEST_S, description="Unix s; default now")
]
