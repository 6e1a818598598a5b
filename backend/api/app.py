"""The one FastAPI application factory: security headers, CORS closed unless origins are
configured, request size limits, error handlers that never echo secrets or internals (a
service's refusal is answered with its sentence: Invalid 422, Conflict 409, NotFound 404),
and every router (backend/api/routes/: a new one is a line in ROUTERS there)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from backend.api.context import ApiContext
from backend.api.middleware import SECURITY_HEADERS, SecurityMiddleware
from backend.api.ratelimit import RateLimiter
from backend.api.request_metrics import RequestMetrics
from backend.api.routes import ROUTERS, health, web
from backend.clock import Clock, SystemClock
from backend.notify import dispatcher
from backend.registry import KeyVault, load_server_key
from backend.security.passwords import Passwords
from backend.security.sessions import Sessions
from backend.security.tokens import TokenSigner, signing_key
from backend.services import research
from backend.services.errors import Conflict, Invalid, NotFound, Refused
from backend.settings import Settings
from backend.storage.database import make_engine, upgrade

log = structlog.get_logger("tagwatch.api")


def build_context(
    settings: Settings, clock: Clock | None = None, engine: Engine | None = None
) -> ApiContext:
    clock = clock or SystemClock()
    if engine is None:
        engine = make_engine(settings.resolved_database_url())
        upgrade(engine)
    server_key = load_server_key(settings)
    vault = KeyVault(server_key)
    passwords = Passwords(settings)
    signer = TokenSigner(signing_key(settings, server_key), settings.access_token_ttl_s)
    return ApiContext(
        settings=settings,
        clock=clock,
        engine=engine,
        vault=vault,
        passwords=passwords,
        sessions=Sessions(settings, passwords, signer, vault),
        login_limiter=RateLimiter(settings.login_rate_per_minute, clock),
        dispatcher=dispatcher.build(engine, settings, server_key, clock),
        research_key=research.pseudonym_key(server_key),
    )


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: body, query, path..., then the field")
    msg: str = Field(description="why, in a sentence (never the value sent)")
    type: str


class ApiError(BaseModel):
    """Every error answer: a sentence, or (a request the schema refuses) the fields."""

    detail: str | list[FieldError]
    request_id: str | None = None


# The errors any operation may answer, documented once for all of them (OpenAPI).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ApiError, "description": text}
    for code, text in (
        (400, "the body cannot be parsed (not JSON, not a form)"),
        (401, "not authenticated, or the credentials are refused"),
        (403, "authenticated, but the role or the scope does not allow it"),
        (404, "no such object, or one the caller may not see"),
        (409, "conflicts with what is stored (a state, a duplicate, a per-subject count)"),
        (413, "the body is larger than TAGWATCH_MAX_REQUEST_BYTES"),
        (422, "a field outside its type or bound, or a rule the schema cannot state"),
        (429, "too many attempts; Retry-After says when to try again"),
    )
}


def _request_id(request: Request) -> str:
    rid: str = request.scope.get("state", {}).get("request_id", "")
    return rid


def _encodable(v: Any) -> Any:
    # A field name is the caller's text too: a lone surrogate in a JSON key would make the
    # answer itself unencodable (a 500 in place of the 422).
    return v.encode("utf-8", "backslashreplace").decode() if isinstance(v, str) else v


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's default echoes the offending input, which may be a password or a token.
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, Any]] = [
        {
            "loc": [_encodable(x) for x in e.get("loc", ())],
            "msg": _encodable(e.get("msg", "")),
            "type": e.get("type", ""),
        }
        for e in exc.errors()
    ]
    return JSONResponse({"detail": errors, "request_id": _request_id(request)}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    response = await http_exception_handler(request, exc)
    if exc.status_code == 405:
        # Starlette's 405 names the methods of the first route on the path only; a path with
        # a route per method (GET and POST of a collection) has more.
        allowed: set[str] = set()
        for route in request.app.router.routes:
            methods = getattr(route, "methods", None)
            if methods and route.matches(request.scope)[0] != Match.NONE:
                allowed |= methods
        response.headers["allow"] = ", ".join(sorted(allowed))
    return response


_REFUSED_STATUS = ((NotFound, 404), (Conflict, 409), (Invalid, 422))


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    code = next((c for kind, c in _REFUSED_STATUS if isinstance(exc, kind)), 422)
    return JSONResponse({"detail": str(exc)}, status_code=code)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "unhandled",
        request_id=_request_id(request),
        path=request.url.path,
        error=type(exc).__name__,
    )
    # Starlette answers this from its outermost middleware, outside SecurityMiddleware:
    # the headers are set here.
    headers = {k.decode(): v.decode() for k, v in SECURITY_HEADERS}
    headers["x-request-id"] = _request_id(request)
    return JSONResponse(
        {"detail": "internal error", "request_id": _request_id(request)},
        status_code=500,
        headers=headers,
    )


def create_app(
    settings: Settings | None = None, clock: Clock | None = None, engine: Engine | None = None
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The notification dispatcher runs while the server does (docs/operations.md).
        ctx: ApiContext = app.state.tagwatch
        if settings.notify_dispatch:
            ctx.dispatcher.start()
        try:
            yield
        finally:
            ctx.dispatcher.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="tagwatch",
        version="1",
        summary="Electronic monitoring backend: subjects, alerts, access control, audit.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
        redoc_url=None,
        responses=ERRORS,
    )
    app.state.tagwatch = build_context(settings, clock, engine)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(Exception, _internal_error)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    # Inside SecurityMiddleware, which gives each request its id.
    app.add_middleware(RequestMetrics)
    # Outermost, so every answer (CORS preflights and 413s included) carries the headers.
    app.add_middleware(SecurityMiddleware, max_body=settings.max_request_bytes)

    for router in ROUTERS:
        app.include_router(router)
    web.install(app)  # the web UI's configuration, and the UI itself at /web/ (docs/web.md)
    health.install(app, app.state.tagwatch)  # unauthenticated: docs/operations.md
    return app
