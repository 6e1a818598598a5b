"""The officers' web application itself: its configuration (tile source, the backend's
clock), the world layer, and `install(app)`, which serves the application's static files
(backend/web/static) and Leaflet with its clustering plugin from backend/web/node_modules.
The rest of the UI's own API (`/api/web/...`) lives with its resources: the live map and its
stream in live.py, a subject's timeline in events.py, the zone preview in zones.py."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from backend.api.deps import Context, CurrentUser
from backend.web.settings import WebSettings

router = APIRouter(prefix="/api/web", tags=["web"])

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
STATIC_DIR = WEB_DIR / "static"
LEAFLET_DIR = WEB_DIR / "node_modules" / "leaflet" / "dist"
CLUSTER_DIR = WEB_DIR / "node_modules" / "leaflet.markercluster" / "dist"


def get_web(conn: HTTPConnection) -> WebSettings:
    return web_settings(conn.app)


def web_settings(app: Any) -> WebSettings:
    found: WebSettings | None = getattr(app.state, "tagwatch_web", None)
    return found if found is not None else WebSettings()


WebDep = Annotated[WebSettings, Depends(get_web)]


# ---- configuration and world layer ------------------------------------------------------


class WebConfig(BaseModel):
    tile_url: str = Field(description="XYZ template ({z}/{x}/{y}); empty: the world layer")
    tile_attribution: str
    tile_max_zoom: int
    world_layer: bool = Field(description="whether GET /api/web/world has a layer")
    # A list, not a tuple: OpenAPI tools that read `prefixItems` as draft-4 `items` reject it.
    center: list[float] = Field(
        min_length=2, max_length=2, description="[lat, lon] the map opens at"
    )
    zoom: int
    alert_sound: bool
    live_refresh_s: int = Field(description="how often the live map reloads every subject")
    now: float = Field(description="backend clock, Unix s (simulated runs drive it)")


def _world_path(ctx: Any, web: WebSettings) -> Path | None:
    if web.world_layer is not None:
        return web.world_layer if web.world_layer.is_file() else None
    default = Path(ctx.settings.data_dir) / "world.geojson"
    return default if default.is_file() else None


@router.get("/config", response_model=WebConfig)
def config(user: CurrentUser, ctx: Context, web: WebDep) -> WebConfig:
    """The map's configuration and the backend's clock."""
    return WebConfig(
        tile_url=web.tile_template(),
        tile_attribution=web.tile_attribution,
        tile_max_zoom=web.tile_max_zoom,
        world_layer=_world_path(ctx, web) is not None,
        center=[web.center_lat, web.center_lon],
        zoom=web.zoom,
        alert_sound=web.alert_sound,
        live_refresh_s=web.live_refresh_s,
        now=ctx.clock.now(),
    )


@dataclass
class _Cached:
    path: Path
    mtime: float
    body: bytes


_world_cache: dict[Path, _Cached] = {}


@router.get(
    "/world",
    response_class=Response,
    responses={200: {"content": {"application/geo+json": {}}, "description": "GeoJSON"}},
)
def world(user: CurrentUser, ctx: Context, web: WebDep) -> Response:
    """The vector world layer (land, roads, places) as a GeoJSON FeatureCollection; 404
    when none is configured. It holds no subject data."""
    path = _world_path(ctx, web)
    if path is None:
        raise HTTPException(404, "no world layer configured")
    mtime = path.stat().st_mtime
    cached = _world_cache.get(path)
    if cached is None or cached.mtime != mtime:
        body = path.read_bytes()
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise HTTPException(503, "the world layer is not valid JSON") from e
        if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
            raise HTTPException(503, "the world layer is not a GeoJSON FeatureCollection")
        cached = _Cached(path, mtime, body)
        _world_cache[path] = cached
    return Response(cached.body, media_type="application/geo+json")


# ---- static files -----------------------------------------------------------------------


class _WithPolicy:
    """Adds the pages' Content-Security-Policy (SecurityMiddleware keeps a policy the
    application set on pages outside /api); read per request so tests can change it."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], owner: FastAPI):
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = web_settings(self.owner).content_security_policy()

        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"content-security-policy", policy)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_policy)


async def _home(request: Request) -> Response:
    return RedirectResponse("/web/", status_code=307)


def install(app: FastAPI, web: WebSettings | None = None) -> None:
    """The web API, and the application at /web/ (with Leaflet at /web/vendor/leaflet/ and
    its clustering plugin at /web/vendor/markercluster/ once `make` has installed them); /
    redirects there. Mounted under /web so that no route
    added after this one is shadowed."""
    app.state.tagwatch_web = web or WebSettings()
    app.include_router(router)
    app.router.routes.append(Route("/", _home, methods=["GET"], include_in_schema=False))
    for name, folder in (("leaflet", LEAFLET_DIR), ("markercluster", CLUSTER_DIR)):
        if folder.is_dir():
            files = StaticFiles(directory=folder)
            app.router.routes.append(Mount(f"/web/vendor/{name}", _WithPolicy(files, app)))
    site = StaticFiles(directory=STATIC_DIR, html=True)
    app.router.routes.append(Mount("/web", _WithPolicy(site, app)))
