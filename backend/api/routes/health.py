"""/healthz, /readyz and /metrics of the API process (backend/health.py says what each
means). Unauthenticated by design: a load balancer, systemd or Prometheus asks them without
an account, and none of them answers with monitoring data. The reverse proxy in front
serves only /api and /web to the outside (docs/operations.md), so these stay on the host."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from backend import metrics
from backend.api.context import ApiContext
from backend.health import ALIVE, Readiness, answer, database_ready

router = APIRouter(include_in_schema=False)


def install(app: FastAPI, ctx: ApiContext) -> None:
    readiness = Readiness({"database": lambda: database_ready(ctx.engine)})
    registry = metrics.registry(
        metrics.ReadinessCollector(readiness.run),
        metrics.DatabaseCollector(ctx.engine, ctx.clock),
        metrics.PoolCollector(ctx.engine),
        metrics.NotificationCollector(ctx.dispatcher.counts.copy, ctx.engine, ctx.clock),
    )
    registry.register(metrics.HTTP_REQUESTS)
    registry.register(metrics.HTTP_REQUEST_SECONDS)
    app.state.readiness = readiness
    app.state.metrics = registry
    app.include_router(router)


@router.get("/healthz")
def healthz() -> dict[str, Any]:
    return ALIVE


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    readiness: Readiness = request.app.state.readiness
    status, body = answer(readiness.run())
    return JSONResponse(body, status_code=status)


@router.get("/metrics")
def metrics_text(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
