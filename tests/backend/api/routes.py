"""Walking an app's routes and their dependency trees (for the inventory and the matrix)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi import routing as fastapi_routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

from backend.api.deps import GUARDS_ATTR, SCOPE_ATTR, Guarded, get_current_user

PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")
# Routes anyone may call: the login endpoint, the API description, and the process's health,
# readiness and metrics (backend/api/routes/health.py: no monitoring data in any of them).
PUBLIC = {
    "/api/auth/token",
    "/api/openapi.json",
    "/api/docs",
    "/api/docs/oauth2-redirect",
    "/healthz",
    "/readyz",
    "/metrics",
}


@dataclass(frozen=True)
class RouteInfo:
    path: str
    methods: tuple[str, ...]
    websocket: bool
    path_params: tuple[str, ...]
    guarded: frozenset[str]  # path params some guard dependency authorizes
    guards: tuple[Guarded, ...]  # what each guard in the tree authorizes
    scope: str | None  # the subject scope enforced, if a subject/object guard is present
    authenticated: bool  # get_current_user is somewhere in the tree


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def _routes(app: FastAPI) -> Iterator[tuple[str, Any, Dependant]]:
    """(full path, original route, dependant) for every route, routers included: newer
    FastAPI keeps included routers as nodes (`iter_route_contexts` flattens them)."""
    flatten = getattr(fastapi_routing, "iter_route_contexts", None)
    if flatten is None:
        for route in app.routes:
            if isinstance(route, APIRoute | APIWebSocketRoute):
                yield route.path, route, route.dependant
        return
    for ctx in flatten(app.routes):
        route = ctx.original_route
        if isinstance(route, APIRoute | APIWebSocketRoute):
            yield ctx.path or route.path, route, getattr(ctx, "dependant", route.dependant)


def inventory(app: FastAPI) -> list[RouteInfo]:
    out = []
    for path, route, dependant in _routes(app):
        calls = list(_calls(dependant))
        guards: list[Guarded] = []
        scope = None
        for call in calls:
            guards.extend(getattr(call, GUARDS_ATTR, ()))
            scope = getattr(call, SCOPE_ATTR, scope)
        methods = tuple(sorted(route.methods)) if isinstance(route, APIRoute) else ("WS",)
        out.append(
            RouteInfo(
                path,
                methods,
                isinstance(route, APIWebSocketRoute),
                tuple(PARAM.findall(path)),
                frozenset(g.param for g in guards),
                tuple(guards),
                scope,
                get_current_user in calls,
            )
        )
    return out


def is_id(param: str) -> bool:
    return param == "id" or param.endswith("_id") or param.endswith("_ids")


def problems(app: FastAPI) -> list[str]:
    """What the route inventory test refuses."""
    found = []
    for r in inventory(app):
        for p in r.path_params:
            if is_id(p) and p not in r.guarded:
                found.append(f"{r.methods} {r.path}: id parameter {p!r} has no guard dependency")
        if not r.authenticated and r.path not in PUBLIC:
            found.append(f"{r.methods} {r.path}: does not authenticate (CurrentUser)")
    return found


# The resource each collection in a path names: an id that follows it must be authorized by
# that resource's guard (written out here, apart from the guards' own declarations).
COLLECTIONS = {
    "subjects": "subject",
    "orders": "order",
    "assignments": "assignment",
    "curfews": "curfew",
    "curfew-exceptions": "curfew exception",
    "zones": "zone",
    "alerts": "alert",
    "outcomes": "outcome",
    "victim-devices": "victim device link",
    "units": "unit",
    "users": "user",
    "shares": "share",
    "shifts": "shift",
    "pool": "tag",
    "objects": "object",  # the access tests' probe routes (probe.py)
}
# Routes that POST a query but change nothing: a read scope is their right guard.
READ_POSTS = {
    "/api/web/subjects/{subject_id}/zone-preview",
    "/api/investigations/subjects/{subject_id}/whereabouts",
}


def guard_problems(app: FastAPI) -> list[str]:
    """Routes whose id is guarded by another resource's guard, or that change something
    through a guard that only lets them read."""
    found = []
    for r in inventory(app):
        parts = r.path.split("/")
        for p in r.path_params:
            if not is_id(p):
                continue
            at = parts.index("{" + p + "}")
            want = COLLECTIONS.get(parts[at - 1])
            mine = [g for g in r.guards if g.param == p]
            if want is None:
                found.append(f"{r.methods} {r.path}: {p!r} follows no known collection")
            elif not any(g.resource == want for g in mine):
                got = sorted({g.resource for g in mine})
                found.append(f"{r.methods} {r.path}: {p!r} needs the {want} guard, has {got}")
            writes = [m for m in r.methods if m not in ("GET", "HEAD", "WS")]
            if writes and r.path not in READ_POSTS and not any(g.write for g in mine):
                found.append(f"{writes} {r.path}: changes through a read-only guard of {p!r}")
    return found
